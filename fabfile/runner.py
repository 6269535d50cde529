"""The one place remote commands run.

- probes (``Command.changes == False``) always run; changes are printed, not sent, under dry-run;
- every command is timed and written, with its exit status, to a local JSON-lines audit log
  (audit_<site>_<UTC time>_<pid>_<task>.jsonl in :func:`default_log_dir`), secrets redacted, stdin never logged;
- Fabric's ``-e/--echo`` prints each command as it runs, secrets masked (invoke's own echo is off:
  it would print them unmasked);
- every command has a timeout; a lost connection names the step it broke.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets as tokens
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from invoke.exceptions import CommandTimedOut, Failure, ThreadException, UnexpectedExit
from invoke.watchers import StreamWatcher

from .commands import Command
from .connection import transport_lost
from .errors import CommandFailed, ConnectError
from .expect import judge
from .report import Printer

REDACTED = "***"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def redact(text: str, secrets) -> str:
    """``text`` with every secret (longest first) replaced by ***."""
    if not text:
        return text
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


AUDIT_DIR_ENV = "NETMON_AUDIT_DIR"
_log_dir: Path | None = None


def set_log_dir(path: str | Path | None) -> None:
    """``--log-dir``: where this process writes audit logs and reports (None: back to the default)."""
    global _log_dir  # noqa: PLW0603 - one process-wide choice, made once at the command line
    _log_dir = Path(path).expanduser() if path else None


def default_log_dir() -> Path:
    """--log-dir, else $NETMON_AUDIT_DIR, else $XDG_STATE_HOME/netmon-rollback (default
    ~/.local/state/netmon-rollback): never beside the code, which may be a read-only site-packages."""
    if _log_dir is not None:
        return _log_dir
    env = os.environ.get(AUDIT_DIR_ENV)
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "netmon-rollback"


class AuditLog:
    """Append-only JSON lines for one site and one run. Thread-safe; secrets redacted."""

    def __init__(self, site: str, task: str, directory: Path | None = None, secrets=None):
        directory = directory or default_log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"audit_{_SAFE.sub('_', site)}_{stamp}_{os.getpid()}_{_SAFE.sub('_', task)}.jsonl"
        self.path = directory / name
        self.secrets = secrets if secrets is not None else []
        self._lock = threading.Lock()

    def write(self, **record) -> None:
        record.setdefault("ts", datetime.now(UTC).isoformat(timespec="milliseconds"))
        line = redact(json.dumps(record, default=str), self.secrets)
        with self._lock, open(self.path, "a") as fh:
            fh.write(line + "\n")

    @property
    def journal_path(self) -> Path:
        """The local copy of the run's journal records, beside the audit log and named as it is
        (``journal_<site>_<UTC>_<pid>_<task>.jsonl``: the audit logs' ``audit_*.jsonl`` stay audit logs)."""
        return self.path.with_name("journal_" + self.path.name.removeprefix("audit_"))

    def copy_journal(self, text: str) -> None:
        """Append journal lines (as sent to the server) to the local copy, secrets redacted."""
        with self._lock, open(self.journal_path, "a") as fh:
            fh.write(redact(text, self.secrets))


class _Stdin(io.StringIO):
    """invoke copies a non-terminal in_stream one character per read with a 10 ms nap between
    reads (about 100 bytes/s); hand it everything left in one read instead."""

    def read(self, size: int | None = -1) -> str:
        return super().read(-1)


@dataclass
class Outcome:
    cmd: str
    exited: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    dry: bool = False

    @property
    def ok(self) -> bool:
        return self.exited == 0


class Runner:
    """Runs :class:`Command` objects on context ``c`` (a Fabric Connection, an invoke Context, or a
    MockContext) for one site."""

    def __init__(self, c, site: str, printer: Printer | None = None, audit: AuditLog | None = None,
                 dry_run: bool = False, timeout: float = 1800, secrets: list[str] | None = None,
                 echo: bool = False):
        self.c = c
        self.site = site
        self.printer = printer or Printer(site, quiet=True)
        self.secrets: list[str] = secrets if secrets is not None else []
        self.audit = audit
        if self.audit is not None:
            self.audit.secrets = self.secrets
        run_config = getattr(getattr(c, "config", None), "run", None)
        # fab --dry would make every probe return empty output: it means the project's own dry run
        self.dry_run = dry_run or bool(getattr(run_config, "dry", False))
        self.timeout = timeout
        self.echo = echo or bool(getattr(run_config, "echo", False))
        self.step = "preflight"
        self.remote_seconds = 0.0

    def add_secret(self, value: str | None) -> None:
        if value and value not in self.secrets:
            self.secrets.append(value)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    # --- running ---------------------------------------------------------------------------

    def run(self, command: Command | str, **kw) -> Outcome:
        """Run ``command``; never raises for an exit status (see :meth:`must`)."""
        if isinstance(command, str):
            command = Command(command, changes=kw.pop("changes", False), **kw)
        if command.changes and self.dry_run:
            self._log(command, Outcome(command.cmd, 0, dry=True), kind="dry-run")
            return Outcome(command.cmd, 0, dry=True)
        if command.poll:
            return self._poll(command)
        return self._once(command)

    def must(self, command: Command | str, **kw) -> Outcome:
        """Run ``command``; raise :class:`CommandFailed` unless it succeeded and its check passed."""
        if isinstance(command, str):
            command = Command(command, changes=kw.pop("changes", False), **kw)
        out = self.run(command)
        if out.dry:
            return out
        problem = self.judge(command, out)
        if problem:
            raise CommandFailed(f"step '{self.step}' on {self.site}: {problem}")
        return out

    def judge(self, command: Command, out: Outcome) -> str | None:
        if out.exited not in command.ok_codes:
            lines = (out.stderr or out.stdout or "").strip().splitlines()
            # psql's ERROR line says what went wrong; the CONTEXT lines after it say where
            errors = [ln for ln in lines if ln.startswith(("ERROR:", "FATAL:", "psql: error:"))]
            tail = self.redact((errors or lines)[-1]) if lines else ""
            what = command.what or self.redact(command.cmd)[:120]
            return f"{what} failed (exit {out.exited}){': ' + tail[:300] if tail else ''}"
        if command.check is not None:
            problem = judge(command.check, out)
            if problem:
                return self.redact(problem)
        return None

    def echo_command(self, command: Command) -> None:
        self.printer.line(f"    $ {self.redact(command.cmd)}")

    def _poll(self, command: Command) -> Outcome:
        if self.echo:
            self.echo_command(command)
        deadline = time.monotonic() + float(command.poll)
        attempts = 0
        started = time.monotonic()
        while True:
            attempts += 1
            out = self._once(command, log=False)
            if out.exited in command.ok_codes and (command.check is None or not judge(command.check, out)):
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)  # each attempt is a round trip already; the downtime ends at the first 200
        out.duration = time.monotonic() - started
        self._log(command, out, kind="change" if command.changes else "probe", attempts=attempts)
        return out

    def _exec(self, cmd: str, stdin: str | None, timeout: float, watchers=()) -> Outcome:
        """Send one command line; its outcome, or :class:`_TimedOut` / :class:`_Lost` / :class:`_IOFailed`
        (each with what output arrived before it)."""
        kwargs = dict(hide=True, warn=True, timeout=timeout, in_stream=False, echo=False, dry=False)
        if stdin is not None:
            kwargs["in_stream"] = _Stdin(stdin)
        if watchers:
            kwargs["watchers"] = list(watchers)
        started = time.monotonic()
        try:
            result = self.c.run(cmd, **kwargs)
            out = Outcome(cmd, result.exited, result.stdout or "", result.stderr or "", time.monotonic() - started)
        except CommandTimedOut as err:
            raise _TimedOut(Outcome(cmd, 124, getattr(err.result, "stdout", "") or "",
                                    getattr(err.result, "stderr", "") or "", time.monotonic() - started)) from None
        except UnexpectedExit as err:  # only if warn was ignored by a mock
            result = err.result
            out = Outcome(cmd, result.exited, result.stdout or "", result.stderr or "", time.monotonic() - started)
        except Failure as err:
            result = err.result
            out = Outcome(cmd, getattr(result, "exited", 1) or 1, "", str(err), time.monotonic() - started)
        except (OSError, paramiko.SSHException, EOFError) as err:
            raise _Lost(err.__class__.__name__, str(err), Outcome(cmd, -1, "", str(err), time.monotonic() - started)) from None
        except ThreadException as err:  # an I/O thread failed: the connection died, or a real bug
            out = Outcome(cmd, -1, "", str(err), time.monotonic() - started)
            if self.connection_lost():
                raise _Lost("I/O thread stopped", str(err), out) from None
            raise _IOFailed(str(err).strip().splitlines()[-1] if str(err).strip() else "no detail", out) from None
        if out.exited == -1 and self.connection_lost():
            # paramiko reports -1 when the channel closed without an exit status: the connection died
            raise _Lost("no exit status", out.stderr, out)
        return out

    def _once(self, command: Command, log: bool = True) -> Outcome:
        timeout = command.timeout or self.timeout
        if self.echo and log:
            self.echo_command(command)
        started = time.monotonic()
        try:
            out = self._exec(command.cmd, command.stdin, timeout)
        except _TimedOut as err:
            self._timed_out(command, Outcome(command.cmd, 124, err.out.stdout, f"timed out after {timeout:.0f}s",
                                             err.out.duration), timeout)
        except _Lost as err:
            self._lost(command, started, err.why, err.detail)
        except _IOFailed as err:
            raise CommandFailed(f"step '{self.step}' on {self.site}: {command.what or 'command'} failed in its "
                                f"I/O ({err.detail})") from None
        self.remote_seconds += out.duration
        if log:
            self._log(command, out, kind="change" if command.changes else "probe")
        return out

    def _timed_out(self, command: Command, out: Outcome, timeout: float, **extra) -> None:
        self.remote_seconds += out.duration
        self._log(command, out, kind="timeout", **extra)
        raise CommandFailed(
            f"step '{self.step}' on {self.site}: {command.what or 'command'} timed out after {timeout:.0f}s — "
            "check the server, then rerun (raise --timeout if it is just slow)"
        ) from None

    # --- step scripts: consecutive commands in one remote script --------------------------

    def must_all(self, commands: list[Command], first_done: Callable[[], None] | None = None) -> list[Outcome]:
        """Run ``commands`` (one group of :func:`batches`) as one remote script, one round trip instead
        of one each, and judge each exactly as :meth:`must` does: the first that fails is named, each
        that ran has its own audit record, those after it neither ran nor are logged. ``first_done`` is
        called once the first command has succeeded on the server (seen as its output arrives): a
        step's journal record rides first, and the step is announced only once it is written.

        If the laptop dies mid-script, the script goes on without it until its next marker write, which
        fails (SIGPIPE once sshd closed the channel) and ends it; and even a command that still ran
        then is one the laptop would have run too: a group ends at its first command whose output the
        laptop judges, so no command in it waits on a judgement only the laptop could make."""
        if self.dry_run or (len(commands) == 1 and first_done is None):
            outs = [self.must(c) for c in commands]
            if first_done is not None:
                first_done()
            return outs
        check_batch(commands)
        token = tokens.token_hex(8)
        timeout = sum(c.timeout or self.timeout for c in commands)
        stdin = next((c.stdin for c in commands if c.stdin is not None), None)
        if self.echo:
            for c in commands:
                self.echo_command(c)
        watcher = _FirstDone(token, commands[0].ok_codes, first_done)
        started = time.monotonic()
        failure: _Lost | _TimedOut | _IOFailed | None = None
        try:
            raw = self._exec(batch_script(commands, token), stdin, timeout, watchers=[watcher] if first_done else ())
        except (_TimedOut, _Lost, _IOFailed) as err:
            raw, failure = err.out, err
        outs = split_batch(token, commands, raw.stdout, raw.stderr)
        if failure is None or isinstance(failure, _IOFailed) or len(outs) == len(commands):
            self.remote_seconds += raw.duration  # (a timeout and a lost connection count theirs below)
        for k, (command, out) in enumerate(zip(commands, outs, strict=False)):
            self._log(command, out, kind="change" if command.changes else "probe", batch=f"{token} {k + 1}/{len(commands)}")
            if k == 0:
                watcher.fire(out.exited)
            problem = self.judge(command, out)
            if problem:
                raise _failed(f"step '{self.step}' on {self.site}: {problem}", command, problem)
        if len(outs) == len(commands):
            return outs
        # the script stopped before the command that was running reported its end: never a success
        running = commands[len(outs)]
        stdout, stderr = after_start(token, len(outs), raw.stdout, raw.stderr)
        batch = f"{token} {len(outs) + 1}/{len(commands)}"
        if isinstance(failure, _TimedOut):
            self._timed_out(running, Outcome(running.cmd, 124, stdout, f"timed out after {timeout:.0f}s", raw.duration),
                            timeout, batch=batch)
        if isinstance(failure, _Lost):
            self._lost(running, started, failure.why, failure.detail, batch=batch)
        if isinstance(failure, _IOFailed):
            self._log(running, Outcome(running.cmd, -1, stdout, failure.detail, raw.duration), kind="cut", batch=batch)
            problem = f"{running.what or 'command'} failed in its I/O ({failure.detail})"
            raise _failed(f"step '{self.step}' on {self.site}: {problem}", running, problem)
        self._log(running, Outcome(running.cmd, raw.exited, stdout, stderr, raw.duration), kind="cut", batch=batch)
        before = raw.stderr if f"@@{token}" not in raw.stderr else ""  # the script did not even start
        lines = (stderr or stdout or before).strip().splitlines()
        last = self.redact(lines[-1])[:300] if lines else ""
        problem = (f"{running.what or self.redact(running.cmd)[:120]} did not report its end: its script stopped "
                   f"(exit {raw.exited}){': ' + last if last else ''}")
        raise _failed(f"step '{self.step}' on {self.site}: {problem}", running, problem)

    def connection_lost(self) -> bool:
        """Did the SSH transport under ``c`` die (a plain Context or a mock has none)?"""
        transport = getattr(self.c, "transport", None)
        return transport is not None and transport_lost(transport)

    def _lost(self, command: Command, started: float, why: str, detail: str, **extra) -> None:
        out = Outcome(command.cmd, -1, "", detail, time.monotonic() - started)
        self.remote_seconds += out.duration
        self._log(command, out, kind="lost", **extra)
        what = f": {command.what}" if command.what else ""
        raise ConnectError(
            f"connection to {self.site} lost during step '{self.step}'{what} ({why}) — "
            "nothing after it ran; rerun the same command to finish"
        ) from None

    def _log(self, command: Command, out: Outcome, kind: str, **extra) -> None:
        if self.audit is None:
            return
        self.audit.write(
            site=self.site, step=self.step, kind=kind, what=command.what,
            cmd=command.cmd, stdin=(command.stdin_note or f"{len(command.stdin)} bytes") if command.stdin is not None else None,
            exit=out.exited, seconds=round(out.duration, 3),
            stdout_bytes=len(out.stdout or ""),
            stderr_tail=(out.stderr or "")[-400:] or None,
            **extra,
        )


