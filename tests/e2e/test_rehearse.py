"""End-to-end: `fab rehearse` and `invoke rehearse` on lab sites under ingestion, then the live site
read back: databases, row checksums, files, containers, images and volumes as they were; nothing of
the rehearsal left; a site whose real rollback fails fails its rehearsal at the same step with the
same error; a rehearsal killed mid-copy is cleaned up and completed by the rerun; --measure-restart
times the live backend's stop and start, and a rerun starts a backend a killed one left stopped."""

from __future__ import annotations

import json
import re
import signal

import pytest

from fabfile import rehearse as rh
from tests.e2e.helpers import LEFTOVERS, fab, fab_start, http_code, invoke, live, ssh, unchanged, wait_for_new_flows, wait_until

pytestmark = pytest.mark.lab

VARIANTS = ["migrated", "summary-cagg", "plain-image-missing", "fresh-volume"]
SITES = {f"lab{i}": v for i, v in enumerate(VARIANTS, 1)}
MISSING = "lab3"
@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=len(VARIANTS), variants=VARIANTS, flows=2000)  # the backend ingests all along


def test_a_fleet_rehearsal_passes_where_the_rollback_works_and_leaves_the_sites_as_they_were(lab):
    sites = ["lab1", "lab4"]  # migrated, fresh-volume (preload in postgresql.conf, TimescaleDB in every database)
    before = {s: live(lab, s) for s in sites}
    out = invoke(lab.inventory, "rehearse", "--mode=convert", "--sites", ",".join(sites))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    rows = [ln.split() for ln in out.stdout.splitlines() if re.match(r"lab\d+ ", ln)]
    assert sorted(r[0] for r in rows) == sorted(sites) and all(r[1] == "pass" for r in rows)
    assert all(r[2].startswith("≥") for r in rows)  # a lower bound: the backend's restart was not measured
    downs = [float(r[2].lstrip("≥").rstrip("s")) for r in rows]
    assert downs == sorted(downs) and all(d > 0 for d in downs)  # by predicted downtime
    assert all(r[4] == "0" for r in rows)  # convert keeps every row
    for site in sites:
        unchanged(lab, site, before[site])


def test_a_site_whose_rollback_fails_fails_its_rehearsal_at_the_same_step_with_the_same_error(lab):
    before = live(lab, MISSING)
    rehearsal = fab(lab, MISSING, "rehearse", "--mode=restore", "--json")
    assert rehearsal.returncode == 6, rehearsal.stdout[-2000:] + rehearsal.stderr
    report = json.loads(rehearsal.stdout)
    assert report["passed"] is False and report["failed_step"] == "pull-image"
    assert [s["key"] for s in report["timeline"]] == ["pull-image"]  # failed before the throwaway was made
    unchanged(lab, MISSING, before)
    real = fab(lab, MISSING, "rollback", "--mode=restore", "--yes")
    assert real.returncode == 6, real.stdout[-2000:] + real.stderr
    error = next(ln for ln in real.stderr.splitlines() if ln.startswith("error: "))[len("error: "):]
    port = re.compile(r"\]:\d+->")  # the resolver's query goes out from a new port each time
    assert port.sub("]:PORT->", report["error"]) == port.sub("]:PORT->", error)
    assert "postgres:16-alpine" in error


def test_a_rehearsal_killed_mid_copy_is_cleaned_up_and_completed_by_the_rerun(lab):
    site = "lab2"
    before = live(lab, site)
    proc = fab_start(lab, site, "rehearse", "--mode=clean")
    try:
        copying = wait_until(lambda: ssh(lab, site, "ls /root/netmon_rehearse 2>/dev/null", check=False).find("live.dump")
                             >= 0, timeout=90, interval=0.1)
        assert copying, "the copy never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert ssh(lab, site, LEFTOVERS).split()[0] == "1"  # the throwaway it left
    out = fab(lab, site, "rehearse", "--mode=clean", "--json")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["passed"] is True
    lost = {t["table"]: t["lost"] for t in report["tables"] if t["lost"]}
    assert set(lost) == {"public.flow_records", "public.flow_summary_5m"}  # what clean drops, and nothing else
    assert any(s["key"] == "drop-flow-tables" and s["downtime"] for s in report["timeline"])
    assert report["peak_disk"] > 0 and report["predicted_downtime"] > 0
    unchanged(lab, site, before)


def test_measure_restart_times_the_live_backend_and_a_rerun_starts_one_a_killed_run_left_stopped(lab):
    site = "lab1"
    marker = f"/root/netmon_rehearse/{rh.RESTARTING}"
    proc = fab_start(lab, site, "rehearse", "--mode=convert", "--measure-restart")
    try:
        restarting = wait_until(lambda: ssh(lab, site, f"test -f {marker} && echo yes", check=False) == "yes",
                                timeout=180, interval=0.1)
        assert restarting, "the restart measurement never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    ssh(lab, site, "cd /root/netmon && docker compose stop backend")  # as if the kill came between stop and start
    assert http_code(lab, site, "/api/health") != "200"
    out = fab(lab, site, "rehearse", "--mode=convert", "--measure-restart", "--json")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    report = json.loads(out.stdout)
    restart = next(s for s in report["timeline"] if s["key"] == "measure-restart")
    assert report["passed"] and report["restart_measured"] and restart["downtime"] and restart["seconds"] > 0
    db_steps = sum(s["seconds"] for s in report["timeline"] if s["downtime"] and s["key"] != "measure-restart")
    assert report["predicted_downtime"] == pytest.approx(db_steps + restart["seconds"], abs=0.01)
    assert http_code(lab, site, "/api/health") == "200" and wait_for_new_flows(lab, site)  # serving and ingesting
    assert ssh(lab, site, LEFTOVERS).split() == ["0", "0", "0"]
