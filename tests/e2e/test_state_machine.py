"""End-to-end: a rollback that can be trusted under failure — one run per server, the journal, reruns
that finish after a fault at any step, unknown facts that refuse instead of passing, and a dry run
that prints exactly what the real run then runs. Everything is read back from the sites."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    ROOT,
    AtPrompt,
    PlainServer,
    assert_rolled_back,
    dump_flows,
    fab,
    fab_start,
    kill_ssh_sessions,
    sql,
    ssh,
    wait_until,
)

pytestmark = pytest.mark.lab
#: the tests on the `others` lab: a work unit of their own under pytest -n (tests/conftest.py), so
#: they run beside the fault cases instead of after them
OTHERS = pytest.mark.xdist_group("tests/e2e/test_state_machine.py:others")

RESTORE_STEPS = ["safety-dump", "restore-side", "convert-prepare", "convert-copy", "convert-check", "revert-files",
                 "build", "stop-writers", "convert-switch", "swap", "start-db", "start-app", "start-rest", "copy-old",
                 "drop-old"]
CLEAN_STEPS = ["capture", "safety-dump", "revert-files", "build", "stop-writers", "keep-written", "drop-flow-tables",
               "start-db", "start-app", "start-rest", "copy-at-stop", "drop-capture"]
CONVERT_STEPS = ["safety-dump", "convert-prepare", "convert-copy", "convert-check", "revert-files", "build",
                 "stop-writers", "convert-switch", "start-db", "start-app", "start-rest"]
STEPS = {"restore": RESTORE_STEPS, "clean": CLEAN_STEPS, "convert": CONVERT_STEPS}
CUTS = ["safety-dump", "swap", "start-app"]  # restore steps at which the SSH connection is cut instead
#: sites: one per mode, killed at every step in turn; then one per cut
CHAINS = {"lab1": "restore", "lab2": "clean", "lab3": "convert"}
CUT_SITES = {f"lab{len(CHAINS) + n}": RESTORE_STEPS.index(step) + 1 for n, step in enumerate(CUTS, 1)}


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=len(CHAINS) + len(CUT_SITES), flows=800)


def flows_in_copy(lab, site: str, path: str) -> int:
    """Rows of flow_records in a dump of the migrated database: in its chunks' data blocks (a
    hypertable's root holds none)."""
    awk = (r"/^COPY (public\.flow_records|_timescaledb_internal\._hyper_[0-9]+_[0-9]+_chunk) /{c=1; next} "
           r"c && /^\\\.$/{c=0} c{n++} END{print n+0}")
    return int(ssh(lab, site, f"docker exec -i netmon-db pg_restore -f - < {path} | awk '{awk}'"))


def journal(lab, site: str) -> list[dict]:
    text = ssh(lab, site, "cat /root/netmon_rollback_journal.jsonl 2>/dev/null || true")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def other_tables(lab, site: str) -> str:
    """Row counts of every table the rollback must keep (not the flow tables; not sessions, which
    each login of verify adds to)."""
    tables = sql(lab, site, "SELECT string_agg(table_name, ' ' ORDER BY table_name) FROM information_schema.tables "
                            "WHERE table_schema='public' AND table_type='BASE TABLE' "
                            "AND table_name NOT IN ('flow_records', 'flow_summary_5m', 'sessions')").split()
    query = " UNION ALL ".join(f"SELECT '{t}=' || count(*) FROM {t}" for t in tables)  # noqa: S608
    return sql(lab, site, query)


def run_until_step(lab, site: str, args: list[str], step: int, act) -> tuple[int, str]:
    """Start `fab ARGS`, and the moment it prints that step ``step`` starts, ``act(process)``.
    Returns (exit status, output). Bounded: a run that never gets there is killed and fails the test."""
    proc = fab_start(lab, site, *args)
    start = re.compile(rf"^\[\s*[\d.]+s\] \[{step}/\d+\] (?!done:|FAILED:|already done:)")
    timer = threading.Timer(180, proc.kill)
    timer.start()
    seen, reached = [], False
    for line in proc.stdout:
        seen.append(line)
        if start.search(line):
            reached = True
            act(proc)
            break
    out, err = proc.communicate()
    timer.cancel()
    assert reached, f"{site}: step {step} never started:\n" + "".join(seen)[-2000:] + err
    return proc.returncode, "".join(seen) + out + err


