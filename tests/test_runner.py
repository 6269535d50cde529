import json

import pytest
from invoke import MockContext, Result

from fabfile.commands import Command, Expect
from fabfile.errors import CommandFailed, ConnectError
from fabfile.runner import AuditLog, Runner, redact
from tests.fakes import FakeContext


def test_redact_longest_first():
    assert redact("token=abc123 pw=abc", ["abc", "abc123"]) == "token=*** pw=***"
    assert redact("", ["x"]) == ""


def test_dry_run_sends_probes_but_not_changes(tmp_path):
    c = FakeContext([("^echo probe", "ok\n", 0)])
    r = Runner(c, "s1", audit=AuditLog("s1", "t", tmp_path), dry_run=True)
    assert r.run(Command("echo probe", changes=False)).stdout == "ok\n"
    out = r.must(Command("rm -rf /root/netmon", changes=True))
    assert out.dry and c.commands == ["echo probe"]
    kinds = [json.loads(line)["kind"] for line in r.audit.path.read_text().splitlines()]
    assert kinds == ["probe", "dry-run"]


def test_audit_log_has_timing_exit_and_no_secrets(tmp_path):
    c = FakeContext([("curl", "", 22, "login failed for hunter2")])
    r = Runner(c, "s1", audit=AuditLog("s1", "verify", tmp_path), secrets=["hunter2"])
    r.run(Command("curl --data-binary @- x", stdin='{"password":"hunter2"}', stdin_note="login JSON", changes=False))
    text = r.audit.path.read_text()
    assert "hunter2" not in text
    rec = json.loads(text)
    assert rec["exit"] == 22 and rec["stdin"] == "login JSON" and "seconds" in rec and rec["site"] == "s1"
    # the secret went on stdin, not on the command line
    assert c.calls[0]["stdin"] == '{"password":"hunter2"}' and "hunter2" not in c.calls[0]["cmd"]
    assert "env" not in c.calls[0]["kw"]


def test_must_raises_with_step_and_check_message():
    c = MockContext(run={"false": Result(exited=3, stderr="boom\n"), "true": Result(stdout="bad")})
    r = Runner(c, "s1")
    r.step = "swap"
    with pytest.raises(CommandFailed, match=r"step 'swap' on s1: x failed \(exit 3\): boom"):
        r.must(Command("false", what="x"))
    with pytest.raises(CommandFailed, match="read back bad, expected good"):
        r.must(Command("true", check=Expect("stdout", "good")))


def test_poll_repeats_until_success():
    answers = iter([1, 1, 0])

    class C(FakeContext):
        def run(self, cmd, **kw):
            super().run(cmd, **kw)
            return Result(exited=next(answers), command=cmd)

    c = C([("^pg_isready$", "", 0)])
    out = Runner(c, "s1").must(Command("pg_isready", poll=10))
    assert out.ok and len(c.calls) == 3


class _Transport:
    def __init__(self, active):
        self.active = active

    def is_active(self):
        return self.active


def test_a_dead_connection_names_the_step_and_what_ran(tmp_path):
    c = FakeContext([("pg_dump", "", -1)])
    c.transport = _Transport(False)  # paramiko: channel closed without an exit status, transport gone
    r = Runner(c, "s1", audit=AuditLog("s1", "rollback", tmp_path))
    r.step = "safety-dump"
    with pytest.raises(ConnectError) as err:
        r.must(Command("docker exec netmon-db pg_dump > x", what="pg_dump netmon"))
    assert "lost during step 'safety-dump': pg_dump netmon" in err.value.message and "rerun" in err.value.message
    assert json.loads(r.audit.path.read_text())["kind"] == "lost"


def test_exit_minus_one_on_a_live_connection_is_an_ordinary_failure(tmp_path):
    c = FakeContext([("false", "", -1)])
    c.transport = _Transport(True)
    r = Runner(c, "s1")
    with pytest.raises(CommandFailed):
        r.must(Command("false"))