# --- step scripts -----------------------------------------------------------------------------

class _TimedOut(Exception):
    def __init__(self, out: Outcome):
        self.out = out


class _Lost(Exception):
    def __init__(self, why: str, detail: str, out: Outcome):
        self.why, self.detail, self.out = why, detail, out


class _IOFailed(Exception):
    def __init__(self, detail: str, out: Outcome):
        self.detail, self.out = detail, out


def _failed(message: str, command: Command, problem: str) -> CommandFailed:
    """CommandFailed that also says which command of a script failed (a step's journal record may be it)."""
    err = CommandFailed(message)
    err.command, err.problem = command, problem
    return err


def batches(commands: list[Command]) -> list[list[Command]]:
    """A step's commands in the groups that run as one script each: a maximal run of consecutive
    commands without stdin or ``poll``, ending with (and including) its first command whose output
    is judged (``check``): that judgement is the laptop's, and it gates what follows. A command with
    stdin or ``poll`` is a group of its own."""
    groups: list[list[Command]] = []
    current: list[Command] = []
    for command in commands:
        if command.stdin is not None or command.poll:
            if current:
                groups.append(current)
                current = []
            groups.append([command])
            continue
        current.append(command)
        if command.check is not None:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def check_batch(commands: list[Command]) -> None:
    """What :func:`batch_script` refuses: a poll (it repeats from the laptop), an output check before the
    last command (the laptop judges it before anything after it may run), stdin for more than one, or
    stdin anywhere but the last command."""
    for k, c in enumerate(commands):
        last = k == len(commands) - 1
        if c.poll or (c.check is not None and not last) or (c.stdin is not None and not last):
            raise ValueError(f"not a batch: command {k + 1} ({c.what or c.cmd[:60]}) must run "
                             + ("on its own" if c.poll else "last in its batch"))


