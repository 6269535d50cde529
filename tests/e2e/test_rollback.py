"""End-to-end: `fab rollback` in both modes on every lab variant, as a user runs it, and the
server read back afterwards. One lab, one site per scenario; the single-command rollbacks run
side by side (as an operator with several terminals would) to keep the suite short. Before any
rollback, one site of each variant is rehearsed (`invoke rehearse`, one command per mode): the
rehearsal passes where the rollback then works, and refuses with the rollback's own error where
the rollback refuses."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.helpers import ROOT, assert_rolled_back, dump_flows, fab, invoke, live, snapshot, sql, ssh, unchanged

pytestmark = pytest.mark.lab

#: site → (variant, mode) of the rollbacks that are one command each
SIMPLE = {
    "lab1": ("migrated", "clean"),
    "lab2": ("migrated", "restore"),
    "lab3": ("fresh-volume", "clean"),
    "lab4": ("fresh-volume", "restore"),
    "lab5": ("preload-alter-system", "clean"),
    "lab6": ("preload-alter-system", "restore"),
    "lab7": ("summary-cagg", "clean"),
    "lab8": ("summary-cagg", "restore"),
    "lab9": ("uncommitted", "clean"),
    "lab10": ("uncommitted", "restore"),
    "lab11": ("two-backups", "restore"),
    "lab12": ("backend-crashloop", "clean"),
    "lab13": ("backend-crashloop", "restore"),
}
#: sites of the multi-step scenarios below
SCENARIOS = {"lab14": "no-git", "lab15": "corrupt-backup", "lab16": "no-backup", "lab17": "rolled-back",
             "lab18": "migrated"}
VARIANTS = [v for v, _ in SIMPLE.values()] + list(SCENARIOS.values())
#: mode → the sites rehearsed with it, in the mode of their rollback below: one site of each variant
#: that tests/e2e/test_rehearse.py and test_convert.py do not rehearse (uncommitted: its database is
#: migrated's, only its files differ; two-backups: the rehearsal restores the dump the preflight picks)
REHEARSED = {"clean": ["lab9", "lab12", "lab14"], "restore": ["lab2", "lab6", "lab11", "lab15", "lab16", "lab17"]}
#: what a rehearsal may report lost: clean drops the flow tables; restore goes back to the backup,
#: before the migration's flows and its schema_migrations row
MAY_LOSE = {"clean": {"public.flow_records", "public.flow_summary_5m"},
            "restore": {"public.flow_records", "public.flow_summary_5m", "public.schema_migrations"}}


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=len(VARIANTS), variants=VARIANTS, flows=1000)


@pytest.fixture(scope="module")
def rehearsals(lab):
    """site → its rehearsal's result (the fleet's --json), the two modes' commands side by side; the
    sites they ran on read back before and after, untouched (the crash-looping backend aside: its
    restarts change what is read)."""
    untouched = ["lab2", "lab6"]
    with ThreadPoolExecutor(4) as pool:
        before = dict(zip(untouched, pool.map(lambda site: live(lab, site), untouched), strict=True))
        outs = list(pool.map(lambda mode: invoke(lab.inventory, "rehearse", f"--mode={mode}", "--sites",
                                                 ",".join(REHEARSED[mode]), "--json"), REHEARSED))
        list(pool.map(lambda site: unchanged(lab, site, before[site]), untouched))
    return {r["site"]: r for out in outs for r in json.loads(out.stdout)}


def assert_refused_alike(rehearsals, site: str, real) -> None:
    """The rehearsal refused as the real run did: the same exit status, the same one-line error."""
    rehearsal = rehearsals[site]
    assert not rehearsal["ok"] and rehearsal["code"] == real.returncode
    assert f"error: {rehearsal['error']}" in real.stderr.splitlines()


@pytest.fixture(scope="module")
def simple_runs(lab, rehearsals):
    """Each SIMPLE site's newest pre-migration dump (before) and its rollback, three at a time (after
    the rehearsals)."""
    newest = {site: ssh(lab, site, "ls /root/netmon_pre_tsdb_*.dump | sort | tail -1") for site in SIMPLE}
    with ThreadPoolExecutor(3) as pool:
        futures = {site: pool.submit(fab, lab, site, "rollback", f"--mode={mode}", "--yes")
                   for site, (_, mode) in SIMPLE.items()}
        return {site: (newest[site], fut.result()) for site, fut in futures.items()}


@pytest.mark.parametrize("site", list(SIMPLE), ids=[f"{v}-{m}" for v, m in SIMPLE.values()])
def test_rollback_variant(lab, rehearsals, simple_runs, site):
    dump, out = simple_runs[site]
    variant, mode = SIMPLE[site]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, site)
    if site in rehearsals:  # it passed on a copy of this site's data, before the rollback
        rehearsal = rehearsals[site]
        assert rehearsal["ok"] and rehearsal["data"]["passed"], rehearsal["error"]
        assert rehearsal["data"]["predicted_downtime"] > 0 and rehearsal["data"]["mode"] == mode
        lost = {t["table"] for t in rehearsal["data"]["tables"] if t["lost"]}
        assert "public.flow_records" in lost and lost <= MAY_LOSE[mode], lost
    # a safety dump, sealed with its sha256, before anything changed
    assert ssh(lab, site, "cd /root && sha256sum -c netmon_pre_rollback_*.dump.sha256 >/dev/null && echo ok") == "ok"
    # every step printed with its start, end and duration
    assert "[1/" in out.stdout and "done: safety dump" in out.stdout and "s)" in out.stdout
    assert re.search(r"^Site down: \d+\.\ds in this run ", out.stdout, re.M)  # the window, said once at the end
    if mode == "restore":
        rows, max_id = dump_flows(lab, site, dump)
        assert f"dump: {dump} (newest" in out.stdout
        assert sql(lab, site, f"SELECT count(*) FROM flow_records WHERE id <= {max_id}") == str(rows)  # noqa: S608
        assert sql(lab, site, "SELECT count(*) FROM users") != "0"
    else:
        assert "Flow data gap" in out.stdout
    if variant == "summary-cagg":
        assert sql(lab, site, "SELECT count(*) FROM pg_matviews WHERE matviewname='flow_summary_5m'") == "0"
    if variant == "uncommitted":
        assert ssh(lab, site, "cd /root/netmon && git status --porcelain") == ""
        assert ssh(lab, site, "ls /root/netmon_uncommitted_*.patch | wc -l") == "1"


def test_two_backups_restores_the_newest(lab, simple_runs):
    dump, out = simple_runs["lab11"]
    older = ssh(lab, "lab11", "ls /root/netmon_pre_tsdb_*.dump | sort | head -1")
    assert older != dump and f"dump: {dump} (newest" in out.stdout
    rows_new, _ = dump_flows(lab, "lab11", dump)
    rows_old, _ = dump_flows(lab, "lab11", older)
    assert rows_new > rows_old
    assert int(sql(lab, "lab11", "SELECT count(*) FROM flow_records")) >= rows_new


def test_no_git_needs_a_person_first_then_clean_works(lab, rehearsals):
    before = snapshot(lab, "lab14")
    out = fab(lab, "lab14", "rollback", "--mode=clean", "--yes")
    assert out.returncode != 0 and "backend/app/main.py" in out.stderr and "by hand" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert_refused_alike(rehearsals, "lab14", out)
    assert snapshot(lab, "lab14") == before
    # the person: the two application files back to their pre-migration text
    for rel in ("backend/app/main.py", "backend/app/services/flow_rollup.py"):
        ssh(lab, "lab14", f"cat > /root/netmon/{rel}", stdin=(ROOT / "tests/lab/standin/app/pre" / rel).read_text())
    out = fab(lab, "lab14", "rollback", "--mode=clean", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab14")
    init_sql = ssh(lab, "lab14", "cat /root/netmon/scripts/init.sql")
    assert "timescale" not in init_sql.lower() and "END $$" not in init_sql and "NetMon DB initialized" in init_sql
    assert "psycopg2" not in ssh(lab, "lab14", "cat /root/netmon/backend/requirements.txt")


def test_corrupt_newest_backup_points_at_the_older_one(lab, rehearsals):
    newest = ssh(lab, "lab15", "ls /root/netmon_pre_tsdb_*.dump | sort | tail -1")
    older = ssh(lab, "lab15", "ls /root/netmon_pre_tsdb_*.dump | sort | head -1")
    before = snapshot(lab, "lab15")
    out = fab(lab, "lab15", "rollback", "--mode=restore", "--yes")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    assert newest in out.stderr and "truncated or damaged" in out.stderr and f"--dump={older}" in out.stderr
    assert snapshot(lab, "lab15") == before
    assert_refused_alike(rehearsals, "lab15", out)
    out = fab(lab, "lab15", "rollback", "--mode=restore", f"--dump={older}", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab15")
    rows, max_id = dump_flows(lab, "lab15", older)
    assert sql(lab, "lab15", f"SELECT count(*) FROM flow_records WHERE id <= {max_id}") == str(rows)  # noqa: S608


def test_no_backup_refuses_restore_then_clean_works(lab, rehearsals):
    before = snapshot(lab, "lab16")
    out = fab(lab, "lab16", "rollback", "--mode=restore", "--yes")
    assert out.returncode != 0 and "no pre-migration backup" in out.stderr and "--mode=clean" in out.stderr
    assert_refused_alike(rehearsals, "lab16", out)
    assert snapshot(lab, "lab16") == before
    out = fab(lab, "lab16", "rollback", "--mode=clean", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab16")


@pytest.mark.parametrize("mode", ["clean", "restore"])
def test_already_rolled_back_changes_nothing(lab, rehearsals, mode):
    assert rehearsals["lab17"]["code"] == 2 and "already rolled back" in rehearsals["lab17"]["error"]  # nothing to rehearse
    before = snapshot(lab, "lab17")
    out = fab(lab, "lab17", "rollback", f"--mode={mode}", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "already rolled back" in out.stdout
    assert snapshot(lab, "lab17") == before


def test_rerun_after_a_failed_step_finishes(lab):
    """The file revert fails (git's index is locked) after the side restore, before anything
    stops: the site still serves on TimescaleDB. A rerun resumes at that step and finishes the job."""
    ssh(lab, "lab18", "touch /root/netmon/.git/index.lock")
    out = fab(lab, "lab18", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 6 and "revert-files" in out.stderr, out.stdout[-2000:] + out.stderr
    failed = re.search(r"\[(\d+)/\d+\] FAILED: revert the migration's files", out.stdout)
    assert failed, out.stdout[-2000:]
    assert ssh(lab, "lab18", "docker inspect --format '{{.State.Status}} {{.Config.Image}}' netmon-db netmon-backend") == \
        "running timescale/timescaledb:latest-pg16\nrunning netmon-backend"
    ssh(lab, "lab18", "rm /root/netmon/.git/index.lock")
    out = fab(lab, "lab18", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    step = failed.group(1)
    assert f"step {step} failed" in out.stdout and f"resuming at step {step}" in out.stdout
    assert_rolled_back(lab, "lab18")
    dump = ssh(lab, "lab18", "ls /root/netmon_pre_tsdb_*.dump | sort | tail -1")
    rows, max_id = dump_flows(lab, "lab18", dump)
    assert sql(lab, "lab18", f"SELECT count(*) FROM flow_records WHERE id <= {max_id}") == str(rows)  # noqa: S608
