"""A userspace TCP relay that puts WAN latency between the laptop and the lab's sites.

This kernel has no netem qdisc, so latency is made here: one listening port per site on 127.0.0.1
(in the machine's namespace), each forwarding to the site's sshd inside the lab's namespaces. Every
chunk read from either side is held for the one-way delay (± jitter) before it is written on; a
chunk never leaves before the one read ahead of it, so bytes are never reordered. The upstream
connection is opened only after three one-way delays, as TCP's handshake (SYN, SYN-ACK, ACK) costs
before a server sees the connection: the client's connect() still returns at once (the kernel
answers for the relay), but the server's first byte reaches it two round trips after it connected,
as over a real link.

The lab runs it as one background process (`start`), bound to the ports the lab chose and passes
in as inherited sockets, so there is no race for the ports. `set_delay` changes the delay of a
running relay (SIGHUP: it rereads its settings and writes back what it applied); `stop` ends it.
Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

CHUNK = 65536
HELD_MAX = 4 << 20  # bytes held per direction of a connection before the relay stops reading from it
CONNECT_TIMEOUT = 10.0
CONNECTION_IDS = itertools.count(1)
SETTINGS, STATE, PID, LOG = "settings.json", "state.json", "relay.pid", "relay.log"


@dataclass
class Delay:
    """The one-way delay, shared by every connection; changed in place on SIGHUP."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0

    def sample(self) -> float:
        """One chunk's one-way delay in seconds: latency ± a uniform jitter, never negative."""
        jitter = random.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0  # noqa: S311 — not crypto
        return max(0.0, self.latency_ms + jitter) / 1000.0


class Turns:
    """Round trips of one connection, counted as the wire sees them: each time the server sends after
    the client did. Independent of the delay and of the machine's load (what a stopwatch is not)."""

    def __init__(self):
        self.count = 0
        self.last = ""

    def saw(self, direction: str) -> None:
        if direction == "down" and self.last == "up":
            self.count += 1
        self.last = direction


class Pipe:
    """One direction of one connection: chunks leave in order, none before it arrived + its delay."""

    def __init__(self, delay: Delay, direction: str = "", turns: Turns | None = None):
        self.delay = delay
        self.direction, self.turns = direction, turns
        self.bytes = 0
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.last_due = 0.0
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read_from(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.room.wait()
            chunk = await reader.read(CHUNK)
            # max(): a chunk with a shorter jitter waits for the one before it (no reordering)
            self.last_due = max(loop.time() + self.delay.sample(), self.last_due)
            self.queue.put_nowait((self.last_due, chunk))
            if not chunk:
                return
            self.bytes += len(chunk)
            if self.turns is not None:
                self.turns.saw(self.direction)
            self.held += len(chunk)
            if self.held >= HELD_MAX:
                self.room.clear()

    async def write_to(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await self.queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if not chunk:  # the sender half-closed: pass the EOF on, in its turn
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
            self.held -= len(chunk)
            if self.held < HELD_MAX:
                self.room.set()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    """No Nagle: a relay that coalesced small writes would add waits of its own."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def relay_connection(client_r, client_w, name: str, target: tuple[str, int], delay: Delay, log) -> None:
    """Carry one client connection to ``target`` and back, both directions delayed. Logs a line when
    it opens and one when it closes, with its round trips (`Turns`) and bytes."""
    _nodelay(client_w)
    turns, started = Turns(), time.monotonic()
    up, down = Pipe(delay, "up", turns), Pipe(delay, "down", turns)
    conn = f"{name} #{next(CONNECTION_IDS)}"
    log(f"open {conn}")
    tasks = [asyncio.ensure_future(up.read_from(client_r))]
    server_w = None
    try:
        await asyncio.sleep(sum(delay.sample() for _ in range(3)))  # SYN, SYN-ACK, ACK
        try:
            server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as err:
            log(f"connect to {target[0]}:{target[1]} failed: {err}")
            return
        _nodelay(server_w)
        tasks += [asyncio.ensure_future(up.write_to(server_w)), asyncio.ensure_future(down.read_from(server_r)),
                  asyncio.ensure_future(down.write_to(client_w))]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None and not isinstance(t.exception(), OSError):
                log(f"connection to {target[0]}:{target[1]}: {t.exception()!r}")
    except asyncio.CancelledError:
        pass  # the relay is stopping: close quietly
    finally:
        log(f"closed {conn} turns={turns.count} up={up.bytes} down={down.bytes} "
            f"seconds={time.monotonic() - started:.3f}")
        for t in tasks:
            t.cancel()
        for w in (client_w, server_w):
            if w is not None:
                with suppress(Exception):
                    w.close()


def write_json(path: Path, data: dict) -> None:
    """Write whole or not at all: a reader polling the file never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def serve(directory: Path, routes: list[tuple[int, str, tuple[str, int]]]) -> None:
    """Serve every route (inherited listening fd, name, target) until SIGTERM."""
    delay = Delay()
    logf = (directory / LOG).open("a", buffering=1)

    def log(msg: str) -> None:
        logf.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    def apply_settings() -> None:
        settings = json.loads((directory / SETTINGS).read_text())
        delay.latency_ms, delay.jitter_ms = float(settings["latency_ms"]), float(settings["jitter_ms"])
        ports = {name: sock.getsockname()[1] for sock, name in listeners}
        write_json(directory / STATE, {**settings, "pid": os.getpid(), "ports": ports})
        log(f"delay {delay.latency_ms} ms ± {delay.jitter_ms} ms (generation {settings.get('generation')})")

    listeners, servers = [], []
    for fd, name, target in routes:
        sock = socket.socket(fileno=fd)
        listeners.append((sock, name))
        servers.append(await asyncio.start_server(
            lambda r, w, name=name, target=target: relay_connection(r, w, name, target, delay, log), sock=sock))
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, apply_settings)
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    apply_settings()
    await stopped.wait()
    for s in servers:
        s.close()
    log("stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="delaying TCP relay of the NetMon lab (started by tests/lab/lab.py)")
    ap.add_argument("--dir", required=True, type=Path, help="settings.json in, state.json and relay.log out")
    ap.add_argument("--route", action="append", default=[], metavar="FD=NAME=HOST:PORT",
                    help="an inherited listening socket, its name and where it leads")
    args = ap.parse_args(argv)
    routes = []
    for spec in args.route:
        fd, name, target = spec.split("=", 2)
        host, _, port = target.rpartition(":")
        routes.append((int(fd), name, (host, int(port))))
    with suppress(OSError):  # a wire does not wait for a CPU: keep the delay what was asked on a busy machine
        os.nice(-10)
    asyncio.run(serve(args.dir, routes))
    return 0


# -- the lab's side: start, change, stop ----------------------------------------------------------

class RelayError(Exception):
    """The relay did not start or answer; the message says where to look."""


def start(directory: Path, targets: dict[str, tuple[str, int]], latency_ms: float, jitter_ms: float = 0.0,
          timeout: float = 10.0) -> dict[str, int]:
    """Start the relay in the background (pid in ``directory``/relay.pid): one port on 127.0.0.1 per
    target, each delayed ``latency_ms`` ± ``jitter_ms`` each way. Returns name → port, once it serves."""
    if latency_ms < 0 or jitter_ms < 0:
        raise RelayError(f"latency {latency_ms} ms and jitter {jitter_ms} ms must be >= 0")
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / SETTINGS, {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "generation": 1})
    socks, routes = [], []
    try:
        for name, (host, port) in targets.items():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            socks.append(sock)
            routes += ["--route", f"{sock.fileno()}={name}={host}:{port}"]
        with (directory / LOG).open("a") as logf:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--dir", str(directory), *routes],
                                    pass_fds=[s.fileno() for s in socks], stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=logf, start_new_session=True)
    finally:
        for s in socks:  # the relay holds its own copies
            s.close()
    (directory / PID).write_text(str(proc.pid))
    state = _wait_for_generation(directory, 1, timeout)
    return state["ports"]


