"""The package as an operator gets it: `pip install` of this checkout into a fresh venv, then the
installed `netmon-rollback` and `netmon-fleet` commands, run from an empty directory, against a lab
site over SSH."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import ROOT, assert_rolled_back, snapshot

pytestmark = pytest.mark.lab

SHIPPED = ("pyproject.toml", "requirements.txt", "README.md", "fabfile")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the package installed from a copy of what it ships (nothing else of the
    checkout is there to lean on); its bin directory."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for item in SHIPPED:
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, src / item)
    subprocess.run(["python3", "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    pip = subprocess.run([str(tmp / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check", str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return tmp / "venv/bin"


@pytest.fixture(scope="module")
def pipx_installed(tmp_path_factory) -> Path:
    """`pipx install` of a copy of what the checkout ships, as README says an operator installs it
    (PIPX_HOME and PIPX_BIN_DIR in a tmp dir; pip inside pipx's venv uses this machine's pip
    configuration, the same index the fresh-venv install uses); pipx's bin directory."""
    pipx = shutil.which("pipx")
    if not pipx:
        pytest.fail("pipx is missing: run `make setup` (Debian's pipx package)")
    tmp = tmp_path_factory.mktemp("pipx")
    src = tmp / "src"
    src.mkdir()
    for item in SHIPPED:
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, src / item)
    env = {**os.environ, "PIPX_HOME": str(tmp / "pipx"), "PIPX_BIN_DIR": str(tmp / "bin")}
    out = subprocess.run([pipx, "install", str(src)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert (tmp / "bin/netmon-rollback").exists() and (tmp / "bin/netmon-fleet").exists(), out.stdout
    return tmp / "bin"


@pytest.fixture(scope="module")
def site(lab_factory):
    return lab_factory(sites=1, variants=["migrated"], flows=1000)


@pytest.fixture
def home(tmp_path, site):
    """An operator's machine: an empty working directory, the inventory in ~/.config, state in
    ~/.local/state (no NETMON_* variables, so the installed defaults decide)."""
    work, config, state = tmp_path / "work", tmp_path / "config", tmp_path / "state"
    work.mkdir()
    (config / "netmon-rollback").mkdir(parents=True)
    shutil.copy(site.inventory, config / "netmon-rollback/hosts.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETMON_")}
    env.update(XDG_CONFIG_HOME=str(config), XDG_STATE_HOME=str(state))
    return work, env, state / "netmon-rollback"


def nr(installed, home, site, *args, timeout=600):
    work, env, _ = home
    return subprocess.run([str(installed / "netmon-rollback"), "-S", str(site.ssh_config), "-H", "lab1", *args],
                          cwd=work, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def fleet(installed, home, *args, timeout=600):
    """`netmon-fleet ARGS --inventory hosts.yml` in the operator's directory (the lab's inventory
    copied there as hosts.yml)."""
    work, env, _ = home
    shutil.copy(env["XDG_CONFIG_HOME"] + "/netmon-rollback/hosts.yml", work / "hosts.yml")
    return subprocess.run([str(installed / "netmon-fleet"), *args, "--inventory", "hosts.yml"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_installed_package_is_netmon_rollback_not_fabfile(installed):
    py = str(installed / "python")  # run from / : the checkout's fabfile/ is not on the path there
    assert subprocess.run([py, "-c", "import netmon_rollback.cli"], capture_output=True, cwd="/").returncode == 0
    assert subprocess.run([py, "-c", "import fabfile"], capture_output=True, cwd="/").returncode != 0
    out = subprocess.run([str(installed / "netmon-rollback"), "--list"], capture_output=True, text=True, cwd="/",
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert {"status", "backup", "rollback", "verify", "reset", "fetch-dump", "push-dump"} <= set(out.stdout.split())


def test_installed_fleet_command_has_the_fleet_tasks_and_no_lab(installed, tmp_path):
    out = subprocess.run([str(installed / "netmon-fleet"), "--help"], capture_output=True, text=True, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: netmon-fleet ") and "  8  not confirmed" in out.stdout  # the exit-code table
    out = subprocess.run([str(installed / "netmon-fleet"), "--list"], capture_output=True, text=True, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"^  (\S+)", out.stdout, re.M))  # task names (wrapped docstrings are indented more)
    assert listed == {"backup", "rehearse", "rollback", "status", "verify"}  # the lab's tasks stay in the checkout
    out = subprocess.run([str(installed / "netmon-fleet"), "--help", "verify"], capture_output=True, text=True, cwd="/",
                         timeout=60)
    assert out.returncode == 0 and "--inventory" in out.stdout and "--parallel" in out.stdout, out.stdout + out.stderr
    (tmp_path / "hosts.yml").write_text("sites:\n  a:\n    host: 192.0.2.1\n")  # never reached: refused first
    out = subprocess.run([str(installed / "netmon-fleet"), "rollback", "--mode=clean", "--inventory", "hosts.yml"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
    assert (out.returncode, out.stderr.strip()) == (8, "error: no terminal to confirm the batch on — rerun with --yes "
                                                       "(or --dry-run to see the plans)")  # the code invoke and fab give


def test_pipx_install_gives_the_command_that_reads_a_servers_status(pipx_installed, home, site):
    """README's "Done when": `pipx install .`, then `netmon-rollback -H server status`."""
    _, env, _ = home
    out = subprocess.run([str(pipx_installed / "netmon-rollback"), "--list"], capture_output=True, text=True, cwd="/",
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {"status", "backup", "rollback", "verify", "reset", "drop-database"} <= set(out.stdout.split())
    out = nr(pipx_installed, home, site, "status")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^netmon\s+yes$", out.stdout, re.M), out.stdout  # TimescaleDB in the app database
    assert re.search(r"^verdict: TimescaleDB active ", out.stdout, re.M), out.stdout


def test_installed_command_verifies_rolls_back_and_reports(installed, home, site):
    _, _, state = home
    out = nr(installed, home, site, "status")  # the read-only picture first, from the installed command
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^netmon\s+yes$", out.stdout, re.M) and "verdict: TimescaleDB active " in out.stdout, out.stdout
    assert len(list(state.glob("audit_lab1_*_status.jsonl"))) == 1
    out = nr(installed, home, site, "verify")
    assert out.returncode == 7, out.stdout + out.stderr  # a migrated site: verify failed
    assert re.search(r"^db runs the plain image\s+postgres:16-alpine\s+timescale\S*\s+FAIL$", out.stdout, re.M), out.stdout
    audits = list(state.glob("audit_lab1_*_verify.jsonl"))
    assert len(audits) == 1 and '"cmd": "docker' in audits[0].read_text()
    out = fleet(installed, home, "verify", "--json")  # the same checks across the inventory's sites
    assert out.returncode == 7, out.stdout + out.stderr
    [result] = json.loads(out.stdout)
    assert result["site"] == "lab1" and not result["ok"]
    assert {c["key"] for c in result["checks"] if not c["ok"]} >= {"image", "no tsdb", "flow_records plain"}
    assert len(list(state.glob("audit_lab1_*_verify.jsonl"))) == 2  # the installed default log directory

    before = snapshot(site, "lab1")
    out = nr(installed, home, site, "-e", "--dry", "rollback", "--mode=clean")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dry run: only read-only commands were run" in out.stdout
    assert re.search(r"^    \$ docker (exec|inspect|compose) ", out.stdout, re.M)  # -e: each command as it runs
    assert site.admin_password_file.read_text().strip() not in out.stdout
    assert snapshot(site, "lab1") == before
    report = Path(out.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.parent == state and report.name.endswith("_rollback.html") and "lab1" in report.read_text()

    mine = home[0] / "reports/lab1.html"
    out = nr(installed, home, site, "rollback", "--mode=clean", "--yes", "--report", str(mine))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"report: {mine}"
    html = mine.read_text()
    assert re.findall(r'<section class="site" id="site-lab1" data-site="(lab1)"', html) == ["lab1"]
    assert re.search(r'<tr class="check"><td>db runs the plain image</td><td>postgres:16-alpine</td>'
                     r'<td>postgres:16-alpine</td><td><span class="ok">', html)
    assert_rolled_back(site, "lab1")
    assert nr(installed, home, site, "verify").returncode == 0
    out = nr(installed, home, site, "status")
    assert out.returncode == 0 and re.search(r"^verdict: rolled back", out.stdout, re.M), out.stdout + out.stderr
    out = fleet(installed, home, "verify")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^lab1\s.*\shealthy$", out.stdout, re.M) and "FAIL" not in out.stdout, out.stdout
