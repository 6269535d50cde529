"""``fab rehearse --mode=...``: the rollback's database steps run on a throwaway copy of the site's
own data, on the server itself, while the live stack keeps serving.

Why: how long a rollback takes, how long the site is down and whether it works at all depend on
the site's data (its size, compressed chunks, an aggregate, other hypertables). The server already
has what it takes to find out: its images, its data, its disk.

How: a throwaway container of the site's own TimescaleDB image on a volume of its own (no published
port, trust authentication), configured as the live one (its postgresql.conf, postgresql.auto.conf
and the compose command's settings), filled with a consistent copy of the live database (``pg_dump``
is one snapshot and stops nothing) restored between ``timescaledb_pre_restore()`` and
``timescaledb_post_restore()``. Then the very plan ``rollback`` would run, built from the live
site's state by :func:`plan.build_plan`, with its database steps pointed at the throwaway (the
site's settings with another ``db_container``); the steps that act on the live stack or its files
are left out and named. The database is then started on the plain image as the real run does and
verify's database checks run there. Whatever happens, the throwaway container, its volume and the
scratch directory go at the end; fixed names, so a rerun removes what a killed run left.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace

from fabric import task

from . import commands as cmds
from . import restart_estimate, stack
from .commands import Command, Expect, q
from .database import count_sql, drop_extension_commands
from .dumps import portable_disk_need, utc_stamp
from .errors import CommandFailed, ConnectError, InputError, PreflightError, as_exit
from .facts.compose import command_preloads
from .facts.parts import rows
from .facts.postgres import FLOW_TABLES, db_probe
from .html_report import rehearsal_order
from .inventory import INVENTORY_HELP, SiteSettings
from .lock import ServerLock
from .plan import MODES, Applied, Plan, RollbackOptions, Step, apply_plan, build_plan, preflight
from .procedures import HostResult, _guard, session
from .report import Printer, dumps_json, human_size, table
from .restore_check import READY_SECONDS, remove_commands
from .site_state import SiteState, apply_db_probe
from .tasks import _finish, _site
from .verify import Check, verify_state

CONTAINER = "netmon-rehearse-db"
VOLUME = "netmon_rehearse_data"
PGDATA = "/var/lib/postgresql/data"
#: the fleet table's first-failure column (the whole error is in --json and the report)
FAILURE_WIDTH = 110
#: what a fresh cluster of the image holds before any data (template databases, WAL)
CLUSTER_BYTES = 64 * 2**20
CONF_FILES = ("postgresql.conf", "postgresql.auto.conf")
#: steps that free disk space (the rehearsal reads its peak before them, and before every downtime step:
#: convert-switch drops the originals its copies replace, swap the database the side one replaces)
FREES_SPACE = ("drop-", "remove-", "clean-")
#: steps of a rollback plan that act on the live stack or its files: never run by a rehearsal
LIVE_STEPS = ("remove-partials", "revert-files", "build", "stop-writers", "start-app", "start-rest")
#: verify's checks that read the database alone (the others ask the live stack)
DB_CHECKS = ("timescaledb extension in", "no timescaledb in any database", "flow_records exists", "is a plain table",
             "shared_preload_libraries without timescaledb", "db runs the plain image", "tables in public")
#: what the predicted downtime holds: the backend's stop and start estimated (the default), measured
#: (--measure-restart), or neither (the estimate could not be read: a lower bound)
DOWNTIME_WHAT = {"estimated": "the database steps inside the window, measured on the copy, plus the live backend's stop "
                              "and start, estimated read-only from its last start, its log and timed read-only twins of "
                              "the real run's commands (--measure-restart measures them instead)",
                 "measured": "the database steps inside the window, measured on the copy, and the live backend's stop and "
                             "start, measured once (--measure-restart)",
                 "lower bound": "the database steps inside the window, measured on the copy; the real run adds the "
                                "backend's stop and start (not rehearsed: they act on the live stack; their estimate "
                                "could not be read; --measure-restart measures them)"}
#: left in the scratch directory while the live backend is restarted: a rehearsal killed meanwhile
#: is followed by one that starts the backend again
RESTARTING = "restarting-backend"
TABLES_SQL = ("SELECT table_schema || '.' || table_name FROM information_schema.tables "
              "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1")


def scratch_dir(site: SiteSettings) -> str:
    """Where the copy's dump and the rehearsed safety dump go (removed at the end)."""
    return f"{site.backup_dir.rstrip('/')}/netmon_rehearse"


