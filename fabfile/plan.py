"""Probe results → an ordered plan of steps, each with its exact commands; and the apply loop.

A plan is data: steps hold commands and declarative checks (no closures), so it can be printed
(``--dry-run``, ``--json``), written to the server's journal before it runs, and run again from the
journal by a later run. :func:`preflight` is read-only and refuses bad input with one line;
:func:`build_plan` is pure (recorded probe output in, steps out).

Order of a rollback (DESIGN.md §2, downtime only where it must be):
safety dump → [restore: side restore] → files reverted and images built/pulled → TimescaleDB taken
out of template1/postgres and of the preload setting — all while the stack serves — then the
downtime: writers stopped → [clean: drops | restore: swap] → db recreated on the plain image →
the backend started → health; then, serving again, redis, frontend and nginx started (what changed
recreated), the old database dropped (only when a checked copy of it exists).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import convert, database, dumps, files, stack
from . import journal as jn
from .commands import Command, q
from .dumps import DumpInfo
from .errors import CommandFailed, ConnectError, InputError, PreflightError
from .expect import seal_output
from .facts.compose import is_timescale_image
from .facts.host import APP_FILES, SAFETY_PREFIX
from .facts.postgres import FLOW_TABLES, OLD_PREFIX, SIDE_PREFIX
from .inventory import SiteSettings
from .runner import batches
from .site_state import SiteState, dump_backups, probe_site, require_known, require_site

MODES = ("clean", "restore", "convert")
#: facts every rollback plan needs read (an unknown one refuses the plan)
PLAN_FACTS = ("databases", "preload", "ext:postgres", "ext:template1", "app", "tsdb", "ps", "compose", "plain_image", "db",
              "containers", "journal", "git", "backups", "files")
#: facts a run reads before it knows what to plan: whether to resume (the journal), the revision (git)
RESUME_FACTS = ("journal", "git")


@dataclass
class RollbackOptions:
    mode: str = "clean"
    dump: str | None = None
    commit: str | None = None
    yes: bool = False
    dry_run: bool = False
    safety_dump: bool = True
    timeout: int | None = None
    #: the fleet pins the plan it showed: same names, and a changed plan is reported, not run
    ts: str | None = None
    expect_plan: list | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r} — use --mode=clean, --mode=restore or --mode=convert")
        if self.dump and self.mode != "restore":
            raise InputError("--dump only applies to --mode=restore — drop it or use --mode=restore")
        if self.timeout is not None and self.timeout <= 0:
            raise InputError("--timeout must be a positive number of seconds")
        if self.mode == "clean" and not self.safety_dump:
            raise InputError("--no-safety-dump with --mode=clean would drop the flow tables with no copy of them — "
                             "drop --no-safety-dump (or use --mode=restore, which then keeps the old database)")
        if self.mode == "convert" and not self.safety_dump:
            raise InputError("--no-safety-dump with --mode=convert would drop the hypertables with only the converted "
                             "tables as their copy — drop --no-safety-dump")


@dataclass
class Step:
    key: str
    title: str
    commands: list[Command] = field(default_factory=list)
    #: re-probe and re-plan after this step (the fallback start)
    replan: bool = False
    #: the site does not serve during this step
    downtime: bool = False
    #: a read-only probe whose success means the step already took effect (a rerun skips it)
    done: Command | None = None

    def to_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "replan": self.replan, "downtime": self.downtime,
                "done": self.done.to_dict() if self.done else None, "commands": [c.to_dict() for c in self.commands]}

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        return cls(data["key"], data["title"], [Command.from_dict(c) for c in data.get("commands", [])],
                   data.get("replan", False), data.get("downtime", False),
                   Command.from_dict(data["done"]) if data.get("done") else None)


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
    kept: list[str] = field(default_factory=list)
    revision: str | None = None
    task: str = "rollback"
    #: run when one of ``undo_steps`` fails: the site goes back to serving exactly as before
    undo: list[Command] = field(default_factory=list)
    undo_steps: list[str] = field(default_factory=list)

    def render(self) -> str:
        label = f"--mode={self.mode}" if self.mode in MODES else self.mode
        lines = [f"Plan for {self.site} ({label}):"]
        for i, step in enumerate(self.steps, 1):
            lines.append(f"  {i}. {step.title}" + ("   [site down]" if step.downtime else ""))
            for c in step.commands:
                lines.append(f"       $ {c.display()}")
            if step.replan:
                lines.append("       (then the state is probed again, and the rest is planned, shown and confirmed)")
            if step.key in self.undo_steps and step.key == self.undo_steps[-1]:
                lines.append(f"       (if steps {', '.join(self.undo_steps)} fail: " + "; ".join(c.what for c in self.undo) + ")")
        for item in self.needs_person:
            lines.append(f"  ! needs a person: {item} still mentions TimescaleDB — revert it by hand")
        for db in self.kept:
            lines.append(f"  ! {db} is kept (no safety dump was asked for): drop it later with `drop-database {db}`")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"site": self.site, "mode": self.mode, "ts": self.ts, "task": self.task, "findings": self.findings,
                "needs_person": self.needs_person, "safety_dump": self.safety_dump, "kept": self.kept,
                "revision": self.revision, "steps": [s.to_dict() for s in self.steps],
                "undo": [c.to_dict() for c in self.undo], "undo_steps": self.undo_steps}

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        return cls(site=data.get("site", "?"), mode=data.get("mode", "?"), ts=data.get("ts", ""),
                   steps=[Step.from_dict(s) for s in data.get("steps", [])], findings=list(data.get("findings", [])),
                   needs_person=list(data.get("needs_person", [])), safety_dump=data.get("safety_dump"),
                   kept=list(data.get("kept", [])), revision=data.get("revision"), task=data.get("task", "rollback"),
                   undo=[Command.from_dict(c) for c in data.get("undo", [])], undo_steps=list(data.get("undo_steps", [])))

    def commands(self) -> list[list[str]]:
        """What the plan would run, step by step (the fleet compares it with what it showed)."""
        return [[c.cmd for c in s.commands] for s in self.steps]


@dataclass
class Preflight:
    state: SiteState
    dump: DumpInfo | None = None
    revision: str | None = None
    files_in_rev: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    resume: jn.RunRecord | None = None


def running_plain(site: SiteSettings, state: SiteState) -> bool:
    """Is the database container running the plain image (no TimescaleDB library)?"""
    image = state.container(site.db_container).image or state.db_image
    return not is_timescale_image(image)


def preflight(runner, site: SiteSettings, opts: RollbackOptions, task: str = "rollback") -> Preflight:
    """Read-only: probe, read the journal, choose and check the dump, find the pre-migration
    revision, check disk and images."""
    opts.validate()
    state = probe_site(runner, site)
    require_site(site, state, runner.site)
    require_known(state, runner.site, *RESUME_FACTS)
    pf = Preflight(state)
    pf.resume = jn.unfinished(state.journal)
    if pf.resume is not None:
        if pf.resume.task != task or (task == "rollback" and pf.resume.mode != opts.mode):
            how = f"fab rollback --mode={pf.resume.mode}" if pf.resume.task == "rollback" else f"fab {pf.resume.task}"
            raise InputError(f"{pf.resume.describe()} — finish it first: rerun `{how}` (same options)")
        return pf
    if state.rolled_back:
        return pf
    state_needs_db = state.db_answers and site.db_name in state.databases and state.databases.get(site.db_name)
    find_revision(runner, site, pf, opts.commit, dry_run=opts.dry_run)
    if opts.mode == "restore":
        path, instead = choose_dump(site, state, opts, pf, runner.site)
        if state_needs_db:
            pf.dump = dumps.check_dump(runner, site, path, instead=instead)
            pf.findings.append(f"dump checked: read back whole, {len(pf.dump.counts)} tables with data, "
                               f"{pf.dump.counts.get('public.flow_records', 0)} flow_records rows, no TimescaleDB objects")
        else:
            dumps.check_dump_file(runner, path, instead)
            pf.dump = DumpInfo(path)
            pf.findings.append("dump: file, sha256 and header checked; it is read back whole once the database answers")
    if state.db_size:
        need = state.db_size // 2 if opts.safety_dump else 0
        if state.backup_free_kb is not None and need and state.backup_free_kb * 1024 < need:
            raise PreflightError(f"{site.backup_dir} has {state.backup_free_kb // 1024} MiB free, the safety dump may need "
                                 f"{need // 2**20} MiB — free space or use --no-safety-dump")
        scratch = dumps.portable_disk_need(state) if opts.safety_dump and not running_plain(site, state) else 0
        if scratch and state.db_free_kb is not None and state.db_free_kb * 1024 < scratch:
            raise PreflightError(f"the database volume has {state.db_free_kb // 1024} MiB free, the portable safety dump's "
                                 f"scratch copy needs about {scratch // 2**20} MiB — free space first")
        need = state.hypertable_bytes or 0
        if opts.mode == "convert" and state.db_free_kb is not None and state.db_free_kb * 1024 < need:
            raise PreflightError(f"the database volume has {state.db_free_kb // 1024} MiB free, convert's copies of the "
                                 f"hypertables need about {need // 2**20} MiB — free space or use --mode=restore")
        if opts.mode == "restore" and state.db_free_kb is not None and state.db_free_kb * 1024 < state.db_size:
            raise PreflightError(f"the database volume has {state.db_free_kb // 1024} MiB free, the side restore may need "
                                 f"{state.db_size // 2**20} MiB — free space or use --mode=clean")
    return pf


def choose_dump(site: SiteSettings, state: SiteState, opts: RollbackOptions, pf: Preflight, where: str) -> tuple[str, str]:
    path = opts.dump
    instead = "give another dump with --dump"
    if path and not path.startswith("/"):
        path = f"{site.backup_dir}/{path}"
    if not path:
        found = dump_backups(state)
        if not found:
            raise InputError(f"no pre-migration backup {site.backup_dir}/netmon_pre_tsdb_*.dump on {where} — "
                             "use --mode=clean, or copy one there with push-dump")
        path = found[0].path
        pf.findings.append(f"dump: {path} (newest netmon_pre_tsdb_*.dump)")
        if len(found) > 1:
            instead = f"the next older backup is {found[1].path}: rerun with --dump={found[1].path}"
    else:
        pf.findings.append(f"dump: {path} (--dump)")
    return path, instead


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


# --- building plans -------------------------------------------------------------------------

def safety_dump_step(site: SiteSettings, ts: str, db: str | None = None, portable: dict | None = None) -> tuple[str, Step]:
    """``portable``: :func:`dumps.portable_args` — a database holding TimescaleDB is copied so that
    the dump restores on the plain image."""
    final = f"{site.backup_dir}/{SAFETY_PREFIX}{ts}.dump"
    return final, Step("safety-dump", f"safety dump of {db or site.db_name} to {final}",
                       dumps.make_dump_commands(site, final, db=db, what="safety dump", **(portable or {})),
                       done=dumps.sealed_probe(final))


def portable_or_plain(state: SiteState, plain: bool, where: str, plan: Plan) -> dict:
    """The safety dump's facts: portable on the TimescaleDB image; on the plain image TimescaleDB's
    rows cannot be read through it, so the dump is pg_dump's own (say so)."""
    if plain:
        if state.extension.get(state.db_name):
            plan.findings.append("the database runs on the plain image: the safety dump is pg_dump's own (its "
                                 "hypertables' rows restore only on a TimescaleDB server)")
        return {}
    return dumps.portable_args(state, where)


