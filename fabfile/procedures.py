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

from . import database, dumps
from .commands import Command, q
from .connection import harden, open_checked
from .dumps import DumpInfo
from .errors import CommandFailed, ConnectError, InputError, PreflightError, Refused, RollbackError, VerifyFailed
from .html_report import downtime_windows
from .inventory import SiteSettings, admin_password
from .journal import append, new_run_id, now_iso, unfinished
from .lock import ServerLock
from .lock import me as lock_me
from .plan import (
    RESUME_FACTS,
    Applied,
    Plan,
    Preflight,
    RollbackOptions,
    Step,
    apply_plan,
    build_plan,
    find_revision,
    finish_plan,
    preflight,
    reset_plan,
    running_plain,
    safety_dump_step,
)
from .report import Printer, checks_table, human_size
from .runner import AuditLog, Runner
from .site_state import dump_backups, probe_site, require_known, require_site
from .status import status_report
from .verify import Check, verify_checks, verify_state

NOTES = {
    "clean": [
        "Flow data gap: the clean mode dropped flow_records and flow_summary_5m. New flows accumulate from now on;",
        "  flow_summary_5m fills after the first rollup cycle (5 minutes). The flows it dropped are in the copies",
        "  named below: *_at_stop.dump holds the safety dump with every row the writers added until they stopped",
        "  (it restores on plain PostgreSQL with pg_restore).",
    ],
    "restore": [
        "Restored: the database is back to the pre-migration backup. Rows written after that backup are in the",
        "  copies named below: *_at_stop.dump holds the old database as it was when the writers stopped,",
        "  converted to plain tables (it restores on plain PostgreSQL with pg_restore).",
    ],
    "convert": [
        "Converted: every hypertable and continuous aggregate is a plain table with every row it held when the",
        "  writers stopped (row counts and checksums checked per time slice before TimescaleDB was dropped).",
        "  The safety dump named below is a copy of the database as it was before the convert.",
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


def verify_result(c, site: SiteSettings, printer: Printer | None = None, as_json: bool = False,
                  password: str | None = None) -> HostResult:
    def body() -> HostResult:
        checks = verify_site(c, site, printer, password=password)
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
        with ServerLock(runner.c, runner.site, site.backup_dir, "backup"):
            state = probe_site(runner, site)
            require_site(site, state, runner.site)
            if not state.db_answers:
                raise InputError(f"the database on {runner.site} does not answer ({state.db_error}) — start it, "
                                 "then rerun backup")
            require_known(state, runner.site, "app")
            final = f"{site.backup_dir}/netmon_pre_tsdb_{dumps.utc_stamp()}.dump"
            runner.step = "backup"
            runner.printer.progress(f"pg_dump {site.db_name} → {final}")
            commands = dumps.make_dump_commands(site, final, what="backup", **dumps.portable_args(state, runner.site))
            info = dumps.run_dump(runner, commands, DumpInfo(final))
            tables = len(info.tables)
            lines = [f"backup: {final}", f"size:   {human_size(info.size)} ({info.size} bytes)", f"sha256: {info.sha256}",
                     f"tables: {tables} ({sum(info.counts.values())} rows read back)"]
            data = {"path": final, "size": info.size, "sha256": info.sha256, "tables": tables,
                    "copies": [{"what": "backup", "path": final, "size": info.size, "sha256": info.sha256}]}
            if download:
                local, _ = dumps.fetch(runner, final, Path(download))
                lines.append(f"downloaded: {local} (sha256 checked)")
                data["local"] = str(local)
            if state.extension.get(site.db_name):
                lines.append(f"note: {site.db_name} holds TimescaleDB, so this is a copy of the migrated database (made "
                             "portable: it restores on plain PostgreSQL), not a pre-migration backup; rollback "
                             "--mode=restore refuses it and names the next older dump")
            runner.printer.block("\n".join(lines))
            return HostResult(runner.site, "backup", True, summary=final, data=data, audit_log=str(runner.audit.path))
    return _guard("backup", site, printer, body)


# --- rollback -------------------------------------------------------------------------------

def confirm_on_tty(plan: Plan) -> bool:
    """Ask once on the terminal; refuse when there is none."""
    if not sys.stdin.isatty():
        raise Refused(f"no terminal to confirm the rollback of {plan.site} on — rerun with --yes (or --dry-run to see the plan)")
    answer = input(f"Roll back {plan.site} ({plan.mode})? Type 'yes' to go on: ")
    return answer.strip().lower() in ("y", "yes")


class _Run:
    """One rollback or reset on one site: its runner, the journal records it writes, what it did."""

    def __init__(self, runner: Runner, site: SiteSettings, task: str, yes: bool, confirm: Callable[[Plan], bool] | None):
        self.runner, self.site, self.task, self.yes = runner, site, task, yes
        self.confirm = confirm or confirm_on_tty
        self.applied = Applied()
        self.plans: list[Plan] = []

    def ask(self, plan: Plan) -> None:
        if not self.yes and not self.confirm(plan):
            raise Refused(f"{self.task} of {self.runner.site} not confirmed — nothing more was changed")

    def start(self, plan: Plan, run_id: str | None = None) -> str:
        run_id = run_id or new_run_id()
        record = {"run": run_id, "event": "start", "at": now_iso(), "task": self.task, "mode": plan.mode,
                  "who": lock_me(self.task), "plan": plan.to_dict()}
        self.runner.step = "journal"
        append(self.runner, self.site.backup_dir, [record])
        return run_id

    def apply(self, plan: Plan, run_id: str, start: int = 1, resumed: bool = False) -> None:
        self.plans.append(plan)
        replanned = bool(plan.steps) and plan.steps[-1].replan
        closing = [*({"event": "kept", "db": db} for db in plan.kept), {"event": "end", "replanned": replanned}]
        try:
            apply_plan(self.runner, plan, self.site.backup_dir, run_id, start=start, applied=self.applied, closing=closing,
                       resumed=resumed)
        except CommandFailed as err:
            if plan.undo and self.runner.step in plan.undo_steps:
                raise self.undo(plan, run_id, err) from err
            raise

    def undo(self, plan: Plan, run_id: str, err: CommandFailed) -> CommandFailed:
        """A step that may be undone failed: undo, and end the run in the journal (a rerun plans anew)."""
        failed_step = self.runner.step
        self.runner.step = "undo"
        self.runner.printer.progress("undoing: " + "; ".join(c.what for c in plan.undo))
        try:
            for command in plan.undo:
                self.runner.must(command)
            append(self.runner, self.site.backup_dir, [{"run": run_id, "event": "end", "at": now_iso(), "undone": failed_step}])
        except (CommandFailed, ConnectError) as again:
            return CommandFailed(f"{err.message}; the undo failed too ({again.message}) — rerun the same command "
                                 "to finish or undo it")
        return CommandFailed(f"{err.message} — undone: TimescaleDB's jobs resumed and the copies dropped, {self.runner.site} "
                             "serves on TimescaleDB as before; fix the cause and rerun")

    def data(self) -> dict:
        last = self.plans[-1] if self.plans else None
        return {"timeline": self.applied.timeline, "copies": self.applied.copies,
                "plan": [{"key": st.key, "title": st.title, "commands": [cm.display() for cm in st.commands]}
                         for p in self.plans for st in p.steps],
                "safety_dump": next((cp["path"] for cp in self.applied.copies), last.safety_dump if last else None),
                "needs_person": last.needs_person if last else [], "kept": [d for p in self.plans for d in p.kept]}


def rollback_site(c, site: SiteSettings, opts: RollbackOptions, confirm: Callable[[Plan], bool] | None = None,
                  printer: Printer | None = None, password: str | None = None) -> HostResult:
    """Lock → preflight (read-only) → plan (or the journal's unfinished one) → confirm → apply →
    verify → notes. ``confirm`` is asked with each plan (not with ``opts.yes`` or ``opts.dry_run``)."""
    def body() -> HostResult:
        opts.validate()
        runner = session(c, site, "rollback", printer, dry_run=opts.dry_run, timeout=opts.timeout)
        if opts.dry_run:
            return _rollback(runner, site, opts, confirm, password)
        with ServerLock(runner.c, runner.site, site.backup_dir, "rollback"):
            return _rollback(runner, site, opts, confirm, password)
    return _guard("rollback", site, printer, body)


def _rollback(runner: Runner, site: SiteSettings, opts: RollbackOptions, confirm, password) -> HostResult:
    out = runner.printer
    out.progress(f"preflight on {runner.site} (read-only)")
    pf = preflight(runner, site, opts)
    if password is None:  # a dry run reads it too (an already rolled-back site is judged by verify), never asks
        password = admin_password(site, prompt=not opts.dry_run)
    run = _Run(runner, site, "rollback", opts.yes or opts.dry_run, confirm)
    if pf.resume is not None:
        rec = pf.resume
        plan = Plan.from_dict(rec.plan)
        out.line(f"{rec.describe()}: resuming at step {rec.next_step}")
        if opts.dry_run:
            out.block(plan.render())
            return HostResult(runner.site, "rollback", True, summary=f"dry run: would resume at step {rec.next_step}",
                              data={"resume": rec.describe()}, audit_log=str(runner.audit.path))
        run.applied.copies.extend(rec.copies)
        run.apply(plan, rec.run, start=rec.next_step, resumed=True)
    else:
        plan = build_plan(site, pf, opts, opts.ts or dumps.utc_stamp(), where=runner.site)
        for line in plan.findings:
            out.line(f"  - {line}")
        if plan.already_done:
            checks = verify_state(runner, site, pf.state, password)
            failed = [ch.name for ch in checks if not ch.ok]
            if not failed:
                out.line(f"{runner.site} is already rolled back (plain PostgreSQL, no TimescaleDB anywhere, every check "
                         "passes): nothing to change.")
                out.block(checks_table(checks))
                return HostResult(runner.site, "rollback", True, summary="already rolled back", checks=checks,
                                  audit_log=str(runner.audit.path))
            plan = finish_plan(site, pf.state, failed, opts.ts or dumps.utc_stamp(), runner.site)
            out.line(f"  - {plan.findings[0]}")
        if opts.expect_plan is not None and plan.commands() != opts.expect_plan:
            raise PreflightError(f"the state of {runner.site} changed since its plan was shown — nothing was changed; "
                                 "rerun to see the new plan")
        out.block(plan.render())
        if opts.dry_run:
            out.line("dry run: only read-only commands were run; nothing was changed.")
            return HostResult(runner.site, "rollback", True, summary="dry run",
                              data={"plan": [{"key": st.key, "title": st.title, "commands": [cm.display() for cm in st.commands]}
                                             for st in plan.steps], "plan_text": plan.render(),
                                    "steps": [step.title for step in plan.steps],
                                    "plan_commands": plan.commands(), "ts": plan.ts, "json_plan": plan.to_dict()},
                              audit_log=str(runner.audit.path))
        run.ask(plan)
        run.apply(plan, run.start(plan))
    for _ in range(3):  # the fallback start and the connection repair are followed by a plan of the rest
        if not (run.plans[-1].steps and run.plans[-1].steps[-1].replan):
            break
        runner.step = "preflight"
        out.progress("probing again, to plan the rest")
        pf = preflight(runner, site, RollbackOptions(**{**vars(opts), "ts": None}))
        plan = build_plan(site, pf, opts, dumps.utc_stamp(), where=runner.site)
        if plan.already_done:
            break
        out.block(plan.render())
        run.ask(plan)
        run.apply(plan, run.start(plan))
    runner.step = "verify"
    out.progress("verify")
    checks = verify_checks(runner, site, password)
    out.block(checks_table(checks))
    failed = [ch.name for ch in checks if not ch.ok]
    data = run.data()
    out.line("")
    for line in NOTES[opts.mode] + NOTES["common"]:
        out.line(line)
    for item in data["needs_person"]:
        out.line(f"NEEDS A PERSON: {site.app_dir}/{item} still mentions TimescaleDB — revert it by hand.")
    for db in data["kept"]:
        out.line(f"KEPT: the old database {db} (no safety dump was taken) — drop it once you no longer need it: "
                 f"fab -H {runner.site} drop-database {db}")
    for copy in data["copies"]:
        out.line(f"Copy made: {copy['path']} ({human_size(copy['size'])}, sha256 {copy['sha256'][:16]}…, + .sha256)")
    windows = downtime_windows(data["timeline"])
    if windows:
        down = (windows[-1][1] - windows[0][0]).total_seconds()
        out.line(f"Site down: {down:.1f}s in this run (from stopping the writers to the backend's health)")
    out.progress(f"rollback of {runner.site} {'finished' if not failed else 'finished, but verify failed'}")
    return HostResult(runner.site, "rollback", not failed, checks=checks,
                      summary="rolled back" if not failed else "rolled back, verify failed",
                      error="" if not failed else f"verify failed after the rollback of {runner.site}: " + ", ".join(failed),
                      code=0 if not failed else 7, next_step="" if not failed else "look at the failed checks",
                      data=data, audit_log=str(runner.audit.path))


# --- reset ----------------------------------------------------------------------------------

def reset_site(c, site: SiteSettings, printer: Printer | None = None, commit: str | None = None) -> HostResult:
    """The last resort: a copy first (dump, or an archive of the volume when the database does not
    answer), stack stopped, the five files back at the pre-migration revision, volume removed,
    stack started fresh on the plain image, health waited for, and the state read back. The caller
    has checked --confirm."""
    def body() -> HostResult:
        runner = session(c, site, "reset", printer)
        with ServerLock(runner.c, runner.site, site.backup_dir, "reset"):
            out = runner.printer
            out.progress(f"preflight on {runner.site} (read-only)")
            state = probe_site(runner, site)
            require_site(site, state, runner.site)
            require_known(state, runner.site, *RESUME_FACTS)
            run = _Run(runner, site, "reset", True, None)
            resume = unfinished(state.journal)
            if resume is not None and resume.task == "reset":
                out.line(f"{resume.describe()}: resuming at step {resume.next_step}")
                run.applied.copies.extend(resume.copies)
                run.apply(Plan.from_dict(resume.plan), resume.run, start=resume.next_step, resumed=True)
            elif resume is not None:
                raise InputError(f"{resume.describe()} — finish it first: rerun `fab rollback --mode={resume.mode}`")
            else:
                pf = Preflight(state)
                find_revision(runner, site, pf, commit)
                plan = reset_plan(site, pf, dumps.utc_stamp(), where=runner.site)
                for line in plan.findings:
                    out.line(f"  - {line}")
                out.block(plan.render())
                run.apply(plan, run.start(plan))
            runner.step = "check"
            after = probe_site(runner, site)
            if not after.db_answers or after.timescale_anywhere or not running_plain(site, after):
                raise CommandFailed(f"after the reset {runner.site} still does not run plain PostgreSQL "
                                    f"({after.db_error or 'TimescaleDB still set somewhere'}) — run status and look")
            out.line("The database was recreated empty on the plain image; the backend created its tables and the default admin.")
            data = run.data()
            for copy in data["copies"]:
                out.line(f"Copy of the old database: {copy['path']} ({human_size(copy['size'])}, sha256 "
                         f"{copy['sha256'][:16]}…, + .sha256)")
            out.progress(f"reset of {runner.site} finished")
            return HostResult(runner.site, "reset", True, summary="reset", data=data, audit_log=str(runner.audit.path))
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
        with ServerLock(runner.c, runner.site, site.backup_dir, "push-dump"):
            remote, sha = dumps.push(runner, local, site.backup_dir)
        runner.printer.line(f"pushed {local} → {runner.site}:{remote}\nsha256: {sha} (checked at both ends)")
        return HostResult(runner.site, "push-dump", True, summary=remote, data={"remote": remote, "sha256": sha})
    return _guard("push-dump", site, printer, body)



def drop_kept_site(c, site: SiteSettings, name: str, yes: bool = False, printer: Printer | None = None) -> HostResult:
    """Drop a database a restore kept instead of dropping (no safety dump was taken then): a
    checked safety dump of it first, so even now it is never the only copy that goes."""
    def body() -> HostResult:
        if not name.startswith("netmon_old_"):
            raise InputError(f"{name} is not a database a restore kept (netmon_old_*) — give one that status lists as kept")
        runner = session(c, site, "drop-database", printer)
        with ServerLock(runner.c, runner.site, site.backup_dir, "drop-database"):
            state = probe_site(runner, site)
            require_site(site, state, runner.site)
            if name not in state.kept_dbs:
                raise InputError(f"{name} does not exist on {runner.site} — status lists the kept databases")
            final, step = safety_dump_step(site, dumps.utc_stamp(), db=name,
                                           portable=dumps.probe_portable(runner, site, name))
            plan = Plan(site=runner.site, mode="drop-database", ts="", task="drop-database",
                        steps=[step, Step("drop-kept", f"drop {name}", database.drop_database_commands(site, [name]))])
            runner.printer.block(plan.render())
            run = _Run(runner, site, "drop-database", yes, None)
            run.ask(plan)
            run.apply(plan, run.start(plan))
            runner.printer.line(f"dropped {name}; its copy: {final} (+ .sha256)")
            return HostResult(runner.site, "drop-database", True, summary=f"dropped {name}", data=run.data(),
                              audit_log=str(runner.audit.path))
    return _guard("drop-database", site, printer, body)
