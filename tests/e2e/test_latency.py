"""End-to-end over a WAN-like link: the real `fab` and `invoke` against a lab site whose SSH goes
through the latency relay (30 ms ± 3 ms each way), with host keys checked as strictly as ever.
No timings are asserted here (benchmarks/latency.py measures them)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from tests.e2e.helpers import AUDIT_DIR, ROOT, fab, http_code, sql, ssh
from tests.lab import relay
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (the lab uses network and mount namespaces)")
    lab = Lab("t" + secrets.token_hex(3))
    try:
        lab.up(sites=1, flows=500, variants=["rolled-back"], latency_ms=30, jitter_ms=3, log=lambda *_: None)
        yield lab
    finally:
        lab.down(log=lambda *_: None)


def test_fab_verify_and_status_work_through_the_relay(lab):
    assert lab.relay_ports()["lab1"] > 0
    out = fab(lab, "lab1", "verify", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] and len(data["checks"]) == 13 and all(ch["ok"] for ch in data["checks"])
    out = fab(lab, "lab1", "status")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "verdict: rolled back"
    # read back over the same relayed SSH: what verify and status reported is what the site holds
    assert sql(lab, "lab1", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "0"
    assert ssh(lab, "lab1", "docker inspect --format '{{.Config.Image}}' netmon-db") == "postgres:16-alpine"
    assert http_code(lab, "lab1", "/api/health") == "200"


def test_invoke_verify_from_the_inventory_alone(lab):
    """No ssh_config: the inventory's 127.0.0.1:PORT is looked up as `[127.0.0.1]:PORT` in known_hosts."""
    env = {**os.environ, "NETMON_AUDIT_DIR": str(AUDIT_DIR), "HOME": str(lab.run_dir)}  # no ~/.ssh/config
    out = subprocess.run([str(ROOT / ".venv/bin/invoke"), "verify", "--json", "--inventory", str(lab.inventory)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    [row] = json.loads(out.stdout)
    assert row["site"] == "lab1" and row["ok"]


def test_a_changed_host_key_behind_the_relay_is_refused(lab, tmp_path):
    port = lab.relay_ports()["lab1"]
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(f"lab1,[127.0.0.1]:{port} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(lab.inventory.read_text().replace(str(lab.known_hosts), str(known)))
    empty_config = tmp_path / "ssh_config"
    empty_config.write_text("")
    out = fab(lab, "lab1", "status", env={"NETMON_INVENTORY": str(inventory)}, ssh_config=empty_config)
    assert out.returncode == 4, out.stdout + out.stderr
    assert "has CHANGED" in out.stderr


def test_one_ssh_connection_per_site_per_run(lab):
    """Counted by the relay (every connection to the site's sshd goes through it): `fab verify`,
    `invoke verify`, `invoke rollback --dry-run`, and a batch confirmed on a terminal — its read-only
    preflight of every site, then the run — each connect to the site once."""
    invoke = [str(ROOT / ".venv/bin/invoke")]
    inventory = ["--inventory", str(lab.inventory)]
    env = {**os.environ, "NETMON_AUDIT_DIR": str(AUDIT_DIR), "NETMON_INVENTORY": str(lab.inventory)}
    confirmed = " ".join([*invoke, "rollback", "--mode=clean", "--sites", "lab1", *inventory])
    runs = {
        "fab verify": ([str(ROOT / ".venv/bin/fab"), "-S", str(lab.ssh_config), "-H", "lab1", "verify"], None),
        "invoke verify": ([*invoke, "verify", *inventory], None),
        "invoke rollback --dry-run": ([*invoke, "rollback", "--mode=restore", "--dry-run", *inventory], None),
        "invoke rollback, confirmed": (["script", "-qec", confirmed, "/dev/null"], "yes\n"),
    }
    for label, (argv, answer) in runs.items():
        offset = relay.log_size(lab.relay_dir)
        out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                             input=answer, stdin=None if answer else subprocess.DEVNULL)
        assert out.returncode == 0, (label, out.stdout[-2000:], out.stderr[-2000:])
        if answer:  # the preflight ran and its plan was shown, then the run found the site rolled back
            assert "Rollback --mode=clean of 1 site(s)" in out.stdout and "already rolled back" in out.stdout
        connections = relay.connections_since(lab.relay_dir, offset)
        assert [c["name"] for c in connections] == ["lab1"], (label, connections)