def known_true(state: SiteState, where: str, fact: str) -> bool:
    """The fact's value; a plan that depends on it refuses while it is unknown."""
    require_known(state, where, fact)
    return getattr(state, fact) is True


def start_db_with(site: SiteSettings, state: SiteState, ts: str, key: str, title: str, compose_text: str) -> list[Step]:
    """A database that cannot start as it is: the files saved, the compose file rewritten, the db
    started, and the rest planned from a new probe."""
    return [*housekeeping_steps(site, state),
            Step(key, title, [*files.save_commands(site, state, ts),
                              files.write_file_command(site, "docker-compose.yml", compose_text), *stack.start_db(site)],
                 replan=True, downtime=True)]


def housekeeping_steps(site: SiteSettings, state: SiteState) -> list[Step]:
    """Before any change: stale partial files removed, the plain image made present."""
    steps = []
    if state.partials:
        steps.append(Step("remove-partials", f"remove {len(state.partials)} unfinished dump file(s) an earlier run left",
                          [Command("rm -f " + " ".join(q(p) for p in state.partials), what="remove stale .partial files")]))
    if state.plain_image is False:
        steps.append(Step("pull-image", f"pull {site.plain_image} (not on the server) before anything stops",
                          stack.pull_image(site)))
    return steps


def switch_step(site: SiteSettings, srcs: list[tuple[str, str]], title: str) -> Step:
    """Convert's one transaction with the writers stopped (convert mode, and restore's old database)."""
    return Step("convert-switch", title, convert.switch_commands(site, srcs), downtime=True,
                done=convert.switch_done_probe(site))


