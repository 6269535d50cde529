"""Probe results → an ordered plan of steps, each with its exact commands; and the apply loop.

``--dry-run`` prints the same list apply runs. :func:`preflight` is read-only and refuses bad
input with one line; :func:`build_plan` is pure (recorded probe output in, steps out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import commands as cmds
from . import database, dumps, files, stack
from .commands import Command, q
from .dumps import DumpInfo
from .errors import CommandFailed, ConnectError, InputError, PreflightError
from .inventory import SiteSettings
from .probes import APP_FILES, SAFETY_PREFIX, SiteState, dump_backups, is_timescale_image, probe_site, require_site

MODES = ("clean", "restore")


@dataclass
class RollbackOptions:
    mode: str = "clean"
    dump: str | None = None
    commit: str | None = None
    yes: bool = False
    dry_run: bool = False
    safety_dump: bool = True
    timeout: int | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r} — use --mode=clean or --mode=restore")
        if self.dump and self.mode != "restore":
            raise InputError("--dump only applies to --mode=restore — drop it or use --mode=restore")
        if self.timeout is not None and self.timeout <= 0:
            raise InputError("--timeout must be a positive number of seconds")


@dataclass
class Step:
    key: str
    title: str
    commands: list[Command] = field(default_factory=list)
    #: re-probe and re-plan after this step (the fallback start)
    replan: bool = False


@dataclass
class Plan:
    site: str
    mode: str
    ts: str
    steps: list[Step] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    needs_person: list[str] = field(default_factory=list)
    already_done: bool = False
    safety_dump: str | None = None
    dump: DumpInfo | None = None
    revision: str | None = None

    def render(self) -> str:
        label = f"--mode={self.mode}" if self.mode in MODES else self.mode
        lines = [f"Plan for {self.site} ({label}):"]
        for i, step in enumerate(self.steps, 1):
            lines.append(f"  {i}. {step.title}")
            for c in step.commands:
                lines.append(f"       $ {c.display()}")
            if step.replan:
                lines.append("       (then the state is probed again and the rest is planned from it)")
        for item in self.needs_person:
            lines.append(f"  ! needs a person: {item} still mentions TimescaleDB — revert it by hand")
        return "\n".join(lines)


@dataclass
class Preflight:
    state: SiteState
    dump: DumpInfo | None = None
    revision: str | None = None
    files_in_rev: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


def running_plain(site: SiteSettings, state: SiteState) -> bool:
    """Is the database container running the plain image (no TimescaleDB library)?"""
    image = state.container(site.db_container).image or state.db_image
    return not is_timescale_image(image)


def preflight(runner, site: SiteSettings, opts: RollbackOptions) -> Preflight:
    """Read-only: probe, choose and check the dump, find the pre-migration revision, check disk."""
    opts.validate()
    state = probe_site(runner, site)
    require_site(site, state, runner.site)
    pf = Preflight(state)
    if state.rolled_back:
        return pf
    find_revision(runner, site, pf, opts.commit, dry_run=opts.dry_run)
    # the dump (checked in the container: once the database runs, if it does not yet)
    if opts.mode == "restore" and state.db_answers and not restore_already_swapped(site, state):
        path = opts.dump
        instead = "give another dump with --dump"
        if path and not path.startswith("/"):
            path = f"{site.backup_dir}/{path}"
        if not path:
            found = dump_backups(state)
            if not found:
                raise InputError(f"no pre-migration backup {site.backup_dir}/netmon_pre_tsdb_*.dump on {runner.site} — "
                                 "use --mode=clean, or copy one there with push-dump")
            path = found[0].path
            pf.findings.append(f"dump: {path} (newest netmon_pre_tsdb_*.dump)")
            if len(found) > 1:
                instead = f"the next older backup is {found[1].path}: rerun with --dump={found[1].path}"
        else:
            pf.findings.append(f"dump: {path} (--dump)")
        pf.dump = dumps.check_dump(runner, site, path, instead=instead)
        pf.findings.append(f"dump checked: read back whole, {len(pf.dump.counts)} tables with data, "
                           f"{pf.dump.counts.get('public.flow_records', 0)} flow_records rows, no TimescaleDB objects")
    # disk
    if state.db_size:
        need = state.db_size // 2 if opts.safety_dump else 0
        if state.backup_free_kb is not None and need and state.backup_free_kb * 1024 < need:
            raise PreflightError(f"{site.backup_dir} has {state.backup_free_kb // 1024} MiB free, the safety dump may need "
                                 f"{need // 2**20} MiB — free space or use --no-safety-dump")
        if opts.mode == "restore" and state.db_free_kb is not None and state.db_free_kb * 1024 < state.db_size:
            raise PreflightError(f"the database volume has {state.db_free_kb // 1024} MiB free, the side restore may need "
                                 f"{state.db_size // 2**20} MiB — free space or use --mode=clean")
    return pf


def find_revision(runner, site: SiteSettings, pf: Preflight, commit: str | None = None, dry_run: bool = False) -> None:
    """Read-only: how the five files go back — the pre-migration git revision (``commit``, else the
    newest commit on the plain image) or the manual revert (its inputs read into ``pf.state``).
    Refuses, changing nothing, when neither can revert files that still use TimescaleDB."""
    state = pf.state
    if commit:
        if not state.git:
            raise InputError(f"--commit given but {site.app_dir} on {runner.site} is not a git repository — drop --commit")
        out = runner.run(Command(f"git -C {q(site.app_dir)} rev-parse --verify --quiet {q(commit + '^{commit}')}",
                                 what="resolve --commit", changes=False, ok_codes=(0, 1, 128)))
        if not out.ok or not out.stdout.strip():
            raise InputError(f"commit {commit!r} not found in {site.app_dir} — give a revision from `git log` there")
        pf.revision = out.stdout.strip()
        out = runner.run(Command(f"git -C {q(site.app_dir)} show {q(pf.revision + ':docker-compose.yml')}",
                                 what="compose file at --commit", changes=False, ok_codes=(0, 128)))
        if out.ok and "timescale" in out.stdout.lower():
            raise InputError(f"commit {commit} still runs TimescaleDB in docker-compose.yml — "
                             "give the commit before the migration")
    elif state.git:
        pf.revision = state.pre_migration_rev()
    if pf.revision:
        out = runner.run(Command(f"git -C {q(site.app_dir)} ls-tree -r --name-only {q(pf.revision)} -- "
                                 + " ".join(q(f) for f in APP_FILES), what="files at the revision", changes=False))
        pf.files_in_rev = [f for f in out.stdout.split() if f in APP_FILES]
        how = "--commit" if commit else "newest commit on the plain image"
        pf.findings.append(f"pre-migration revision: {pf.revision[:12]} ({how})")
    else:
        for rel in ("scripts/init.sql", "backend/requirements.txt"):
            if rel in state.files:
                out = runner.run(Command(f"cat {q(site.app_dir + '/' + rel)}", what=f"read {rel}", changes=False))
                state.file_texts[rel] = out.stdout
        state.file_texts["docker-compose.yml"] = state.compose_text
        pf.findings.append("no pre-migration commit found: files will be reverted by hand (manual revert)")
        if state.mentions and not dry_run:
            raise PreflightError(f"{', '.join(state.mentions)} in {site.app_dir} on {runner.site} still use TimescaleDB and no "
                                 "git commit holds the pre-migration version — revert them by hand (runbook step 2, "
                                 "option B) or give --commit, then rerun")


def restore_already_swapped(site: SiteSettings, state: SiteState) -> bool:
    """A previous run swapped the restored database in (an old copy is still there)."""
    return any(d.startswith("netmon_old_") for d in state.databases) and site.db_name in state.databases


def safety_dump_exists(site: SiteSettings, state: SiteState, ts: str) -> bool:
    return any(b.name == f"{SAFETY_PREFIX}{ts}.dump" and b.has_sha for b in state.backups)


def build_plan(site: SiteSettings, pf: Preflight, opts: RollbackOptions, ts: str, where: str | None = None) -> Plan:
    """The ordered steps (pure: probe results in, commands out)."""
    state = pf.state
    plan = Plan(site=where or site.name, mode=opts.mode, ts=ts, findings=list(pf.findings),
                dump=pf.dump, revision=pf.revision)
    if state.rolled_back:
        plan.already_done = True
        return plan
    revert = files_revert_steps(site, pf, ts, plan)

    # phase 1: the database must answer before anything else can be planned
    if not state.db_answers:
        if state.compose_timescale and state.container(site.db_container).status in ("missing", "exited", "created", "dead"):
            plan.steps.append(Step("start-db-as-is", "start the database as it is (TimescaleDB image) to work on it",
                                   stack.start_db(site), replan=True))
        else:
            fallback = files.compose_without_preload(state.compose_text, site.plain_image)
            plan.steps.append(Step("fallback-start", "fallback: start the database on the plain image with "
                                   "-c shared_preload_libraries= (it cannot run as it is)",
                                   files.save_commands(site, state, ts) + stack.down(site)
                                   + [files.write_file_command(site, "docker-compose.yml", fallback)]
                                   + stack.start_db(site), replan=True))
        return plan

    plain = running_plain(site, state)
    if plain and state.timescale_anywhere:
        plan.findings.append("the database runs on the plain image: TimescaleDB's event triggers are disabled before any drop")

    # 1. safety dump
    if opts.safety_dump:
        source = site.db_name if site.db_name in state.databases else None
        olds = [d for d in state.databases if d.startswith("netmon_old_")]
        if olds and not safety_dump_exists(site, state, olds[0].removeprefix("netmon_old_")):
            source = olds[0]  # the pre-rollback data lives there now
        elif olds:
            source = None  # the first run's safety dump is there
        if source:
            final = f"{site.backup_dir}/{SAFETY_PREFIX}{ts}.dump"
            plan.safety_dump = final
            info = DumpInfo(final)
            plan.steps.append(Step("safety-dump", f"safety dump of {source} to {final}",
                                   dumps.make_dump_commands(site, final, info, db=source, what="safety dump")))

    # 2. database work
    other_dbs = [d for d in ("template1", "postgres") if state.extension.get(d)]
    if opts.mode == "clean":
        cmds_clean = database.clean_commands(site, state, plain)
        if cmds_clean:
            plan.steps.append(Step("drop-flow-tables", f"drop flow tables and the timescaledb extension in {site.db_name}",
                                   cmds_clean))
        leftovers = [d for d in state.leftovers if d.startswith("netmon_restore_")]
        if leftovers:
            plan.steps.append(Step("drop-leftovers", "drop unfinished side databases of an earlier restore",
                                   database.drop_database_commands(site, leftovers, force=True)))
    else:
        plan.steps.extend(restore_steps(site, pf, ts, plain))
    if other_dbs:
        plan.steps.append(Step("clean-other-dbs", f"drop the timescaledb extension in {', '.join(other_dbs)}",
                               database.drop_extension_commands(site, other_dbs, plain)))
    preload = database.preload_commands(site, state)
    if preload:
        plan.steps.append(Step("preload", "remove timescaledb from shared_preload_libraries", preload))
    if state.preload_source == "command line" and "timescaledb" in state.preload:
        plan.findings.append("shared_preload_libraries=timescaledb comes from the compose file's command: "
                             "— the file revert removes it")

    # 3. stop, revert, start
    plan.steps.append(Step("stop-stack", "stop the stack", stack.down(site)))
    plan.steps.extend(revert)
    plan.steps.append(Step("start-db", "start the database on the plain image", stack.start_db(site)))
    plan.steps.append(Step("start-app", "start the rest of the stack and wait for the backend's health", stack.start_app(site)))
    return plan


def reset_plan(site: SiteSettings, pf: Preflight, ts: str, where: str | None = None) -> Plan:
    """The last resort (pure): a safety dump when the database answers, the stack stopped, the five
    files reverted to the pre-migration revision (the rollback's own revert step), the volume
    removed, and the stack started fresh on the plain image: the backend recreates its tables and
    the default admin."""
    state = pf.state
    plan = Plan(site=where or site.name, mode="reset", ts=ts, findings=list(pf.findings), revision=pf.revision)
    if state.db_answers and site.db_name in state.databases:
        plan.safety_dump = f"{site.backup_dir}/{SAFETY_PREFIX}{ts}.dump"
        plan.steps.append(Step("safety-dump", f"safety dump of {site.db_name} to {plan.safety_dump}",
                               dumps.make_dump_commands(site, plan.safety_dump, DumpInfo(plan.safety_dump),
                                                        what="safety dump")))
    else:
        plan.findings.append(f"the database does not answer ({state.db_error or 'not running'}): no safety dump possible")
    plan.steps.append(Step("stop-stack", "stop the stack", stack.down(site)))
    if state.compose_timescale or state.mentions:
        plan.steps.extend(files_revert_steps(site, pf, ts, plan))
    plan.steps.append(Step("remove-volume", f"remove the database volume {site.volume} (every row is lost)",
                           stack.remove_volume(site)))
    plan.steps.append(Step("start-db", "start the database fresh on the plain image", stack.start_db(site)))
    plan.steps.append(Step("start-app", "start the rest of the stack and wait for the backend's health "
                                        "(it recreates its tables and the default admin)", stack.start_app(site)))
    return plan


def files_revert_steps(site: SiteSettings, pf: Preflight, ts: str, plan: Plan) -> list[Step]:
    state = pf.state
    steps = []
    save = files.save_commands(site, state, ts)
    if pf.revision:
        revert = files.git_revert_commands(site, pf.revision, pf.files_in_rev or [f for f in APP_FILES if f in state.files])
        steps.append(Step("revert-files", f"revert the migration's files to {pf.revision[:12]}", save + revert))
    else:
        revert, person = files.manual_revert(site, state)
        plan.needs_person = person
        steps.append(Step("revert-files", "revert docker-compose.yml, scripts/init.sql, backend/requirements.txt by hand",
                          save + revert))
    return steps


def restore_steps(site: SiteSettings, pf: Preflight, ts: str, plain: bool) -> list[Step]:
    state = pf.state
    steps: list[Step] = []
    sides = [d for d in state.databases if d.startswith("netmon_restore_")]
    olds = [d for d in state.databases if d.startswith("netmon_old_")]
    if site.db_name not in state.databases and sides:
        # an earlier run stopped between the two renames: finish it
        side = sorted(sides)[-1]
        checks = []
        if pf.dump:
            checks = [Command(cmds.psql(site, database.count_sql(list(pf.dump.counts)), db=side),
                              what=f"check {side} row counts against the dump",
                              check=lambda r, exp=pf.dump.counts: database.check_counts(exp, r.stdout))]
        steps.append(Step("finish-swap", f"finish the swap an earlier run started ({side} → {site.db_name})",
                          checks + database.finish_swap_commands(site, side)))
    elif restore_already_swapped(site, state):
        pass  # restored and swapped in already; the old copy is dropped below
    else:
        side = database.side_name(ts)
        assert pf.dump is not None
        steps.append(Step("restore-side", f"restore {pf.dump.path} into side database {side} while the stack serves",
                          database.restore_side_commands(site, pf.dump.path, side, pf.dump.counts, sorted(sides))))
        steps.append(Step("stop-writers", "stop the writers", stack.stop_writers(site)))
        old = database.old_name(ts)
        steps.append(Step("swap", f"swap the restored database in ({site.db_name} → {old})",
                          database.swap_commands(site, side, old)))
        olds = [*olds, old]
    if olds:
        steps.append(Step("drop-old", f"drop the old database{'s' if len(olds) > 1 else ''} ({', '.join(olds)})",
                          database.drop_database_commands(site, olds)))
    return steps


# --- apply ----------------------------------------------------------------------------------

def apply_plan(runner, plan: Plan) -> list[tuple[str, float]]:
    """Run the plan's steps in order, printing each step's start, end and duration. Under dry-run
    the changes are printed, not sent. Returns (step title, seconds)."""
    done = []
    total = len(plan.steps)
    for i, step in enumerate(plan.steps, 1):
        runner.step = step.key
        runner.printer.progress(f"[{i}/{total}] {step.title} ...")
        started = time.monotonic()
        for command in step.commands:
            if runner.dry_run and command.changes:
                runner.printer.line(f"      would run: {command.display()}")
            try:
                runner.must(command)
            except (CommandFailed, ConnectError):
                runner.printer.progress(f"[{i}/{total}] FAILED: {step.title} ({time.monotonic() - started:.1f}s)")
                raise
        seconds = time.monotonic() - started
        runner.printer.progress(f"[{i}/{total}] done: {step.title} ({seconds:.1f}s)")
        done.append((step.title, seconds))
    return done
