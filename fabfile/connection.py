"""SSH connections that refuse unknown host keys, time out, and keep alive.

Fabric's Connection accepts any host key (paramiko AutoAddPolicy, no known_hosts loaded).
:func:`harden` fixes a Connection before it opens: known_hosts from ssh_config's
UserKnownHostsFile (else ~/.ssh/known_hosts), StrictHostKeyChecking yes (default) / accept-new /
no, a connect timeout, and once open a keepalive that also detects a dead link
(ServerAliveInterval / ServerAliveCountMax from ssh_config). Secrets never go through Fabric's inline env:
nothing here (or in runner.py) passes ``env=`` to ``run``.

Over a WAN each command's round trips are what a run costs: a hardened Connection runs commands
through :class:`QuickRemote`, one round trip per command where Fabric needs two (three with stdin),
on a socket with Nagle's algorithm off (:func:`no_delay`), and it returns when the exit status
arrives, not at invoke's next 10 ms poll.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote
from paramiko.common import cMSG_CHANNEL_REQUEST

from .errors import ConnectError, HostKeyError
from .inventory import SiteSettings

DEFAULT_CONNECT_TIMEOUT = 15
KEEPALIVE_SECONDS = 15
#: a link that acknowledges nothing for this long is dead (ssh_config's ServerAliveInterval x
#: ServerAliveCountMax override both)
DEAD_LINK_SECONDS = 45

# paramiko logs transport failures with tracebacks on stderr; they reach the user as one-line errors.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class UnknownHostKey(paramiko.SSHException):
    pass


def _key_name(hostname: str, port: int | None) -> str:
    return hostname if not port or port == 22 else f"[{hostname}]:{port}"


class RejectUnknown(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking yes: an unknown host key is refused."""

    def __init__(self, known_hosts: list[str]):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        files = ", ".join(self.known_hosts) or "~/.ssh/known_hosts"
        raise UnknownHostKey(
            f"host key of {hostname} ({key.get_name()} {key.get_fingerprint().hex()}) is not in {files}"
        )