def throwaway_site(site: SiteSettings) -> SiteSettings:
    """The site's settings pointed at the throwaway: every command the plan builds from them runs
    there (``db_container``), and the copies it makes land in the scratch directory."""
    return site.replace(db_container=CONTAINER, backup_dir=scratch_dir(site))


# --- what it needs --------------------------------------------------------------------------

def disk_need(state, mode: str) -> int:
    """Bytes the rehearsal needs at its peak: a fresh cluster, the copy (the dump file and the restored
    volume, each at most the database's size), the rehearsed safety dump (its portable scratch copy included)
    and what the mode itself makes (convert: copies of the hypertables; restore: the side database)."""
    size = state.db_size or 0
    extra = {"convert": state.hypertable_bytes or 0, "restore": size}.get(mode, 0)
    return CLUSTER_BYTES + 2 * size + size // 2 + portable_disk_need(state) + extra


def check_disk(state, mode: str, where: str) -> int:
    """Refuse, before anything starts, when the server cannot hold the copy; returns the need."""
    if state.db_size is None:
        raise PreflightError(f"cannot tell how big the database on {where} is (the probe could not read it) — "
                             "the rehearsal needs about twice its size free; run status and look")
    free = [kb * 1024 for kb in (state.db_free_kb, state.backup_free_kb) if kb is not None]
    if not free:
        raise PreflightError(f"cannot tell how much disk {where} has free — the rehearsal needs about "
                             f"{human_size(disk_need(state, mode))}")
    need = disk_need(state, mode)
    if min(free) < need:
        raise PreflightError(f"{where} has {human_size(min(free))} free, the rehearsal's copy of the database needs "
                             f"about {human_size(need)} ({human_size(state.db_size)} database) — free space first; "
                             "nothing was started")
    return need


def image_of(site: SiteSettings, state) -> str:
    return state.container(site.db_container).image or state.db_image


def image_probe(image: str) -> Command:
    return Command(f"docker image inspect --format '{{{{.Id}}}}' {q(image)}", what=f"is {image} on the server",
                   changes=False, ok_codes=(0, 1))


# --- the copy ---------------------------------------------------------------------------------

def live_command(state) -> list[str]:
    """The live container's postgres arguments when they preload timescaledb (compose's command:)."""
    return shlex.split(state.db_command) if command_preloads(state.db_command) else []


def cleanup_commands(site: SiteSettings) -> list[Command]:
    """Remove the throwaway container, its volume and the scratch directory; none there is no error.
    A live backend an interrupted restart measurement left stopped is started again first."""
    marker = q(f"{scratch_dir(site)}/{RESTARTING}")
    return [Command(f"if [ -f {marker} ]; then {stack.start_app(site)[0].cmd} && rm -f {marker}; fi",
                    what="start the live backend again if a restart measurement was interrupted",
                    timeout=site.command_timeout),
            *remove_commands(CONTAINER, VOLUME),
            Command(f"rm -rf {q(scratch_dir(site))}", what=f"remove {scratch_dir(site)}")]


def restart_step(site: SiteSettings) -> Step:
    """The app's part of the downtime, measured on the live stack (only when asked: the site is down
    meanwhile): the real run's stop of the writers, then the real run's start of the backend (the same command) and its health."""
    marker = q(f"{scratch_dir(site)}/{RESTARTING}")
    return Step("measure-restart", "stop and start the live backend once, to measure the app's part of the downtime "
                "(the site is down meanwhile)",
                [Command(f"touch {marker}", what="note the restart (a rerun starts the backend if this one is killed)"),
                 *stack.stop_writers(site), *stack.start_app(site),
                 Command(f"rm -f {marker}", what="the backend serves again")], downtime=True)