def other_hypertables(state: SiteState) -> list[str]:
    return sorted({*state.hypertables, *state.caggs} - set(FLOW_TABLES))


def build_plan(site: SiteSettings, pf: Preflight, opts: RollbackOptions, ts: str, where: str | None = None) -> Plan:
    """The ordered steps (pure: probe results in, commands out)."""
    state = pf.state
    plan = Plan(site=where or site.name, mode=opts.mode, ts=ts, findings=list(pf.findings), revision=pf.revision)
    if state.rolled_back:
        plan.already_done = True
        return plan
    name = where or site.name

    # the database must answer, and let us in, before anything else can be planned
    if not state.db_answers:
        require_known(state, name, "ps", "compose", "containers", "db")
        if state.compose_timescale and state.container(site.db_container).status in ("missing", "exited", "created", "dead"):
            plan.steps.append(Step("start-db-as-is", "start the database as it is (TimescaleDB image) to work on it",
                                   stack.start_db(site), replan=True))
        elif not is_timescale_image(state.db_image) and known_true(state, name, "timescale_image"):
            plan.steps.extend(start_db_with(site, state, ts, "start-db-on-timescaledb",
                                            f"start the database on {site.timescale_image} again: its data directory still "
                                            "preloads timescaledb, and only that image reads every chunk for the safety "
                                            "copy (the compose file says the plain image)",
                                            files.compose_on_image(state.compose_text, site.timescale_image)))
        else:
            plan.steps.extend(start_db_with(site, state, ts, "fallback-start",
                                            "fallback: start the database on the plain image with "
                                            "-c shared_preload_libraries= (it cannot run as it is)",
                                            files.compose_without_preload(state.compose_text, site.plain_image)))
        return plan
    if state.databases.get(site.db_name) is False:
        plan.steps.append(Step("allow-connections", f"{site.db_name} refuses connections (a swap stopped half-way): "
                               "allow them again", database.allow_connections_commands(site, site.db_name), replan=True))
        return plan
    require_known(state, name, *PLAN_FACTS)
    if opts.mode == "clean":
        others = other_hypertables(state)
        if others:
            raise PreflightError(f"--mode=clean would empty {', '.join(others)} on {name}: TimescaleDB holds them too, and "
                                 "dropping the extension drops their chunks — use --mode=restore (the pre-migration dump), "
                                 "which keeps a copy of everything")
    if opts.mode == "restore" and site.db_name not in state.databases:
        raise PreflightError(f"database {site.db_name} is missing on {name} — run status and look (a half-done swap?)")

    plain = running_plain(site, state)
    if opts.mode == "convert" and plain and (state.hypertables or state.caggs):
        raise PreflightError(f"--mode=convert reads the hypertables through TimescaleDB, but the database on {name} runs "
                             f"the plain image ({state.container(site.db_container).image or state.db_image}) — start it on "
                             "the TimescaleDB image first, or use --mode=restore")
    if plain and state.timescale_anywhere:
        plan.findings.append("the database runs on the plain image: TimescaleDB's event triggers are disabled before any drop")
    plan.steps.extend(housekeeping_steps(site, state))

    # restore converts the old database too, so that what it held when the writers stopped is kept as
    # plain PostgreSQL (its copy restores anywhere) — when its TimescaleDB can still be read; clean
    # logs what the writers add after its safety dump, to keep it in a copy made after the stop
    readable = not plain and bool(state.hypertables or state.caggs)
    convert_old = opts.mode == "restore" and readable
    keep_written = opts.mode == "clean" and readable and opts.safety_dump
    srcs = convert.sources(state.hypertables, state.caggs) if opts.mode == "convert" or convert_old or keep_written else []
    at_stop = f"{site.backup_dir}/{SAFETY_PREFIX}{ts}_at_stop.dump"

    # while the stack serves: copy, side restore, files, images, other databases, preload
    if keep_written:
        plan.steps.append(Step("capture", f"log every write to {', '.join(n for n, _ in srcs)} from now on (what the "
                               "writers add after the safety dump is kept)", convert.prepare_commands(site, srcs)))
        plan.undo, plan.undo_steps = convert.undo_commands(site), ["capture", "safety-dump"]
    if opts.safety_dump:
        plan.safety_dump, step = safety_dump_step(site, ts, portable=portable_or_plain(state, plain, name, plan))
        plan.steps.append(step)
    side, old = f"{SIDE_PREFIX}{ts}", f"{OLD_PREFIX}{ts}"
    if opts.mode == "restore":
        assert pf.dump is not None
        plan.steps.append(Step("restore-side", f"restore {pf.dump.path} into side database {side} while the stack serves",
                               database.restore_side_commands(site, pf.dump.path, side, pf.dump.counts)))
    if srcs and not keep_written:
        names = ", ".join(n for n, _ in srcs)
        plan.steps += [
            Step("convert-prepare", f"pause TimescaleDB's jobs; a plain copy table and a change log for {names}",
                 convert.prepare_commands(site, srcs)),
            Step("convert-copy", f"copy {names} into the plain tables through TimescaleDB while the stack serves",
                 convert.copy_commands(site, srcs)),
            Step("convert-check", "copy again what was written meanwhile; check every slice (row counts and checksums)",
                 convert.check_commands(site, srcs)),
        ]
        plan.undo, plan.undo_steps = convert.undo_commands(site), ["convert-prepare", "convert-copy", "convert-check"]
    plan.steps.extend(files_revert_steps(site, pf, ts, plan))
    if state.build_services:
        plan.steps.append(Step("build", f"build {', '.join(state.build_services)} from the reverted files while the stack "
                               "serves", stack.build(site, state.build_services)))
    other_dbs = [d for d in ("template1", "postgres") if state.extension.get(d)]
    if other_dbs:
        plan.steps.append(Step("clean-other-dbs", f"drop the timescaledb extension in {', '.join(other_dbs)}",
                               database.drop_extension_commands(site, other_dbs, plain)))
    preload = database.preload_commands(site, state)
    if preload:
        plan.steps.append(Step("preload", "remove timescaledb from shared_preload_libraries (takes effect at the restart)",
                               preload))
    if state.preload_source == "command line" and "timescaledb" in state.preload:
        plan.findings.append("shared_preload_libraries=timescaledb comes from the compose file's command: "
                             "— the file revert removes it")

    # the downtime
    # restore's and convert's next step ends the sessions the backend left, in its own psql session
    plan.steps.append(Step("stop-writers", "stop the writers", stack.stop_writers(site, end_sessions=opts.mode == "clean"),
                           downtime=True))
    if keep_written:
        plan.steps.append(Step("keep-written", "copy what the writers added since the safety dump aside "
                               "(schema netmon_rollback)", convert.keep_commands(site, srcs), downtime=True))
    if opts.mode == "clean":
        drops = database.clean_commands(site, state, plain)
        if drops:
            plan.steps.append(Step("drop-flow-tables", f"drop flow tables and the timescaledb extension in {site.db_name}",
                                   drops, downtime=True))
    elif opts.mode == "convert":
        if srcs or state.extension.get(site.db_name):
            plan.steps.append(switch_step(site, srcs, "last catch-up and check, old tables dropped, copies renamed in, "
                                          "DROP EXTENSION timescaledb — one transaction"))
    else:
        if convert_old:
            plan.steps.append(switch_step(site, srcs, f"convert {site.db_name} (the old database) to plain tables: "
                                          "last catch-up and check, DROP EXTENSION timescaledb — one transaction"))
        plan.steps.append(Step("swap", f"swap the restored database in ({site.db_name} → {old})",
                               database.swap_commands(site, side, old), downtime=True,
                               done=database.swap_done_probe(site, side, old)))
    plan.steps.append(Step("start-db", "recreate the database container on the plain image", stack.start_db(site),
                           downtime=True))
    plan.steps.append(Step("start-app", "start the backend and wait for its health", stack.start_app(site),
                           downtime=True))

    # serving again
    plan.steps.append(start_rest_step(site))
    leftovers = state.side_dbs
    if leftovers:
        plan.steps.append(Step("drop-leftovers", "drop unfinished side databases of an earlier restore",
                               database.drop_database_commands(site, leftovers, force=True)))
    if keep_written:
        plan.steps.append(Step("copy-at-stop", f"the safety dump with every row written until the writers stopped, as "
                               f"one copy: {at_stop}", convert.at_stop_commands(site, srcs, plan.safety_dump, at_stop),
                               done=dumps.sealed_probe(at_stop)))
        plan.steps.append(Step("drop-capture", f"drop the rows copied aside (they are in {at_stop})",
                               [copy_guard(at_stop), *convert.drop_toolkit_commands(site)]))
    if opts.mode == "restore":
        copy = plan.safety_dump
        if convert_old and opts.safety_dump:
            copy = at_stop
            plan.steps.append(Step("copy-old", f"dump the old database {old} as it was when the writers stopped (plain "
                                   f"PostgreSQL now) to {copy}", dumps.make_dump_commands(site, copy, db=old,
                                                                                         what="copy of the old database"),
                                   done=dumps.sealed_probe(copy)))
        if opts.safety_dump:
            plan.steps.append(Step("drop-old", f"drop the old database {old} (its copy: {copy})",
                                   [copy_guard(copy), *database.drop_database_commands(site, [old])]))
        else:
            plan.kept.append(old)
    return plan