class AcceptNew(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking accept-new: a new host is added to known_hosts; a changed key is refused
    (paramiko raises BadHostKeyException for a mismatch before any policy is asked)."""

    def __init__(self, path: str):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        path = Path(self.path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class AcceptAny(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking no: an unknown key is used (not saved); a changed key is still refused."""

    def missing_host_key(self, client, hostname, key):
        return None


def known_hosts_files(ssh_config: dict) -> list[str]:
    value = ssh_config.get("userknownhostsfile")
    if isinstance(value, list):
        value = " ".join(value)
    if value:
        return [os.path.expanduser(p) for p in str(value).split() if p != "/dev/null"]
    return [os.path.expanduser("~/.ssh/known_hosts")]


def strict_mode(ssh_config: dict) -> str:
    value = str(ssh_config.get("stricthostkeychecking", "yes")).strip().lower()
    if value in ("no", "off"):
        return "no"
    if value == "accept-new":
        return "accept-new"
    return "yes"  # yes, ask (no prompts here), or anything unknown: strict


def transport_lost(transport) -> bool:
    """Has this SSH transport died? paramiko notes why (EOF, a socket error) before it closes the
    channels and only then marks itself inactive: a command that sees its channel close can look
    in between, and must not take a dying link for a live one."""
    return not transport.is_active() or getattr(transport, "saved_exception", None) is not None


class _Opening:
    """A session channel being opened in the background (its CHANNEL_OPEN_CONFIRMATION is a round trip)."""

    def __init__(self, transport):
        self.transport = transport
        self.channel = None
        self._thread = threading.Thread(target=self._open, name="netmon-spare-session", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            self.channel = self.transport.open_session()
        except (paramiko.SSHException, OSError, EOFError):
            pass  # a dead or refusing transport: the next command opens its own and reports why

    def result(self):
        """The channel if it opened and is still usable, else None (paramiko gives up when the transport dies)."""
        self._thread.join()
        chan = self.channel
        return chan if chan is not None and chan.active and not chan.closed else None


class Sessions:
    """One spare session channel per connection, opened while the previous command runs, so that a
    command's channel is already there when it starts (sshd allows 10 sessions per connection by
    default: one spare, the running command and the lock's channel stay well under)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._spare: _Opening | None = None

    def prime(self, transport) -> None:
        with self._lock:
            if self._spare is None or self._spare.transport is not transport:
                self._spare = _Opening(transport)

    def take(self, transport):
        """A session channel on ``transport`` (the spare, else a new one), and the next spare started."""
        with self._lock:
            spare, self._spare = self._spare, None
            chan = spare.result() if spare is not None and spare.transport is transport else None
            self._spare = None if transport_lost(transport) else _Opening(transport)
        return chan if chan is not None else transport.open_session()


def send_exec(channel, command: str) -> None:
    """``channel.exec_command(command)`` without waiting for the server's answer: the output and the
    exit status follow the request on the same channel, so waiting costs a round trip and tells
    nothing they don't. The answer is still asked for: a refusal (CHANNEL_FAILURE) closes the
    channel, and the command reads as exit -1 on a live connection, a failure."""
    if channel.closed or channel.eof_received or channel.eof_sent or not channel.active:
        raise paramiko.SSHException("Channel is not open")
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(channel.remote_chanid)
    m.add_string("exec")
    m.add_boolean(True)
    m.add_string(command)
    channel._event_pending()
    channel.transport._send_user_message(m)


class QuickRemote(Remote):
    """Fabric's Remote runner, each command on the connection's spare session (:class:`Sessions`)
    with its exec request not waited for (:func:`send_exec`). What it cannot speed up (a pty, an
    environment, agent forwarding: the tool asks for none) runs as Fabric runs it."""

    def start(self, command, shell, env, timeout=None):
        sessions = getattr(getattr(self.context, "client", None), "_netmon_sessions", None)
        if sessions is None or self.using_pty or env or self.context.forward_agent:
            return super().start(command, shell, env, timeout)
        self.channel = sessions.take(self.context.transport)
        send_exec(self.channel, command)
        return None

    def refused(self) -> bool:
        """The server answered the exec with CHANNEL_FAILURE: the channel closed with neither its success
        (event_ready) nor an exit status, on a live transport (one that died closes it too)."""
        chan = getattr(self, "channel", None)
        return bool(chan is not None and chan.closed and not chan.event_ready and chan.exit_status == -1
                    and not transport_lost(chan.transport))

    def _write_proc_stdin(self, data):
        if not self.refused():  # nothing reads a refused command's stdin
            super()._write_proc_stdin(data)

    def close_proc_stdin(self):
        if not self.refused():
            super().close_proc_stdin()

    def wait(self):
        """invoke polls for the end every 10 ms; the channel says when the exit status came (or it closed)."""
        chan = getattr(self, "channel", None)
        if chan is None:
            return super().wait()
        while not (self.process_is_finished or self.has_dead_threads):
            chan.status_event.wait(0.1)  # bounded: a reader thread that died ends the wait too
        return None

    def kill(self):
        self.killed = True  # invoke's timer kills; it then asks whether the timer's thread has ended: it may not have yet
        super().kill()

    @property
    def timed_out(self) -> bool:
        return getattr(self, "killed", False) or super().timed_out

    def generate_result(self, **kwargs):
        if self.refused():
            kwargs["stderr"] = (kwargs.get("stderr") or "") + "the server refused to run the command\n"
        return super().generate_result(**kwargs)


def no_delay(transport) -> None:
    """TCP_NODELAY on the connection's socket, as OpenSSH's interactive sessions have it. With Nagle's
    algorithm on, a command's small last packet waits for the ACK of the one before, which the other
    side delays by up to 40 ms: measured on a lab site, 43 ms a command against 12 ms without it.
    A proxied connection (a gateway's channel, a ProxyCommand) has no socket of its own to set."""
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a socket that refuses the option still works, as before


def harden(c, connect_timeout: int | None = None, known_hosts: str | None = None):
    """Make Fabric Connection ``c`` check host keys and time out. A no-op for plain Contexts."""
    client = getattr(c, "client", None)
    # The flag lives on the paramiko client: attributes set on a Connection can land in its
    # Config, which Connections share, and then a second Connection would look hardened.
    if client is None or getattr(client, "_netmon_hardened", False):
        return c
    ssh_config = dict(getattr(c, "ssh_config", {}) or {})
    files = [os.path.expanduser(known_hosts)] if known_hosts else known_hosts_files(ssh_config)
    for path in files:
        if os.path.isfile(path):
            try:
                client.load_host_keys(path)
            except (OSError, paramiko.SSHException, ValueError) as err:
                raise HostKeyError(f"cannot read known_hosts file {path}: {err} — fix or remove it") from None
    alias = ssh_config.get("hostkeyalias")
    if alias:
        keys = client.get_host_keys()
        name = _key_name(c.host, c.port)
        for keytype, key in (keys.lookup(alias) or {}).items():
            keys.add(name, keytype, key)
    mode = strict_mode(ssh_config)
    if mode == "no":
        client.set_missing_host_key_policy(AcceptAny())
    elif mode == "accept-new":
        client.set_missing_host_key_policy(AcceptNew(files[0] if files else "~/.ssh/known_hosts"))
    else:
        client.set_missing_host_key_policy(RejectUnknown(files))
    if "timeout" not in (c.connect_kwargs or {}):
        c.connect_timeout = connect_timeout or c.connect_timeout or DEFAULT_CONNECT_TIMEOUT
    c.connect_kwargs.setdefault("banner_timeout", c.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
    c.connect_kwargs.setdefault("auth_timeout", c.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
    c.inline_ssh_env = False
    c.config.runners.remote = QuickRemote
    client._netmon_sessions = Sessions()
    client._netmon_hardened = True
    return c


def open_checked(c) -> None:
    """Open ``c`` (a hardened Connection), turning SSH failures into one-line errors."""
    if getattr(c, "client", None) is None or c.is_connected:
        return
    where = f"{c.original_host}" + (f" ({c.host}:{c.port})" if c.host != c.original_host else "")
    try:
        c.open()
    except paramiko.BadHostKeyException as err:
        raise HostKeyError(
            f"host key of {where} has CHANGED ({err.key.get_name()} {err.key.get_fingerprint().hex()}) — "
            "verify the server and fix known_hosts before retrying"
        ) from None
    except UnknownHostKey as err:
        raise HostKeyError(f"{err} — check the fingerprint, then add the key to known_hosts "
                           "(or set StrictHostKeyChecking accept-new)") from None
    except paramiko.AuthenticationException as err:
        raise ConnectError(f"SSH login to {where} failed ({err}) — check the user and key (-i, IdentityFile)") from None
    except TimeoutError:
        raise ConnectError(f"connecting to {where} timed out — check the address or raise -t") from None
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise ConnectError(f"cannot connect to {where}: {err} — check the address, port and sshd") from None
    if c.transport is not None:
        no_delay(c.transport)
        keep_alive(c.transport, *alive_settings(dict(getattr(c, "ssh_config", {}) or {})))
        sessions = getattr(c.client, "_netmon_sessions", None)
        if sessions is not None:
            sessions.prime(c.transport)  # the first command's channel opens alongside the lock's


def alive_settings(ssh_config: dict) -> tuple[int, int]:
    """(keepalive interval, seconds after which a silent link is dead) from ssh_config's
    ServerAliveInterval and ServerAliveCountMax (ssh: 0 = off; here the default is 15 s x 3)."""
    def number(key: str, default: int) -> int:
        try:
            value = int(str(ssh_config.get(key, default)).strip())
        except ValueError:
            return default
        return value if value > 0 else default
    interval = number("serveraliveinterval", KEEPALIVE_SECONDS)
    count = number("serveralivecountmax", DEAD_LINK_SECONDS // KEEPALIVE_SECONDS)
    return interval, interval * count


def keep_alive(transport, interval: int = KEEPALIVE_SECONDS, dead_after: int = DEAD_LINK_SECONDS) -> None:
    """Detect a dead link instead of waiting for ever (paramiko's keepalive only sends; TCP would
    retransmit for about 15 minutes): SSH keepalives every ``interval`` seconds give the socket
    something to send, and TCP_USER_TIMEOUT closes it when nothing is acknowledged for
    ``dead_after`` seconds; TCP keepalive covers an idle link. The transport then dies, the running
    command returns without an exit status and the runner reports the step it broke."""
    transport.set_keepalive(interval)
    sock = getattr(transport, "sock", None)
    if not isinstance(sock, socket.socket):  # a ProxyCommand: its own ssh handles the link
        return
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", interval), ("TCP_KEEPINTVL", interval),
                        ("TCP_KEEPCNT", max(1, dead_after // interval)), ("TCP_USER_TIMEOUT", dead_after * 1000)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            pass  # not supported here: the command timeout still bounds the wait


def for_site(c, site: SiteSettings):
    """If -H named an inventory site that ssh_config does not resolve, connect to the site's host."""
    if getattr(c, "client", None) is None:
        return c
    resolved = c.ssh_config.get("hostname", c.original_host) != c.original_host
    if c.original_host == site.name and site.host and site.host != site.name and not resolved:
        c = Connection(
            host=site.host,
            port=site.port or None,
            user=site.user or c.user,
            config=c.config,
            connect_kwargs=dict(c.connect_kwargs),
        )
    if site.identity_file and not c.connect_kwargs.get("key_filename"):
        c.connect_kwargs["key_filename"] = [os.path.expanduser(site.identity_file)]
    return harden(c, known_hosts=site.known_hosts)


def make_connection(site: SiteSettings, config=None, connect_timeout: int | None = None):
    """A hardened Connection to ``site`` (for the fleet layer). ``config`` is a fabric.Config
    (with ssh_config loaded), e.g. ``fabric.Config(runtime_ssh_path=...)``."""
    # A Config of its own: Fabric's Connection reads the one it is given and harden() writes to it,
    # and invoke empties a Config while it merges a change, so fleet workers sharing one read
    # "No attribute or config key found" now and then.
    cfg = config.clone() if config is not None else Config()
    host = site.host
    if site.name and cfg.base_ssh_config.lookup(site.name).get("hostname", site.name) != site.name:
        host = site.name  # ssh_config knows the site by name: use its HostName, keys, known_hosts
    kwargs = {"host": host, "config": cfg}
    if site.port:
        kwargs["port"] = site.port
    if site.user:
        kwargs["user"] = site.user
    if site.identity_file:
        kwargs["connect_kwargs"] = {"key_filename": [os.path.expanduser(site.identity_file)]}
    c = Connection(**kwargs)
    return harden(c, connect_timeout=connect_timeout, known_hosts=site.known_hosts)