def wait_ready(site: SiteSettings) -> Command:
    """TCP answers once the image's initialisation is over (its init server listens on the socket only)."""
    return Command(cmds.dexec(site, "pg_isready", "-h", "127.0.0.1", "-U", site.db_user, "-d", "postgres",
                              container=CONTAINER),
                   what=f"wait for {CONTAINER} to accept connections", poll=READY_SECONDS, changes=True, timeout=30)


def run_command(site: SiteSettings, image: str, args: list[str]) -> Command:
    run = (f"docker run -d --name {q(CONTAINER)} -e POSTGRES_HOST_AUTH_METHOD=trust -e {q('POSTGRES_USER=' + site.db_user)} "
           f"-e {q('POSTGRES_DB=' + site.db_name)} -v {q(VOLUME + ':' + PGDATA)} {q(image)}")
    return Command(" ".join([run, *(q(a) for a in args)]), what=f"start a throwaway {image} container {CONTAINER}")


def throwaway_commands(site: SiteSettings, state, image: str) -> list[Command]:
    """The throwaway on the site's TimescaleDB image, configured as the live database is: its
    config files copied in (read from the live container, which docker cp only reads), the compose
    command's settings, and TimescaleDB only in the databases where the live site has it."""
    tsite, scratch = throwaway_site(site), scratch_dir(site)
    out = [Command(f"mkdir -p {q(scratch)}", what=f"make {scratch}"),
           run_command(site, image, live_command(state)), wait_ready(site)]
    for name in CONF_FILES:
        local = f"{scratch}/{name}"
        out.append(Command(f"docker cp {q(site.db_container + ':' + PGDATA + '/' + name)} {q(local)} && "
                           f"docker cp {q(local)} {q(CONTAINER + ':' + PGDATA + '/' + name)} && rm -f {q(local)}",
                           what=f"copy the live {name} into the throwaway"))
    out += [Command(f"docker restart {q(CONTAINER)}", what=f"restart {CONTAINER} with the live configuration"),
            wait_ready(site)]
    other = [db for db in ("template1", "postgres") if not state.extension.get(db)]
    return out + drop_extension_commands(tsite, other, plain_image=False)


def copy_commands(site: SiteSettings) -> list[Command]:
    """A consistent copy of the live database (pg_dump: one snapshot, nothing stopped), restored as
    TimescaleDB restores a dump: pre_restore, pg_restore, post_restore."""
    tsite = throwaway_site(site)
    dump, inside = f"{scratch_dir(site)}/live.dump", "/tmp/live.dump"  # noqa: S108 - the container's private /tmp
    return [
        Command(cmds.pg_dump_to(site, dump), what=f"pg_dump of the live {site.db_name} (one snapshot; nothing stops)",
                timeout=site.command_timeout),
        Command(f"docker cp {q(dump)} {q(CONTAINER + ':' + inside)}", what="copy the dump into the throwaway"),
        Command(cmds.psql(tsite, "SELECT timescaledb_pre_restore()"), what="timescaledb_pre_restore()"),
        # one job: with -j the catalog tables' rows load in parallel and break their foreign keys, for real
        # too (timescaledb#698; TimescaleDB's docs say not to use -j)
        Command(cmds.dexec(tsite, "pg_restore", "-U", site.db_user, "-d", site.db_name, "--no-owner", "--no-privileges",
                           inside) + " 2>&1",
                what=f"pg_restore into the throwaway's {site.db_name}", check=Expect("restore", site.db_name),
                ok_codes=(0, 1), timeout=site.command_timeout),
        Command(cmds.psql(tsite, "SELECT timescaledb_post_restore()"), what="timescaledb_post_restore()"),
        Command(cmds.dexec(tsite, "rm", "-f", inside) + f" && rm -f {q(dump)}", what="remove the dump"),
    ]