def copy_guard(copy: str) -> Command:
    """A dropping step's first command: the copy of what it drops is there and matches its sha256."""
    check = dumps.sealed_probe(copy)
    check.what = f"its copy {copy} is there and matches its sha256"
    check.changes = True  # a step's guard: it runs when the step does (a dry run has no copy to check)
    return check


def finish_plan(site: SiteSettings, state: SiteState, failed: list[str], ts: str, where: str) -> Plan:
    """The database is rolled back but verify fails: start what is not running, wait for health,
    drop what an earlier run left half-made."""
    plan = Plan(site=where, mode="finish", ts=ts)
    plan.findings.append("the database is rolled back, but verify fails: " + ", ".join(failed))
    if state.container(site.db_container).status != "running":
        plan.steps.append(Step("start-db", "start the database", stack.start_db(site), downtime=True))
    redis = state.container(site.redis_container).status != "running"
    plan.steps.append(Step("start-app", f"build and start the backend{' and redis' if redis else ''} and wait for its "
                           "health", stack.start_app(site, build=True, redis=redis), downtime=True))
    plan.steps.append(start_rest_step(site, build=True))
    return plan


def start_rest_step(site: SiteSettings, build: bool = False) -> Step:
    """After the downtime: the services the site does not need to answer (what changed is recreated)."""
    return Step("start-rest", f"{'build and ' if build else ''}start {', '.join(stack.REST_SERVICES)} (the site serves)",
                stack.start_rest(site, build=build))


