import shlex
import subprocess

import pytest

from fabfile import commands as cmds
from fabfile.errors import InputError
from fabfile.inventory import SiteSettings

NASTY = "/root/my dumps/it's $(touch /tmp/pwned) `id`.dump"
SITE = SiteSettings(name="s1", host="s1")


def test_nasty_path_is_one_word_in_dump_list():
    line = cmds.dump_list(SITE, NASTY)
    # the shell sees exactly the path, as a single word after '<'
    words = shlex.split(line)
    assert words[-1] == NASTY and words[-2] == "<"
    assert words[:4] == ["docker", "exec", "-i", "netmon-db"]


def test_nasty_path_reaches_a_real_shell_as_a_name(tmp_path):
    target = tmp_path / "it's $(touch pwned) `id`.dump"
    target.write_text("x")
    out = subprocess.run(["sh", "-c", cmds.sha256_of(str(target))], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.split()[0] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert not (tmp_path / "pwned").exists()


def test_seal_dump_renames_only_after_sidecar(tmp_path):
    tmp = tmp_path / ".x y.dump.partial"
    final = tmp_path / "x y.dump"
    tmp.write_bytes(b"abc")
    out = subprocess.run(["sh", "-c", cmds.seal_dump(str(tmp), str(final))], capture_output=True, text=True, check=True)
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert out.stdout.strip() == f"{digest} 3"
    assert final.read_bytes() == b"abc" and not tmp.exists()
    assert (tmp_path / "x y.dump.sha256").read_text() == f"{digest}  x y.dump\n"


def test_psql_has_safe_flags_and_each_statement_quoted():
    line = cmds.psql(SITE, "SELECT 1", "SELECT 'a;b'", db="postgres")
    words = shlex.split(line)
    assert words[:4] == ["docker", "exec", "netmon-db", "psql"]
    for flag in ("ON_ERROR_STOP=1", "-X", "-tA"):
        assert flag in words
    assert words[words.index("-d") + 1] == "postgres"
    assert [words[i + 1] for i, w in enumerate(words) if w == "-c"] == ["SELECT 1", "SELECT 'a;b'"]


def test_exec_with_stdin_uses_dash_i():
    assert shlex.split(cmds.dexec(SITE, "cat", stdin=True))[:3] == ["docker", "exec", "-i"]
    assert "-i" not in shlex.split(cmds.dexec(SITE, "cat"))


@pytest.mark.parametrize("bad", ["a;b", 'x"y', "drop table", "", "1abc", "a" * 64, "ü"])
def test_ident_refuses_anything_but_plain_names(bad):
    with pytest.raises(InputError):
        cmds.ident(bad)


def test_ident_and_qualified_quote():
    assert cmds.ident("netmon_old_20250101_000000") == '"netmon_old_20250101_000000"'
    assert cmds.qualified("public.flow_records") == '"public"."flow_records"'
    assert cmds.literal("it's") == "'it''s'"


def test_readback_counts_rows_and_reports_exit(tmp_path):
    script = tmp_path / "fake.sql"
    script.write_text("SET x;\nCOPY public.a (id) FROM stdin;\n1\n2\n\\.\nCOPY public.b (id) FROM stdin;\n\\.\n")
    # replace docker exec with cat to run the real pipeline text locally
    line = cmds.dump_readback(SITE, str(script)).replace("docker exec -i netmon-db pg_restore -f -", "cat")
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["rows public.a 2", "rows public.b 0", "end 0"]
    assert "pg_restore_exit=0" in out.stderr