def plain_start_commands(site: SiteSettings) -> list[Command]:
    """The real run's start-db on the throwaway: the container recreated on the plain image, on the
    same volume, with the reverted compose file's (no) command, and waited for."""
    return [Command(f"docker rm -f {q(CONTAINER)}", what=f"stop and remove {CONTAINER}"),
            run_command(site, site.plain_image, []), wait_ready(site)]


def disk_probe(site: SiteSettings) -> Command:
    """Bytes the throwaway's volume and the scratch directory hold now."""
    mount = f"$(docker volume inspect --format '{{{{.Mountpoint}}}}' {q(VOLUME)} 2>/dev/null)"
    return Command(f"m={mount}; du -sk ${{m:+\"$m\"}} {q(scratch_dir(site))} 2>/dev/null | awk '{{s+=$1}} END {{print s*1024}}'",
                   what="disk used by the rehearsal", changes=False, ok_codes=tuple(range(256)))


def peaks_after(plan: Plan, i: int) -> bool:
    """Is the disk at a peak after step ``i`` (1-based)? Before a step that drops or removes, and before
    every downtime step (convert-switch and swap free what their copies replace), so the peak is read
    before each of them and at the end (a round trip per sample, not per step)."""
    if i == len(plan.steps):
        return True
    step = plan.steps[i]
    return step.downtime or step.key.startswith(FREES_SPACE)


# --- the plan -------------------------------------------------------------------------------

def rehearsal_plan(site: SiteSettings, pf, plan: Plan, measure_restart: bool = False) -> tuple[Plan, list[str]]:
    """The rollback's plan as the rehearsal runs it: the pull first (nothing made before it, as in
    the real run), the copy, the database steps as built, start-db on the throwaway, and with
    ``measure_restart`` the live backend's stop and start. Returns the plan and the titles of the
    steps left out (they act on the live stack or its files)."""
    state = pf.state
    image = image_of(site, state)
    skipped = [s.title for s in plan.steps if s.key in LIVE_STEPS]
    pulls = [s for s in plan.steps if s.key == "pull-image"]
    steps = [*pulls,
             Step("rehearse-throwaway", f"start a throwaway {image} container configured as {site.db_container}",
                  throwaway_commands(site, state, image)),
             Step("rehearse-copy", f"copy the live {site.db_name} into it (pg_dump, pre_restore, pg_restore, post_restore)",
                  copy_commands(site))]
    for step in plan.steps:
        if step.key in LIVE_STEPS or step.key == "pull-image":
            continue
        steps.append(Step("start-db", f"{step.title} (the throwaway)", plain_start_commands(site), downtime=True)
                     if step.key == "start-db" else step)
    if measure_restart:
        steps.append(restart_step(site))
    return Plan(site=plan.site, mode=plan.mode, ts=plan.ts, steps=steps, task="rehearse"), skipped


def table_counts(runner, tsite: SiteSettings, extra: list[str]) -> dict[str, int]:
    """Rows of every base table in public, and of ``extra`` (a continuous aggregate is a view)."""
    out = runner.must(Command(cmds.psql(tsite, TABLES_SQL), what="the throwaway's tables", changes=False))
    names = sorted({r[0] for r in rows(out.stdout) if r and r[0]} | {f"public.{x}" for x in extra})
    if not names:
        return {}
    out = runner.must(Command(cmds.psql(tsite, count_sql(names)), what="count every table's rows", changes=False,
                              timeout=tsite.command_timeout))
    return {r[0]: int(r[1]) for r in rows(out.stdout) if len(r) >= 2 and r[1].isdigit()}