def reset_plan(site: SiteSettings, pf: Preflight, ts: str, where: str | None = None) -> Plan:
    """The last resort (pure): a safety dump when the database answers, else an archive of the
    volume's files — never no copy; the stack stopped, the five files reverted to the
    pre-migration revision, the volume removed, and the stack started fresh on the plain image."""
    state = pf.state
    plan = Plan(site=where or site.name, mode="reset", ts=ts, findings=list(pf.findings), revision=pf.revision, task="reset")
    plan.steps.extend(housekeeping_steps(site, state))
    if state.db_answers and site.db_name in state.databases:
        require_known(state, plan.site, "app")
        plain = running_plain(site, state)
        plan.safety_dump, step = safety_dump_step(site, ts, portable=portable_or_plain(state, plain, plan.site, plan))
        plan.steps.append(step)
    else:
        require_known(state, plan.site, "ps", "containers", "db")  # "does not answer" must be read, not assumed
        archive = f"{site.backup_dir}/netmon_volume_pre_reset_{ts}.tar.gz"
        plan.findings.append(f"the database does not answer ({state.db_error or 'not running'}): its volume's files are "
                             f"archived to {archive} instead of a dump")
        plan.safety_dump = archive
        plan.steps.append(Step("stop-stack", "stop the stack", stack.down(site), downtime=True))
        plan.steps.append(Step("archive-volume", f"archive the volume {site.volume} to {archive}",
                               stack.archive_volume(site, archive), downtime=True, done=dumps.sealed_probe(archive)))
    if not any(s.key == "stop-stack" for s in plan.steps):
        plan.steps.append(Step("stop-stack", "stop the stack", stack.down(site), downtime=True))
    if state.compose_timescale or state.mentions:
        for step in files_revert_steps(site, pf, ts, plan):
            step.downtime = True
            plan.steps.append(step)
    plan.steps.append(Step("remove-volume", f"remove the database volume {site.volume} (every row is lost)",
                           stack.remove_volume(site), downtime=True))
    plan.steps.append(Step("start-db", "start the database fresh on the plain image", stack.start_db(site), downtime=True))
    plan.steps.append(Step("start-app", "start redis and the backend and wait for the backend's health "
                                        "(it recreates its tables and the default admin)",
                           stack.start_app(site, build=True, redis=True), downtime=True))
    plan.steps.append(start_rest_step(site, build=True))
    return plan


