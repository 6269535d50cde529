"""The fab tasks: thin wrappers that find the site, call a per-host procedure, and turn a failed
result into a one-line error and a non-zero exit status.

Fabric's own options mean what they say: ``-e/--echo`` prints each remote command (masked, by the
runner), ``-T/--command-timeout`` bounds each remote command, ``--dry`` is ``rollback --dry-run``
(other tasks refuse it: fab's own dry run would feed the probes empty output)."""

from __future__ import annotations

import os
import sys

from fabric import task
from invoke.exceptions import Exit

from . import html_report, procedures, restore_check
from .connection import for_site
from .errors import InputError, as_exit
from .inventory import INVENTORY_HELP, SiteSettings, load_inventory
from .plan import RollbackOptions
from .report import Printer, checks_table, dumps_json

#: The installed command's name (fabfile/cli.py runs the tasks under it).
INSTALLED = "netmon-rollback"
REPORT_HELP = "where to write the HTML run report (default: beside the audit log)"


def _fab_dry(c) -> bool:
    return bool(c.config.run.dry)


def no_fab_dry(c, task: str) -> None:
    """Refuse fab's (or invoke's) --dry for a task that has no dry run of its own."""
    if _fab_dry(c):
        raise InputError(f"--dry works with rollback only (it means rollback --dry-run); {task} has no dry run — drop --dry")


def _program() -> str:
    """The command the user typed: the installed ``netmon-rollback``, else ``fab``."""
    return INSTALLED if os.path.basename(sys.argv[0]) == INSTALLED else "fab"


def _site(c, inventory: str | None, task: str = "") -> tuple[object, SiteSettings]:
    """The connection and settings of the -H host; ``task`` set = refuse fab's --dry for it."""
    if task:
        no_fab_dry(c, task)
    host = getattr(c, "original_host", None)
    if not host:
        raise InputError(f"no server given — run as: {_program()} -H SERVER TASK")
    inv = load_inventory(inventory)
    site = inv.site_for(host)
    site = site.replace(name=host) if site.name != host and host not in inv.sites else site
    command_timeout = c.config.timeouts.command  # fab -T
    if command_timeout:
        site = site.replace(command_timeout=int(command_timeout))
    return for_site(c, site), site


def _report(result: procedures.HostResult, report: str | None, printer: Printer) -> None:
    """Write the run's HTML report and name it, whatever the outcome."""
    printer.line(f"report: {html_report.write_report([result], result.task, report)}")


def _finish(result: procedures.HostResult) -> None:
    if not result.ok:
        raise Exit(f"error: {result.error}", code=result.code or 1)


@task(auto_shortflags=False, help={"inventory": INVENTORY_HELP, "json": "print the picture as JSON"})
@as_exit
def status(c, inventory=None, json=False):
    """Read-only picture of a server: containers, TimescaleDB, backups, git, signals, verdict."""
    c, site = _site(c, inventory, "status")
    result = procedures.status_site(c, site, Printer(site.name), as_json=json)
    if json:
        print(dumps_json(result.data if result.ok else {"site": site.name, "error": result.error}))
    _finish(result)


@task(auto_shortflags=False, help={"inventory": INVENTORY_HELP,
            "download": "also copy the dump to this local directory (sha256 checked there)"})
@as_exit
def backup(c, download=None, inventory=None):
    """pg_dump -Fc to backup_dir/netmon_pre_tsdb_<UTC>.dump, read back whole, sha256 recorded."""
    c, site = _site(c, inventory, "backup")
    _finish(procedures.backup_site(c, site, Printer(site.name), download=download))