def kept_and_lost(before: dict[str, int], after: dict[str, int]) -> list[dict]:
    """Per table: rows before the steps, after them, kept and lost (a table gone lost them all)."""
    out = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        kept = a if b is None else 0 if a is None else min(a, b)
        out.append({"table": name, "before": b, "after": a, "kept": kept, "lost": 0 if b is None else b - kept})
    return out


def db_checks(runner, site: SiteSettings, tsite: SiteSettings, state, mode: str) -> list[Check]:
    """verify's database checks, on the throwaway now running the plain image. After a clean the
    flow tables are gone until the backend's start recreates them (not rehearsed): what is checked
    instead is that every other table is there."""
    probed = SiteState(db_name=site.db_name, db_image=site.plain_image)
    apply_db_probe(probed, runner.run(db_probe(tsite)).stdout)
    probed.containers[CONTAINER] = replace(state.container(site.db_container), name=CONTAINER, image=site.plain_image)
    checks = [c for c in verify_state(runner, tsite, probed, None, ingest_wait=0) if any(k in c.name for k in DB_CHECKS)]
    if mode != "clean":
        return checks
    checks = [c for c in checks if not any(t in c.name for t in FLOW_TABLES) and "tables in public" not in c.name]
    expected = site.expected_tables - len(FLOW_TABLES)
    gone = [t for t in FLOW_TABLES if t in probed.relations]
    checks.append(Check("tables in public before the backend recreates the flow tables", str(expected),
                        str(probed.table_count), probed.table_count == expected))
    checks.append(Check("flow tables dropped", "none left", ", ".join(gone) or "none left", not gone))
    return checks


# --- the procedure --------------------------------------------------------------------------

def rehearse(runner, site: SiteSettings, mode: str, ts: str, measure_restart: bool = False) -> dict:
    """Run the rehearsal; the report as data. Raises a :class:`RollbackError` only for a refusal
    before anything started; a failing step is reported (``passed`` False, the step, its error)."""
    opts = RollbackOptions(mode=mode, yes=True)
    pf = preflight(runner, site, opts, task="rehearse")
    state = pf.state
    if state.rolled_back:
        raise InputError(f"{runner.site} is already rolled back: there is nothing to rehearse")
    need = check_disk(state, mode, runner.site)
    image = image_of(site, state)
    if not image or not runner.run(image_probe(image)).ok:
        raise PreflightError(f"the database's image {image or '?'} is not on {runner.site}: the throwaway copy needs it "
                             "— nothing was started")
    tsite = throwaway_site(site)
    plan, skipped = rehearsal_plan(site, pf, build_plan(tsite, pf, opts, ts, where=runner.site), measure_restart)
    report = {"site": runner.site, "mode": mode, "passed": False, "failed_step": "", "error": "", "timeline": [],
              "not_rehearsed": skipped, "tables": [], "checks": [], "disk_needed": need, "peak_disk": 0,
              "predicted_downtime": None, "restart_measured": False, "restart_estimate": None,
              "downtime_measured": None, "downtime_estimated": None}
    runner.step = "cleanup"
    for command in cleanup_commands(site):
        runner.must(command)
    if not measure_restart:
        runner.step = "estimate-restart"
        report["restart_estimate"] = restart_estimate.estimate(runner, site)
    before: dict[str, int] = {}
    applied = Applied()
    report["timeline"] = applied.timeline
    try:
        for i, step in enumerate(plan.steps, 1):
            apply_plan(runner, plan, start=i, end=i, applied=applied)
            if peaks_after(plan, i):
                sample = runner.run(disk_probe(site)).stdout.strip()
                report["peak_disk"] = max(report["peak_disk"], int(sample) if sample.isdigit() else 0)
            if step.key == "rehearse-copy":
                runner.step = "count"
                before = table_counts(runner, tsite, state.caggs)
        runner.step = "verify"
        after = table_counts(runner, tsite, [])
        report["tables"] = kept_and_lost(before, after)
        checks = db_checks(runner, site, tsite, state, mode)
        report["checks"] = [{"name": c.name, "expected": c.expected, "actual": c.actual, "ok": c.ok} for c in checks]
        failed = [c for c in checks if not c.ok]
        report["passed"] = not failed
        if failed:
            report["failed_step"], report["error"] = "verify", f"{failed[0].name}: {failed[0].actual}"
    except (CommandFailed, ConnectError) as err:
        report["failed_step"], report["error"] = runner.step, err.message
    finally:
        runner.step = "cleanup"
        try:
            for command in cleanup_commands(site):
                runner.run(command)
        except ConnectError:
            pass  # the link is gone: the next rehearsal removes what this one left
    measured = round(sum(s["seconds"] for s in report["timeline"] if s["downtime"]), 3)
    report["restart_measured"] = any(s["key"] == "measure-restart" and s["ok"] for s in report["timeline"])
    estimated = (report["restart_estimate"] or {}).get("seconds")
    report["downtime_measured"], report["downtime_estimated"] = measured, estimated
    report["predicted_downtime"] = round(measured + (estimated or 0), 3)
    return report


