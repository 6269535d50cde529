"""The journal on the server: what every run planned and did, so a rerun reads progress instead of
guessing it from database names (as pgBackRest keeps backup.info and Capistrano its releases).

``backup_dir/netmon_rollback_journal.jsonl``, one JSON object a line, appended by each run while
it holds the server's lock (and the same lines to a local copy beside the run's audit log,
``journal_<site>_<UTC>_<pid>_<task>.jsonl``):

- ``start``: run id, task, mode, who (operator, laptop, pid), when, and the whole plan as data;
- ``step``: a step's ``started`` / ``done`` (with its seconds) / ``failed`` (with the error);
- ``copy``: a copy the run made (path, size, sha256); ``kept``: a database kept instead of dropped;
- ``end``: the plan ran to its end (``replanned`` when the state is probed again and a new plan follows).

A run with a ``start`` and no ``end`` stopped part-way: the next run resumes it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .commands import Command, q
from .facts.host import JOURNAL


def journal_path(backup_dir: str) -> str:
    return f"{backup_dir.rstrip('/')}/{JOURNAL}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def lines(records: list[dict]) -> str:
    """Journal records as the journal holds them: one JSON object a line."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def append(runner, backup_dir: str, records: list[dict]) -> None:
    """Append ``records`` to the server's journal, and to its local copy beside the run's audit log
    (the log directory keeps every run's plan and steps, whatever becomes of the server)."""
    if runner.audit is not None and not runner.dry_run:
        runner.audit.copy_journal(lines(records))
    runner.must(append_command(backup_dir, records))


def inline_command(runner, backup_dir: str | None, records: list[dict]) -> Command | None:
    """The append of ``records`` as a command to run first in a step's script (no round trip of its
    own), their local copy written now as :func:`append` does; None when there is no journal or they
    are too big to go inline (then :func:`append` them)."""
    if not backup_dir or runner.dry_run:
        return None
    command = append_command(backup_dir, records)
    if command.stdin is not None:
        return None
    if runner.audit is not None:
        runner.audit.copy_journal(lines(records))
    return command


#: records up to this size go in the command itself; bigger ones (a start record's plan) on stdin
INLINE_MAX = 16 * 1024


def append_command(backup_dir: str, records: list[dict]) -> Command:
    """Append ``records``. Inline where they are small: sshd opens a session's input window only
    when it answers the exec, so a command with stdin costs a second round trip, and a run appends
    once a step. Records hold no secrets (the commands they name never do); a command line stays
    far below Linux's 128 KiB limit for one argument."""
    text = lines(records)
    events = ", ".join(f"{r['event']}{' ' + str(r['i']) if 'i' in r else ''}" for r in records)
    path = q(journal_path(backup_dir))
    if len(text.encode()) <= INLINE_MAX:
        return Command(f"umask 077; printf %s {q(text)} >> {path}", what=f"journal: {events}", timeout=60)
    return Command(f"umask 077; cat >> {path}", what=f"journal: {events}", stdin=text,
                   stdin_note=f"{len(records)} journal record(s)")


@dataclass
class RunRecord:
    """One run as the journal tells it."""

    run: str
    task: str
    mode: str
    who: dict
    at: str
    plan: dict
    done: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    copies: list[dict] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    ended: bool = False
    replanned: bool = False

    @property
    def next_step(self) -> int:
        """1-based index of the first step not done."""
        total = len(self.plan.get("steps", []))
        return next((i for i in range(1, total + 1) if i not in self.done), total + 1)

    @property
    def total(self) -> int:
        return len(self.plan.get("steps", []))

    def describe(self) -> str:
        who = self.who or {}
        when = self.at[11:16] if len(self.at) >= 16 else self.at
        nxt = self.next_step
        last = nxt - 1
        what = f"stopped after step {last} of {self.total}" if last else f"stopped before its first step ({self.total} planned)"
        if nxt in self.failed:
            what += f" (step {nxt} failed: {self.failed[nxt][:160]})"
        elif nxt in self.started:
            what += f" (step {nxt} had started)"
        return (f"an earlier {self.task} run (--mode={self.mode}, pid {who.get('pid', '?')} on {who.get('laptop', '?')}, "
                f"{when} UTC) {what}")


def parse(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a run that died mid-write
        if isinstance(rec, dict) and "event" in rec:
            out.append(rec)
    return out


def runs(lines: list[str]) -> list[RunRecord]:
    """Every plan segment the journal holds, oldest first (a replanned run has one per plan)."""
    found: list[RunRecord] = []
    for rec in parse(lines):
        event = rec["event"]
        if event == "start":
            found.append(RunRecord(rec.get("run", "?"), rec.get("task", "?"), rec.get("mode", "?"), rec.get("who", {}),
                                   rec.get("at", ""), rec.get("plan", {})))
            continue
        current = next((r for r in reversed(found) if r.run == rec.get("run")), None)
        if current is None:
            continue
        if event == "step":
            i = int(rec.get("i", 0))
            {"started": current.started, "done": current.done}.get(rec.get("state"), []).append(i)
            if rec.get("state") == "failed":
                current.failed[i] = rec.get("error", "")
        elif event == "copy":
            current.copies.append({k: rec.get(k) for k in ("what", "path", "size", "sha256")})
        elif event == "kept":
            current.kept.append(rec.get("db", ""))
        elif event == "end":
            current.ended = True
            current.replanned = bool(rec.get("replanned"))
    return found


def unfinished(lines: list[str]) -> RunRecord | None:
    """The last plan segment, if it never reached its end: the run to resume."""
    found = runs(lines)
    return found[-1] if found and not found[-1].ended else None


def kept_databases(lines: list[str]) -> list[str]:
    return [d for r in runs(lines) for d in r.kept]