def files_revert_steps(site: SiteSettings, pf: Preflight, ts: str, plan: Plan) -> list[Step]:
    state = pf.state
    save = files.save_commands(site, state, ts)
    if pf.revision:
        revert = files.git_revert_commands(site, pf.revision, pf.files_in_rev or [f for f in APP_FILES if f in state.files])
        return [Step("revert-files", f"revert the migration's files to {pf.revision[:12]}", save + revert)]
    revert, person = files.manual_revert(site, state)
    plan.needs_person = person
    return [Step("revert-files", "revert docker-compose.yml, scripts/init.sql, backend/requirements.txt by hand",
                 save + revert)]


# --- apply ----------------------------------------------------------------------------------

@dataclass
class Applied:
    """What running a plan did: a timeline entry per step, and the copies made."""

    timeline: list[dict] = field(default_factory=list)
    copies: list[dict] = field(default_factory=list)


def apply_plan(runner, plan: Plan, journal_dir: str | None = None, run_id: str | None = None, start: int = 1,
               applied: Applied | None = None, end: int | None = None,
               closing: list[dict] | None = None, resumed: bool = False) -> Applied:
    """Run the plan's steps from ``start`` (to ``end``, default the last) in order, printing each step's start, end and duration,
    and writing each to the server's journal (``journal_dir``). In a ``resumed`` run (a plan read back
    from the journal) a step whose ``done`` probe passes is skipped: it took effect before the stop. A
    plan this run built from its own probe has no step done yet (the probe would have left it out, and
    what it names carries this run's stamp), so its steps spend no probe, in the downtime least of all.
    A step's commands run as few remote scripts
    (:func:`runner.batches`, :meth:`Runner.must_all`: one round trip each, every command still judged
    and logged on its own). Under dry-run the changes are printed, not sent.
    ``closing``: the records that end the run, written with the last step's (one append, one round trip)."""
    applied = applied or Applied()
    total = len(plan.steps)
    pending: list[dict] = []

    def note(**record) -> None:
        if journal_dir and not runner.dry_run:
            pending.append({"run": run_id, "at": jn.now_iso(), **record})

    def flush() -> None:
        if pending:
            jn.append(runner, journal_dir, pending)
            pending.clear()

    for i, step in enumerate(plan.steps, 1):
        if i < start or (end is not None and i > end):
            continue
        runner.step = step.key
        started_at, started = jn.now_iso(), time.monotonic()
        probe = runner.run(step.done) if resumed and step.done is not None and not runner.dry_run else None
        if probe is not None and not runner.judge(step.done, probe):
            runner.printer.progress(f"[{i}/{total}] already done: {step.title}")
            record_copy(step, probe.stdout, applied, note)
            note(event="step", i=i, key=step.key, state="done", seconds=0.0, skipped=True)
            flush()
            applied.timeline.append(_entry(step, started_at, started, True, "", skipped=True))
            continue
        note(event="step", i=i, key=step.key, state="started")
        announced = []

        def announce(i=i, step=step, announced=announced) -> None:
            if not announced:
                announced.append(True)
                runner.printer.progress(f"[{i}/{total}] {step.title} ...")

        # the step's commands in scripts (a dry run prints them one by one); the started record (and
        # what else is pending) rides first in the first script, and the step is announced once the
        # server has written it: a run stopped after the announcement resumes at this step
        groups = [] if runner.dry_run else batches(step.commands)
        lead = jn.inline_command(runner, journal_dir, pending) if pending and groups and not groups[0][0].poll else None
        if lead is not None:
            pending.clear()
        else:
            flush()
            announce()
        try:
            for command in step.commands if runner.dry_run else []:
                if command.changes:
                    runner.printer.line(f"      would run: {command.display()}")
                runner.must(command)
            for k, group in enumerate(groups):
                first = [lead] if k == 0 and lead is not None else []
                outs = runner.must_all(first + group, first_done=announce if first else None)
                for command, out in zip(group, outs[len(first):], strict=True):
                    if command.check is not None and command.check.kind == "seal":
                        record_copy(step, out.stdout, applied, note, path=command.check.arg)
        except (CommandFailed, ConnectError) as err:
            announce()
            runner.printer.progress(f"[{i}/{total}] FAILED: {step.title} ({time.monotonic() - started:.1f}s)")
            if lead is not None and getattr(err, "command", None) is lead:
                err = CommandFailed(f"step '{step.key}' on {runner.site}: the journal could not be written, so the step "
                                    f"did not start ({err.problem})")
                applied.timeline.append(_entry(step, started_at, started, False, err.message))
                raise err from None
            applied.timeline.append(_entry(step, started_at, started, False, err.message))
            if isinstance(err, CommandFailed):
                note(event="step", i=i, key=step.key, state="failed", error=err.message)
                try:
                    flush()
                except (CommandFailed, ConnectError):
                    pass
            raise
        seconds = time.monotonic() - started
        runner.printer.progress(f"[{i}/{total}] done: {step.title} ({seconds:.1f}s)")
        note(event="step", i=i, key=step.key, state="done", seconds=round(seconds, 3))
        if step.key == "drop-old" and i < total:
            flush()
        applied.timeline.append(_entry(step, started_at, started, True, ""))
    if closing and journal_dir and not runner.dry_run:
        pending.extend({"run": run_id, "at": jn.now_iso(), **record} for record in closing)
    flush()
    return applied


def record_copy(step: Step, stdout: str, applied: Applied, note, path: str | None = None) -> None:
    sha, size = seal_output(stdout)
    if len(sha) != 64:
        return
    path = path or next((c.check.arg for c in step.commands if c.check is not None and c.check.kind == "seal"), None)
    if not path:
        return
    copy = {"what": step.key, "path": path, "size": size, "sha256": sha}
    if copy not in applied.copies:
        applied.copies.append(copy)
        note(event="copy", **copy)


def _entry(step: Step, started_at: str, started: float, ok: bool, error: str, skipped: bool = False) -> dict:
    return {"key": step.key, "title": step.title, "started": started_at, "ended": jn.now_iso(),
            "seconds": round(time.monotonic() - started, 3), "downtime": step.downtime, "ok": ok, "error": error,
            "skipped": skipped}
