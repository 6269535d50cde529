"""One run per server: a lock held on the server for as long as the run lives.

The run opens one SSH channel of its own that takes ``flock`` on ``backup_dir/.netmon-rollback.lock``
and keeps it while the laptop sends a heartbeat line every few seconds. The lock therefore ends
with the run however it ends: a clean release closes the channel; a killed process closes its
connection, and the server side sees end-of-file at once; a cut link stops the heartbeats, and the
holder gives up after ``EXPIRE`` seconds. A run that still works keeps its lock: nothing on the
server can take it while the holder's flock is held. The file itself says who holds it.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .commands import q
from .errors import LockHeld

HEARTBEAT = 5  # seconds between heartbeats
EXPIRE = 30  # the holder lets go after this long without one
BUSY = 75  # exit status of the holder script when another run holds the lock


def lock_path(backup_dir: str) -> str:
    return f"{backup_dir.rstrip('/')}/.netmon-rollback.lock"


def holder_script(backup_dir: str, expire: int = EXPIRE) -> str:
    path = q(lock_path(backup_dir))
    return (
        f"umask 077; mkdir -p {q(backup_dir)} || exit 3; exec 9>>{path} || exit 3; "
        f"if ! flock -n 9; then cat {path}; exit {BUSY}; fi; "
        f"IFS= read -r info || exit 4; printf '%s\\n' \"$info\" > {path}; echo \"LOCKED $$\"; "
        f"while line=$(timeout {int(expire)} head -n 1) && [ -n \"$line\" ]; do :; done; : > {path}"
    )


@dataclass
class Holder:
    operator: str = "?"
    laptop: str = "?"
    pid: int | str = "?"
    task: str = "?"
    since: str = "?"

    @classmethod
    def parse(cls, text: str) -> Holder:
        try:
            data = json.loads((text or "").strip().splitlines()[0])
        except (ValueError, IndexError):
            return cls()
        return cls(**{k: data.get(k, "?") for k in ("operator", "laptop", "pid", "task", "since")})

    def describe(self) -> str:
        return f"{self.operator}@{self.laptop}, pid {self.pid}, task {self.task}, since {self.since}"


def parse_status(text: str) -> Holder | None:
    text = (text or "").strip()
    return Holder.parse(text[5:]) if text.startswith("held") else None


def me(task: str) -> dict:
    return {"operator": getpass.getuser(), "laptop": socket.gethostname(), "pid": os.getpid(), "task": task,
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}


class ServerLock:
    """Held while the run lives (see the module docstring). ``c`` without an SSH transport (a
    local Context, a unit test's fake) holds nothing."""

    def __init__(self, c, site: str, backup_dir: str, task: str):
        self.c, self.site, self.backup_dir, self.task = c, site, backup_dir, task
        self.channel = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, timeout: float = 30) -> None:
        transport = getattr(self.c, "transport", None)
        if transport is None:
            return
        chan = transport.open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.exec_command(holder_script(self.backup_dir))
        try:
            chan.sendall((json.dumps(me(self.task)) + "\n").encode())
        except OSError:  # a busy lock answers at once and its channel may close first: its exit status says so
            pass
        out = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in out and time.monotonic() < deadline:
            if chan.recv_ready():
                out += chan.recv(4096)
            elif chan.exit_status_ready():
                break
            else:
                time.sleep(0.02)
        if out.startswith(b"LOCKED"):
            self.channel = chan
            self._thread = threading.Thread(target=self._beat, name=f"lock-{self.site}", daemon=True)
            self._thread.start()
            return
        while not chan.exit_status_ready() and time.monotonic() < deadline:
            if chan.recv_ready():
                out += chan.recv(4096)
            time.sleep(0.05)
        while chan.recv_ready():
            out += chan.recv(4096)
        code = chan.recv_exit_status() if chan.exit_status_ready() else None
        chan.close()
        if code == BUSY:
            holder = Holder.parse(out.decode(errors="replace"))
            raise LockHeld(
                f"{self.site} is busy: another run holds its lock ({holder.describe()}) — wait for it to finish "
                f"(a run that died lets go within {EXPIRE}s), then rerun; `status` shows the holder")
        raise LockHeld(f"cannot take the lock on {self.site} (exit {code}: "
                       f"{out.decode(errors='replace').strip()[:200] or 'no answer'}) — check {self.backup_dir} there")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self.channel.sendall(b"hb\n")
            except Exception:  # noqa: BLE001 - a dead transport raises OSError or paramiko's own errors; the run notices itself
                return

    def release(self) -> None:
        self._stop.set()
        chan, self.channel = self.channel, None
        if chan is None:
            return
        try:
            chan.shutdown_write()
            deadline = time.monotonic() + 10
            while not chan.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception:  # noqa: BLE001, S110 - the connection is gone: the server lets go by itself
            pass
        finally:
            chan.close()

    def __enter__(self) -> ServerLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