def rerun(lab, site: str, *args: str) -> subprocess.CompletedProcess:
    """The same command again; while the dead run's lock is still being let go, wait (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        out = fab(lab, site, *args)
        if out.returncode != 10 or time.monotonic() > deadline:
            return out
        time.sleep(1)


def before_run(lab, site: str) -> dict:
    return {"dump": ssh(lab, site, "ls /root/netmon_pre_tsdb_*.dump | sort | tail -1"),
            "flows": int(sql(lab, site, "SELECT count(*) FROM flow_records")), "kept": other_tables(lab, site)}


def check_finished(lab, site: str, mode: str, before: dict) -> None:
    """Done means verified (the last run's exit 0), and the site read back says the same: the
    journal holds one plan, run to its end, with its sealed copies, and no row was lost."""
    steps = STEPS[mode]
    assert_rolled_back(lab, site)
    assert ssh(lab, site, "ls -a /root | grep -c '\\.partial$' || true") == "0"
    records = journal(lab, site)
    first = next(r for r in records if r["event"] == "start")
    assert [s["key"] for s in first["plan"]["steps"]] == steps
    mine = [r for r in records if r.get("run") == first["run"]]
    assert mine[-1]["event"] == "end"
    copies = [r["path"] for r in mine if r["event"] == "copy"]
    assert copies and copies[0].startswith("/root/netmon_pre_rollback_")
    # restore: also the old database at the writers' stop; clean: the safety dump with the rows written since
    assert len(copies) == (1 if mode == "convert" else 2)
    for copy in copies:
        assert ssh(lab, site, f"cd /root && sha256sum -c --status {copy.rsplit('/', 1)[1]}.sha256 && echo ok") == "ok"
    # no row lost: what the site held before the run is in the copy; the kept tables are unchanged
    assert flows_in_copy(lab, site, copies[-1]) >= before["flows"]
    if mode == "restore":
        rows, max_id = dump_flows(lab, site, before["dump"])
        assert sql(lab, site, f"SELECT count(*) FROM flow_records WHERE id <= {max_id}") == str(rows)  # noqa: S608
    else:
        assert other_tables(lab, site) == before["kept"]
    if mode == "convert":
        assert int(sql(lab, site, "SELECT count(*) FROM flow_records")) >= before["flows"]


def fault_chain(lab, site: str, mode: str) -> None:
    """SIGKILL of fab as step 1 starts; the same command again, killed as step 2 starts (it resumed
    at step 1), and so on through the last step; then once more, which must finish."""
    before = before_run(lab, site)
    args = ["rollback", f"--mode={mode}", "--yes"]
    for step in range(1, len(STEPS[mode]) + 1):
        deadline = time.monotonic() + 60
        while True:  # a killed run's lock goes with its channel; wait (bounded) if it is not gone yet
            code, text = run_until_step(lab, site, args, step, lambda p: p.kill())
            if code != 10 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert code == -9, f"{site} ({mode}) at step {step}: {text[-2000:]}"
        if step > 1:
            assert re.search(rf"an earlier rollback run \(--mode={mode}, pid \d+ .*: resuming at step {step - 1}\b",
                             text), f"{site} ({mode}) at step {step}: {text[:3000]}"
    out = rerun(lab, site, *args)
    assert out.returncode == 0, f"{site} ({mode}), after the last kill:\n" + out.stdout[-3000:] + out.stderr
    assert re.search(rf"resuming at step {len(STEPS[mode])}\b", out.stdout), out.stdout[:3000]
    check_finished(lab, site, mode, before)


def cut_case(lab, site: str, step: int) -> None:
    before = before_run(lab, site)
    args = ["rollback", "--mode=restore", "--yes"]
    code, text = run_until_step(lab, site, args, step, lambda _p: kill_ssh_sessions(lab, site))
    assert code == 5 and f"lost during step '{RESTORE_STEPS[step - 1]}'" in text, text[-2000:]
    out = rerun(lab, site, *args)
    assert out.returncode == 0, f"{site} (cut at step {step}):\n" + out.stdout[-3000:] + out.stderr
    assert re.search(rf"an earlier rollback run \(--mode=restore, pid \d+ .*: resuming at step {step}\b", out.stdout), \
        out.stdout[:3000]
    check_finished(lab, site, "restore", before)


def test_a_fault_at_every_step_then_the_same_command_finishes(lab):
    """Each mode on a site of its own, killed at every one of its steps in turn; each rerun resumes
    from the server's journal where the killed run was, and the last one finishes the job."""
    with ThreadPoolExecutor(3) as pool:
        futures = {site: pool.submit(fault_chain, lab, site, mode) for site, mode in CHAINS.items()}
    failures = {}
    for site, fut in futures.items():
        try:
            fut.result()
        except AssertionError as err:
            failures[f"{site} {CHAINS[site]}"] = str(err)[:1500]
    assert not failures, json.dumps(failures, indent=1)


def test_the_connection_cut_at_a_step_then_the_same_command_finishes(lab):
    with ThreadPoolExecutor(3) as pool:
        futures = {site: pool.submit(cut_case, lab, site, step) for site, step in CUT_SITES.items()}
    for fut in futures.values():
        fut.result()


@pytest.fixture(scope="module")
def others(lab_factory):
    """lab1/lab2 concurrency, lab3 fresh-volume (probe failure), lab4 restore then stack stopped,
    lab5 restore without safety dump, lab6 third hypertable, lab7 plain image missing, lab8/lab9 dry
    run against apply, lab10 reset of a database that does not answer, lab11 a continuous aggregate
    whose database can only start on the plain image, lab12 a database put back on the plain image by
    hand while the TimescaleDB image is still there."""
    return lab_factory(sites=12, flows=800, variants=["migrated", "migrated", "fresh-volume", "migrated", "migrated",
                                                      "third-hypertable", "plain-image-missing", "migrated", "migrated",
                                                      "migrated", "summary-cagg", "migrated"])


@OTHERS
def test_two_runs_on_one_server_exactly_one_runs(others, tmp_path):
    """The first run of each pair waits at its terminal's question, holding the lock, while the
    second meets it; then the first is told yes and finishes."""
    lab = others
    first = AtPrompt(lab, "lab1", "rollback", "--mode=restore")
    assert "lock: held by" in fab(lab, "lab1", "status").stdout  # status needs no lock, and shows the holder
    second = fab(lab, "lab1", "rollback", "--mode=restore", "--yes", env={"NETMON_AUDIT_DIR": str(tmp_path)})
    assert second.returncode == 10, second.stdout + second.stderr
    line = second.stderr.strip()
    assert len(line.splitlines()) == 1 and "lab1 is busy" in line and f"pid {first.pid}" in line and "task rollback" in line
    changes = [json.loads(ln) for p in tmp_path.glob("audit_*.jsonl") for ln in p.read_text().splitlines()]
    assert [r for r in changes if r["kind"] != "probe"] == []  # refused before any change
    code, out, err = first.answer("yes")
    assert code == 0, out[-2000:] + err
    assert_rolled_back(lab, "lab1")
    # a fleet batch meeting a single run on one server: the batch's row fails, the single run finishes
    single = AtPrompt(lab, "lab2", "rollback", "--mode=clean")
    batch = subprocess.run([str(ROOT / ".venv/bin/invoke"), "rollback", "--mode=clean", "--yes", "--sites", "lab2",
                            "--inventory", str(lab.inventory), "--json"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, stdin=subprocess.DEVNULL)
    assert batch.returncode != 0
    row = json.loads(batch.stdout)[0]
    assert not row["ok"] and "busy" in row["error"] and row["code"] == 10
    code, out, err = single.answer("yes")
    assert code == 0, out[-2000:] + err
    assert_rolled_back(lab, "lab2")


@OTHERS
def test_a_database_that_cannot_be_read_fails_verify_and_refuses_rollback(others):
    lab = others
    ssh(lab, "lab3", "docker exec netmon-db psql -U netmon -d template1 -c "
                     "'ALTER DATABASE postgres WITH ALLOW_CONNECTIONS false'")
    look = "cd /root && ls; cd netmon && sha256sum docker-compose.yml && docker ps -a --format '{{.Names}} {{.Status}}'"
    before = ssh(lab, "lab3", look)
    out = fab(lab, "lab3", "verify")
    assert out.returncode == 7
    assert re.search(r"no timescaledb in any database .*unknown \(ext:postgres: cannot read database postgres", out.stdout)
    for mode in ("clean", "restore"):
        out = fab(lab, "lab3", "rollback", f"--mode={mode}", "--yes")
        assert out.returncode == 3 and "cannot read database postgres" in out.stderr, out.stdout[-1500:] + out.stderr
        assert "ALLOW_CONNECTIONS true" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    after = ssh(lab, "lab3", look)
    assert [ln for ln in after.splitlines() if "Up" not in ln] == [ln for ln in before.splitlines() if "Up" not in ln]
    assert sql(lab, "lab3", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "1"  # untouched
    assert "Up" in ssh(lab, "lab3", "docker ps --format '{{.Names}} {{.Status}}' | grep netmon-backend")


@OTHERS
def test_a_rerun_after_the_stack_did_not_come_back_finishes_it(others):
    lab = others
    assert fab(lab, "lab4", "rollback", "--mode=restore", "--yes").returncode == 0
    ssh(lab, "lab4", "cd /root/netmon && docker compose stop backend nginx")
    out = fab(lab, "lab4", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "the database is rolled back, but verify fails" in out.stdout and "already rolled back" not in out.stdout
    assert_rolled_back(lab, "lab4")
    assert ssh(lab, "lab4", "docker inspect --format '{{.State.Status}}' netmon-backend netmon-nginx") == "running\nrunning"


@OTHERS
def test_restore_without_a_safety_dump_keeps_the_old_database(others):
    lab = others
    out = fab(lab, "lab5", "rollback", "--mode=restore", "--yes", "--no-safety-dump")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    kept = re.search(r"KEPT: the old database (netmon_old_\d{8}_\d{6})", out.stdout).group(1)
    # kept as it was when the writers stopped, converted: plain PostgreSQL, every flow row readable
    assert sql(lab, "lab5", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'", db=kept) == "0"
    assert sql(lab, "lab5", "SELECT relkind::text || (SELECT count(*) FROM pg_inherits) FROM pg_class "
                            "WHERE oid = 'flow_records'::regclass", db=kept) == "r0"
    assert int(sql(lab, "lab5", "SELECT count(*) FROM flow_records", db=kept)) >= 800
    assert ssh(lab, "lab5", "ls /root | grep -c netmon_pre_rollback_ || true") == "0"
    assert f"kept copy: {kept}" in fab(lab, "lab5", "verify").stdout
    out = fab(lab, "lab5", "drop-database", kept, "--yes")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert sql(lab, "lab5", f"SELECT count(*) FROM pg_database WHERE datname='{kept}'", db="postgres") == "0"  # noqa: S608
    assert ssh(lab, "lab5", "cd /root && sha256sum -c --status netmon_pre_rollback_*.dump.sha256 && echo ok") == "ok"


@OTHERS
def test_clean_refuses_a_site_with_another_hypertable_and_restore_keeps_it(others):
    lab = others
    rows = sql(lab, "lab6", "SELECT count(*) FROM interface_metrics")
    out = fab(lab, "lab6", "rollback", "--mode=clean", "--yes")
    assert out.returncode == 3 and "would empty interface_metrics" in out.stderr and "--mode=restore" in out.stderr
    assert sql(lab, "lab6", "SELECT count(*) FROM interface_metrics") == rows
    assert ssh(lab, "lab6", "ls /root | grep -c netmon_pre_rollback_ || true") == "0"
    out = fab(lab, "lab6", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab6")


@OTHERS
def test_a_site_without_its_plain_image_is_refused_before_anything_stops(others):
    lab = others
    before = ssh(lab, "lab7", "docker inspect --format '{{.Name}} {{.Config.Image}} {{.State.StartedAt}}' "
                              "netmon-db netmon-backend; cd /root/netmon && git status --porcelain; ls /root")
    out = fab(lab, "lab7", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 6 and "pull-image" in out.stderr and "postgres:16-alpine" in out.stderr, out.stderr
    assert "[1/" in out.stdout and "FAILED: pull postgres:16-alpine" in out.stdout
    after = ssh(lab, "lab7", "docker inspect --format '{{.Name}} {{.Config.Image}} {{.State.StartedAt}}' "
                             "netmon-db netmon-backend; cd /root/netmon && git status --porcelain; ls /root")
    assert [ln for ln in after.splitlines() if ln != "netmon_rollback_journal.jsonl"] == before.splitlines()


def _plan_commands(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("       $ "):
            cmd = re.sub(r"^\(poll up to \d+s\) ", "", line[len("       $ "):])
            out.append(re.sub(r"  <<< .*$", "", cmd))
    return out


@pytest.mark.parametrize(("site", "mode"), [("lab8", "restore"), ("lab9", "clean")])
@OTHERS
def test_a_dry_run_prints_exactly_what_the_real_run_runs(others, site, mode, tmp_path):
    lab = others
    dry = fab(lab, site, "rollback", f"--mode={mode}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    as_json = fab(lab, site, "rollback", f"--mode={mode}", "--dry-run", "--json")
    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)  # the plan as data: the same commands, in the same order
    stamp0 = re.compile(r"\d{8}_\d{6}")
    assert [stamp0.sub("TS", c["cmd"]) for st in plan["steps"] for c in st["commands"]] == \
        [stamp0.sub("TS", c) for c in _plan_commands(dry.stdout)]
    out = fab(lab, site, "rollback", f"--mode={mode}", "--yes", env={"NETMON_AUDIT_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    records = [json.loads(ln) for p in sorted(tmp_path.glob("audit_*.jsonl")) for ln in p.read_text().splitlines()]
    ran = [r["cmd"] for r in records if r["kind"] == "change" and not r["what"].startswith("journal")]
    stamp = re.compile(r"\d{8}_\d{6}")
    assert [stamp.sub("TS", c) for c in _plan_commands(dry.stdout)] == [stamp.sub("TS", c) for c in ran]
    assert len(ran) > 10
    again = fab(lab, site, "rollback", f"--mode={mode}", "--dry-run")  # verify (with its login) judges the site
    assert again.returncode == 0 and "is already rolled back" in again.stdout, again.stdout[-2000:]


@OTHERS
def test_reset_of_a_database_that_does_not_answer_archives_its_volume_first(others):
    lab = others
    ssh(lab, "lab10", "docker stop netmon-db")
    out = fab(lab, "lab10", "reset", "--confirm=lab10")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    archive = re.search(r"Copy of the old database: (/root/netmon_volume_pre_reset_\d{8}_\d{6}\.tar\.gz)", out.stdout)
    assert archive, out.stdout[-2000:]
    name = Path(archive.group(1)).name
    assert ssh(lab, "lab10", f"cd /root && sha256sum -c --status {name}.sha256 && tar -tzf {name} | grep -cx ./PG_VERSION") == "1"
    assert sql(lab, "lab10", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "0"


def put_back_by_hand(lab, site: str) -> None:
    """Someone puts the plain image back in the compose file and starts it: the database restart-loops
    (its data directory still preloads timescaledb)."""
    ssh(lab, site, "cd /root/netmon && sed -i 's#timescale/timescaledb:latest-pg16#postgres:16-alpine#' docker-compose.yml "
                   "&& docker compose up -d db")
    assert wait_until(lambda: ssh(lab, site, "docker inspect --format '{{.RestartCount}}' netmon-db") != "0", 60)


@OTHERS
def test_a_db_put_back_on_the_plain_image_by_hand_starts_on_timescaledb_and_its_copy_holds_the_compressed_rows(others):
    """With the TimescaleDB image still on the server, the run starts the database on it again (not the
    plain fallback), so the safety copy reads every chunk through TimescaleDB: restored by the test on
    the plain image, it holds the rows of a compressed chunk."""
    lab, site = others, "lab12"
    chunk = sql(lab, site, "SELECT compress_chunk(c) FROM show_chunks('flow_records') c LIMIT 1")
    compressed = set(sql(lab, site, f"SELECT id FROM {chunk}").split())  # noqa: S608
    assert compressed and sql(lab, site, f"SELECT count(*) FROM ONLY {chunk}") == "0"  # noqa: S608
    put_back_by_hand(lab, site)
    out = fab(lab, site, "rollback", "--mode=restore", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "start the database on timescale/timescaledb:latest-pg16 again" in out.stdout, out.stdout
    assert "fallback" not in out.stdout and out.stdout.count(f"Plan for {site}") == 2, out.stdout
    assert_rolled_back(lab, site)
    copy = next(ln.split()[2] for ln in out.stdout.splitlines() if ln.startswith("Copy made:") and "pre_rollback" in ln)
    plain = PlainServer(lab, site)
    try:
        plain.restore(copy)
        restored = set(plain.sql("SELECT id FROM flow_records").split())
    finally:
        plain.close()
    assert compressed <= restored


@OTHERS
def test_the_fallback_start_and_a_continuous_aggregate_on_the_plain_image(others):
    """Someone put the plain image back by hand and the TimescaleDB image is gone: the database
    restart-loops (it still preloads timescaledb). The fallback starts it with the preload off, its plan is shown again (confirmed
    by --yes), and the aggregate — a view without TimescaleDB's library — goes with DROP VIEW."""
    lab = others
    put_back_by_hand(lab, "lab11")
    ssh(lab, "lab11", "docker image rm timescale/timescaledb:latest-pg16")  # nothing left that reads its chunks
    out = fab(lab, "lab11", "rollback", "--mode=clean", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "fallback: start the database on the plain image" in out.stdout
    assert out.stdout.count("Plan for lab11") == 2  # the re-planned rest is shown too
    assert "DROP VIEW IF EXISTS flow_summary_5m" in out.stdout
    assert_rolled_back(lab, "lab11")
    assert ssh(lab, "lab11", "ls /root/netmon_files_pre_rollback_*.tar.gz | wc -l") == "2"  # each plan saved its own copy
