"""Unit tests of fabfile/dumps.py's command building and parsing: portable copies of a database
that holds TimescaleDB (recorded probe output and a recorded pg_restore listing in, commands out)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from fabfile import dumps, site_state
from fabfile.errors import InputError, PreflightError
from fabfile.facts.dumps import parse_toc
from fabfile.inventory import SiteSettings
from fabfile.runner import Runner
from tests.fakes import DUMP_CHECKS, FakeContext, dump_checks, probe_answers, recorded

SITE = SiteSettings(name="s1", host="s1")
FINAL = "/root/netmon_pre_rollback_20261201_101500.dump"
SCRATCH = "netmon_portable_20261201_101500"


def migrated_state() -> site_state.SiteState:
    return site_state.probe_site(Runner(FakeContext(probe_answers()), "s1"), SiteSettings(name="s1"))


def by_what(commands, text: str):
    found = [c for c in commands if text in c.what]
    assert len(found) == 1, [c.what for c in commands]
    return found[0]


def test_a_plain_database_is_dumped_as_today():
    commands = dumps.make_dump_commands(SITE, FINAL, what="safety dump")
    assert [c.check.kind if c.check else None for c in commands] == [None, "readback", "toc", "seal"]
    assert shlex.split(commands[0].cmd)[-3:] == ["netmon", ">", "/root/.netmon_pre_rollback_20261201_101500.dump.partial"]
    assert "netmon_portable" not in " ".join(c.cmd for c in commands)


def test_portable_args_come_from_the_probed_state():
    args = dumps.portable_args(migrated_state())
    assert args == {"timescaledb": True, "hypertables": ["flow_records"], "caggs": [], "stale": []}


def test_portable_copy_goes_through_a_scratch_database_then_is_sealed_as_today():
    commands = dumps.make_dump_commands(SITE, FINAL, what="safety dump", **dumps.portable_args(migrated_state()))
    whats = [c.what for c in commands]
    assert len(set(whats)) == len(whats) and all(whats)  # one command per thing that can fail, each named
    text = [c.cmd for c in commands]
    assert f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)' in shlex.split(text[0])  # a rerun starts clean
    create = shlex.split(by_what(commands, "create scratch").cmd)
    assert f'CREATE DATABASE "{SCRATCH}" OWNER "netmon" TEMPLATE template0' in create
    dump = shlex.split(by_what(commands, "schema and plain tables' rows").cmd)
    assert dump[-1] == "netmon" and "--exclude-table-data=public.flow_records" in dump
    assert "--exclude-table-data=_timescaledb*.*" in dump  # chunk and catalog data are not read twice
    # the hypertable's rows are read through the hypertable (compressed chunks included)
    copy = by_what(commands, "copy hypertable flow_records")
    outer = shlex.split(copy.cmd)
    assert outer[:3] == ["bash", "-o", "pipefail"]
    read, write = outer[-1].split(" | ")
    assert 'COPY (SELECT * FROM public."flow_records") TO STDOUT' in shlex.split(read) and "netmon" in shlex.split(read)
    assert shlex.split(write)[:4] == ["docker", "exec", "-i", "netmon-db"]
    assert SCRATCH in shlex.split(write) and 'COPY public."flow_records" FROM STDIN' in shlex.split(write)
    # post-data after the rows; then the dump of the scratch database, read back, listed, sealed, dropped
    order = [c.what.split(" ")[0] for c in commands]
    carry = by_what(commands, "carry the sequences' values")  # read after the rows: no copied id above them
    assert whats.index(copy.what) < whats.index(carry.what) < whats.index(by_what(commands, "indexes, constraints").what)
    assert "FROM pg_sequences" in carry.cmd and SCRATCH in shlex.split(shlex.split(carry.cmd)[-1].split(" | ")[1])
    assert order[-6:] == ["pg_dump", "read", "list", "record", "drop", "drop"]
    assert whats[-1] == f"drop the scratch database of the portable copy ({SCRATCH}): its files in the container"
    assert shlex.split(commands[-6].cmd)[-3] == SCRATCH
    assert [c.check.kind for c in commands[-6:-2] if c.check] == ["readback", "toc", "seal"]
    assert "PGPASSWORD" not in " ".join(text) and "password" not in " ".join(text).lower()


def test_the_listing_filter_drops_every_timescaledb_entry_and_the_cagg_view():
    """The filter as the container runs it, over pg_restore -l of a migrated summary-cagg lab site."""
    commands = dumps.make_dump_commands(SITE, FINAL, timescaledb=True, hypertables=["flow_records"],
                                        caggs=["flow_summary_5m"])
    script = shlex.split(by_what(commands, "without TimescaleDB's entries").cmd)[-1]
    grep = shlex.split(script.split(" && ")[1].split(" > ")[0])
    listing = recorded("toc_migrated_summary_cagg.txt")
    kept = subprocess.run(grep[:-1], input=listing, capture_output=True, text=True, check=True).stdout
    entries = parse_toc(kept)
    assert not [e for e in entries if "timescaledb" in f"{e.kind} {e.schema} {e.name}".lower()]
    assert not [ln for ln in kept.splitlines() if "ts_insert_blocker" in ln or " flow_summary_5m " in ln]
    tables = {e.name for e in entries if e.kind == "TABLE"}
    assert len(tables) == 31 and "flow_records" in tables and "flow_summary_5m" not in tables  # made from the app's DDL
    assert {e.name for e in entries if e.kind == "SEQUENCE SET"} >= {"flow_records_id_seq", "devices_id_seq"}
    assert sum(e.kind == "FK CONSTRAINT" for e in entries) == sum(" FK CONSTRAINT " in ln for ln in listing.splitlines())
    # the convert toolkit (a clean run's capture is in place while its safety dump is taken): none of it
    toolkit = ["9; 2615 17001 SCHEMA - netmon_rollback netmon", "300; 1255 17010 FUNCTION netmon_rollback capture() netmon",
               "301; 1259 17020 TABLE netmon_rollback changes netmon",
               "4200; 0 17020 TABLE DATA netmon_rollback changes netmon",
               "3900; 2620 17030 TRIGGER public flow_records netmon_rollback_capture netmon",
               "3901; 2620 17031 TRIGGER public flow_records netmon_rollback_guard netmon"]
    with_toolkit = subprocess.run(grep[:-1], input=listing + "\n".join(toolkit) + "\n", capture_output=True, text=True,
                                  check=True).stdout
    assert with_toolkit == kept
    assert any(w == "--exclude-table-data=netmon_rollback.*" for w in shlex.split(by_what(commands, "pg_dump netmon's").cmd))


def test_the_summary_cagg_becomes_the_applications_table_with_bigint_sums():
    commands = dumps.make_dump_commands(SITE, FINAL, timescaledb=True, hypertables=["flow_records"],
                                        caggs=["flow_summary_5m"])
    create = shlex.split(by_what(commands, "create flow_summary_5m").cmd)
    assert SCRATCH in create and any("PRIMARY KEY (bucket, device_id, src_ip, dst_ip, protocol)" in w for w in create)
    read = shlex.split(shlex.split(by_what(commands, "continuous aggregate flow_summary_5m").cmd)[-1].split(" | ")[0])
    assert any(w.startswith("COPY (SELECT bucket, device_id, src_ip, dst_ip, protocol, bytes::bigint, packets::bigint, "
                            "flow_count::bigint FROM public.\"flow_summary_5m\")") for w in read)


def test_another_cagg_takes_its_views_columns():
    commands = dumps.make_dump_commands(SITE, FINAL, timescaledb=True, caggs=["metrics_hourly"])
    outer = shlex.split(by_what(commands, "create metrics_hourly").cmd)
    read, write = outer[-1].split(" | ")
    sql = shlex.split(read)[-1]
    assert sql.startswith("SELECT format('CREATE TABLE %s (%s);', 'public.\"metrics_hourly\"'")
    assert "attrelid = 'public.\"metrics_hourly\"'::regclass" in sql
    assert SCRATCH in shlex.split(write)


def test_stale_scratch_databases_are_dropped_first():
    commands = dumps.make_dump_commands(SITE, FINAL, timescaledb=True, stale=["netmon_portable_20261130_000000"])
    drops = [c for c in commands if c.what.startswith("drop what an earlier copy left") and "DROP" in c.cmd]
    assert [shlex.split(c.cmd)[-1] for c in drops] == [
        'DROP DATABASE IF EXISTS "netmon_portable_20261130_000000" WITH (FORCE)',
        f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)']


@pytest.mark.parametrize("bad", ["flow;records", "x'y", "a b", ""])
def test_a_hypertable_name_that_is_no_identifier_is_refused(bad):
    with pytest.raises(InputError):
        dumps.make_dump_commands(SITE, FINAL, hypertables=[bad])


def test_an_unreadable_timescaledb_catalog_refuses_the_copy():
    state = migrated_state()
    state.unknown["tsdb"] = "cannot read TimescaleDB's catalog in netmon (permission denied)"
    with pytest.raises(PreflightError, match="a copy would miss their rows"):
        dumps.portable_args(state)


def test_disk_need_is_the_database_size_for_a_portable_copy_only():
    state = migrated_state()
    assert state.db_size and dumps.portable_disk_need(state) == state.db_size
    plain = site_state.SiteState(extension={"netmon": False}, db_size=123)
    assert dumps.portable_disk_need(plain) == 0


def test_scratch_name_follows_the_dump_name():
    assert dumps.scratch_name("/root/netmon_pre_tsdb_20261201_010203.dump") == "netmon_portable_20261201_010203"
    assert dumps.scratch_name("/root/odd.dump").startswith("netmon_portable_")


def test_probe_portable_reads_a_kept_database():
    c = FakeContext([(r"FROM pg_extension", "ext|1\n", 0),
                     (r"timescaledb_information", "hyper|flow_records|t\ncagg|flow_summary_5m\njobfail|0\n", 0)])
    args = dumps.probe_portable(Runner(c, "s1"), SITE, "netmon_old_20261201_000000")
    assert args["hypertables"] == ["flow_records"] and args["caggs"] == ["flow_summary_5m"] and args["timescaledb"]
    assert all("-d netmon_old_20261201_000000" in cmd for cmd in c.commands)


def test_a_portable_copy_is_not_taken_for_a_pre_migration_backup():
    listing = ";\n;     dbname: netmon_portable_20261201_101500\n;\n" + recorded("toc_migrated_summary_cagg.txt")
    readback = "rows public.flow_records 10\nend 0\n"
    c = FakeContext([(DUMP_CHECKS, dump_checks(listing=listing, readback=readback), 0)])
    with pytest.raises(InputError, match="is not a pre-migration backup: it is a portable copy"):
        dumps.check_dump(Runner(c, "s1"), SITE, "/root/x.dump")
    assert dumps.archive_dbname(listing) == "netmon_portable_20261201_101500"


@pytest.mark.parametrize(("read_exit", "expected"), [(0, 0), (3, 3)])
def test_a_hypertable_read_that_fails_half_way_fails_the_copy(tmp_path, read_exit, expected):
    """The copy's pipe run by a real shell, `docker` faked: the reading side prints a row, then exits."""
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\ncase "$*" in *"TO STDOUT"*) printf "1\\t2\\n"; exit "$READ_EXIT";; esac\n'
                    'cat > "$OUT"\n')
    fake.chmod(0o755)
    command = by_what(dumps.make_dump_commands(SITE, FINAL, hypertables=["flow_records"]), "copy hypertable").cmd
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "READ_EXIT": str(read_exit), "OUT": str(tmp_path / "written")}
    out = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
    assert out.returncode == expected and (tmp_path / "written").read_text() == "1\t2\n"


