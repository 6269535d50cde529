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
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from invoke.exceptions import CommandTimedOut, Failure, ThreadException, UnexpectedExit

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

    def _once(self, command: Command, log: bool = True) -> Outcome:
        timeout = command.timeout or self.timeout
        kwargs = dict(hide=True, warn=True, timeout=timeout, in_stream=False, echo=False, dry=False)
        if command.stdin is not None:
            kwargs["in_stream"] = _Stdin(command.stdin)
        if self.echo and log:
            self.echo_command(command)
        started = time.monotonic()
        try:
            result = self.c.run(command.cmd, **kwargs)
            out = Outcome(command.cmd, result.exited, result.stdout or "", result.stderr or "",
                          time.monotonic() - started)
        except CommandTimedOut as err:
            out = Outcome(command.cmd, 124, getattr(err.result, "stdout", "") or "",
                          f"timed out after {timeout:.0f}s", time.monotonic() - started)
            self.remote_seconds += out.duration
            self._log(command, out, kind="timeout")
            raise CommandFailed(
                f"step '{self.step}' on {self.site}: {command.what or 'command'} timed out after {timeout:.0f}s — "
                "check the server, then rerun (raise --timeout if it is just slow)"
            ) from None
        except UnexpectedExit as err:  # only if warn was ignored by a mock
            result = err.result
            out = Outcome(command.cmd, result.exited, result.stdout or "", result.stderr or "",
                          time.monotonic() - started)
        except Failure as err:
            result = err.result
            out = Outcome(command.cmd, getattr(result, "exited", 1) or 1, "", str(err), time.monotonic() - started)
        except (OSError, paramiko.SSHException, EOFError) as err:
            self._lost(command, started, err.__class__.__name__, str(err))
        except ThreadException as err:  # an I/O thread failed: the connection died, or a real bug
            if self.connection_lost():
                self._lost(command, started, "I/O thread stopped", str(err))
            raise CommandFailed(f"step '{self.step}' on {self.site}: {command.what or 'command'} failed in its "
                                f"I/O ({str(err).strip().splitlines()[-1] if str(err).strip() else 'no detail'})") from None
        if out.exited == -1 and self.connection_lost():
            # paramiko reports -1 when the channel closed without an exit status: the connection died
            self._lost(command, started, "no exit status", out.stderr)
        self.remote_seconds += out.duration
        if log:
            self._log(command, out, kind="change" if command.changes else "probe")
        return out

    def connection_lost(self) -> bool:
        """Did the SSH transport under ``c`` die (a plain Context or a mock has none)?"""
        transport = getattr(self.c, "transport", None)
        return transport is not None and transport_lost(transport)

    def _lost(self, command: Command, started: float, why: str, detail: str) -> None:
        out = Outcome(command.cmd, -1, "", detail, time.monotonic() - started)
        self.remote_seconds += out.duration
        self._log(command, out, kind="lost")
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
