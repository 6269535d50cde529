import contextlib
import queue
import socket
import threading
import time

import invoke.runners
import paramiko
import pytest
from fabric import Config, Connection

from fabfile.commands import Command
from fabfile.connection import (
    DEAD_LINK_SECONDS,
    AcceptAny,
    AcceptNew,
    RejectUnknown,
    UnknownHostKey,
    alive_settings,
    harden,
    keep_alive,
    make_connection,
    open_checked,
)
from fabfile.errors import CommandFailed, ConnectError
from fabfile.inventory import SiteSettings
from fabfile.runner import Runner


def _conn(tmp_path, extra=""):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host lab1\n  HostName 10.9.9.9\n  UserKnownHostsFile {tmp_path}/kh\n{extra}")
    return Connection("lab1", config=Config(runtime_ssh_path=str(cfg)))


def test_default_is_strict_and_loads_known_hosts(tmp_path):
    (tmp_path / "kh").write_text("10.9.9.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    c = harden(_conn(tmp_path))
    assert isinstance(c.client._policy, RejectUnknown)
    assert c.client.get_host_keys().lookup("10.9.9.9") is not None
    assert c.connect_timeout and c.inline_ssh_env is False
    with pytest.raises(UnknownHostKey):
        c.client._policy.missing_host_key(c.client, "10.9.9.9", paramiko.RSAKey.generate(1024))


@pytest.mark.parametrize(("value", "policy"), [("accept-new", AcceptNew), ("no", AcceptAny), ("yes", RejectUnknown),
                                               ("ask", RejectUnknown)])
def test_strict_host_key_checking_values(tmp_path, value, policy):
    c = harden(_conn(tmp_path, f"  StrictHostKeyChecking {value}\n"))
    assert isinstance(c.client._policy, policy)


def test_accept_new_appends_to_known_hosts(tmp_path):
    policy = AcceptNew(str(tmp_path / "kh"))
    key = paramiko.RSAKey.generate(1024)
    policy.missing_host_key(None, "[10.9.9.9]:2222", key)
    assert (tmp_path / "kh").read_text().startswith("[10.9.9.9]:2222 ssh-rsa ")


def test_make_connection_for_fleet_uses_inventory_settings(tmp_path):
    kh = tmp_path / "site_kh"
    kh.write_text("")
    c = make_connection(SiteSettings(name="x", host="10.1.2.3", port=2200, user="ops", known_hosts=str(kh),
                                     identity_file="/keys/id"), config=Config())
    assert (c.host, c.port, c.user) == ("10.1.2.3", 2200, "ops")
    assert c.connect_kwargs["key_filename"] == ["/keys/id"]
    assert isinstance(c.client._policy, RejectUnknown) and c.client._policy.known_hosts == [str(kh)]


def test_keep_alive_bounds_a_dead_link():
    class T:
        def __init__(self):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.interval = None

        def set_keepalive(self, n):
            self.interval = n

    t = T()
    try:
        keep_alive(t)
        assert t.interval == 15
        assert t.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert t.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == DEAD_LINK_SECONDS * 1000
    finally:
        t.sock.close()


@pytest.mark.parametrize(("config", "expected"), [
    ({}, (15, 45)),
    ({"serveraliveinterval": "2", "serveralivecountmax": "3"}, (2, 6)),
    ({"serveraliveinterval": "0"}, (15, 45)),  # ssh's "off" still gets the default here
    ({"serveraliveinterval": "5"}, (5, 15)),
    ({"serveraliveinterval": "x"}, (15, 45)),
])
def test_alive_settings_from_ssh_config(config, expected):
    assert alive_settings(config) == expected


# -- QuickRemote: a hardened Connection against an in-process SSH server, through a proxy that
#    counts round trips (each time the server answers after the client spoke) --------------------

DELAY = 0.03  # one way


class _Server(paramiko.ServerInterface):
    """Runs a few pretend commands: `cat` echoes stdin, `exit N` prints and exits N, `sleep`
    waits 5 s, `nap` 0.3 s, `refuse` is refused; counts the session channels opened."""

    def __init__(self):
        self.sessions = 0

    def get_allowed_auths(self, username):
        return "password"

    def check_auth_password(self, username, password):
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        self.sessions += 1
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command):
        if command == b"refuse":
            return False
        threading.Thread(target=self._run, args=(channel, command.decode()), daemon=True).start()
        return True

    def _run(self, chan, command):
        if command == "cat":
            data = b""
            while chunk := chan.recv(65536):
                data += chunk
            chan.sendall(data)
            code = 0
        elif command == "sleep":
            time.sleep(5)
            code = 0
        elif command == "nap":
            time.sleep(0.3)
            code = 0
        else:
            chan.sendall(b"out\n")
            chan.sendall_stderr(b"err\n")
            code = int(command.split()[1])
        chan.send_exit_status(code)
        chan.shutdown_write()
        chan.close()


