import json
import os
import subprocess

import pytest
from invoke import Context, MockContext, Result
from invoke.exceptions import CommandTimedOut

from fabfile.commands import Command, Expect
from fabfile.errors import CommandFailed, ConnectError
from fabfile.runner import AuditLog, Runner, batch_script, batches, check_batch, redact, split_batch
from tests.fakes import BATCH, FakeContext, batch_reply, run_locally


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



# --- step scripts: a run of a step's commands in one remote script -----------------------------

def test_a_step_is_grouped_until_each_output_check_and_stdin_or_poll_run_alone():
    a, b, c, d, e, f, g = (Command(x, what=x) for x in "abcdefg")
    checked = Command("h", check=Expect("stdout", "ok"))
    fed = Command("i", stdin="secret")
    polled = Command("j", poll=10)
    groups = batches([a, b, checked, c, fed, d, e, polled, f, Command("k", check=Expect("http", "200")), g])
    assert [[x.cmd for x in group] for group in groups] == [["a", "b", "h"], ["c"], ["i"], ["d", "e"], ["j"],
                                                           ["f", "k"], ["g"]]
    assert batches([]) == [] and [[x.cmd for x in grp] for grp in batches([a, b])] == [["a", "b"]]
    with pytest.raises(ValueError, match="last in its batch"):
        check_batch([checked, a])  # the laptop must judge h before anything after it runs
    with pytest.raises(ValueError, match="on its own"):
        check_batch([a, polled])


def _three():
    return [Command("echo one", what="first"), Command("echo two", what="second", changes=False),
            Command("echo three", what="third")]


def test_a_script_gives_one_outcome_per_command_in_one_round_trip(tmp_path):
    c = FakeContext([(BATCH, batch_reply([("1", "e1", 0), ("two\nlines\n", "", 0), ("", "warn\n", 0)]), 0)])
    r = Runner(c, "s1", audit=AuditLog("s1", "rollback", tmp_path), timeout=100)
    outs = r.must_all([*_three()[:2], Command("echo three", what="third", timeout=7)])
    assert len(c.calls) == 1 and c.calls[0]["kw"]["timeout"] == 207  # the sum (the runner's default for None)
    assert [(o.cmd, o.stdout, o.stderr, o.exited) for o in outs] == [
        ("echo one", "1", "e1", 0), ("echo two", "two\nlines\n", "", 0), ("echo three", "", "warn\n", 0)]
    assert [round(o.duration, 2) for o in outs] == [0.5, 0.5, 0.5]  # the server's clock
    records = [json.loads(line) for line in r.audit.path.read_text().splitlines()]
    assert [(x["what"], x["kind"], x["cmd"], x["exit"]) for x in records] == [
        ("first", "change", "echo one", 0), ("second", "probe", "echo two", 0), ("third", "change", "echo three", 0)]
    assert len({x["batch"].split()[0] for x in records}) == 1 and records[2]["batch"].endswith(" 3/3")


def test_a_failing_middle_command_names_itself_and_stops_the_rest(tmp_path):
    c = FakeContext([(BATCH, batch_reply([("1", "", 0), ("", "psql: x\nERROR:  relation \"s3cret\" does not exist\n"
                                                            "CONTEXT: y\n", 3)]), 3)])
    r = Runner(c, "s1", audit=AuditLog("s1", "rollback", tmp_path), secrets=["s3cret"])
    r.step = "swap"
    with pytest.raises(CommandFailed) as err:
        r.must_all(_three())
    assert err.value.message == "step 'swap' on s1: second failed (exit 3): ERROR:  relation \"***\" does not exist"
    assert err.value.command.what == "second"
    records = [json.loads(line) for line in r.audit.path.read_text().splitlines()]
    assert [(x["what"], x["exit"]) for x in records] == [("first", 0), ("second", 3)]  # the third neither ran nor is logged


def test_an_output_check_ends_its_script_and_is_judged_as_must_judges_it():
    c = FakeContext([(BATCH, batch_reply([("", "", 0), ("bad\n", "", 0)]), 0)])
    with pytest.raises(CommandFailed, match="step 'preflight' on s1: read back bad, expected good"):
        Runner(c, "s1").must_all([Command("a"), Command("b", check=Expect("stdout", "good"))])


def test_a_missing_end_marker_is_a_failure_of_the_command_that_ran_never_a_success(tmp_path):
    for exited in (0, 137):
        c = FakeContext([(BATCH, batch_reply([("1", "", 0), None], exited=exited), 0)])
        r = Runner(c, "s1", audit=AuditLog("s1", "rollback", tmp_path / str(exited)))
        r.step = "restore-side"
        with pytest.raises(CommandFailed) as err:
            r.must_all(_three())
        assert err.value.message.startswith(f"step 'restore-side' on s1: second did not report its end: its script "
                                            f"stopped (exit {exited})")
        records = [json.loads(line) for line in r.audit.path.read_text().splitlines()]
        assert [(x["what"], x["kind"]) for x in records] == [("first", "change"), ("second", "cut")]
    # nothing at all came back (the script never started): the first command is the one that failed
    c = FakeContext([(BATCH, "", 255, "bash: fork failed\n")])
    with pytest.raises(CommandFailed, match="first did not report its end: its script stopped \\(exit 255\\): bash: "):
        Runner(c, "s1").must_all(_three())


