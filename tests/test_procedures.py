import re

from fabfile.inventory import SiteSettings
from fabfile.plan import RollbackOptions
from fabfile.procedures import rollback_site, status_site
from fabfile.report import Printer
from tests.fakes import DUMP_CHECKS, FakeContext, dump_checks, probe_answers, recorded

DUMP = "/root/netmon_pre_tsdb_20261201_084211.dump"  # the recorded site's pre-migration backup
DUMP_ANSWERS = [
    (DUMP_CHECKS, dump_checks(), 0),
    (r"ls-tree", "docker-compose.yml\nscripts/init.sql\n", 0),
]
DEEP = [(r"'age'", "age|12\n", 0), (r"compose logs --tail=200 backend", "netmon-backend  | ok\n", 0)]
#: scripts/qa_check.sh's part of the status host probe, as recorded on a migrated lab site
QA_PASSED = "x.qa=OK: backend health\nx.qa.rc=0\n"


def host(drop: tuple[str, ...] = (), add: str = "") -> tuple:
    """The recorded host probe of a migrated site, with lines taken out and added."""
    lines = [ln for ln in recorded("host_probe_migrated.txt").splitlines() if not ln.startswith(drop)]
    return (r"^sh -c .*docker compose version", "\n".join(lines) + "\n" + add, 0)


def test_rollback_dry_run_runs_only_probes_and_prints_the_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    c = FakeContext(DUMP_ANSWERS + probe_answers())
    printer = Printer("s1", quiet=True)
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="restore", dry_run=True), printer=printer)
    assert result.ok, result.error
    text = "\n".join(printer.lines)
    assert DUMP in text and "TEMPLATE template0" in text
    assert not any(w in cmd for cmd in c.commands for w in ("CREATE DATABASE", "compose down", "checkout", "pg_dump "))
    # the plan is data: the JSON form holds every command the text shows
    shown = [ln.split("$ ", 1)[1] for ln in text.splitlines() if ln.strip().startswith("$ ")]
    assert shown == [cm["cmd"] + (f"  <<< {cm['stdin_note']}" if cm["stdin"] is not None else "")
                     if not cm["poll"] else f"(poll up to {int(cm['poll'])}s) {cm['cmd']}"
                     for st in result.data["json_plan"]["steps"] for cm in st["commands"]]


def test_rollback_without_tty_or_yes_is_refused_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    c = FakeContext(DUMP_ANSWERS + probe_answers())
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="clean"), printer=Printer("s1", quiet=True))
    assert not result.ok and "no terminal" in result.error and result.code == 8
    assert all(not re.search(r"DROP|compose (down|stop)|cat >>", cmd) for cmd in c.commands)


def test_a_plan_that_changed_since_it_was_shown_is_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    c = FakeContext(DUMP_ANSWERS + probe_answers())
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="clean", yes=True, expect_plan=[["true"]]),
                           printer=Printer("s1", quiet=True))
    assert not result.ok and "changed since its plan was shown" in result.error and result.code == 3
    assert all(not re.search(r"DROP|pg_dump|cat >>", cmd) for cmd in c.commands)


def test_status_verdict_for_migrated_site(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    c = FakeContext([host(add=QA_PASSED), *probe_answers(), *DEEP])
    result = status_site(c, SiteSettings(name="s1"), Printer("s1", quiet=True))
    assert len(c.commands) == 2  # the qa check rode on the host probe: no command of its own
    assert result.ok and result.summary.startswith("TimescaleDB active")
    assert result.data["pre_migration_commit"] == "21aa2a8a8904da0a6ddfd930623a132043a4b078"
    assert result.data["lock"] is None and result.data["unknown"] == {}


def test_status_names_an_unknown_fact_and_the_lock_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    holder = '{"operator": "ana", "laptop": "lt1", "pid": 42, "task": "rollback", "since": "2026-12-01 09:00:00 UTC"}'
    c = FakeContext([host(("lock=",), f"lock=held {holder}\n" + QA_PASSED),
                     (r"^docker exec netmon-db sh -c .*@@ready", recorded("db_probe_postgres_refuses.txt"), 0), *DEEP])
    printer = Printer("s1", quiet=True)
    result = status_site(c, SiteSettings(name="s1"), printer)
    text = "\n".join(printer.lines)
    assert result.summary == "state partly unknown" and "cannot read database postgres" in text
    assert "lock: held by ana@lt1, pid 42, task rollback" in text


def test_rollback_without_git_refuses_while_app_files_still_use_timescaledb(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    c = FakeContext([host(("git=", "head=", "rev=")), *probe_answers(),
                     (r"^cat /root/netmon/(scripts/init.sql|backend/requirements.txt)", "x\n", 0)])
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="clean", yes=True),
                           printer=Printer("s1", quiet=True))
    assert not result.ok and "backend/app/main.py" in result.error and "by hand" in result.error
    assert all(not re.search(r"DROP|compose (down|stop)|pg_dump|cat >>", cmd) for cmd in c.commands)


def test_truncated_newest_dump_names_the_older_one(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    backups = ("backup=2048|999000|nosha|/root/netmon_pre_tsdb_20250102_000000.dump\n"
               "backup=2048|999000|nosha|/root/netmon_pre_tsdb_20250101_000000.dump\n")
    truncated = (r"(?s)^sh -c .*20250102_000000\.dump.*@@readback", recorded("dump_checks_truncated.txt"), 0)
    c = FakeContext([host(("backup=",), backups), truncated, *DUMP_ANSWERS, *probe_answers()])
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="restore", yes=True),
                           printer=Printer("s1", quiet=True))
    assert not result.ok and "20250102_000000.dump is truncated" in result.error
    assert "--dump=/root/netmon_pre_tsdb_20250101_000000.dump" in result.error


def test_fallback_start_checks_the_dump_before_anything_stops(tmp_path, monkeypatch):
    """The database restart-loops (it cannot run as it is): --dump is checked on the file itself
    before the fallback would stop anything, and a bad one is refused with nothing changed."""
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path))
    looping = host(("inspect=/netmon-db",), "inspect=/netmon-db|restarting||5|timescale/timescaledb:latest-pg16\n")
    c = FakeContext([looping, (r"^test -f '/root/x y.dump' && head -c 5", "", 1),
                     (r"ls-tree", "docker-compose.yml\nscripts/init.sql\n", 0)])
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="restore", dump="/root/x y.dump", yes=True),
                           printer=Printer("s1", quiet=True))
    assert not result.ok and result.code == 2 and "dump /root/x y.dump not found" in result.error
    assert all(not re.search(r"docker compose|cat >|tar ", cmd) for cmd in c.commands[1:])
    c = FakeContext([looping, (r"^test -f /root/ok.dump && head -c 5", "PGDMP", 0),
                     (r"sha256sum -c --status ok.dump.sha256", "", 1), (r"^test -f /root/ok.dump.sha256", "", 0),
                     (r"ls-tree", "docker-compose.yml\nscripts/init.sql\n", 0)])
    result = rollback_site(c, SiteSettings(name="s1"), RollbackOptions(mode="restore", dump="/root/ok.dump", yes=True),
                           printer=Printer("s1", quiet=True))
    assert not result.ok and "does not match its recorded sha256" in result.error