RECORDED_DUMP = "/root/netmon_pre_tsdb_20261202_054111.dump"  # the summary-cagg lab site's backup, recorded


def check(answer: str, path: str = RECORDED_DUMP):
    c = FakeContext([(DUMP_CHECKS, answer, 0)])
    return dumps.check_dump(Runner(c, "s1"), SITE, path), c


def test_every_check_of_a_dump_is_one_command_and_reads_the_recorded_backup():
    info, c = check(recorded("dump_checks_pre_migration.txt"))
    assert len(c.commands) == 1 and info.size == 236017 and len(info.sha256) == 64
    assert info.readback.ok and info.counts["public.flow_records"] > 0 and any(e.name == "flow_records" for e in info.toc)


def test_a_truncated_dump_recorded_on_a_lab_site_is_refused_as_such():
    with pytest.raises(InputError, match=r"is truncated or damaged \(pg_restore: error: could not read from input file"):
        check(recorded("dump_checks_truncated.txt"))


@pytest.mark.parametrize(("answer", "message"), [
    (dump_checks(size=None), "not found on s1"),
    (dump_checks(sidecar="cd" * 32 + "  x.dump"), "does not match its recorded sha256"),
    (dump_checks(listing=None), "is not a pg_dump archive"),
    (dump_checks(readback="rows public.errors 3\nend 0\n"), None),  # a table named "errors" is no error
])
def test_each_part_of_the_dump_check_decides_on_its_own_output(answer, message):
    if message is None:
        assert check(answer)[0].counts == {"public.errors": 3}
    else:
        with pytest.raises(InputError, match=message):
            check(answer)


def test_a_dump_check_cut_short_is_unknown_not_a_bad_dump():
    """The script died part-way (the link dropped, the server killed it): the dump is not refused as
    missing or damaged; the preflight stops with what was left unread."""
    cut = recorded("dump_checks_pre_migration.txt").split("@@readback\n")[0]
    with pytest.raises(PreflightError, match=r"could not check dump .* unread: readback, readback_err\) — nothing was changed"):
        check(cut)
