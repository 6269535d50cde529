"""The command lines' shared surface: exit-code table in --help, Fabric's -e/--dry/-T, shell
completion, the inventory and log-dir lookup. Real `fab`, `invoke` and `netmon-rollback` processes;
fakes only where a Connection would be needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fabric import Config

from fabfile import errors, inventory, runner, tasks
from fabfile.commands import Command
from fabfile.report import Printer
from fabfile.runner import AuditLog, Runner
from tests.fakes import FakeContext

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def netmon_rollback(tmp_path) -> Path:
    """`netmon-rollback` as the installed entry point runs it, from this checkout (test_install
    installs the real one)."""
    path = tmp_path / "bin" / "netmon-rollback"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                    "from fabfile.cli import main\nmain()\n")
    path.chmod(0o755)
    return path


def run(argv, cwd=ROOT, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, **kw)


def test_one_exit_code_table_in_every_help(netmon_rollback):
    table = errors.exit_codes_text()
    assert "  8  not confirmed" in table and "  2  bad input" in table
    assert table in run([netmon_rollback, "--help"]).stdout
    indented = "\n".join("  " + line for line in table.splitlines())  # invoke indents a docstring
    for argv in ([BIN / "fab", "--help", "rollback"], [BIN / "invoke", "--help", "rollback"],
                 [netmon_rollback, "--help", "verify"]):
        out = run(argv)
        assert out.returncode == 0 and indented in out.stdout, argv
    assert errors.exit_codes_text(markdown=True).splitlines()[2] == "| 0 | done |"
    assert "   8  not confirmed" in table and "  10  busy" in table  # codes aligned


def test_no_server_given_names_the_command_that_ran(netmon_rollback, tmp_path):
    env = {"NETMON_AUDIT_DIR": str(tmp_path / "logs")}
    for argv, program in (([BIN / "fab", "status"], "fab"), ([netmon_rollback, "status"], "netmon-rollback")):
        out = run(argv, env=env)
        assert (out.returncode, out.stderr.strip()) == (2, f"error: no server given — run as: {program} -H SERVER TASK")


def test_batch_code_is_the_shared_code_else_1():
    assert errors.batch_code([]) == 0
    assert errors.batch_code([8, 8]) == 8
    assert errors.batch_code([7, 5]) == 1
    assert errors.batch_code([0]) == 1  # a failed site never counts as done


def test_refusals_exit_alike_from_fab_and_invoke(tmp_path):
    """No terminal to confirm on: 8 from both; bad input: 2 from both; fab's --dry outside
    rollback: one line, 2."""
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("sites:\n  a:\n    host: 192.0.2.1\n")
    env = {"NETMON_INVENTORY": str(hosts), "NETMON_AUDIT_DIR": str(tmp_path / "logs")}
    out = run([BIN / "invoke", "rollback", "--mode=clean"], env=env)
    assert (out.returncode, out.stderr.strip()) == (8, "error: no terminal to confirm the batch on — rerun with --yes "
                                                       "(or --dry-run to see the plans)")
    assert run([BIN / "invoke", "rollback", "--mode=bogus"], env=env).returncode == 2
    assert run([BIN / "fab", "-H", "a", "rollback", "--mode=bogus"], env=env).returncode == 2
    for task, argv in (("backup", [BIN / "fab", "--dry", "-H", "a", "backup"]), ("backup", [BIN / "invoke", "--dry", "backup"]),
                       ("drop-database", [BIN / "fab", "--dry", "-H", "a", "drop-database", "netmon_old_x"])):
        out = run(argv, env=env)
        assert out.returncode == 2 and out.stderr.strip().splitlines() == [
            f"error: --dry works with rollback only (it means rollback --dry-run); {task} has no dry run — drop --dry"]


@pytest.mark.parametrize("program", ["fab", "netmon-rollback"])
def test_bash_completion_completes_task_names(program, netmon_rollback, tmp_path):
    path_env = f"{netmon_rollback.parent}:{BIN}:{os.environ['PATH']}"
    script = run([program, "--print-completion-script", "bash"], env={"PATH": path_env}).stdout
    assert f"complete -F _complete_{program} -o default {program}" in script
    (tmp_path / "complete.sh").write_text(script)
    probe = (f"source {tmp_path}/complete.sh; COMP_WORDS=({program} ro); COMP_CWORD=1; "
             f"_complete_{program} {program} ro {program}; echo \"${{COMPREPLY[*]}}\"")
    out = run(["bash", "-c", probe], env={"PATH": path_env})
    assert out.stdout.split() == ["rollback"], out.stderr
    zsh = run([program, "--print-completion-script", "zsh"], env={"PATH": path_env}).stdout
    assert f"compctl -K _complete_{program} + -f {program}" in zsh


class EchoConfig:
    def __init__(self, **run):
        self.run = type("Run", (), {"echo": False, "dry": False, **run})()


def test_echo_prints_each_command_masked_and_keeps_invokes_own_echo_off(tmp_path):
    c = FakeContext([("^curl", "200", 0)])
    c.config = EchoConfig(echo=True)
    printer = Printer("s1", quiet=True)
    r = Runner(c, "s1", printer=printer, audit=AuditLog("s1", "verify", tmp_path), secrets=["tok3n"])
    r.run(Command("curl -H 'X-Token: tok3n' http://localhost:8000/api/health", changes=False))
    assert printer.lines == ["    $ curl -H 'X-Token: ***' http://localhost:8000/api/health"]
    assert c.calls[0]["kw"]["echo"] is False  # invoke would print the secret unmasked


def test_fab_dry_makes_the_runner_dry_so_probes_still_run(tmp_path):
    c = FakeContext([("^echo probe", "real output\n", 0)])
    c.config = EchoConfig(dry=True)
    r = Runner(c, "s1", audit=AuditLog("s1", "rollback", tmp_path))
    assert r.run(Command("echo probe", changes=False)).stdout == "real output\n"
    assert r.run(Command("docker compose down", changes=True)).dry
    assert c.commands == ["echo probe"] and c.calls[0]["kw"]["dry"] is False


def test_command_timeout_flag_bounds_every_remote_command(tmp_path, monkeypatch):
    """fab -T 7 → the site's command timeout, which the runner hands to every c.run."""
    monkeypatch.setenv("NETMON_INVENTORY", str(tmp_path / "none.yml"))
    (tmp_path / "none.yml").write_text("sites: {}\n")
    c = FakeContext([("^true$", "", 0)])
    c.config = Config(overrides={"timeouts": {"command": 7}})
    c.original_host = "server1"
    c.client = None
    cx, site = tasks._site(c, None)
    assert site.command_timeout == 7
    Runner(cx, site.name, timeout=site.command_timeout).run(Command("true", changes=False))
    assert c.calls[0]["kw"]["timeout"] == 7


