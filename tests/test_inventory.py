import os

import pytest
import yaml

from fabfile.errors import InputError, InventoryError
from fabfile.inventory import SiteSettings, admin_password, load_inventory, parse_inventory


def test_defaults_are_the_runbooks():
    s = SiteSettings()
    assert (s.app_dir, s.backup_dir, s.db_container, s.volume, s.db_name, s.db_user) == (
        "/root/netmon", "/root", "netmon-db", "netmon_postgres_data", "netmon", "netmon")
    assert s.api_url == "http://localhost:8000" and s.admin_user == "admin" and s.expected_tables == 32
    assert list(s.containers.values()) == ["netmon-db", "netmon-redis", "netmon-backend", "netmon-frontend", "netmon-nginx"]


def test_sites_inherit_defaults_and_override():
    inv = parse_inventory({"defaults": {"backup_dir": "/srv/backups", "port": 2222},
                           "sites": {"a": {"host": "10.0.0.1"}, "b": {"host": "b.example", "db_name": "nm", "port": 22}},
                           "groups": {"g": ["a", "b"]}}, None)
    assert inv.sites["a"].backup_dir == "/srv/backups" and inv.sites["a"].port == 2222
    assert inv.sites["b"].db_name == "nm" and inv.sites["b"].port == 22
    assert [s.name for s in inv.select(group="g")] == ["a", "b"]


def test_host_lookup_by_name_host_or_defaults():
    inv = parse_inventory({"sites": {"a": {"host": "10.0.0.1", "app_dir": "/opt/netmon"}}}, None)
    assert inv.site_for("a").app_dir == "/opt/netmon"
    assert inv.site_for("root@10.0.0.1").name == "a"
    other = inv.site_for("elsewhere")
    assert other.name == "elsewhere" and other.app_dir == "/root/netmon"


@pytest.mark.parametrize(("doc", "needle"), [
    ({"sites": {"a": {"host": "h", "colour": "red"}}}, "unknown key 'colour'"),
    ({"sites": {"a": {"port": 22}}}, "has no 'host'"),
    ({"sites": {"a": {"host": "h", "port": 70000}}}, "bad port 70000"),
    ({"sites": {"a": {"host": "h", "port": "22"}}}, "must be a whole number"),
    ({"groups": {"g": ["nope"]}}, "unknown site 'nope'"),
    ({"hosts": {}}, "unknown key 'hosts'"),
    ({"defaults": {"db_name": "net mon"}}, "not a plain SQL identifier"),
    ({"defaults": {"app_dir": "relative"}}, "absolute path"),
])
def test_bad_inventory_names_key_and_file(tmp_path, doc, needle):
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InventoryError) as err:
        load_inventory(str(path))
    assert needle in str(err.value) and str(path) in str(err.value)


def test_unknown_selection_is_an_error():
    inv = parse_inventory({"sites": {"a": {"host": "h"}}}, None)
    with pytest.raises(InventoryError, match="unknown group"):
        inv.select(group="zzz")
    with pytest.raises(InventoryError, match="unknown site 'b'"):
        inv.select(sites=["b"])


def test_env_var_names_the_inventory(tmp_path, monkeypatch):
    path = tmp_path / "x.yml"
    path.write_text("sites:\n  s1:\n    host: 10.1.1.1\n")
    monkeypatch.setenv("NETMON_INVENTORY", str(path))
    assert load_inventory().sites["s1"].host == "10.1.1.1"


def test_shipped_example_inventory_is_valid():
    root = os.path.dirname(os.path.dirname(__file__))
    inv = load_inventory(os.path.join(root, "hosts.yml"))
    assert inv.defaults.expected_tables == 32


def test_password_from_env_then_file_refusing_open_modes(tmp_path, monkeypatch):
    monkeypatch.delenv("NETMON_ADMIN_PASSWORD", raising=False)
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    site = SiteSettings(name="a", admin_password_file=str(secret))
    with pytest.raises(InputError, match="chmod 600"):
        admin_password(site, prompt=False)
    secret.chmod(0o600)
    assert admin_password(site, prompt=False) == "s3cret"
    monkeypatch.setenv("NETMON_ADMIN_PASSWORD", "fromenv")
    assert admin_password(site, prompt=False) == "fromenv"
    monkeypatch.delenv("NETMON_ADMIN_PASSWORD")
    assert admin_password(SiteSettings(name="b"), prompt=False) is None