def downtime_kind(report: dict) -> str:
    """How the predicted downtime's backend part was had: a key of :data:`DOWNTIME_WHAT`."""
    if report.get("restart_measured"):
        return "measured"
    return "estimated" if report.get("downtime_estimated") is not None else "lower bound"


def render(report: dict) -> str:
    """The report as a person reads it."""
    lines = [table([[s["key"], f"{s['seconds']:.1f}s", "down" if s["downtime"] else "", "ok" if s["ok"] else "FAILED"]
                    for s in report["timeline"]], ["step", "took", "", ""])]
    if report["tables"]:
        lines += ["", table([[t["table"], t["before"], t["after"], t["kept"], t["lost"]] for t in report["tables"]
                             if t["lost"] or t["table"].endswith(("flow_records", "flow_summary_5m"))],
                            ["table", "before", "after", "kept", "lost"]),
                  f"({sum(1 for t in report['tables'] if not t['lost'])} of {len(report['tables'])} tables keep every row)"]
    if report["checks"]:
        lines += ["", table([[c["name"], c["expected"], c["actual"], "PASS" if c["ok"] else "FAIL"]
                             for c in report["checks"]], ["check (on the throwaway)", "expected", "actual", "result"])]
    if report["not_rehearsed"]:
        lines.append("not rehearsed (they act on the live stack or its files): " + "; ".join(report["not_rehearsed"])
                     + ("; the backend's stop and start were measured instead (measure-restart)"
                        if report.get("restart_measured") else ""))
    est = report.get("restart_estimate") or {}
    if est:
        parts = ", ".join(f"{k} {est[k]:.2f}s" if est.get(k) is not None else f"{k} unknown"
                          for k in restart_estimate.PARTS if k in est)
        lines.append(f"the backend's stop and start, estimated: {parts} ({est.get('how', '')})")
    lines.append(f"peak disk: {human_size(report['peak_disk'])} (checked before: about {human_size(report['disk_needed'])})")
    lines.append(f"predicted downtime: {downtime_text(report)}{downtime_parts(report)}, {DOWNTIME_WHAT[downtime_kind(report)]}")
    return "\n".join(lines)


def downtime_text(report: dict) -> str:
    """The figure; a lower bound (≥) when the backend's stop and start were neither measured nor estimated."""
    return ("≥" if downtime_kind(report) == "lower bound" else "") + f"{report['predicted_downtime']:.1f}s"


def downtime_parts(report: dict) -> str:
    """' (1.0s measured on the copy + 0.9s estimated)' when part of the figure is an estimate."""
    if downtime_kind(report) != "estimated":
        return ""
    return f" ({report['downtime_measured']:.1f}s measured on the copy + {report['downtime_estimated']:.1f}s estimated)"


