"""End-to-end: bad input, a broken site and unknown host keys are refused with one line and a
non-zero exit, and the server is read back to prove nothing changed; secrets stay secret."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.e2e.helpers import (
    assert_rolled_back,
    audit_text,
    fab,
    fab_start,
    kill_ssh_sessions,
    site_sql,
    snapshot,
    sql,
    ssh,
    wait_until,
)

pytestmark = pytest.mark.lab

TSDB_DUMP = "/root/with tsdb $(touch pwned).dump"
ALTERED_DUMP = "/root/netmon_pre_tsdb_19990101_000000.dump"


@pytest.fixture(scope="module")
def lab(lab_factory):
    lab = lab_factory(sites=2, variants=["migrated", "migrated"], flows=1000)
    backup = ssh(lab, "lab1", "ls /root/netmon_pre_tsdb_*.dump | sort | tail -1")
    ssh(lab, "lab1", f"head -c $(( $(stat -c %s {backup}) / 2 )) {backup} > /root/half.dump")
    ssh(lab, "lab1", f"docker exec netmon-db pg_dump -U netmon -Fc netmon > '{TSDB_DUMP}'")
    # a sealed backup whose bytes changed afterwards (one byte in the middle): its .sha256 no longer matches
    name = ALTERED_DUMP.rsplit("/", 1)[1]
    ssh(lab, "lab1", f"cp {backup} {ALTERED_DUMP} && sha256sum {backup} | sed 's/ .*/  {name}/' > {ALTERED_DUMP}.sha256 && "
                     f"printf 'X' | dd of={ALTERED_DUMP} bs=1 seek=$(( $(stat -c %s {backup}) / 2 )) conv=notrunc 2>/dev/null")
    return lab


@pytest.fixture
def bad_inventory(lab, tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(lab.inventory.read_text().replace("defaults:\n", "defaults:\n  app_dir: /root/nowhere\n", 1))
    return path


CASES = {
    "unknown-mode": (["rollback", "--mode=fast", "--yes"], "unknown mode"),
    "missing-dump": (["rollback", "--mode=restore", "--dump=/root/nope.dump", "--yes"], "not found"),
    "not-a-dump": (["rollback", "--mode=restore", "--dump=/root/netmon/docker-compose.yml", "--yes"],
                   "not a pg_dump archive"),
    "truncated-dump": (["rollback", "--mode=restore", "--dump=/root/half.dump", "--yes"], "truncated or damaged"),
    "timescaledb-dump": (["rollback", "--mode=restore", f"--dump={TSDB_DUMP}", "--yes"], "TimescaleDB objects"),
    "altered-dump": (["rollback", "--mode=restore", f"--dump={ALTERED_DUMP}", "--yes"],
                     f"{ALTERED_DUMP} does not match its recorded sha256"),
    "unknown-commit": (["rollback", "--mode=clean", "--commit=deadbeef", "--yes"], "commit 'deadbeef' not found"),
    "no-terminal": (["rollback", "--mode=clean"], "no terminal"),
    "reset-unconfirmed": (["reset", "--confirm=lab2"], "--confirm=lab1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(lab, case):
    args, needle = CASES[case]
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", *args)
    assert out.returncode != 0
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert snapshot(lab, "lab1") == before
    assert ssh(lab, "lab1", "ls /root/pwned /root/netmon/pwned 2>/dev/null | wc -l") == "0"


@pytest.mark.parametrize("task", [["status"], ["backup"], ["verify"], ["rollback", "--mode=clean", "--yes"],
                                  ["reset", "--confirm=lab1"]])
def test_app_dir_missing_is_refused(lab, bad_inventory, task):
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", *task, "--inventory", str(bad_inventory))
    assert out.returncode != 0 and "app_dir /root/nowhere not found" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert snapshot(lab, "lab1") == before


def test_docker_missing_is_refused(lab):
    before = snapshot(lab, "lab2")
    site = lab.site("lab2")
    site.run("mv /usr/local/sbin/docker /usr/local/sbin/docker.off")
    try:
        for task in (["status"], ["backup"], ["verify"], ["rollback", "--mode=restore", "--yes"],
                     ["reset", "--confirm=lab2"]):
            out = fab(lab, "lab2", *task)
            assert out.returncode != 0 and "docker (with compose) not found" in out.stderr, (task, out.stderr)
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    finally:
        site.run("mv /usr/local/sbin/docker.off /usr/local/sbin/docker")
    assert snapshot(lab, "lab2") == before


def test_a_docker_daemon_that_does_not_answer_is_unknown_not_absent_and_every_change_refused(lab):
    """`docker compose version` works without the daemon, so docker reads as installed; what it
    cannot say (containers, compose ps, images) is unknown, never "missing": status says so, verify
    fails, and rollback and reset refuse with one line, changing nothing."""
    before = snapshot(lab, "lab2")
    with lab.docker_daemon_unreachable("lab2"):
        out = fab(lab, "lab2", "status")
        assert "state partly unknown" in out.stdout and "Cannot connect to the Docker daemon" in out.stdout, out.stdout
        assert re.search(r"netmon-db\s+unknown", out.stdout), out.stdout
        out = fab(lab, "lab2", "verify")
        assert out.returncode == 7 and re.search(r"all five containers running.*unknown \(containers: docker inspect "
                                                 r"failed: Cannot connect", out.stdout), out.stdout
        for task in (["rollback", "--mode=restore", "--yes"], ["rollback", "--mode=convert", "--yes"],
                     ["reset", "--confirm=lab2"]):
            out = fab(lab, "lab2", *task)
            assert out.returncode == 3 and "cannot read the state of lab2" in out.stderr, (task, out.stdout[-1500:],
                                                                                         out.stderr)
            assert "Cannot connect to the Docker daemon" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert snapshot(lab, "lab2") == before


def test_unknown_host_key_is_refused_before_any_command(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(lab.ssh_config.read_text().replace(str(lab.known_hosts), str(empty)))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(lab.inventory.read_text().replace(str(lab.known_hosts), str(empty)))
    logs = tmp_path / "logs"
    before = snapshot(lab, "lab1")
    for task in (["status"], ["rollback", "--mode=clean", "--yes"]):
        out = fab(lab, "lab1", *task, ssh_config=cfg, env={"NETMON_INVENTORY": str(inventory),
                                                           "NETMON_AUDIT_DIR": str(logs)})
        assert out.returncode != 0 and "host key of" in out.stderr and "not in" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert not list(logs.glob("audit_*"))  # no command ran, so nothing was logged
    assert snapshot(lab, "lab1") == before


def test_dry_run_prints_the_plan_and_changes_nothing(lab):
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", "rollback", "--mode=restore", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "TEMPLATE template0" in out.stdout and "pg_restore" in out.stdout and "nothing was changed" in out.stdout
    assert snapshot(lab, "lab1") == before


def test_admin_password_never_leaves_in_clear(lab, tmp_path):
    password = lab.admin_password_file.read_text().strip()
    started = time.time() - 1
    out = fab(lab, "lab1", "verify", env={"NETMON_AUDIT_DIR": str(tmp_path)})  # migrated: fails, but logs in first
    assert "login + /api/flows/stats" in out.stdout
    assert [ln for ln in out.stdout.splitlines() if "login" in ln and "200" in ln and "PASS" in ln]
    text = audit_text(started, tmp_path)  # this run's log alone
    assert '"stdin": "login JSON (secret)"' in text  # the login ran (a part of verify's host script) and was logged...
    assert password not in text and password not in out.stdout + out.stderr  # ...without the password
    assert "Bearer %s" in text and not re.search(r"Bearer [^%]", text)  # the header's template, never a token
    assert list(tmp_path.glob("audit_lab1_*_verify.jsonl"))


LOCKER = "BEGIN; LOCK TABLE dashboards IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(90); COMMIT"
UNLOCK = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(90)%' " \
         "AND pid <> pg_backend_pid()"


def cut_during_safety_dump(lab, site: str, cut, ssh_config=None) -> tuple[int, str, float]:
    """`rollback --mode=restore --yes` whose connection ``cut(lab, site)`` breaks while the safety dump
    is under way (another session holds a lock pg_dump waits for). (exit status, stderr, seconds
    from the cut to the exit)."""
    lab.site(site).run(f"setsid docker exec netmon-db psql -U netmon -d netmon -X -c '{LOCKER}' >/dev/null 2>&1 &")
    proc = fab_start(lab, site, "rollback", "--mode=restore", "--yes", ssh_config=ssh_config)
    try:
        dumping = wait_until(lambda: site_sql(lab, site, "SELECT count(*) FROM pg_stat_activity WHERE "
                                                         "application_name='pg_dump' AND wait_event_type='Lock'") == "1",
                             60)
        assert dumping, "the safety dump never started"
        started = time.monotonic()
        undo = cut(lab, site)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if undo:
                undo()
        return proc.returncode, err, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        site_sql(lab, site, UNLOCK)


def kill_sessions(lab, site):
    assert kill_ssh_sessions(lab, site)


def link_down(lab, site):
    veth = lab.site(site).veth
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    return lambda: subprocess.run(["ip", "link", "set", veth, "up"], check=True)


def test_connection_lost_mid_step_fails_naming_it_and_a_rerun_finishes(lab, tmp_path):
    """The SSH connection dies while the safety dump runs — its sshd killed (the socket closes), then
    the link dropped (nothing answers, no FIN): one line naming the step, non-zero exit, bounded
    time, nothing destroyed; the same command again finishes the rollback. (Runs last: lab2 ends
    rolled back.)"""
    flows = int(sql(lab, "lab2", "SELECT count(*) FROM flow_records"))
    before = snapshot(lab, "lab2")
    # ssh_config's ServerAlive* set how soon a silent link counts as dead (default 15 s x 3)
    quick = tmp_path / "ssh_config"
    quick.write_text("Host *\n  ServerAliveInterval 2\n  ServerAliveCountMax 3\n\n" + lab.ssh_config.read_text())
    for cut, bound, ssh_config in ((kill_sessions, 15, None), (link_down, 20, quick)):
        code, err, seconds = cut_during_safety_dump(lab, "lab2", cut, ssh_config)
        assert code != 0 and len(err.strip().splitlines()) == 1, (cut.__name__, err)
        assert "lost during step 'safety-dump'" in err and "rerun" in err, (cut.__name__, err)
        assert seconds < bound, (cut.__name__, seconds)
        # nothing destroyed: the database, its extension and data, the files and the containers as they were
        after = snapshot(lab, "lab2")
        # (the portable copy's scratch database may be left half-made: the next copy drops it first)
        after["dbs"] = ",".join(d for d in after["dbs"].split(",") if not d.startswith("netmon_portable_"))
        for key in ("dbs", "ext", "chunked", "preload", "files", "containers"):
            assert after[key] == before[key], (cut.__name__, key)
        assert int(sql(lab, "lab2", "SELECT count(*) FROM flow_records")) >= flows
    # the same command again finishes the job
    out = fab(lab, "lab2", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert_rolled_back(lab, "lab2")  # (the rerun's exit 0 also means its own verify passed)
    assert sql(lab, "lab2", "SELECT count(*) FROM pg_database WHERE datname LIKE 'netmon_portable_%'", db="postgres") == "0"
