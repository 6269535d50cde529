"""Per-site settings and the hosts.yml inventory, loaded and validated in one place.

hosts.yml has three top-level keys:

- ``defaults``: any :class:`SiteSettings` field, applied to every site;
- ``sites``: name → mapping with ``host`` (required), ``port``, ``user`` and any setting;
- ``groups``: name → list of site names.

The file is the one named by ``--inventory``, else ``$NETMON_INVENTORY``, else ``./hosts.yml``,
else ``~/.config/netmon-rollback/hosts.yml`` (``$XDG_CONFIG_HOME``): an installed command finds its
inventory from any directory. Without a file, every setting has the runbook's value, so ``fab -H server rollback`` works with no
inventory at all.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
import stat
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, InventoryError

INVENTORY_ENV = "NETMON_INVENTORY"
INVENTORY_HELP = f"inventory file (default: ${INVENTORY_ENV}, else ./hosts.yml, else ~/.config/netmon-rollback/hosts.yml)"
PASSWORD_ENV = "NETMON_ADMIN_PASSWORD"  # noqa: S105 - the name of a variable, not a password

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CONTAINER = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass(frozen=True)
class SiteSettings:
    """Everything the tasks need to know about one NetMon server. Defaults = the runbook's."""

    name: str = ""
    host: str = ""
    port: int | None = None
    user: str | None = None
    #: SSH key for this site (else ssh_config / -i / the agent)
    identity_file: str | None = None
    #: known_hosts file for this site (else ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts)
    known_hosts: str | None = None
    app_dir: str = "/root/netmon"
    backup_dir: str = "/root"
    db_container: str = "netmon-db"
    redis_container: str = "netmon-redis"
    backend_container: str = "netmon-backend"
    frontend_container: str = "netmon-frontend"
    nginx_container: str = "netmon-nginx"
    volume: str = "netmon_postgres_data"
    db_name: str = "netmon"
    db_user: str = "netmon"
    api_url: str = "http://localhost:8000"
    admin_user: str = "admin"
    admin_password_file: str | None = None
    expected_tables: int = 32
    plain_image: str = "postgres:16-alpine"
    #: the image the migration put the db on: a data directory that preloads timescaledb starts on it
    timescale_image: str = "timescale/timescaledb:latest-pg16"
    #: newest flow older than this (seconds) = "ingestion stopped" in status
    ingest_stale_seconds: int = 600
    #: verify waits this long (seconds) for a new flow row
    ingest_wait_seconds: int = 30
    db_ready_timeout: int = 120
    health_timeout: int = 180
    #: default timeout (seconds) of one remote command; --timeout overrides
    command_timeout: int = 1800
    restore_jobs: int = 2

    @property
    def containers(self) -> dict[str, str]:
        """Compose service → container name, in start order."""
        return {
            "db": self.db_container,
            "redis": self.redis_container,
            "backend": self.backend_container,
            "frontend": self.frontend_container,
            "nginx": self.nginx_container,
        }

    def replace(self, **changes: Any) -> SiteSettings:
        return dataclasses.replace(self, **changes)


SETTING_KEYS = {f.name for f in fields(SiteSettings)} - {"name"}
_INT_KEYS = {f.name for f in fields(SiteSettings) if f.type in ("int", "int | None")}


@dataclass
class Inventory:
    path: Path | None
    defaults: SiteSettings = field(default_factory=SiteSettings)
    sites: dict[str, SiteSettings] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def site_for(self, host: str) -> SiteSettings:
        """The site whose name or host is ``host`` (as given to -H), else the defaults."""
        user = None
        bare = host
        if "@" in bare:
            user, bare = bare.rsplit("@", 1)
        if bare.count(":") == 1:
            bare = bare.split(":", 1)[0]
        if bare in self.sites:
            return self.sites[bare]
        for site in self.sites.values():
            if site.host == bare:
                return site
        return self.defaults.replace(name=bare, host=bare, user=user or self.defaults.user)

    def select(self, sites: list[str] | None = None, group: str | None = None) -> list[SiteSettings]:
        """Sites named in ``sites`` and/or ``group``; every site when neither is given."""
        where = self.path or "hosts.yml"
        names: list[str] = []
        if group:
            if group not in self.groups:
                raise InventoryError(f"unknown group '{group}' in {where} — known: {', '.join(sorted(self.groups)) or 'none'}")
            names.extend(self.groups[group])
        for name in sites or []:
            if name not in self.sites:
                raise InventoryError(f"unknown site '{name}' in {where} — known: {', '.join(sorted(self.sites)) or 'none'}")
            names.append(name)
        if not sites and not group:
            names = list(self.sites)
        seen: list[str] = []
        for name in names:
            if name not in seen:
                seen.append(name)
        return [self.sites[n] for n in seen]