@task(auto_shortflags=False, help={
    "mode": "convert (hypertables become plain tables, every row kept, online), clean (drop flow tables, keep the rest) "
            "or restore (the pre-migration dump)",
    "dump": "restore: dump on the server (default: newest netmon_pre_tsdb_*.dump in backup_dir)",
    "commit": "git revision to revert the five files to (default: newest commit on the plain image)",
    "yes": "do not ask for confirmation",
    "dry-run": "probe and print the plan with its exact commands; change nothing",
    "no-safety-dump": "skip the safety dump of the current database (not recommended)",
    "timeout": "timeout in seconds for any one remote command (default: fab -T, else 1800)",
    "inventory": INVENTORY_HELP,
    "report": REPORT_HELP,
    "json": "with --dry-run: print the plan as JSON (every step, command and check), nothing else",
})
@as_exit
def rollback(c, mode=None, dump=None, commit=None, yes=False, dry_run=False, no_safety_dump=False, timeout=None,
             inventory=None, report=None, json=False):
    """Roll the server back from TimescaleDB to plain PostgreSQL (--mode=convert|clean|restore)."""
    if not mode:
        raise InputError("no mode given — use --mode=convert (keeps every row), --mode=clean or --mode=restore")
    try:
        seconds = int(timeout) if timeout is not None else None
    except ValueError:
        raise InputError(f"--timeout must be a whole number of seconds, got {timeout!r}") from None
    opts = RollbackOptions(mode=mode, dump=dump, commit=commit, yes=yes, dry_run=dry_run or _fab_dry(c),
                           safety_dump=not no_safety_dump, timeout=seconds)
    opts.validate()
    if json and not opts.dry_run:
        raise InputError("--json prints the plan of a dry run — add --dry-run")
    c, site = _site(c, inventory)
    printer = Printer(site.name, quiet=json)
    result = procedures.rollback_site(c, site, opts, printer=printer)
    if json:
        plan = result.data.get("json_plan") or {"site": site.name, "summary": result.summary, "steps": []}
        print(dumps_json(plan if result.ok else {"site": site.name, "error": result.error}))
        _finish(result)
        return
    _report(result, report, printer)
    _finish(result)


@task(auto_shortflags=False, help={"json": "print the checks as JSON", "inventory": INVENTORY_HELP})
@as_exit
def verify(c, json=False, inventory=None):
    """The runbook's checks plus the real ones; a table, non-zero exit when any fails."""
    c, site = _site(c, inventory, "verify")
    printer = Printer(site.name, quiet=json)
    result = procedures.verify_result(c, site, printer, as_json=json)
    if json:
        print(dumps_json({"site": site.name, "ok": result.ok, "checks": result.checks, "error": result.error or None}))
    _finish(result)


@task(auto_shortflags=False, help={"confirm": "the server's name exactly as given to -H (required)",
                                   "commit": "git revision to revert the five files to (default: newest on the plain image)",
                                   "inventory": INVENTORY_HELP, "report": REPORT_HELP})
@as_exit
def reset(c, confirm=None, commit=None, inventory=None, report=None):
    """Last resort: files reverted, volume removed, fresh start on plain PostgreSQL (ALL data lost; safety dump first)."""
    no_fab_dry(c, "reset")
    host = getattr(c, "original_host", None)
    if not confirm or confirm != host:
        raise InputError(f"reset destroys every row on {host}: rerun with --confirm={host} to mean it")
    c, site = _site(c, inventory)
    printer = Printer(site.name)
    result = procedures.reset_site(c, site, printer, commit=commit)
    _report(result, report, printer)
    _finish(result)


@task(auto_shortflags=False, name="drop-database",
      help={"name": "the database to drop: one a restore kept (netmon_old_*)", "yes": "do not ask for confirmation",
            "inventory": INVENTORY_HELP})
@as_exit
def drop_database(c, name, yes=False, inventory=None):
    """Drop an old database a restore kept (run with --no-safety-dump): a safety dump of it first."""
    c, site = _site(c, inventory, "drop-database")
    _finish(procedures.drop_kept_site(c, site, name, yes=yes, printer=Printer(site.name)))


@task(auto_shortflags=False, name="fetch-dump",
      help={"dump": "dump path on the server (default: the newest netmon_pre_tsdb_*.dump)",
            "to": "local directory (default: .)", "inventory": INVENTORY_HELP})
@as_exit
def fetch_dump(c, dump=None, to=".", inventory=None):
    """Copy a dump from the server to this machine, sha256 checked at both ends."""
    c, site = _site(c, inventory, "fetch-dump")
    _finish(procedures.fetch_dump_site(c, site, dump, os.path.expanduser(to), Printer(site.name)))


@task(auto_shortflags=False, name="push-dump",
      help={"file": "local dump file to copy to the server's backup_dir", "inventory": INVENTORY_HELP})
@as_exit
def push_dump(c, file, inventory=None):
    """Copy a local dump to the server's backup_dir, sha256 checked at both ends."""
    c, site = _site(c, inventory, "push-dump")
    _finish(procedures.push_dump_site(c, site, file, Printer(site.name)))



@task(auto_shortflags=False, name="restore-check",
      help={"dump": "dump on the server (a bare name is looked up in backup_dir)", "inventory": INVENTORY_HELP})
@as_exit
def restore_check_task(c, dump, inventory=None):
    """Restore DUMP into a throwaway container of the plain image with pg_restore alone; compare row counts."""
    c, site = _site(c, inventory, "restore-check")
    _finish(restore_check.restore_check_site(c, site, dump, Printer(site.name)))

__all__ = ["backup", "checks_table", "drop_database", "fetch_dump", "push_dump", "reset", "restore_check_task", "rollback",
           "status", "verify"]