def set_delay(directory: Path, latency_ms: float, jitter_ms: float = 0.0, timeout: float = 10.0) -> None:
    """Change a running relay's delay; returns once the relay says it applies it (to new chunks)."""
    pid = running(directory)
    if pid is None:
        raise RelayError(f"no relay runs for {directory}")
    generation = json.loads((directory / SETTINGS).read_text()).get("generation", 1) + 1
    write_json(directory / SETTINGS, {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "generation": generation})
    os.kill(pid, signal.SIGHUP)
    _wait_for_generation(directory, generation, timeout)


def _wait_for_generation(directory: Path, generation: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = json.loads((directory / STATE).read_text())
            if state.get("generation") == generation:
                return state
        except (OSError, ValueError):
            pass
        if running(directory) is None:
            break
        time.sleep(0.05)
    log = (directory / LOG).read_text() if (directory / LOG).exists() else ""
    raise RelayError(f"the relay in {directory} did not apply its settings: {log.strip()[-500:] or 'no log'}")


def running(directory: Path) -> int | None:
    """The relay's pid while it runs, else None."""
    try:
        pid = int((directory / PID).read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie has ended (it only waits for its parent to reap it)."""
    with suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent (tests); harmless otherwise
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def log_size(directory: Path) -> int:
    """Where the relay's log ends now: pass it to `connections_since` to see what a run did."""
    try:
        return (directory / LOG).stat().st_size
    except OSError:
        return 0


def connections_since(directory: Path, offset: int, timeout: float = 10.0) -> list[dict]:
    """Connections opened after byte ``offset`` of the relay's log, once all of them have closed (a
    client's close reaches the relay a delay later): each {name, turns, up, down, seconds}."""
    deadline = time.monotonic() + timeout
    while True:
        with (directory / LOG).open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        opened, closed = set(), []
        for line in lines:
            words = line.split()
            if len(words) >= 4 and words[1] == "open":
                opened.add(words[3])
            elif len(words) >= 4 and words[1] == "closed":
                fields = dict(w.split("=", 1) for w in words[4:] if "=" in w)
                closed.append({"name": words[2], "id": words[3], "turns": int(fields["turns"]),
                               "up": int(fields["up"]), "down": int(fields["down"]),
                               "seconds": float(fields["seconds"])})
        if opened <= {c["id"] for c in closed} or time.monotonic() >= deadline:
            return [c for c in closed if c["id"] in opened]
        time.sleep(0.05)


def stop(directory: Path, grace: float = 5.0) -> bool:
    """Stop the relay (SIGTERM, then SIGKILL) and remove its pid file; True if one was running."""
    pid = running(directory)
    if pid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.05)
            if not alive(pid):
                break
    (directory / PID).unlink(missing_ok=True)
    return pid is not None


if __name__ == "__main__":
    raise SystemExit(main())