@pytest.fixture
def ssh_site(tmp_path):
    """(a Connection factory, the server, the proxy's turn counter, the server's transports); the
    connections it made are closed at the end."""
    host_key = paramiko.RSAKey.generate(1024)
    server, turns, transports = _Server(), [0], []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    (tmp_path / "kh").write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")

    def pump(client):
        """Both directions held DELAY before passing on, as the lab's relay does; a turn is each time
        the server sends after the client did, at least a round trip after the turn before (an
        answer a busy server writes in pieces is still one turn: no later one can be caused by the
        client sooner)."""
        ours, theirs = socket.socketpair()
        t = paramiko.Transport(theirs)
        t.add_server_key(host_key)
        t.start_server(event=threading.Event(), server=server)  # negotiates in its own thread
        transports.append(t)
        last, counted_at = [""], [0.0]

        def carry(src, dst, direction):
            held: queue.Queue = queue.Queue()

            def deliver():
                while (item := held.get()) is not None:
                    time.sleep(max(0.0, item[0] - time.monotonic()))
                    with contextlib.suppress(OSError):
                        dst.sendall(item[1])
                for sock in (client, ours):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)  # one side closed: so does the other

            threading.Thread(target=deliver, daemon=True).start()
            while True:
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    held.put(None)
                    return
                now = time.monotonic()
                if direction == "down" and last[0] == "up" and now - counted_at[0] >= 1.8 * DELAY:
                    turns[0] += 1
                    counted_at[0] = now
                last[0] = direction
                held.put((now + DELAY, data))

        threading.Thread(target=carry, args=(ours, client, "down"), daemon=True).start()
        carry(client, ours, "up")

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=pump, args=(client,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()

    def connect(hardened=True):
        c = Connection("127.0.0.1", port=port, user="u", connect_kwargs={
            "password": "x", "look_for_keys": False, "allow_agent": False})
        if hardened:
            harden(c, known_hosts=str(tmp_path / "kh"))
            open_checked(c)
        else:
            c.client.load_host_keys(str(tmp_path / "kh"))
            c.open()
        made.append(c)
        return c

    made: list[Connection] = []
    try:
        yield connect, server, turns, transports
    finally:
        for c in made:
            c.close()
        listener.close()
        for t in transports:
            t.close()


def test_quick_remote_keeps_exit_status_output_and_stdin(ssh_site):
    connect, server, _, _ = ssh_site
    runner = Runner(connect(), "s1")
    out = runner.run(Command("exit 3"))
    assert (out.exited, out.stdout, out.stderr) == (3, "out\n", "err\n")
    assert runner.run(Command("cat", stdin="x" * 100_000)).stdout == "x" * 100_000
    assert runner.run(Command("exit 0")).ok
    # one spare at most: every command used the one opened before it, plus the one waiting now
    assert server.sessions == 3 + 1


def test_quick_remote_costs_one_round_trip_a_command(ssh_site):
    """Fabric's own runner, against the same server through the same proxy, as the yardstick (only
    `cat` here: it answers after the client's EOF, so never before this server's exec reply)."""
    connect, _, turns, _ = ssh_site
    counted = {}
    for hardened in (False, True):
        runner = Runner(connect(hardened), "s1")
        runner.run(Command("cat", stdin="x"))  # the first command's channel may still be opening
        before = turns[0]
        for _ in range(5):
            assert runner.run(Command("cat", stdin="data")).stdout == "data"
        counted[hardened] = turns[0] - before
    assert counted[False] >= 14  # open, exec, then stdin and its answer: three a command
    assert counted[True] <= 6  # one a command; waiting for the open or for the exec's answer would make it ten


def test_a_hardened_connection_turns_nagle_off_and_waits_on_the_exit_status_not_on_naps(ssh_site, monkeypatch):
    """Nagle's algorithm held a command's last small packet for the other side's delayed ACK (40 ms a
    command on a lab site); invoke's wait napped 10 ms at a time until the end. Neither is left."""
    connect, _, _, _ = ssh_site
    plain, hardened = connect(hardened=False), connect()
    nodelay = [c.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for c in (plain, hardened)]
    assert nodelay[0] == 0 and nodelay[1] != 0
    naps = []

    class Clock:
        def __getattr__(self, name):
            return getattr(time, name)

        def sleep(self, seconds):
            naps.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(invoke.runners, "time", Clock())
    runner = Runner(hardened, "s1")
    assert runner.run(Command("nap")).ok and naps == []
    assert Runner(plain, "s1").run(Command("nap")).ok and len(naps) >= 5  # Fabric's own runner, the yardstick


def test_quick_remote_refused_exec_is_a_failure_not_a_lost_connection(ssh_site):
    connect, _, _, _ = ssh_site
    runner = Runner(connect(), "s1")
    out = runner.run(Command("refuse", stdin="data"))
    assert out.exited == -1 and not runner.connection_lost()
    assert out.stderr == "the server refused to run the command\n"
    with pytest.raises(CommandFailed, match=r"the refused step failed \(exit -1\): the server refused"):
        runner.must(Command("refuse", what="the refused step"))  # exit -1: the server refused
    assert runner.run(Command("exit 0")).ok  # the connection still works


def test_quick_remote_timeout_and_lost_connection(ssh_site):
    connect, _, _, transports = ssh_site
    runner = Runner(connect(), "s1")
    with pytest.raises(CommandFailed, match="timed out after 1s"):
        runner.run(Command("sleep", timeout=1))
    threading.Timer(0.5, transports[-1].close).start()
    with pytest.raises(ConnectError, match="connection to s1 lost"):
        runner.run(Command("sleep", timeout=30))
