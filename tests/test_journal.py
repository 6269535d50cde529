import json
import subprocess

from fabfile import journal
from fabfile.commands import Command
from fabfile.plan import Plan, Step, apply_plan
from fabfile.runner import AuditLog, Runner
from tests.fakes import BATCH, FakeContext, run_locally


def lines(*records):
    return [json.dumps(r) for r in records]


START = {"run": "r1", "event": "start", "task": "rollback", "mode": "restore", "at": "2026-12-01T10:32:05.000+00:00",
         "who": {"pid": 4821, "laptop": "lt7"}, "plan": {"steps": [{"key": k} for k in ("a", "b", "c", "d")]}}


def test_a_run_without_its_end_is_resumed_after_its_last_done_step():
    text = lines(START, {"run": "r1", "event": "step", "i": 1, "state": "started"},
                 {"run": "r1", "event": "step", "i": 1, "state": "done"},
                 {"run": "r1", "event": "copy", "what": "safety-dump", "path": "/root/x.dump", "size": 5, "sha256": "ab"},
                 {"run": "r1", "event": "step", "i": 2, "state": "started"}) + ['{"run": "r1", "event": "st']  # cut
    run = journal.unfinished(text)
    assert run is not None and run.next_step == 2 and run.copies[0]["path"] == "/root/x.dump"
    assert run.describe() == ("an earlier rollback run (--mode=restore, pid 4821 on lt7, 10:32 UTC) stopped after "
                              "step 1 of 4 (step 2 had started)")


def test_a_failed_step_is_named_and_a_finished_run_is_not_resumed():
    failed = lines(START, {"run": "r1", "event": "step", "i": 1, "state": "started"},
                   {"run": "r1", "event": "step", "i": 1, "state": "failed", "error": "step 'a' on s1: boom"})
    assert "(step 1 failed: step 'a' on s1: boom)" in journal.unfinished(failed).describe()
    assert journal.unfinished(failed + lines({"run": "r1", "event": "end"})) is None
    kept = lines(START, {"run": "r1", "event": "kept", "db": "netmon_old_1"}, {"run": "r1", "event": "end"})
    assert journal.kept_databases(kept) == ["netmon_old_1"]


def test_a_replanned_run_resumes_its_latest_plan():
    second = {**START, "plan": {"steps": [{"key": "x"}, {"key": "y"}]}}
    text = lines(START, {"run": "r1", "event": "end", "replanned": True}, second,
                 {"run": "r1", "event": "step", "i": 1, "state": "done"})
    run = journal.unfinished(text)
    assert [s["key"] for s in run.plan["steps"]] == ["x", "y"] and run.next_step == 2


def test_small_records_go_in_the_command_and_big_ones_on_stdin(tmp_path):
    """Written by a real shell: quotes, newlines and $ in a record arrive as they were."""
    odd = {"run": "r1", "event": "step", "i": 2, "state": "failed", "error": "it's $HOME `x` \\ \"q\"\nnext"}
    small = journal.append_command(str(tmp_path), [odd, {"run": "r1", "event": "end"}])
    assert small.stdin is None and small.cmd.startswith("umask 077; printf %s ")
    big = journal.append_command(str(tmp_path), [{"run": "r1", "event": "start", "plan": {"x": "y" * journal.INLINE_MAX}}])
    assert big.cmd == f"umask 077; cat >> {tmp_path}/netmon_rollback_journal.jsonl" and '"start"' in big.stdin
    for cmd in (small, big):
        subprocess.run(["sh", "-c", cmd.cmd], input=cmd.stdin, text=True, check=True)
    written = journal.parse((tmp_path / "netmon_rollback_journal.jsonl").read_text().splitlines())
    assert written[0] == odd and [r["event"] for r in written] == ["step", "end", "start"]
    assert oct((tmp_path / "netmon_rollback_journal.jsonl").stat().st_mode & 0o777) == "0o600"


def test_each_run_keeps_a_local_copy_of_its_journal_records_beside_its_audit_log(tmp_path):
    """What the run sends to the server's journal (its plan, each step's start and end) also goes to
    ``journal_<site>_<UTC>_<pid>_<task>.jsonl`` beside ``audit_<same>.jsonl``; a dry run writes neither."""
    c = FakeContext([(r"^umask 077; (cat|printf %s) ", run_locally, 0), (BATCH, run_locally, 0)])  # as the server's shell
    server = tmp_path / "server"
    server.mkdir()
    runner = Runner(c, "s1", audit=AuditLog("s1", "rollback", tmp_path))
    plan = Plan("s1", "clean", "20261202_000000", [Step("one", "the first step", [Command("echo one")])])
    journal.append(runner, str(server), [{"run": "r1", "event": "start", "plan": plan.to_dict()}])
    apply_plan(runner, plan, str(server), "r1")
    local = runner.audit.journal_path
    assert local == tmp_path / runner.audit.path.name.replace("audit_", "journal_", 1) and local.exists()
    assert [p.name for p in tmp_path.glob("audit_*.jsonl")] == [runner.audit.path.name]  # not taken for an audit log
    assert local.read_text() == (server / "netmon_rollback_journal.jsonl").read_text()  # the same lines
    records = [json.loads(line) for line in local.read_text().splitlines()]
    assert records[0]["plan"]["steps"][0]["commands"][0]["cmd"] == "echo one"
    assert [(r["event"], r.get("state")) for r in records[1:]] == [("step", "started"), ("step", "done")]
    dry = Runner(FakeContext([]), "s1", audit=AuditLog("s2", "rollback", tmp_path), dry_run=True)
    apply_plan(dry, plan, str(server), "r2")
    assert not dry.audit.journal_path.exists()