def batch_script(commands: list[Command], token: str) -> str:
    """One shell script for ``commands``: each in a subshell (its own exit status; its ``cd``, ``umask``
    and ``exit`` stay its own), between markers on stdout and on stderr that carry ``token`` (random a
    run: no output can forge them), the server's start and end time and the exit status; it stops at
    the first exit status not in the command's ``ok_codes``. A marker that cannot be written (sshd
    closed the channel: SIGPIPE, or EPIPE where it is ignored) ends the script. Commands other than the
    one fed stdin (the last, if any) read /dev/null. The commands are the plan's own text, quoted as
    they are; nothing of a stdin goes in."""
    fed = commands[-1].stdin is not None
    parts = []
    for k, c in enumerate(commands):
        codes = "|".join(str(int(code)) for code in c.ok_codes) or "0"
        redirect = " </dev/null" if fed and c.stdin is None else ""
        parts.append(
            f"printf '@@{token} s {k} %s\\n' \"$(date +%s.%N)\" || exit 141\n"
            f"printf '@@{token} s {k}\\n' >&2 || exit 141\n"
            f"(\n{c.cmd if c.cmd.strip() else ':'}\n){redirect}\n"
            "rc=$?\n"
            f"printf '\\n@@{token} e {k} %s %s\\n' \"$rc\" \"$(date +%s.%N)\" || exit 141\n"
            f"printf '\\n@@{token} e {k}\\n' >&2 || exit 141\n"
            f"case $rc in {codes}) ;; *) exit \"$rc\" ;; esac\n")
    return "".join(parts)