def test_a_connection_lost_mid_script_is_lost_during_the_command_that_ran(tmp_path):
    c = FakeContext([(BATCH, batch_reply([("1", "", 0), None], exited=-1), 0)])
    c.transport = _Transport(False)
    r = Runner(c, "s1", audit=AuditLog("s1", "rollback", tmp_path))
    r.step = "safety-dump"
    with pytest.raises(ConnectError) as err:
        r.must_all(_three())
    assert "lost during step 'safety-dump': second (no exit status)" in err.value.message
    records = [json.loads(line) for line in r.audit.path.read_text().splitlines()]
    assert [(x["what"], x["kind"]) for x in records] == [("first", "change"), ("second", "lost")]


def test_a_timed_out_script_names_the_command_that_was_running(tmp_path):
    class Slow(FakeContext):
        def run(self, cmd, **kw):
            out, err, _ = batch_reply([("1", "", 0), None])(cmd, None)
            raise CommandTimedOut(Result(stdout=out, stderr=err, exited=-1, command=cmd), kw["timeout"])

    r = Runner(Slow(), "s1", audit=AuditLog("s1", "rollback", tmp_path), timeout=10)
    with pytest.raises(CommandFailed, match="second timed out after 30s"):
        r.must_all(_three())
    assert [json.loads(x)["kind"] for x in r.audit.path.read_text().splitlines()] == ["change", "timeout"]


SHELL_CASES = [
    Command("echo out; echo err >&2", what="both streams"),
    Command("printf '%s' \"it's $HOME\" 'a`b`c' '$(no)'; printf 'x\\n\\n' >&2", what="quotes, $, backticks"),
    Command("printf 'no newline at the end'", what="no newline"),
    Command("cd /; umask 077; X=1; exit 1", what="exit 1 allowed", ok_codes=(0, 1)),
    Command('[ "$(pwd)" != / ] && [ -z "${X:-}" ] && printf "line 1\\nline 2\\n" && echo "multi\nline command"',
            what="own shell each"),
    Command("cat <<'EOF'\n$NOT `expanded`\nEOF", what="here-doc"),
    Command("echo partial; echo 'ERROR: it broke' >&2; exit 3", what="fails with 3"),
    Command("echo never", what="never runs"),
]


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_a_step_script_run_by_a_real_shell_splits_back_exactly(shell):
    mark = "0123abcd4567ef89"
    script = batch_script(SHELL_CASES, mark)
    done = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=30, cwd="/tmp")
    assert done.returncode == 3  # it stopped at the first exit status its command does not allow
    outs = split_batch(mark, SHELL_CASES, done.stdout, done.stderr)
    home = os.environ["HOME"]
    assert [(o.stdout, o.stderr, o.exited) for o in outs] == [
        ("out\n", "err\n", 0),
        (f"it's {home}a`b`c$(no)", "x\n\n", 0),
        ("no newline at the end", "", 0),
        ("", "", 1),
        ("line 1\nline 2\nmulti\nline command\n", "", 0),
        ("$NOT `expanded`\n", "", 0),
        ("partial\n", "ERROR: it broke\n", 3),
    ]
    assert all(0 <= o.duration < 10 for o in outs)


def test_a_real_local_script_announces_its_first_command_as_its_output_arrives(tmp_path):
    """The step's journal record is first: the step is announced when the server has written it,
    while the rest still runs (here the second command waits, bounded, for the announcement)."""
    flag = tmp_path / "announced"
    r = Runner(Context(), "local", timeout=30)
    second = f"for i in $(seq 100); do [ -e {flag} ] && echo seen && exit 0; sleep 0.1; done; exit 1"
    outs = r.must_all([Command(f"echo '{{\"x\": 1}}' >> {tmp_path}/journal"), Command(second, what="waits")],
                      first_done=flag.touch)
    assert [o.stdout for o in outs] == ["", "seen\n"] and (tmp_path / "journal").read_text() == '{"x": 1}\n'


def test_a_marker_that_cannot_be_written_ends_the_script(tmp_path):
    """The laptop gone (sshd closed the channel): the next marker write fails and nothing after it runs."""
    script = batch_script([Command("true"), Command(f"touch {tmp_path}/ran")], "feedfeedfeedfeed")
    for ignore in ("", "trap '' PIPE\n"):  # SIGPIPE kills it; where it is ignored, the write error ends it
        read, write = os.pipe()
        os.close(read)  # nobody reads stdout any more
        try:
            done = subprocess.run(["bash", "-c", ignore + script], stdout=write, stderr=subprocess.DEVNULL, timeout=30)
        finally:
            os.close(write)
        assert done.returncode in (-13, 141) and not (tmp_path / "ran").exists()


def test_a_script_may_end_with_the_one_command_fed_stdin_which_stays_off_the_script(tmp_path):
    """A step's journal record may ride before a command fed stdin: the stdin goes on the channel, never
    into the script's text, and only that command reads it (the others read /dev/null)."""
    c = FakeContext([(BATCH, run_locally, 0)])
    outs = Runner(c, "s1").must_all([Command("cat; echo first", what="lead"),
                                     Command("cat", what="fed", stdin="pass w0rd\n", stdin_note="a secret")])
    assert [o.stdout for o in outs] == ["first\n", "pass w0rd\n"]
    assert c.calls[0]["stdin"] == "pass w0rd\n" and "w0rd" not in c.calls[0]["cmd"]
    with pytest.raises(ValueError, match="last in its batch"):
        check_batch([Command("cat", stdin="x"), Command("true")])
