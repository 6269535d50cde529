"""Unit tests of fabfile/restore_check.py: the commands it sends and how it judges their output
(a fake server answers; the end-to-end proof is tests/e2e/test_dumps.py)."""

from __future__ import annotations

import shlex

from fabfile import restore_check as rc
from fabfile.inventory import SiteSettings
from fabfile.runner import Runner
from tests.fakes import FakeContext

SITE = SiteSettings(name="s1", host="s1")
DUMP = "/root/netmon_pre_tsdb_20261201_101500.dump"
READBACK = "rows public.devices 60\nrows public.flow_records 2015\nend 0\n"
NAME, VOLUME = rc.throwaway_names("T")


def answers(counts: str, restore: tuple[str, int] = ("", 0), readback: str = READBACK, sealed: int = 0):
    return [(r"^test -f .*\.sha256", "", 0), (r"sha256sum -c", "ab 10\n", sealed), (r"^test -f ", "", 0),
            (r"^docker rm -f ", "", 0), (r"^docker volume rm -f ", "", 0), (r"^docker run -d ", "id\n", 0),
            (r"pg_isready", "accepting connections\n", 0), (r"pg_restore -f -", readback, 0, "pg_restore_exit=0\n"),
            (r"CREATE DATABASE", "CREATE DATABASE\n", 0), (r"pg_restore -U postgres", *restore),
            (r"count\(\*\)", counts, 0)]


def run(c):
    return rc.restore_check(Runner(c, "s1"), SITE, DUMP, ts="T")


def test_matching_counts_pass_and_the_throwaway_goes():
    c = FakeContext(answers("public.devices|60\npublic.flow_records|2015\n"))
    ok, verdict, lines = run(c)
    assert ok and "2 tables, 2075 rows, every count matches" in verdict
    assert lines == [["public.devices", 60, 60, "ok"], ["public.flow_records", 2015, 2015, "ok"]]
    started = next(cmd for cmd in c.commands if cmd.startswith("docker run"))
    words = shlex.split(started)
    assert words[-1] == "postgres:16-alpine" and "-p" not in words and "--rm" in words
    assert "POSTGRES_HOST_AUTH_METHOD=trust" in words and not [w for w in words if "PASSWORD" in w]
    assert f"{VOLUME}:/var/lib/postgresql/data" in words
    assert c.commands[-2:] == [f"docker rm -f {NAME}", f"docker volume rm -f {VOLUME}"]
    assert any(f"docker exec -i {NAME} pg_restore -U postgres -d restore_check --no-owner --no-privileges" in cmd
               for cmd in c.commands)


def test_a_count_that_differs_fails_and_names_the_table():
    c = FakeContext(answers("public.devices|60\npublic.flow_records|0\n"))
    ok, verdict, lines = run(c)
    assert not ok and "table public.flow_records has 0 rows after the restore, the dump holds 2015" in verdict
    assert lines[1][-1] == "MISMATCH"
    assert c.commands[-2:] == [f"docker rm -f {NAME}", f"docker volume rm -f {VOLUME}"]


def test_restore_errors_fail_even_when_the_counts_would_match():
    out = ("pg_restore: error: could not execute query: ERROR:  extension \"timescaledb\" is not available\n"
           "pg_restore: warning: errors ignored on restore: 3\n")
    c = FakeContext(answers("public.devices|60\npublic.flow_records|2015\n", restore=(out, 1)))
    ok, verdict, _ = run(c)
    assert not ok and "errors ignored on restore: 3" in verdict and "timescaledb" in verdict
    assert not any("count(*)" in cmd for cmd in c.commands)
    assert c.commands[-2:] == [f"docker rm -f {NAME}", f"docker volume rm -f {VOLUME}"]


def test_a_truncated_dump_fails_before_any_restore():
    c = FakeContext(answers("", readback="rows public.devices 60\nend 1\n"))
    ok, verdict, _ = run(c)
    assert not ok and "truncated or damaged" in verdict
    assert not any("CREATE DATABASE" in cmd for cmd in c.commands)
    assert c.commands[-2:] == [f"docker rm -f {NAME}", f"docker volume rm -f {VOLUME}"]


def test_a_file_that_changed_since_it_was_sealed_fails_without_a_container():
    c = FakeContext(answers("", sealed=1))
    ok, verdict, _ = run(c)
    assert not ok and "does not match its recorded sha256" in verdict
    assert not any(cmd.startswith("docker") for cmd in c.commands)
