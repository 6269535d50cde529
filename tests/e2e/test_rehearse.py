"""End-to-end: `fab rehearse` and `invoke rehearse` on lab sites under ingestion, then the live site
read back: databases, row checksums, files, containers, images and volumes as they were; nothing of
the rehearsal left; a site whose real rollback fails fails its rehearsal at the same step with the
same error (a missing image at pull-image; a blocker in the database that pg_dump copies, at the
database step where the real run fails); a rehearsal killed mid-copy is cleaned up and completed by
the rerun; --measure-restart times the live backend's stop and start, and a rerun starts a backend a
killed one left stopped; a fleet rehearsal writes an HTML report naming every site."""

from __future__ import annotations

import json
import re
import signal
import threading
from pathlib import Path

import pytest

from fabfile import rehearse as rh
from tests.e2e.helpers import (
    LEFTOVERS,
    fab,
    fab_start,
    http_code,
    invoke,
    live,
    sql,
    ssh,
    unchanged,
    wait_for_new_flows,
    wait_until,
)

pytestmark = pytest.mark.lab

VARIANTS = ["migrated", "summary-cagg", "plain-image-missing", "fresh-volume", "migrated"]
SITES = {f"lab{i}": v for i, v in enumerate(VARIANTS, 1)}
MISSING = "lab3"
BLOCKED = "lab5"  # a table in the way of convert's copy, in the live database (so in its dump too)
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
    # the backend's stop and start estimated read-only: a whole figure, no lower bound
    assert not any(r[2].startswith("≥") for r in rows) and "estimated read-only" in out.stdout
    downs = [float(r[2].rstrip("s")) for r in rows]
    assert downs == sorted(downs) and all(d > 0 for d in downs)  # by predicted downtime
    assert all(r[4] == "0" for r in rows)  # convert keeps every row
    report = Path(re.search(r"^report: (\S+\.html)$", out.stdout, re.M).group(1)).expanduser()
    html = report.read_text()
    named = re.findall(r'<tr class="summary" data-site="([^"]+)"', html)
    assert named == [r[0] for r in rows]  # every site, in the table's order (by predicted downtime)
    assert all(f'<section class="site" id="site-{s}" data-site="{s}">' in html for s in sites)
    assert html.count("downtime (predicted, on the copy)") >= len(sites) and 'class="predicted"' in html
    for site in sites:
        unchanged(lab, site, before[site])


def test_a_blocker_in_the_database_fails_the_rehearsal_where_the_real_run_fails(lab):
    sql(lab, BLOCKED, "CREATE SCHEMA netmon_rollback; CREATE TABLE netmon_rollback.flow_records (x integer)")
    before = live(lab, BLOCKED)
    rehearsal = fab(lab, BLOCKED, "rehearse", "--mode=convert", "--json", timeout=900)
    assert rehearsal.returncode == 6, rehearsal.stdout[-2000:] + rehearsal.stderr
    report = json.loads(rehearsal.stdout)
    assert report["passed"] is False and report["failed_step"].startswith("convert-")
    keys = [s["key"] for s in report["timeline"]]
    assert keys[:2] == ["rehearse-throwaway", "rehearse-copy"] and keys[-1] == report["failed_step"]
    unchanged(lab, BLOCKED, before)  # nothing of the rehearsal left, the live site as it was
    real = fab(lab, BLOCKED, "rollback", "--mode=convert", "--yes", timeout=900)
    assert real.returncode == 6, real.stdout[-2000:] + real.stderr
    error = next(ln for ln in real.stderr.splitlines() if ln.startswith("error: "))[len("error: "):]
    assert re.match(r"step '([^']+)' on ", error).group(1) == report["failed_step"]
    assert error.startswith(report["error"]), (report["error"], error)  # the real one adds what it undid
    assert "undone" in error and http_code(lab, BLOCKED, "/api/health") == "200"


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


def killed_as(proc, line: re.Pattern, bound: float = 300) -> str:
    """SIGKILL ``proc`` the moment it prints a line matching ``line``; what it printed. Bounded: a run that
    never gets there is killed at ``bound`` and fails the test."""
    timer = threading.Timer(bound, proc.kill)
    timer.start()
    seen = []
    try:
        for text in proc.stdout:
            seen.append(text)
            if line.search(text):
                proc.kill()
                break
        proc.communicate(timeout=30)
    finally:
        timer.cancel()
    assert proc.returncode == -9 and any(line.search(text) for text in seen), "".join(seen)[-2000:]
    return "".join(seen)


def test_a_rehearsal_killed_mid_copy_is_cleaned_up_and_completed_by_the_rerun(lab):
    site = "lab2"
    before = live(lab, site)
    # killed as the copy starts: the dump may be under way, the restore into the throwaway never sent
    killed_as(fab_start(lab, site, "rehearse", "--mode=clean"),
              re.compile(r"^\[\s*[\d.]+s\] \[\d+/\d+\] copy the live netmon into it"))
    assert ssh(lab, site, LEFTOVERS).split()[:2] == ["1", "1"]  # the throwaway and its volume it left
    restored = ssh(lab, site, f"docker exec {rh.CONTAINER} psql -U netmon -d netmon -XtAc "
                              "\"SELECT to_regclass('public.flow_records') IS NOT NULL\"", check=False)
    assert restored == "f", restored  # mid-copy: the copy's restore had not happened
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
