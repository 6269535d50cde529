"""Host facts (fabfile/facts/host.py): each fact's lines of the host script run in a real shell on
a directory laid out as a server's, and the recorded output of a lab site, through its parser."""

import os
import subprocess

from fabfile.facts import host
from fabfile.facts.parts import Unknown, host_part, keyed
from fabfile.inventory import SiteSettings
from tests.fakes import recorded


def run(script: str) -> dict[str, list[str]]:
    return keyed(subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30).stdout)


def test_recorded_host_facts_of_a_migrated_site():
    kv = keyed(recorded("host_probe_migrated.txt"))
    assert host.parse_presence(kv) == (True, True)
    now = host.parse_clock(kv)
    free, backups, partials = host.parse_backups(kv, now)
    assert now == 1796118141 and free == 80512124 and partials == []
    assert [(b.name, b.size, b.age, b.has_sha) for b in backups] == [("netmon_pre_tsdb_20261201_084211.dump", 221777, 9, False)]
    files, mentions, qa = host.parse_app_files(kv)
    assert files == list(host.APP_FILES) and mentions == ["backend/app/main.py", "backend/app/services/flow_rollup.py"] and qa
    assert host.parse_lock(kv) == "free" and host.parse_journal(kv) == []


def test_backup_dir_read_in_a_real_shell(tmp_path):
    bak = tmp_path / "back up"  # a space: the script quotes the directory
    bak.mkdir()
    (bak / "netmon_pre_tsdb_20261201_000000.dump").write_bytes(b"x" * 10)
    (bak / "netmon_pre_tsdb_20261201_000000.dump.sha256").write_text("ab  f\n")
    (bak / "netmon_pre_rollback_20261202_000000.dump").write_bytes(b"y" * 3)
    (bak / ".netmon_pre_rollback_20261203_000000.dump.partial").write_bytes(b"")
    (bak / "other.dump").write_bytes(b"")
    os.utime(bak / "netmon_pre_tsdb_20261201_000000.dump", (1_000_000, 1_000_000))
    site = SiteSettings(backup_dir=str(bak))
    kv = run(f"{host.clock_script(site)}\n{host.backups_script(site)}")
    now = host.parse_clock(kv)
    free, backups, partials = host.parse_backups(kv, now)
    assert free > 0 and partials == [str(bak / ".netmon_pre_rollback_20261203_000000.dump.partial")]
    assert [(b.name, b.size, b.has_sha) for b in backups] == [("netmon_pre_tsdb_20261201_000000.dump", 10, True),
                                                              ("netmon_pre_rollback_20261202_000000.dump", 3, False)]
    assert backups[0].age == now - 1_000_000
    assert host.parse_backups(run(host.backups_script(SiteSettings(backup_dir=str(tmp_path / "none")))), now) == (None, [], [])


def test_app_files_and_presence_in_a_real_shell(tmp_path):
    app = tmp_path / "netmon"
    (app / "backend/app").mkdir(parents=True)
    (app / "docker-compose.yml").write_text("services: {}\n")
    (app / "backend/app/main.py").write_text("SELECT create_hypertable('flow_records', 'timestamp')\n")
    site = SiteSettings(app_dir=str(app))
    kv = run(f"{host.presence_script(site)}\n{host.app_files_script(site)}")
    assert host.parse_presence(kv)[1] is True
    assert host.parse_app_files(kv) == (["docker-compose.yml", "backend/app/main.py"], ["backend/app/main.py"], False)
    assert host.parse_presence(run(host.presence_script(SiteSettings(app_dir=str(tmp_path / "gone")))))[1] is False


def test_qa_check_run_in_a_real_shell_and_its_recorded_output_on_lab_sites(tmp_path):
    app = tmp_path / "net mon"  # a space: the part quotes the directory
    site = SiteSettings(app_dir=str(app))

    def qa() -> str | None:
        out = subprocess.run(["sh", "-c", host.qa_part(site)], capture_output=True, text=True, timeout=30).stdout
        return host.parse_qa(*host_part(out, "qa"))
    app.mkdir()
    assert qa() is None  # no script: nothing to run, nothing failed
    script = app / "scripts/qa_check.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho 'OK: db'\necho 'CRITICAL: backend down' >&2\nexit 2\n")
    script.chmod(0o755)
    assert qa() == "exit 2: CRITICAL: backend down"
    assert host.parse_qa(None, []) == Unknown("scripts/qa_check.sh did not finish")
    assert host.parse_qa(124, ["OK: db"]) == "exit 124: OK: db (timed out)"
    passed = recorded("host_probe_status_migrated.txt")
    assert host.parse_qa(*host_part(passed, "qa")) is None
    looping = recorded("host_probe_status_crashloop.txt")  # the backend restart-loops: the app's own check says so
    assert host.parse_qa(*host_part(looping, "qa")) == \
        "exit 1: CRITICAL: backend health check failed (http://localhost:8000/api/health)"


