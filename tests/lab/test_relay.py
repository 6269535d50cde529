"""The latency relay (relay.py): it delays what it carries by the latency asked, keeps every byte
intact and in order under jitter, and `lab.down` leaves none of it behind."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import statistics
import subprocess
import threading
import time

import pytest

from tests.lab import relay
from tests.lab.lab import Lab

GREETING = b"hello\n"


class EchoServer:
    """A loopback server that greets each connection, echoes what it reads, and closes on EOF."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket):
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(GREETING)
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self):
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def relay_dir(tmp_path):
    yield tmp_path
    relay.stop(tmp_path)


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def echo_rtts(sock: socket.socket, count: int) -> list[float]:
    """Seconds for each of ``count`` small echo exchanges, one after another."""
    times = []
    for i in range(count):
        msg = f"ping {i}\n".encode()
        started = time.monotonic()
        sock.sendall(msg)
        assert recv_exactly(sock, len(msg)) == msg
        times.append(time.monotonic() - started)
    return times


def within(value: float, target: float, share: float = 0.10) -> bool:
    return abs(value - target) <= share * target


def round_trip_settles(measure, target: float, batches: int = 8, size: int = 5) -> tuple[bool, list[float]]:
    """Whether a batch of ``size`` exchanges has its median round trip within 10 % of ``target``,
    polling up to ``batches`` batches: a busy machine only ever adds delay (the echo server waits for
    a CPU), so one calm batch shows what the relay does. No exchange may ever come back early."""
    medians = []
    for _ in range(batches):
        rtts = measure(size)
        assert min(rtts) >= 0.9 * target, f"a round trip of {min(rtts) * 1000:.1f} ms, under 90 % of {target * 1000:.0f}"
        medians.append(statistics.median(rtts))
        if within(medians[-1], target):
            return True, medians
    return False, medians


def test_a_round_trip_through_the_relay_costs_twice_the_latency(echo, relay_dir):
    ports = relay.start(relay_dir, {"echo": echo.address}, latency_ms=40)
    offset = relay.log_size(relay_dir)
    started = time.monotonic()
    sock = connect(ports["echo"])
    with sock:
        # the server's first byte comes two round trips after connect(), as after TCP's handshake
        assert recv_exactly(sock, len(GREETING)) == GREETING
        assert time.monotonic() - started >= 0.9 * 4 * 0.040
        ok, medians = round_trip_settles(lambda n: echo_rtts(sock, n), 2 * 0.040)
        assert ok, f"median round trips {[round(m * 1000, 1) for m in medians]} ms, asked 80 ms"

        relay.set_delay(relay_dir, latency_ms=100)  # a running relay takes a new delay
        ok, more = round_trip_settles(lambda n: echo_rtts(sock, n), 2 * 0.100)
        assert ok, f"median round trips {[round(m * 1000, 1) for m in more]} ms, asked 200 ms"
    # the relay counted each exchange as one round trip (the greeting, sent unasked, is none)
    [conn] = relay.connections_since(relay_dir, offset)
    exchanges = 5 * (len(medians) + len(more))
    assert (conn["name"], conn["turns"], conn["up"]) == ("echo", exchanges, conn["down"] - len(GREETING))


def test_bytes_arrive_intact_and_in_order_under_jitter(echo, relay_dir):
    """Jitter as large as the latency: a relay that timed each chunk on its own would reorder them."""
    ports = relay.start(relay_dir, {"echo": echo.address}, latency_ms=5, jitter_ms=5)
    payload = os.urandom(6 << 20)  # more than the relay holds per direction: its back-pressure is used too
    received = bytearray()
    with connect(ports["echo"], timeout=60) as sock:
        def send():
            view, offset, rng = memoryview(payload), 0, secrets.SystemRandom()
            while offset < len(payload):
                size = rng.choice((1, 7, 100, 1500, 40_000, 200_000))
                sock.sendall(view[offset:offset + size])
                offset += size
            sock.shutdown(socket.SHUT_WR)  # the EOF must pass the relay too: the server then closes
        sender = threading.Thread(target=send)
        sender.start()
        while chunk := sock.recv(1 << 16):
            received += chunk
        sender.join(timeout=60)
    assert bytes(received[:len(GREETING)]) == GREETING
    echoed = bytes(received[len(GREETING):])
    assert len(echoed) == len(payload)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


def test_a_relay_that_cannot_reach_its_target_closes_the_connection(relay_dir):
    closed = socket.create_server(("127.0.0.1", 0))
    address = closed.getsockname()
    closed.close()  # nothing listens there now
    ports = relay.start(relay_dir, {"nowhere": address}, latency_ms=1)
    with connect(ports["nowhere"]) as sock:
        assert sock.recv(1) == b""
    assert "connect to 127.0.0.1" in (relay_dir / relay.LOG).read_text()


@pytest.mark.lab
def test_lab_with_latency_relays_ssh_and_down_stops_the_relay():
    if os.geteuid() != 0:
        pytest.fail("needs root (the lab uses network and mount namespaces)")
    lab = Lab("t" + secrets.token_hex(3))
    try:
        lab.up(sites=1, flows=100, latency_ms=50, log=lambda *_: None)
        port = lab.relay_ports()["lab1"]
        pid = relay.running(lab.relay_dir)
        assert pid is not None
        assert f"HostName 127.0.0.1\n  User root\n  Port {port}\n" in lab.ssh_config.read_text()
        assert lab.known_hosts.read_text().startswith(f"lab1,[127.0.0.1]:{port} ssh-ed25519 ")

        # an echo over SSH through the relay: `cat` on the site sends each line straight back
        cat = subprocess.Popen(["ssh", "-F", str(lab.ssh_config), "lab1", "cat"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)

        def exchanges(n: int) -> list[float]:
            rtts = []
            for i in range(n):
                line = f"echo {i}\n".encode()
                started = time.monotonic()
                cat.stdin.write(line)
                assert cat.stdout.readline() == line, cat.stderr.read1(4096) if cat.poll() is not None else ""
                rtts.append(time.monotonic() - started)
            return rtts

        try:
            exchanges(1)  # the first may still carry the session's set-up
            ok, medians = round_trip_settles(exchanges, 2 * 0.050)
        finally:
            cat.stdin.close()
            cat.wait(timeout=30)
        assert ok, f"median round trips over ssh {[round(m * 1000, 1) for m in medians]} ms, asked 100 ms"
    finally:
        root = lab.root
        lab.down(log=lambda *_: None)
    assert not relay.alive(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert not root.exists() and not lab.ssh_config.exists()