def _seconds(start: str, end: str) -> float | None:
    try:
        return max(0.0, float(end) - float(start))
    except ValueError:
        return None  # a date without %N


def split_batch(token: str, commands: list[Command], stdout: str, stderr: str) -> list[Outcome]:
    """The outcomes of the commands of a :func:`batch_script` that reported their end, in order: each
    its own stdout, stderr, exit status and (server clock) duration. Shorter than ``commands`` when the
    script stopped: after a failure, or cut (killed, the connection lost)."""
    outs: list[Outcome] = []
    pos_out = pos_err = 0
    for k, c in enumerate(commands):
        start = re.compile(rf"(?:^|\n)@@{token} s {k} (\S*)\n").search(stdout, pos_out)
        start_err = re.compile(rf"(?:^|\n)@@{token} s {k}\n").search(stderr, pos_err)
        if not start or not start_err:
            break
        end = re.compile(rf"\n@@{token} e {k} (-?\d+) (\S*)\n").search(stdout, start.end())
        end_err = re.compile(rf"\n@@{token} e {k}\n").search(stderr, start_err.end())
        if not end or not end_err:
            break
        seconds = _seconds(start.group(1), end.group(2))
        outs.append(Outcome(c.cmd, int(end.group(1)), stdout[start.end():end.start()],
                            stderr[start_err.end():end_err.start()], seconds if seconds is not None else 0.0))
        pos_out, pos_err = end.end() - 1, end_err.end() - 1  # the next start marker begins after this newline
    return outs


