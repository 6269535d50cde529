"""The fab tasks: thin wrappers that find the site, call a per-host procedure, and turn a failed
result into a one-line error and a non-zero exit status."""

from __future__ import annotations

import os

from fabric import task
from invoke.exceptions import Exit

from . import procedures
from .connection import for_site
from .errors import InputError, as_exit
from .inventory import INVENTORY_HELP, SiteSettings, load_inventory
from .plan import RollbackOptions
from .report import Printer, checks_table, dumps_json


def _site(c, inventory: str | None) -> tuple[object, SiteSettings]:
    host = getattr(c, "original_host", None)
    if not host:
        raise InputError("no server given — run as: fab -H SERVER TASK")
    inv = load_inventory(inventory)
    site = inv.site_for(host)
    site = site.replace(name=host) if site.name != host and host not in inv.sites else site
    return for_site(c, site), site


def _finish(result: procedures.HostResult) -> None:
    if not result.ok:
        raise Exit(f"error: {result.error}", code=result.code or 1)


@task(auto_shortflags=False, help={"inventory": INVENTORY_HELP, "json": "print the picture as JSON"})
@as_exit
def status(c, inventory=None, json=False):
    """Read-only picture of a server: containers, TimescaleDB, backups, git, signals, verdict."""
    c, site = _site(c, inventory)
    result = procedures.status_site(c, site, Printer(site.name), as_json=json)
    if json:
        print(dumps_json(result.data if result.ok else {"site": site.name, "error": result.error}))
    _finish(result)


@task(auto_shortflags=False, help={"inventory": INVENTORY_HELP,
            "download": "also copy the dump to this local directory (sha256 checked there)"})
@as_exit
def backup(c, download=None, inventory=None):
    """pg_dump -Fc to backup_dir/netmon_pre_tsdb_<UTC>.dump, read back whole, sha256 recorded."""
    c, site = _site(c, inventory)
    _finish(procedures.backup_site(c, site, Printer(site.name), download=download))


@task(auto_shortflags=False, help={
    "mode": "clean (drop flow tables, keep everything else) or restore (the pre-migration dump)",
    "dump": "restore: dump on the server (default: newest netmon_pre_tsdb_*.dump in backup_dir)",
    "commit": "git revision to revert the five files to (default: newest commit on the plain image)",
    "yes": "do not ask for confirmation",
    "dry-run": "probe and print the plan with its exact commands; change nothing",
    "no-safety-dump": "skip the safety dump of the current database (not recommended)",
    "timeout": "timeout in seconds for any one remote command (default 1800)",
    "inventory": INVENTORY_HELP,
})
@as_exit
def rollback(c, mode=None, dump=None, commit=None, yes=False, dry_run=False, no_safety_dump=False, timeout=None,
             inventory=None):
    """Roll the server back from TimescaleDB to plain PostgreSQL (--mode=clean|restore)."""
    if not mode:
        raise InputError("no mode given — use --mode=clean or --mode=restore")
    try:
        seconds = int(timeout) if timeout is not None else None
    except ValueError:
        raise InputError(f"--timeout must be a whole number of seconds, got {timeout!r}") from None
    opts = RollbackOptions(mode=mode, dump=dump, commit=commit, yes=yes, dry_run=dry_run,
                           safety_dump=not no_safety_dump, timeout=seconds)
    opts.validate()
    c, site = _site(c, inventory)
    _finish(procedures.rollback_site(c, site, opts, printer=Printer(site.name)))


@task(auto_shortflags=False, help={"json": "print the checks as JSON", "inventory": INVENTORY_HELP})
@as_exit
def verify(c, json=False, inventory=None):
    """The runbook's checks plus the real ones; a table, non-zero exit when any fails."""
    c, site = _site(c, inventory)
    printer = Printer(site.name, quiet=json)
    result = procedures.verify_result(c, site, printer, as_json=json)
    if json:
        print(dumps_json({"site": site.name, "ok": result.ok, "checks": result.checks, "error": result.error or None}))
    elif not result.checks and result.error:
        pass
    _finish(result)


@task(auto_shortflags=False, help={"confirm": "the server's name exactly as given to -H (required)",
                                   "commit": "git revision to revert the five files to (default: newest on the plain image)",
                                   "inventory": INVENTORY_HELP})
@as_exit
def reset(c, confirm=None, commit=None, inventory=None):
    """Last resort: files reverted, volume removed, fresh start on plain PostgreSQL (ALL data lost; safety dump first)."""
    host = getattr(c, "original_host", None)
    if not confirm or confirm != host:
        raise InputError(f"reset destroys every row on {host}: rerun with --confirm={host} to mean it")
    c, site = _site(c, inventory)
    _finish(procedures.reset_site(c, site, Printer(site.name), commit=commit))


@task(auto_shortflags=False, name="fetch-dump",
      help={"dump": "dump path on the server (default: the newest netmon_pre_tsdb_*.dump)",
            "to": "local directory (default: .)", "inventory": INVENTORY_HELP})
@as_exit
def fetch_dump(c, dump=None, to=".", inventory=None):
    """Copy a dump from the server to this machine, sha256 checked at both ends."""
    c, site = _site(c, inventory)
    _finish(procedures.fetch_dump_site(c, site, dump, os.path.expanduser(to), Printer(site.name)))


@task(auto_shortflags=False, name="push-dump",
      help={"file": "local dump file to copy to the server's backup_dir", "inventory": INVENTORY_HELP})
@as_exit
def push_dump(c, file, inventory=None):
    """Copy a local dump to the server's backup_dir, sha256 checked at both ends."""
    c, site = _site(c, inventory)
    _finish(procedures.push_dump_site(c, site, file, Printer(site.name)))


__all__ = ["backup", "checks_table", "fetch_dump", "push_dump", "reset", "rollback", "status", "verify"]