def test_lock_free_then_held_and_the_journal_in_a_real_shell(tmp_path):
    site = SiteSettings(backup_dir=str(tmp_path))
    assert host.parse_lock(run(host.lock_script(site))) == "free"  # no lock file at all
    lock = tmp_path / ".netmon-rollback.lock"
    lock.write_text('{"by": "me@laptop"}\n')
    holder = subprocess.Popen(["flock", "-x", "-o", str(lock), "sleep", "30"])
    try:
        # flock -x takes the lock at once on an unheld file; wait (bounded) until it does
        for _ in range(100):
            if host.parse_lock(run(host.lock_script(site))) != "free":
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert host.parse_lock(run(host.lock_script(site))) == 'held {"by": "me@laptop"}'
    finally:
        holder.kill()
        holder.wait()
    assert host.parse_lock(run(host.lock_script(site))) == "free"  # the file stays, the lock went with its holder
    (tmp_path / host.JOURNAL).write_text('{"run": 1}\n{"run": 2}\n')
    assert host.parse_journal(run(host.journal_script(site))) == ['{"run": 1}', '{"run": 2}']


def without(tmp_path, program: str) -> dict[str, str]:
    """An environment whose PATH has every program of this machine's but ``program`` (a server
    without it, e.g. a minimal one without util-linux's flock)."""
    bin_dir = tmp_path / f"bin-without-{program}"
    bin_dir.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in os.scandir(d):
            if entry.name != program and not (bin_dir / entry.name).exists():
                (bin_dir / entry.name).symlink_to(entry.path)
    return {"PATH": str(bin_dir)}


def run_env(script: str, env: dict[str, str]) -> dict[str, list[str]]:
    return keyed(subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30, env=env).stdout)


def test_journal_and_lock_that_cannot_be_read_are_unknown_not_empty(tmp_path):
    journal = host.parse_journal(keyed(recorded("host_probe_git_journal_unreadable.txt")))  # its path a directory
    assert journal == Unknown("reading the journal failed (exit 1: tail: error reading "
                              "'/root/netmon_rollback_journal.jsonl': Is a directory)")
    site = SiteSettings(backup_dir=str(tmp_path))
    (tmp_path / ".netmon-rollback.lock").write_text("")
    lock = host.parse_lock(run_env(host.lock_script(site), without(tmp_path, "flock")))
    assert isinstance(lock, Unknown) and lock.reason.startswith("reading the run lock failed (exit 127: ")
    assert "flock" in lock.reason  # not "free": nobody knows


def test_clock_backups_and_app_files_that_cannot_be_read_are_unknown_not_empty(tmp_path):
    site = SiteSettings(backup_dir=str(tmp_path), app_dir=str(tmp_path))
    (tmp_path / "netmon_pre_tsdb_20261201_000000.dump").write_bytes(b"x")
    (tmp_path / "backend/app").mkdir(parents=True)
    (tmp_path / "backend/app/main.py").write_text("print(1)\n")
    clock = host.parse_clock(run_env(host.clock_script(site), without(tmp_path, "date")))
    assert isinstance(clock, Unknown) and clock.reason.startswith("date +%s failed (exit 127: ")
    backups = host.parse_backups(run_env(host.backups_script(site), without(tmp_path, "stat")), 0.0)
    assert isinstance(backups, Unknown) and backups.reason.startswith("listing the backup directory failed (exit 127: ")
    files = host.parse_app_files(run_env(host.app_files_script(site), without(tmp_path, "grep")))
    assert isinstance(files, Unknown) and files.reason.startswith("reading the app's files failed (exit 127: ")
    assert host.parse_clock(keyed("now=5\n")) == Unknown("date +%s: no answer (the host script stopped before it)")