def after_start(token: str, k: int, stdout: str, stderr: str) -> tuple[str, str]:
    """What command ``k`` of a stopped script printed after its start marker (nothing if it never started)."""
    found = []
    for text, pattern in ((stdout, rf"(?:^|\n)@@{token} s {k} \S*\n"), (stderr, rf"(?:^|\n)@@{token} s {k}\n")):
        starts = list(re.finditer(pattern, text))
        found.append(text[starts[-1].end():] if starts else "")
    return found[0], found[1]


class _FirstDone(StreamWatcher):
    """Calls ``callback`` once, the moment the first command's end marker with a good exit status
    arrives on stdout (invoke hands watchers each stream as it grows); :meth:`fire` for a context
    that has no watchers (a mock), once the script has returned."""

    def __init__(self, token: str, ok_codes, callback):
        super().__init__()
        self.pattern = re.compile(rf"\n@@{token} e 0 (-?\d+) ")
        self.ok_codes, self.callback, self.done = ok_codes, callback, False

    def submit(self, stream: str):
        if not self.done and self.callback is not None:
            m = self.pattern.search(stream)
            if m:
                self.fire(int(m.group(1)))
        return []

    def fire(self, exited: int) -> None:
        if not self.done and self.callback is not None and exited in self.ok_codes:
            self.done = True
            self.callback()
