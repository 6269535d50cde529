"""The fleet workflow against a lab with broken sites among healthy ones, through the real
`invoke` command line: healthy sites are rolled back, broken ones are reported with the reason
and left exactly as they were (read back from each site, not from what the tool printed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import browser
from tests.e2e.helpers import AUDIT_DIR, invoke, ssh

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")
SQL_EXT = "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datallowconn"


@pytest.fixture(scope="module")
def fleet(lab_factory, tmp_path_factory):
    """Eight sites: lab1, lab2, lab7, lab8 migrated; lab3 no backup; lab4 corrupt newest dump;
    lab5 sshd stopped; lab6 presents a host key the inventory does not know."""
    lab = lab_factory(sites=8, variants=["migrated", "migrated", "no-backup", "corrupt-backup", "migrated", "migrated",
                                         "migrated", "migrated"], flows=1500)
    tmp = tmp_path_factory.mktemp("fleet")
    wrong = tmp / "wrong_known_hosts"
    lab1_key = (lab.site("lab1").dir / "ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    wrong.write_text(f"{lab.site('lab6').ip} {' '.join(lab1_key)}\n")
    inv = yaml.safe_load(lab.inventory.read_text())
    inv["sites"]["lab6"]["known_hosts"] = str(wrong)
    inv["groups"]["broken"] = ["lab3", "lab4", "lab5", "lab6"]
    inv["groups"]["healthy"] = ["lab1", "lab2", "lab3", "lab5", "lab7", "lab8"]
    path = tmp / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    stop_sshd(lab, "lab5")
    return lab, path


def stop_sshd(lab, name):
    site = lab.site(name)
    pid = int((site.dir / "ssh/sshd.pid").read_text())
    os.kill(pid, 15)


def start_sshd(lab, name):
    site = lab.site(name)
    subprocess.run(site.enter("/usr/sbin/sshd", "-f", str(site.dir / "ssh/sshd_config"), "-E",
                              str(site.dir / "ssh/sshd.log")), check=True)


def fingerprint(lab, name: str) -> dict:
    """What a rollback could change on a site: files in /root, git, containers, the databases."""
    site = lab.site(name)

    def run(cmd):
        return site.run(cmd, check=False).stdout.strip()

    psql = "docker exec netmon-db psql -U netmon -d netmon -X -tAc"
    return {
        "root files": run("cd /root && find . -maxdepth 1 -type f -name '*.dump*' -exec sha256sum {} + | sort"),
        "app files": run("cd /root/netmon && sha256sum docker-compose.yml scripts/init.sql backend/app/main.py"),
        "git": run("cd /root/netmon && git rev-parse HEAD && git status --porcelain"),
        "containers": run("docker ps -a --format '{{.Names}} {{.Image}}' | sort"),
        "databases": run(f'{psql} "{SQL_EXT}"'),
        "extension": run(f"{psql} \"SELECT extversion FROM pg_extension WHERE extname='timescaledb'\""),
        "devices": run(f'{psql} "SELECT count(*) FROM devices"'),
        "hypertable": run(f'{psql} "SELECT count(*) FROM pg_inherits WHERE inhparent = \'flow_records\'::regclass"'),
    }


def rolled_back(lab, name: str) -> None:
    site = lab.site(name)
    psql = "docker exec netmon-db psql -U netmon -d netmon -X -tAc"
    for db in ("netmon", "template1", "postgres"):
        out = site.run(f"docker exec netmon-db psql -U netmon -d {db} -X -tAc "
                       "\"SELECT count(*) FROM pg_extension WHERE extname='timescaledb'\"").stdout.strip()
        assert out == "0", f"{name}: timescaledb still in {db}"
    assert site.run(f'{psql} "SELECT count(*) FROM pg_inherits WHERE inhparent = \'flow_records\'::regclass"').stdout \
        .strip() == "0"
    assert site.run("docker inspect --format '{{.Config.Image}}' netmon-db").stdout.strip() == "postgres:16-alpine"
    assert site.run("curl -s -o /dev/null -w '%{http_code}' http://localhost:8000/api/health").stdout == "200"


def test_bad_selection_is_refused_before_any_connection(fleet):
    lab, inv = fleet
    before = fingerprint(lab, "lab1")
    out = invoke(inv, "rollback", "--mode=restore", "--yes", "--sites", "lab1,nosuch")
    assert out.returncode == 2 and "unknown site 'nosuch'" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = invoke(inv, "verify", "--group", "nogroup")
    assert out.returncode == 2 and "unknown group 'nogroup'" in out.stderr
    out = invoke(inv, "rollback", "--mode=sideways", "--yes")
    assert out.returncode == 2 and "unknown mode" in out.stderr
    assert fingerprint(lab, "lab1") == before


def test_without_a_terminal_a_batch_needs_yes(fleet):
    lab, inv = fleet
    before = fingerprint(lab, "lab1")
    out = invoke(inv, "rollback", "--mode=clean", "--sites", "lab1")
    assert out.returncode == 8 and "--yes" in out.stderr  # not confirmed: the same code fab uses
    assert fingerprint(lab, "lab1") == before


def test_verify_reports_every_site_with_a_reason_and_never_hangs(fleet):
    lab, inv = fleet
    out = invoke(inv, "verify", "--json", "--connect-timeout", "5", timeout=120)
    assert out.returncode == 1
    results = {r["site"]: r for r in json.loads(out.stdout)}
    assert sorted(results) == sorted(f"lab{i}" for i in range(1, 9))
    assert not results["lab1"]["ok"] and results["lab1"]["checks"], "a migrated site fails its checks"
    failed = {c["key"] for c in results["lab1"]["checks"] if not c["ok"]}
    assert {"no tsdb", "flow_records plain", "image"} <= failed
    assert "cannot connect" in results["lab5"]["error"]
    assert "host key" in results["lab6"]["error"].lower()
    assert results["lab6"]["checks"] == []


def test_canary_stops_the_batch_after_the_first_failure(fleet):
    lab, inv = fleet
    before = {n: fingerprint(lab, n) for n in ("lab4", "lab1")}
    out = invoke(inv, "rollback", "--mode=restore", "--yes", "--parallel", "1", "--max-failures", "1",
                 "--sites", "lab4,lab1", "--json")
    assert out.returncode == 1
    results = {r["site"]: r for r in json.loads(out.stdout)}
    assert "not started" in results["lab1"]["error"]
    assert "truncated" in results["lab4"]["error"] or "corrupt" in results["lab4"]["error"]
    assert {n: fingerprint(lab, n) for n in ("lab4", "lab1")} == before


def test_one_confirmation_lists_every_site_and_its_plan(fleet):
    """On a terminal the batch is confirmed once, after a read-only preflight of every site."""
    lab, inv = fleet
    before = {n: fingerprint(lab, n) for n in ("lab1", "lab2", "lab3")}
    cmd = f"{INVOKE} rollback --mode=restore --sites lab1,lab2,lab3 --inventory {inv}"
    out = subprocess.run(["script", "-qec", cmd, "/dev/null"], input="no\n", cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 8  # not confirmed: fab's code for the same refusal
    text = out.stdout
    assert "Rollback --mode=restore of 3 site(s)" in text
    for n in ("lab1", "lab2"):
        assert f"  {n}:\n    1. safety dump of netmon" in text.replace("\r", "")
    assert "lab3: preflight FAILED — no pre-migration backup" in text
    assert "not confirmed — nothing was changed" in text
    assert {n: fingerprint(lab, n) for n in ("lab1", "lab2", "lab3")} == before


def test_batch_restore_rolls_back_healthy_sites_and_leaves_broken_ones_as_they_were(fleet, tmp_path):
    lab, inv = fleet
    broken = ["lab3", "lab4", "lab5", "lab6"]
    before = {n: fingerprint(lab, n) for n in broken}
    out = invoke(inv, "rollback", "--mode=restore", "--yes", "--parallel", "3")
    assert out.returncode == 1, out.stdout + out.stderr  # sites failed for different reasons
    scroll, _, tables = out.stdout.partition("\nsite    result")
    summary, _, verify = tables.partition("\n\n")
    for n in ("lab1", "lab2", "lab7", "lab8"):
        rolled_back(lab, n)
        assert any(line.startswith(n) and " ok " in line for line in summary.splitlines())
        assert any(line.startswith(n) and line.split()[-1] == "healthy" for line in verify.splitlines()), verify
        steps = [line for line in scroll.splitlines() if line.startswith(f"[{n}] ") and "] done: " in line]
        assert len(steps) >= 5, scroll  # one line per step, when it ends
    for n in broken:
        assert any(line.startswith(n) and "FAIL" in line for line in summary.splitlines()), summary
    assert "lab3,lab4,lab5,lab6" in out.stderr  # what to rerun
    assert {n: fingerprint(lab, n) for n in broken} == before
    assert scroll.strip(), "no per-site progress lines"
    for line in scroll.splitlines():  # the scroll: whole lines, one site prefix each, at the start; no tables
        assert not line.strip() or len(re.findall(r"\[lab\d+\] ", line)) == 1 and re.match(r"^\[lab\d+\] ", line), line
        assert not line.endswith(" ...") and " expected " not in line, line
    assert verify.splitlines()[0].split()[0] == "site" and verify.splitlines()[0].split()[-1] == "overall"
    report = Path(out.stdout.strip().splitlines()[-1].removeprefix("report: "))
    html = report.read_text()
    assert re.findall(r'<section class="site" id="[^"]+" data-site="([^"]+)"', html) == [f"lab{i}" for i in range(1, 9)]
    assert html.count('<tr class="check">') >= 4 * 13  # each rolled-back site's whole verify table
    # the batch's own report, as a real browser shows it
    sections = browser.sections(browser.dom(tmp_path, report))
    assert list(sections) == [f"lab{i}" for i in range(1, 9)]
    for n in ("lab1", "lab2", "lab7", "lab8"):
        section, steps = sections[n], [line for line in scroll.splitlines() if line.startswith(f"[{n}] ") and "] done: " in line]
        assert len(re.findall(r'<rect class="step"', section)) >= len(steps), section  # a bar per step that ran
        assert len(re.findall(r'<rect class="downtime"', section)) == 1 and "downtime (the stack's writers down)" in section
        copies = re.findall(r'<tr class="copy"><td>[^<]*</td><td><code>([^<]+)</code></td><td[^>]*>[^<]*</td>'
                            r'<td><code>([0-9a-f]{64})</code></td></tr>', section)
        assert copies, section
        for path, sha in copies:  # the sha256 the report shows is the one sealed beside the copy on the server
            assert ssh(lab, n, f"cat {path}.sha256").split()[0] == sha
    for n in broken:
        assert "What to do next:" in sections[n]
    browser.screenshot(tmp_path, report, height=4000)
    # each site's journal records have a local copy beside its audit log (the one the report names), holding the plan
    for n in ("lab1", "lab2", "lab7", "lab8"):
        audit = Path(re.search(r"audit log: <code>([^<]+)</code>", sections[n]).group(1))
        local = audit.with_name(audit.name.replace("audit_", "journal_", 1))
        assert audit.parent == AUDIT_DIR and local.exists(), f"no local journal copy for {n}: {local}"
        records = [json.loads(line) for line in local.read_text().splitlines()]
        assert records[0]["event"] == "start" and records[0]["plan"]["steps"], records[0]
        assert records[-1]["event"] == "end"


def test_rerun_with_the_failed_sites_finishes_them(fleet):
    lab, inv = fleet
    start_sshd(lab, "lab5")
    out = invoke(inv, "rollback", "--mode=restore", "--yes", "--sites", "lab5")
    assert out.returncode == 0, out.stdout + out.stderr
    out = invoke(inv, "rollback", "--mode=clean", "--yes", "--sites", "lab3")
    assert out.returncode == 0, out.stdout + out.stderr
    for n in ("lab3", "lab5"):
        rolled_back(lab, n)
    out = invoke(inv, "-e", "verify", "--group", "healthy")
    assert out.returncode == 0, out.stdout + out.stderr
    overall = [line.split()[-1] for line in out.stdout.splitlines() if re.match(r"^lab\d+ ", line)]
    assert overall == ["healthy"] * 6, out.stdout  # the verdict column itself, not "unhealthy" counted too
    for n in ("lab1", "lab3", "lab5"):  # invoke's -e: each site's commands, prefixed
        assert re.search(rf"^\[{n}\]     \$ docker ", out.stdout, re.M), out.stdout


def test_a_backup_batch_writes_its_report_with_each_copy_and_its_sha256(fleet, tmp_path):
    lab, inv = fleet
    out = invoke(inv, "backup", "--sites", "lab1,lab2", "--report", str(tmp_path / "backup.html"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"report: {tmp_path / 'backup.html'}"
    sections = browser.sections(browser.dom(tmp_path, tmp_path / "backup.html"))
    assert list(sections) == ["lab1", "lab2"]
    for n, section in sections.items():
        (path, sha), = re.findall(r'<tr class="copy"><td>backup</td><td><code>([^<]+)</code></td><td[^>]*>[^<]*</td>'
                                  r'<td><code>([0-9a-f]{64})</code></td></tr>', section)
        assert ssh(lab, n, f"cat {path}.sha256").split()[0] == sha and ssh(lab, n, f"sha256sum {path}").split()[0] == sha
