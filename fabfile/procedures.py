"""Per-host procedures: what each task does on one server, given a context ``c``.

The fab tasks call these with the Connection fab made; the fleet layer calls them with its own
Connection per site (``connection.make_connection``), its own :class:`~fabfile.report.Printer`,
in parallel. Every function returns a :class:`HostResult` (a failed host is a result, not an
exception), and shares nothing between sites.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import dumps
from .commands import Command, q
from .connection import harden, open_checked
from .dumps import DumpInfo
from .errors import CommandFailed, InputError, Refused, RollbackError, VerifyFailed
from .inventory import SiteSettings, admin_password
from .plan import Plan, Preflight, RollbackOptions, apply_plan, build_plan, find_revision, preflight, reset_plan, running_plain
from .probes import dump_backups, probe_site, require_site
from .report import Printer, checks_table, human_age, human_size, table
from .runner import AuditLog, Runner
from .status import status_report
from .verify import Check, verify_checks, verify_state

NOTES = {
    "clean": [
        "Flow data gap: the clean mode dropped flow_records and flow_summary_5m. New flows accumulate from now on;",
        "  flow_summary_5m fills after the first rollup cycle (5 minutes).",
    ],
    "restore": [
        "Restored: the database is back to the pre-migration backup. Flows recorded after that backup are only",
        "  in the safety dump (netmon_pre_rollback_*.dump).",
    ],
    "common": [
        "Retention: the application's scheduled_cleanup job (every 6 hours) deletes old rows with DELETE ... WHERE",
        "  timestamp < cutoff: flow_records and flow_summary_5m by max_flow_age_days (default 30),",
        "  interface_metrics and device_metric_history by max_metric_age_days (default 90). No change needed.",
        "Re-attempting the migration later: take a fresh backup first (fab backup), review what went wrong,",
        "  test on a staging copy, then follow the migration procedure from the beginning.",
    ],
}


@dataclass
class HostResult:
    site: str
    task: str
    ok: bool
    summary: str = ""
    seconds: float = 0.0
    next_step: str = ""
    error: str = ""
    code: int = 0
    checks: list[Check] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    audit_log: str = ""


def session(c, site: SiteSettings, task: str, printer: Printer | None = None, dry_run: bool = False,
            timeout: int | None = None) -> Runner:
    """Harden and open ``c`` (refusing unknown host keys before any command), and make the site's
    runner with its own audit log and printer."""
    name = site.name or getattr(c, "original_host", "local")
    printer = printer or Printer(name)
    harden(c, known_hosts=site.known_hosts)
    open_checked(c)
    audit = AuditLog(name, task)
    return Runner(c, name, printer=printer, audit=audit, dry_run=dry_run, timeout=timeout or site.command_timeout)


def _guard(task: str, site: SiteSettings, printer: Printer | None, body: Callable[[], HostResult]) -> HostResult:
    started = time.monotonic()
    try:
        result = body()
    except RollbackError as err:
        result = HostResult(site.name, task, False, error=err.message, code=err.code,
                            next_step="fix what the error says, then rerun")
        if isinstance(err, VerifyFailed):
            result.next_step = "look at the failed checks, then rerun verify"
    result.seconds = time.monotonic() - started
    return result


# --- status ---------------------------------------------------------------------------------

def status_site(c, site: SiteSettings, printer: Printer | None = None, as_json: bool = False) -> HostResult:
    def body() -> HostResult:
        runner = session(c, site, "status", printer)
        state = probe_site(runner, site, deep=True)
        require_site(site, state, runner.site)
        text, verdict, reasons, data = status_report(runner, site, state)
        if not as_json:
            runner.printer.block(text)
        return HostResult(runner.site, "status", True, summary=verdict, data=data,
                          next_step="; ".join(reasons), audit_log=str(runner.audit.path))
    return _guard("status", site, printer, body)


# --- verify ---------------------------------------------------------------------------------

def verify_site(c, site: SiteSettings, printer: Printer | None = None, password: str | None = None,
                ingest_wait: float | None = None) -> list[Check]:
    """The verify checks of one site (raises RollbackError only when the site cannot be reached)."""
    runner = session(c, site, "verify", printer)
    if password is None:
        password = admin_password(site, prompt=True)
    return verify_checks(runner, site, password, ingest_wait)


def verify_result(c, site: SiteSettings, printer: Printer | None = None, as_json: bool = False) -> HostResult:
    def body() -> HostResult:
        checks = verify_site(c, site, printer)
        failed = [ch.name for ch in checks if not ch.ok]
        if not as_json and printer is not None:
            printer.block(checks_table(checks))
        return HostResult(site.name, "verify", not failed, checks=checks,
                          summary="all checks pass" if not failed else f"{len(failed)} check(s) failed",
                          next_step="" if not failed else "failed: " + ", ".join(failed), code=0 if not failed else 7,
                          error="" if not failed else f"verify failed on {site.name}: " + ", ".join(failed))
    return _guard("verify", site, printer, body)


# --- backup ---------------------------------------------------------------------------------

def backup_site(c, site: SiteSettings, printer: Printer | None = None, download: str | None = None) -> HostResult:
    def body() -> HostResult:
        runner = session(c, site, "backup", printer)
        state = probe_site(runner, site)
        require_site(site, state, runner.site)
        if not state.db_answers:
            raise InputError(f"the database on {runner.site} does not answer ({state.db_error}) — start it, then rerun backup")
        final = f"{site.backup_dir}/netmon_pre_tsdb_{dumps.utc_stamp()}.dump"
        info = DumpInfo(final)
        runner.step = "backup"
        runner.printer.progress(f"pg_dump {site.db_name} → {final}")
        for command in dumps.make_dump_commands(site, final, info, what="backup"):
            runner.must(command)
        size = runner.must(Command(f"stat -c %s {q(final)}", what="size", changes=False)).stdout.strip()
        info.size = int(size) if size.isdigit() else None
        tables = len(info.tables)
        lines = [f"backup: {final}", f"size:   {human_size(info.size)} ({info.size} bytes)", f"sha256: {info.sha256}",
                 f"tables: {tables} ({sum(info.counts.values())} rows read back)"]
        data = {"path": final, "size": info.size, "sha256": info.sha256, "tables": tables}
        if download:
            local, sha = dumps.fetch(runner, final, Path(download))
            lines.append(f"downloaded: {local} (sha256 checked)")
            data["local"] = str(local)
        if state.extension.get(site.db_name):
            lines.append(f"note: {site.db_name} holds TimescaleDB, so this is a copy of the migrated database, not a "
                         "pre-migration backup; rollback --mode=restore refuses it and names the next older dump")
        runner.printer.block("\n".join(lines))
        return HostResult(runner.site, "backup", True, summary=final, data=data, audit_log=str(runner.audit.path))
    return _guard("backup", site, printer, body)


# --- rollback -------------------------------------------------------------------------------

def confirm_on_tty(plan: Plan) -> bool:
    """Ask once on the terminal; refuse when there is none."""
    if not sys.stdin.isatty():
        raise Refused(f"no terminal to confirm the rollback of {plan.site} on — rerun with --yes (or --dry-run to see the plan)")
    answer = input(f"Roll back {plan.site} (--mode={plan.mode})? Type 'yes' to go on: ")
    return answer.strip().lower() in ("y", "yes")


def rollback_site(c, site: SiteSettings, opts: RollbackOptions, confirm: Callable[[Plan], bool] | None = None,
                  printer: Printer | None = None) -> HostResult:
    """Preflight (read-only) → plan → confirm → apply → verify → notes. ``confirm`` is asked once
    with the plan (not asked with ``opts.yes`` or ``opts.dry_run``)."""
    def body() -> HostResult:
        opts.validate()
        runner = session(c, site, "rollback", printer, dry_run=opts.dry_run, timeout=opts.timeout)
        out = runner.printer
        out.progress(f"preflight on {runner.site} (read-only)")
        pf = preflight(runner, site, opts)
        plan = build_plan(site, pf, opts, dumps.utc_stamp(), where=runner.site)
        for line in plan.findings:
            out.line(f"  - {line}")
        if plan.already_done:
            out.line(f"{runner.site} is already rolled back (plain PostgreSQL, no TimescaleDB anywhere): nothing to change.")
            checks = verify_state(runner, site, pf.state, admin_password(site))
            out.block(checks_table(checks))
            failed = [ch.name for ch in checks if not ch.ok]
            return HostResult(runner.site, "rollback", not failed, summary="already rolled back", checks=checks,
                              error="" if not failed else "already rolled back, but verify failed: " + ", ".join(failed),
                              code=0 if not failed else 7, audit_log=str(runner.audit.path))
        out.block(plan.render())
        if opts.dry_run:
            out.line("dry run: only read-only commands were run; nothing was changed.")
            return HostResult(runner.site, "rollback", True, summary="dry run",
                              data={"plan": plan.render(), "steps": [step.title for step in plan.steps]},
                              audit_log=str(runner.audit.path))
        if not opts.yes:
            asker = confirm or confirm_on_tty
            if not asker(plan):
                raise Refused(f"rollback of {runner.site} not confirmed — nothing was changed")
        password = admin_password(site)
        for _ in range(3):
            apply_plan(runner, plan)
            if not any(step.replan for step in plan.steps):
                break
            out.progress("probing again after the database start")
            pf = preflight(runner, site, opts)
            plan = build_plan(site, pf, opts, plan.ts, where=runner.site)
            if plan.already_done:
                break
            out.block(plan.render())
        runner.step = "verify"
        out.progress("verify")
        checks = verify_checks(runner, site, password)
        out.block(checks_table(checks))
        failed = [ch.name for ch in checks if not ch.ok]
        out.line("")
        for line in NOTES[opts.mode] + NOTES["common"]:
            out.line(line)
        for item in plan.needs_person:
            out.line(f"NEEDS A PERSON: {site.app_dir}/{item} still mentions TimescaleDB — revert it by hand.")
        if plan.safety_dump:
            out.line(f"Safety dump: {plan.safety_dump} (+ .sha256)")
        out.progress(f"rollback of {runner.site} {'finished' if not failed else 'finished, but verify failed'}")
        return HostResult(runner.site, "rollback", not failed, checks=checks,
                          summary="rolled back" if not failed else "rolled back, verify failed",
                          error="" if not failed else f"verify failed after the rollback of {runner.site}: " + ", ".join(failed),
                          code=0 if not failed else 7, next_step="" if not failed else "look at the failed checks",
                          data={"safety_dump": plan.safety_dump, "needs_person": plan.needs_person},
                          audit_log=str(runner.audit.path))
    return _guard("rollback", site, printer, body)


# --- reset ----------------------------------------------------------------------------------

def reset_site(c, site: SiteSettings, printer: Printer | None = None, commit: str | None = None) -> HostResult:
    """The last resort: safety dump when the database answers, stack stopped, the five files back at
    the pre-migration revision, volume removed, stack started fresh on the plain image, health
    waited for, and the state read back. The caller has checked --confirm."""
    def body() -> HostResult:
        runner = session(c, site, "reset", printer)
        out = runner.printer
        out.progress(f"preflight on {runner.site} (read-only)")
        state = probe_site(runner, site)
        require_site(site, state, runner.site)
        pf = Preflight(state)
        find_revision(runner, site, pf, commit)
        plan = reset_plan(site, pf, dumps.utc_stamp(), where=runner.site)
        for line in plan.findings:
            out.line(f"  - {line}")
        out.block(plan.render())
        apply_plan(runner, plan)
        runner.step = "check"
        after = probe_site(runner, site)
        if not after.db_answers or after.timescale_anywhere or not running_plain(site, after):
            raise CommandFailed(f"after the reset {runner.site} still does not run plain PostgreSQL "
                                f"({after.db_error or 'TimescaleDB still set somewhere'}) — run status and look")
        out.line("The database was recreated empty on the plain image; the backend created its tables and the default admin.")
        if plan.safety_dump:
            out.line(f"Safety dump of the old database: {plan.safety_dump} (+ .sha256)")
        out.progress(f"reset of {runner.site} finished")
        return HostResult(runner.site, "reset", True, summary="reset", data={"safety_dump": plan.safety_dump},
                          audit_log=str(runner.audit.path))
    return _guard("reset", site, printer, body)


# --- dump copying ---------------------------------------------------------------------------

def fetch_dump_site(c, site: SiteSettings, dump: str | None, to: str, printer: Printer | None = None) -> HostResult:
    def body() -> HostResult:
        runner = session(c, site, "fetch-dump", printer)
        path = dump
        if path and not path.startswith("/"):
            path = f"{site.backup_dir}/{path}"
        if not path:
            state = probe_site(runner, site)
            found = dump_backups(state)
            if not found:
                raise InputError(f"no netmon_pre_tsdb_*.dump in {site.backup_dir} on {runner.site} — give --dump PATH")
            path = found[0].path
        exists = runner.run(Command(f"test -f {q(path)}", what="dump exists", changes=False, ok_codes=(0, 1)))
        if not exists.ok:
            raise InputError(f"{path} not found on {runner.site} — give an existing file with --dump")
        local, sha = dumps.fetch(runner, path, Path(to))
        runner.printer.line(f"fetched {runner.site}:{path} → {local}\nsha256: {sha} (checked at both ends)")
        return HostResult(runner.site, "fetch-dump", True, summary=str(local), data={"local": str(local), "sha256": sha})
    return _guard("fetch-dump", site, printer, body)


def push_dump_site(c, site: SiteSettings, file: str, printer: Printer | None = None) -> HostResult:
    def body() -> HostResult:
        local = Path(file)
        if not local.is_file():
            raise InputError(f"{file} not found — give an existing dump file")
        runner = session(c, site, "push-dump", printer)
        remote, sha = dumps.push(runner, local, site.backup_dir)
        runner.printer.line(f"pushed {local} → {runner.site}:{remote}\nsha256: {sha} (checked at both ends)")
        return HostResult(runner.site, "push-dump", True, summary=remote, data={"remote": remote, "sha256": sha})
    return _guard("push-dump", site, printer, body)


def backups_table(state) -> str:
    return table([[b.name, human_size(b.size), human_age(b.age), "yes" if b.has_sha else "no"] for b in state.backups],
                 ["backup", "size", "age", "sha256"])
