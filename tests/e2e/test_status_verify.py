"""End-to-end: `fab status` verdicts and `fab verify` results match what the server holds."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e.helpers import fab, snapshot, sql, ssh, wait_until

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=3, variants=["migrated", "backend-crashloop", "rolled-back"], flows=1000)


def test_status_of_a_healthy_migrated_site(lab):
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", "status")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "verdict: TimescaleDB active and healthy"
    assert sql(lab, "lab1", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "1"
    assert ssh(lab, "lab1", "docker inspect --format '{{.State.Status}}' netmon-backend") == "running"
    assert snapshot(lab, "lab1") == before  # read-only


def test_status_of_a_crashlooping_backend(lab):
    out = fab(lab, "lab2", "status", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["verdict"] == "TimescaleDB active with problems"
    assert any("backend in a restart loop" in s for s in data["signals"])
    # the application's own scripts/qa_check.sh, run inside the host probe, fails too
    assert "scripts/qa_check.sh fails: exit 1: CRITICAL: backend health check failed " \
           "(http://localhost:8000/api/health)" in data["signals"]
    # between two crashes it shows as running for a moment: poll for the restart loop, with a bound
    assert wait_until(lambda: ssh(lab, "lab2", "docker inspect --format '{{.State.Status}}' netmon-backend")
                      == "restarting", timeout=60, interval=0.2)
    text = fab(lab, "lab2", "status").stdout
    assert "verdict: TimescaleDB active with problems — rollback advised: backend in a restart loop" in text


def test_status_of_a_rolled_back_site(lab):
    out = fab(lab, "lab3", "status")
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "verdict: rolled back"
    assert sql(lab, "lab3", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "0"


def _records(directory) -> list[dict]:
    return [json.loads(ln) for f in directory.glob("audit_*.jsonl") for ln in f.read_text().splitlines()]


def test_verify_passes_on_a_rolled_back_site(lab, tmp_path):
    out = fab(lab, "lab3", "verify", "--json", env={"NETMON_AUDIT_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] and all(ch["ok"] for ch in data["checks"]) and len(data["checks"]) == 13
    assert ssh(lab, "lab3", "curl -s -o /dev/null -w '%{http_code}' http://localhost:8000/api/health") == "200"
    # every check from the probe's two remote commands; the ingestion wait noted apart
    records = _records(tmp_path)
    assert [r["what"] for r in records if r["kind"] != "wait"] == ["host probe", "database probe"]
    assert [r["what"] for r in records if r["kind"] == "wait"] == ["ingestion wait"]


def test_verify_of_a_stopped_backend_fails_its_checks_not_others(lab, tmp_path):
    """The backend's parts of the batch answer for themselves: health, login and ingestion fail, the
    database's checks still pass (read back: the backend is stopped, the database plain)."""
    inventory = yaml.safe_load(lab.inventory.read_text())
    inventory["sites"]["lab3"]["ingest_wait_seconds"] = 3
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    ssh(lab, "lab3", "cd /root/netmon && docker compose stop backend")
    try:
        out = fab(lab, "lab3", "verify", "--json", env={"NETMON_INVENTORY": str(path)})
        assert ssh(lab, "lab3", "docker inspect --format '{{.State.Status}}' netmon-backend") == "exited"
    finally:
        ssh(lab, "lab3", "cd /root/netmon && docker compose start backend")
    assert out.returncode == 7, out.stdout + out.stderr
    failed = {ch["name"].split(" (")[0]: ch["actual"] for ch in json.loads(out.stdout)["checks"] if not ch["ok"]}
    assert failed == {"all five containers running": "netmon-backend=exited", "backend /api/health": "000",
                      "login + /api/flows/stats": "login answered 000", "ingestion resumed": "no new row"}
    assert sql(lab, "lab3", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "0"


def test_verify_fails_on_a_migrated_site(lab):
    out = fab(lab, "lab1", "verify")
    assert out.returncode != 0 and out.stderr.startswith("error: verify failed on lab1")
    failed = {ln.split("  ")[0] for ln in out.stdout.splitlines() if ln.rstrip().endswith("FAIL")}
    assert "timescaledb extension in netmon (runbook 2)" in failed and "db runs the plain image" in failed
    assert sql(lab, "lab1", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "1"
    assert ssh(lab, "lab1", "docker inspect --format '{{.Config.Image}}' netmon-db") == "timescale/timescaledb:latest-pg16"
