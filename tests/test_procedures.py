from fabfile.inventory import SiteSettings
from fabfile.plan import RollbackOptions
from fabfile.procedures import rollback_site, status_site
from fabfile.report import Printer
from tests.fakes import FakeContext
from tests.test_probes import _migrated_answers

DUMP_ANSWERS = [
    (r"^stat -c %s", "2048\n", 0),
    (r"pg_restore -l", "216; 1259 1 TABLE public flow_records netmon\n217; 0 1 TABLE DATA public flow_records netmon\n", 0),
    (r"pg_restore -f -", "rows public.flow_records 10\nend 0\n", 0, "pg_restore_exit=0\n"),
    (r"\.sha256'?$", "", 1),
    (r"^sha256sum", "ab" * 32 + "  /root/x.dump\n", 0),
    (r"ls-tree", "docker-compose.yml\nscripts/init.sql\n", 0),
]


def test_rollback_dry_run_runs_only_probes_and_prints_the_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    c = FakeContext(DUMP_ANSWERS + _migrated_answers())
    printer = Printer("s1", quiet=True)
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="restore", dry_run=True), printer=printer)
    assert result.ok, result.error
    text = "\n".join(printer.lines)
    assert "netmon_pre_tsdb_20250101_000000.dump" in text and "TEMPLATE template0" in text
    assert not any(w in cmd for cmd in c.commands for w in ("CREATE DATABASE", "compose down", "checkout", "pg_dump "))


def test_rollback_without_tty_or_yes_is_refused_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    c = FakeContext(DUMP_ANSWERS + _migrated_answers())
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="clean"), printer=Printer("s1", quiet=True))
    assert not result.ok and "no terminal" in result.error and result.code == 8
    assert not any("DROP" in cmd or "compose down" in cmd for cmd in c.commands)


def test_status_verdict_for_migrated_site(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    result = status_site(FakeContext(_migrated_answers()), SiteSettings(name="s1"), Printer("s1", quiet=True))
    assert result.ok and result.summary.startswith("TimescaleDB active")
    assert result.data["pre_migration_commit"] == "aaa"


def test_rollback_without_git_refuses_while_app_files_still_use_timescaledb(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    host = (r"^sh -c .*docker compose version", "docker=yes\napp=yes\ncompose_file=yes\nnow=1000000\n"
            "file=docker-compose.yml\nmentions=backend/app/main.py\n", 0)
    c = FakeContext([host, *_migrated_answers()])
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="clean", yes=True),
                           printer=Printer("s1", quiet=True))
    assert not result.ok and "backend/app/main.py" in result.error and "by hand" in result.error
    assert not any("DROP" in cmd or "compose down" in cmd or "pg_dump" in cmd for cmd in c.commands)


def test_truncated_newest_dump_names_the_older_one(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    host = (r"^sh -c .*docker compose version", "docker=yes\napp=yes\ncompose_file=yes\nnow=1000000\ngit=yes\n"
            "backup=2048|999000|nosha|/root/netmon_pre_tsdb_20250102_000000.dump\n"
            "backup=2048|999000|nosha|/root/netmon_pre_tsdb_20250101_000000.dump\nfile=docker-compose.yml\n", 0)
    truncated = (r"pg_restore -f -", "end 1\n", 0, "pg_restore: error: could not read from input file: end of file\n"
                 "pg_restore_exit=1\n")
    c = FakeContext([host, truncated, *DUMP_ANSWERS, *_migrated_answers()])
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="restore", yes=True),
                           printer=Printer("s1", quiet=True))
    assert not result.ok and "20250102_000000.dump is truncated" in result.error
    assert "--dump=/root/netmon_pre_tsdb_20250101_000000.dump" in result.error