def _check_settings(raw: dict, where: str, allow_conn: bool) -> dict:
    out: dict[str, Any] = {}
    allowed = SETTING_KEYS if allow_conn else SETTING_KEYS - {"host", "port", "user"}
    for key, value in raw.items():
        if key not in allowed:
            raise InventoryError(f"unknown key '{key}' at {where} — known keys: {', '.join(sorted(allowed))}")
        if key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InventoryError(f"'{key}' at {where} must be a whole number, got {value!r} — fix the file")
            if key == "port" and not 1 <= value <= 65535:
                raise InventoryError(f"bad port {value} at {where} — use 1..65535")
            if key != "port" and value < 0:
                raise InventoryError(f"'{key}' at {where} must not be negative — fix the file")
        elif value is not None and not isinstance(value, str):
            raise InventoryError(f"'{key}' at {where} must be a string, got {value!r} — fix the file")
        out[key] = value
    for key in ("db_name", "db_user"):
        if key in out and not _IDENT.match(out[key]):
            raise InventoryError(f"'{key}' at {where} is not a plain SQL identifier: {out[key]!r} — use a-z, 0-9, _")
    for key in ("db_container", "redis_container", "backend_container", "frontend_container", "nginx_container", "volume"):
        if key in out and not _CONTAINER.match(out[key]):
            raise InventoryError(f"'{key}' at {where} is not a valid docker name: {out[key]!r} — fix the file")
    for key in ("app_dir", "backup_dir"):
        if key in out and not str(out[key]).startswith("/"):
            raise InventoryError(f"'{key}' at {where} must be an absolute path — fix the file")
    return out


def parse_inventory(data: Any, path: Path | None) -> Inventory:
    """Validate the YAML document ``data`` (already parsed) into an :class:`Inventory`."""
    where = str(path) if path else "inventory"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InventoryError(f"{where} must be a mapping with defaults/sites/groups — fix the file")
    for key in data:
        if key not in ("defaults", "sites", "groups"):
            raise InventoryError(f"unknown key '{key}' at top level of {where} — known: defaults, sites, groups")
    raw_defaults = data.get("defaults") or {}
    if not isinstance(raw_defaults, dict):
        raise InventoryError(f"'defaults' in {where} must be a mapping — fix the file")
    defaults = SiteSettings(**_check_settings(raw_defaults, f"{where}: defaults", allow_conn=True))
    sites: dict[str, SiteSettings] = {}
    raw_sites = data.get("sites") or {}
    if not isinstance(raw_sites, dict):
        raise InventoryError(f"'sites' in {where} must be a mapping of name → settings — fix the file")
    for key_name, raw in raw_sites.items():
        name = str(key_name)
        if not isinstance(raw, dict):
            raise InventoryError(f"site '{name}' in {where} must be a mapping with at least 'host' — fix the file")
        checked = _check_settings(raw, f"{where}: sites.{name}", allow_conn=True)
        if not checked.get("host"):
            raise InventoryError(f"site '{name}' in {where} has no 'host' — add one")
        sites[name] = defaults.replace(name=name, **checked)
    groups: dict[str, list[str]] = {}
    raw_groups = data.get("groups") or {}
    if not isinstance(raw_groups, dict):
        raise InventoryError(f"'groups' in {where} must be a mapping of name → list of sites — fix the file")
    for gname, members in raw_groups.items():
        if not isinstance(members, list):
            raise InventoryError(f"group '{gname}' in {where} must be a list of site names — fix the file")
        for member in members:
            if str(member) not in sites:
                raise InventoryError(f"group '{gname}' in {where} names unknown site '{member}' — add it under sites")
        groups[str(gname)] = [str(m) for m in members]
    return Inventory(path=path, defaults=defaults, sites=sites, groups=groups)


def user_inventory() -> Path:
    """The operator's own inventory: $XDG_CONFIG_HOME/netmon-rollback/hosts.yml (default ~/.config)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "netmon-rollback" / "hosts.yml"


def inventory_path(explicit: str | None = None) -> Path | None:
    """--inventory, else $NETMON_INVENTORY, else ./hosts.yml, else the user's inventory, else None."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InventoryError(f"inventory {path} not found — check --inventory")
        return path
    env = os.environ.get(INVENTORY_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise InventoryError(f"inventory {path} (from ${INVENTORY_ENV}) not found — fix or unset ${INVENTORY_ENV}")
        return path
    for path in (Path("hosts.yml"), user_inventory()):
        if path.is_file():
            return path
    return None


def load_inventory(explicit: str | None = None) -> Inventory:
    path = inventory_path(explicit)
    if path is None:
        return Inventory(path=None)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise InventoryError(f"{path}{at} is not valid YAML — fix the file") from None
    return parse_inventory(data, path)


def admin_password(site: SiteSettings, prompt: bool = True) -> str | None:
    """The admin password: $NETMON_ADMIN_PASSWORD, a 0600 file from the inventory, or a TTY prompt.

    Returns None when none is available (the login check then fails with a hint).
    """
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if site.admin_password_file:
        path = Path(site.admin_password_file).expanduser()
        try:
            st = path.stat()
        except OSError:
            raise InputError(f"admin_password_file {path} of site {site.name} not found — "
                             "create it (mode 0600) or fix hosts.yml") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            mode = stat.S_IMODE(st.st_mode)
            raise InputError(f"admin_password_file {path} is readable by others (mode {mode:04o}) — chmod 600 it")
        return path.read_text().strip("\r\n")
    if prompt:
        if sys.stdin.isatty():
            return getpass.getpass(f"NetMon admin password for {site.name} ({site.admin_user}): ")
    return None
