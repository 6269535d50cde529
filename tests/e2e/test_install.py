"""The package as an operator gets it: `pip install` of this checkout into a fresh venv, then the
installed `netmon-rollback` command, run from an empty directory, against a lab site over SSH."""

from __future__ import annotations

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


def test_installed_package_is_netmon_rollback_not_fabfile(installed):
    py = str(installed / "python")  # run from / : the checkout's fabfile/ is not on the path there
    assert subprocess.run([py, "-c", "import netmon_rollback.cli"], capture_output=True, cwd="/").returncode == 0
    assert subprocess.run([py, "-c", "import fabfile"], capture_output=True, cwd="/").returncode != 0
    out = subprocess.run([str(installed / "netmon-rollback"), "--list"], capture_output=True, text=True, cwd="/",
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert {"status", "backup", "rollback", "verify", "reset", "fetch-dump", "push-dump"} <= set(out.stdout.split())


def test_installed_command_verifies_rolls_back_and_reports(installed, home, site):
    _, _, state = home
    out = nr(installed, home, site, "verify")
    assert out.returncode == 7, out.stdout + out.stderr  # a migrated site: verify failed
    assert re.search(r"^db runs the plain image\s+postgres:16-alpine\s+timescale\S*\s+FAIL$", out.stdout, re.M), out.stdout
    audits = list(state.glob("audit_lab1_*_verify.jsonl"))
    assert len(audits) == 1 and '"cmd": "docker' in audits[0].read_text()

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
