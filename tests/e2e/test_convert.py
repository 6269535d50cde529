"""End-to-end: `fab rollback --mode=convert` on lab sites under ingestion, read back on the server.

Every flow id the backend committed is in the plain flow_records afterwards (the backend stand-in
writes each committed id to /root/netmon-lab/committed_flow_ids), compressed chunks included; the
aggregate's buckets are in the app's flow_summary_5m; every other table is unchanged row for row;
no TimescaleDB object is left anywhere; a convert that fails before the writers stop is undone.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.e2e.helpers import PlainServer, assert_rolled_back, fab, fab_start, http_code, live, sql, ssh, unchanged, wait_until

pytestmark = pytest.mark.lab

VARIANTS = ["migrated", "summary-cagg", "third-hypertable", "preload-alter-system", "uncommitted", "backend-crashloop",
            "fresh-volume", "migrated", "summary-cagg", "summary-cagg", "summary-cagg"]
SITES = {f"lab{i}": v for i, v in enumerate(VARIANTS, 1)}
UNDO_SITE, RESTORE_SITE, FAULT_SITE, CLEAN_SITE = "lab8", "lab9", "lab10", "lab11"
CONVERTED = [s for s in SITES if s not in (UNDO_SITE, RESTORE_SITE, FAULT_SITE, CLEAN_SITE)]

# md5 of every row of every other table, read the same way before and after
CHECKSUMS = r"""SELECT string_agg(format('%s=%s', c.relname, (xpath('/row/h/text()', query_to_xml(format(
  'SELECT md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) AS h FROM public.%I t', ',', '', c.relname),
  false, true, '')))[1]::text), ' ' ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT IN ('flow_records', 'flow_summary_5m')
  -- written by verify's own login (a session row, the user's last_login)
  AND c.relname NOT IN ('sessions', 'users')"""
TIMESCALE_LEFT = """SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb')
  + (SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%timescaledb%' OR nspname = 'netmon_rollback')
  + (SELECT count(*) FROM pg_trigger WHERE tgname IN ('ts_insert_blocker', 'netmon_rollback_capture'))
  + (SELECT count(*) FROM pg_event_trigger)"""


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=len(VARIANTS), variants=VARIANTS, flows=3000)


#: rows a second the writers add while a site's run goes: what its catch-up must not lose
BUSY_RATE = 100


@contextmanager
def writers_busy(lab, site: str):
    """The site's backend at BUSY_RATE from before its run until after it, then back to the lab's light
    default. (Built at 100 rows a second, the module's eleven sites kept both cores busy from their
    build to its end: each row goes through the stand-in's routing trigger.)"""
    ssh(lab, site, f"echo {BUSY_RATE} > /root/netmon-lab/ingest_rate")
    try:
        if SITES[site] != "backend-crashloop":  # its backend ingests only once the rollback fixed it
            start = len(committed_ids(lab, site))
            assert wait_until(lambda: len(committed_ids(lab, site)) >= start + BUSY_RATE, 60, interval=1), \
                f"{site}: the backend did not take up {BUSY_RATE} rows a second"
        yield
    finally:
        ssh(lab, site, "rm -f /root/netmon-lab/ingest_rate")


def committed_ids(lab, site: str) -> set[int]:
    return {int(i) for i in ssh(lab, site, "cat /root/netmon-lab/committed_flow_ids 2>/dev/null || true").split()}


def flow_ids(lab, site: str) -> set[int]:
    return {int(i) for i in ssh(lab, site, "docker exec netmon-db psql -U netmon -d netmon -XtAc "
                                           "'SELECT id FROM flow_records'").split()}


def has_hypertables(lab, site: str) -> bool:
    out = ssh(lab, site, "docker exec netmon-db psql -U netmon -d netmon -XtAc "
                         "'SELECT count(*) FROM timescaledb_information.hypertables'", check=False)
    return out.strip() not in ("", "0")


def convert_site(lab, site: str) -> dict:
    """Read the site, compress a chunk, run convert, read it again."""
    found = {"site": site, "variant": SITES[site], "hyper": has_hypertables(lab, site)}
    if found["hyper"]:
        # rows only a read through the hypertable returns (SELECT FROM ONLY the chunk is then empty)
        found["compressed"] = int(sql(lab, site, "SELECT count(compress_chunk(c)) FROM "
                                                 "show_chunks('flow_records', older_than => interval '1 day') c"))
        found["in_compressed"] = int(sql(lab, site, "SELECT count(*) FROM flow_records WHERE \"timestamp\" < "
                                                    "(SELECT max(range_end) FROM timescaledb_information.chunks "
                                                    "WHERE is_compressed)") or 0)
    found["cagg_keys"] = set(sql(lab, site, "SELECT concat_ws('|', bucket, device_id, src_ip, dst_ip, protocol) "
                                            "FROM flow_summary_5m")
                             .splitlines())
    if found["variant"] == "third-hypertable":  # rehearsed first (its compressed chunks too), then run
        before = live(lab, site)
        found["rehearsal"] = fab(lab, site, "rehearse", "--mode=convert", "--json", timeout=900)
        unchanged(lab, site, before)  # the live site as it was, byte for byte
    found["before"] = sql(lab, site, CHECKSUMS)
    with writers_busy(lab, site):
        found["out"] = fab(lab, site, "rollback", "--mode=convert", "--yes", timeout=900)
    found["after"] = sql(lab, site, CHECKSUMS)
    found["committed"], found["ids"] = committed_ids(lab, site), flow_ids(lab, site)
    found["left"] = {db: sql(lab, site, TIMESCALE_LEFT, db=db) for db in ("netmon", "postgres", "template1")}
    found["keys_after"] = set(sql(lab, site, "SELECT concat_ws('|', bucket, device_id, src_ip, dst_ip, protocol) "
                                             "FROM flow_summary_5m").splitlines())
    found["relkinds"] = sql(lab, site, "SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class "
                                       "WHERE relname IN ('flow_records', 'flow_summary_5m', 'interface_metrics')")
    return found


def killed_at(lab, site: str, step: int) -> tuple[int, str]:
    """`fab rollback --mode=convert --yes`, SIGKILLed the moment it prints that step ``step`` starts:
    (-9, its output), or (10, …) while the last killed run's lock is still let go. Bounded: a run that
    never gets there fails the test."""
    proc = fab_start(lab, site, "rollback", "--mode=convert", "--yes")
    starts = re.compile(rf"^\[\s*[\d.]+s\] \[{step}/\d+\] (?!done:|FAILED:|already done:)")
    timer = threading.Timer(300, proc.kill)
    timer.start()
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if starts.search(line):
            proc.kill()
            break
    out, err = proc.communicate()
    timer.cancel()
    assert proc.returncode in (-9, 10), f"{site}: step {step} never started:\n" + "".join(seen)[-2000:] + err
    return proc.returncode, "".join(seen) + out


def fault_chain(lab, site: str) -> dict:
    """Killed at every step in turn: the first run as step 1 starts, each rerun as the step after the
    one it resumed at starts; then the same command once more, which must finish."""
    with writers_busy(lab, site):
        return _fault_chain(lab, site)


def _fault_chain(lab, site: str) -> dict:
    plan = json.loads(fab(lab, site, "rollback", "--mode=convert", "--dry-run", "--json").stdout)
    keys = [st["key"] for st in plan["steps"]]
    texts = []
    for step in range(1, len(keys) + 1):
        deadline = time.monotonic() + 60  # the killed run's lock is let go within 30 s
        while True:
            code, text = killed_at(lab, site, step)
            if code != 10 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert code == -9, text[-2000:]
        texts.append(text)
    deadline = time.monotonic() + 60
    while True:
        last = fab(lab, site, "rollback", "--mode=convert", "--yes", timeout=900)
        if last.returncode != 10 or time.monotonic() > deadline:
            break
        time.sleep(1)
    return {"site": site, "keys": keys, "texts": texts, "last": last}


@pytest.fixture(scope="module")
def converted(lab):
    with ThreadPoolExecutor(3) as pool:
        chain = pool.submit(fault_chain, lab, FAULT_SITE)
        found = {r["site"]: r for r in pool.map(lambda s: convert_site(lab, s), CONVERTED)}
        found[FAULT_SITE] = chain.result()
    return found


@pytest.mark.parametrize("site", CONVERTED, ids=lambda s: SITES[s])
def test_convert_keeps_every_row(converted, site):
    r = converted[site]
    out = r["out"]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Converted: every hypertable" in out.stdout and "verify" in out.stdout
    assert r["relkinds"].replace("flow_records:r", "").replace("flow_summary_5m:r", "").replace(
        "interface_metrics:r", "").strip(",") == ""
    missing = r["committed"] - r["ids"]
    assert r["committed"] and not missing, f"{len(missing)} committed flow ids lost, e.g. {sorted(missing)[:5]}"
    if r["hyper"]:
        assert r["compressed"] >= 1 and r["in_compressed"] > 0
    assert r["cagg_keys"] <= r["keys_after"], f"{len(r['cagg_keys'] - r['keys_after'])} buckets of flow_summary_5m lost"
    before, after = dict(x.split("=") for x in r["before"].split()), dict(x.split("=") for x in r["after"].split())
    assert before.keys() == after.keys()
    assert [t for t in before if before[t] != after[t]] == []  # every other table (a third hypertable too), row for row
    assert r["left"] == {"netmon": "0", "postgres": "0", "template1": "0"}


def test_third_hypertable_is_a_plain_table_with_its_rows(converted):
    r = converted["lab3"]
    assert r["rehearsal"].returncode == 0, r["rehearsal"].stdout[-3000:] + r["rehearsal"].stderr[-2000:]
    rehearsal = json.loads(r["rehearsal"].stdout)
    tables = {t["table"]: t for t in rehearsal["tables"]}  # on the copy, before the real run: nothing lost
    assert tables["public.interface_metrics"]["before"] > 0 and [t for t in tables.values() if t["lost"]] == []
    assert "interface_metrics:r" in r["relkinds"]
    assert "interface_metrics=" in r["after"] and r["before"].split("interface_metrics=")[1].split()[0] == \
        r["after"].split("interface_metrics=")[1].split()[0]


def test_convert_that_fails_before_the_writers_stop_is_undone_then_a_rerun_finishes(lab):
    site = UNDO_SITE
    jobs = "SELECT string_agg(job_id || ':' || scheduled, ',' ORDER BY job_id) FROM timescaledb_information.jobs " \
           "WHERE job_id >= 1000"
    before = sql(lab, site, jobs)
    assert "true" in before
    # a table in the way of the copy (its columns are not flow_records'): the bulk copy fails
    sql(lab, site, "CREATE SCHEMA netmon_rollback; CREATE TABLE netmon_rollback.flow_records (x integer)")
    with writers_busy(lab, site):
        out = fab(lab, site, "rollback", "--mode=convert", "--yes", timeout=900)
    assert out.returncode == 6, out.stdout[-2000:] + out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert "undone: TimescaleDB's jobs resumed and the copies dropped" in error and "serves on TimescaleDB" in error
    assert sql(lab, site, jobs) == before
    assert sql(lab, site, "SELECT count(*) FROM pg_namespace WHERE nspname = 'netmon_rollback'") == "0"
    assert sql(lab, site, "SELECT count(*) FROM pg_trigger WHERE tgname = 'netmon_rollback_capture'") == "0"
    assert sql(lab, site, "SELECT count(*) FROM timescaledb_information.hypertables") == "1"
    assert http_code(lab, site, "/api/health") == "200"
    with writers_busy(lab, site):
        rerun = fab(lab, site, "rollback", "--mode=convert", "--yes", timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr
    assert "resuming" not in rerun.stdout
    missing = committed_ids(lab, site) - flow_ids(lab, site)
    assert not missing


AT_STOP = {"restore": (RESTORE_SITE, "*_at_stop.dump holds the old database as it was when the writers stopped"),
           "clean": (CLEAN_SITE, "*_at_stop.dump holds the safety dump with every row the writers added until they "
                                 "stopped")}


@pytest.fixture(scope="module")
def at_stop_runs(lab):
    """`fab rollback --mode=restore` and `--mode=clean --yes` on their sites at the same time: {mode: (ids
    committed before the run, its output)}."""
    def one(mode: str):
        site = AT_STOP[mode][0]
        with writers_busy(lab, site):
            before = committed_ids(lab, site)
            return mode, before, fab(lab, site, "rollback", f"--mode={mode}", "--yes", timeout=900)
    with ThreadPoolExecutor(len(AT_STOP)) as pool:
        return {mode: (before, out) for mode, before, out in pool.map(one, sorted(AT_STOP))}


@pytest.mark.parametrize("mode", sorted(AT_STOP))
def test_the_copy_at_the_writers_stop_holds_every_row_they_committed(lab, at_stop_runs, mode):
    """Restore and clean: the rows written after the backup (restore) or the safety dump (clean), up to
    the writers' stop, are in the copy the run names (*_at_stop.dump), which the test restores itself
    onto the plain image."""
    site, note = AT_STOP[mode]
    before, out = at_stop_runs[mode]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    copy = next(ln.split()[2] for ln in out.stdout.splitlines() if ln.startswith("Copy made:") and "_at_stop.dump" in ln)
    assert note in out.stdout
    assert sql(lab, site, "SELECT count(*) FROM pg_database WHERE datname LIKE 'netmon_old_%' "
                          "OR datname LIKE 'netmon_portable_%'", db="postgres") == "0"
    assert sql(lab, site, TIMESCALE_LEFT) == "0"  # no capture trigger or netmon_rollback schema either
    plain = PlainServer(lab, site)
    try:
        plain.restore(copy)
        restored = {int(i) for i in plain.sql("SELECT id FROM flow_records").split()}
        assert plain.sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'netmon_rollback' "
                         "OR nspname LIKE '%timescaledb%'") == "0"
        assert int(plain.sql("SELECT count(*) FROM flow_summary_5m")) > 0
        next_id = int(plain.sql("SELECT nextval(pg_get_serial_sequence('flow_records', 'id'))"))
    finally:
        plain.close()
    assert before and before <= restored  # every flow committed before the run began
    assert max(restored) > max(before)  # and some the writers added during the run
    # every one committed until the writers stopped: no gap up to the last id the copy holds
    gaps = {i for i in committed_ids(lab, site) if i <= max(restored)} - restored
    assert not gaps, f"{len(gaps)} committed flow ids missing from {copy}"
    assert next_id > max(restored)


def test_convert_killed_at_every_step_resumes_each_time_and_finishes_with_every_row(lab, converted):
    r = converted[FAULT_SITE]
    assert r["keys"][:4] == ["safety-dump", "convert-prepare", "convert-copy", "convert-check"]
    assert "convert-switch" in r["keys"]
    for step, text in enumerate(r["texts"], 1):
        if step > 1:  # each rerun read the journal and resumed where the killed run was
            assert re.search(rf"an earlier rollback run \(--mode=convert, pid \d+ .*: resuming at step {step - 1}\b",
                             text), text[-2000:]
    last = r["last"]
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr
    assert re.search(rf"resuming at step {len(r['keys'])}\b", last.stdout)
    assert_rolled_back(lab, FAULT_SITE)
    assert not committed_ids(lab, FAULT_SITE) - flow_ids(lab, FAULT_SITE)
    assert sql(lab, FAULT_SITE, TIMESCALE_LEFT) == "0"