def verdict(report: dict) -> str:
    total = sum(s["seconds"] for s in report["timeline"])
    if report["passed"]:
        return (f"rehearsal of --mode={report['mode']} passed on a copy of {report['site']}'s data: "
                f"{total:.1f}s of steps, predicted downtime {downtime_text(report)}")
    return f"rehearsal of --mode={report['mode']} failed at step '{report['failed_step']}': {report['error']}"


def rehearse_site(c, site: SiteSettings, mode: str, printer: Printer | None = None, as_json: bool = False,
                  measure_restart: bool = False) -> HostResult:
    """The per-host procedure of ``fab rehearse`` (and the fleet's): a HostResult whose data is the report."""
    def body() -> HostResult:
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r} — use --mode=clean, --mode=restore or --mode=convert")
        runner = session(c, site, "rehearse", printer)
        runner.printer.progress(f"rehearsal of --mode={mode} on {runner.site}: preflight (read-only)")
        with ServerLock(runner.c, runner.site, site.backup_dir, "rehearse"):
            report = rehearse(runner, site, mode, utc_stamp(), measure_restart)
        if not as_json:
            runner.printer.block(render(report))
        line = verdict(report)
        runner.printer.line(line)
        if not report["passed"]:
            return HostResult(runner.site, "rehearse", False, error=line, code=CommandFailed.code, data=report,
                              next_step="the real rollback would fail there too: fix that first",
                              audit_log=str(runner.audit.path))
        return HostResult(runner.site, "rehearse", True, summary=line, data=report, audit_log=str(runner.audit.path))
    return _guard("rehearse", site, printer, body)


def fleet_table(results: list[HostResult]) -> str:
    """One row a site, sorted by predicted downtime (sites without a prediction last)."""
    out, passed = [], [r for r in results if r.ok]
    for r in sorted(results, key=rehearsal_order):
        d = r.data
        lost = sum(t["lost"] or 0 for t in d.get("tables", []))
        down = d.get("predicted_downtime")
        error = re.sub(r"^step '[^']*' on \S+: ", "", d.get("error") or r.error)
        failure = f"{d['failed_step']}: {error}" if d.get("failed_step") else error
        out.append([r.site, "pass" if r.ok else "FAIL", "-" if down is None or not r.ok else downtime_text(d),
                    f"{sum(s['seconds'] for s in d.get('timeline', [])):.1f}s" if d.get("timeline") else "-",
                    lost if d.get("tables") else "-", human_size(d["peak_disk"]) if d.get("peak_disk") else "-",
                    "-" if r.ok else failure[:FAILURE_WIDTH] + ("…" if len(failure) > FAILURE_WIDTH else "")])
    kinds = sorted({downtime_kind(r.data) for r in passed}, key=list(DOWNTIME_WHAT).index) or ["lower bound"]
    return (table(out, ["site", "rehearsal", "predicted downtime", "steps took", "rows lost", "peak disk", "first failure"])
            + "\npredicted downtime: " + "; or ".join(DOWNTIME_WHAT[k] for k in kinds))


MEASURE_RESTART_HELP = ("also stop and start the live backend once, to measure the app's part of the downtime "
                        "(the site is down for that long; without it the live stack is not touched)")


@task(name="rehearse", auto_shortflags=False, help={"mode": "the rollback to rehearse: convert, clean or restore",
                                   "json": "print the report as JSON", "inventory": INVENTORY_HELP,
                                   "measure-restart": MEASURE_RESTART_HELP})
@as_exit
def rehearse_task(c, mode=None, json=False, inventory=None, measure_restart=False):
    """Run the rollback's database steps on a throwaway copy of the site's data; the live site is not touched."""
    if not mode:
        raise InputError("no mode given — use --mode=convert, --mode=clean or --mode=restore")
    c, site = _site(c, inventory, "rehearse")
    result = rehearse_site(c, site, mode, Printer(site.name, quiet=json), as_json=json, measure_restart=measure_restart)
    if json:
        print(dumps_json(result.data or {"site": site.name, "error": result.error}))
    _finish(result)