def test_inventory_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NETMON_INVENTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert inventory.inventory_path() is None
    user = tmp_path / "config/netmon-rollback/hosts.yml"
    user.parent.mkdir(parents=True)
    user.write_text("sites: {}\n")
    assert inventory.inventory_path() == user
    (tmp_path / "hosts.yml").write_text("sites: {}\n")
    assert inventory.inventory_path() == Path("hosts.yml")
    (tmp_path / "env.yml").write_text("sites: {}\n")
    monkeypatch.setenv("NETMON_INVENTORY", str(tmp_path / "env.yml"))
    assert inventory.inventory_path() == tmp_path / "env.yml"
    (tmp_path / "given.yml").write_text("sites: {}\n")
    assert inventory.inventory_path(str(tmp_path / "given.yml")) == tmp_path / "given.yml"


def test_log_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv("NETMON_AUDIT_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert runner.default_log_dir() == tmp_path / "state/netmon-rollback"
    monkeypatch.setenv("NETMON_AUDIT_DIR", str(tmp_path / "audit"))
    assert runner.default_log_dir() == tmp_path / "audit"
    runner.set_log_dir(tmp_path / "flag")
    try:
        assert runner.default_log_dir() == tmp_path / "flag"
        assert AuditLog("s1", "verify").path.parent == tmp_path / "flag"
    finally:
        runner.set_log_dir(None)


def test_fleet_tasks_load_without_tests(tmp_path):
    """An install without tests/ (no lab) still has the fleet tasks; lab tasks say what is missing."""
    for item in ("tasks.py", "fabfile"):
        src = ROOT / item
        (tmp_path / item).symlink_to(src, target_is_directory=src.is_dir())
    out = run([BIN / "invoke", "--list"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {"rollback", "verify", "status", "backup"} <= set(out.stdout.split())
    lab = run([BIN / "invoke", "lab.status"], cwd=tmp_path)
    assert lab.returncode != 0 and "No module named 'tests'" in lab.stderr


def test_a_failed_rollback_still_writes_its_report_under_log_dir(netmon_rollback, tmp_path):
    """Nothing listens on loopback port 1: the connection is refused, the run exits 5 and names a
    report (in --log-dir) that says what to do next."""
    logs = tmp_path / "logs"
    out = run([netmon_rollback, "--log-dir", logs, "-t", "5", "-H", "127.0.0.1:1", "rollback", "--mode=clean", "--yes"],
              cwd=tmp_path, env={"NETMON_AUDIT_DIR": str(tmp_path / "not-here")})
    assert out.returncode == 5 and "cannot connect to 127.0.0.1" in out.stderr
    report = Path(out.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.parent == logs and report.is_file()
    html = report.read_text()
    assert "What to do next:" in html and "cannot connect to 127.0.0.1" in html
