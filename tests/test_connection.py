import socket

import paramiko
import pytest
from fabric import Config, Connection

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
)
from fabfile.inventory import SiteSettings


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
