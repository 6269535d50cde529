"""The fleet's invoke tasks: verify, status, backup, rollback, rehearse across the sites of the inventory.
They ship with the package: the installed `netmon-fleet` command runs them (fabfile/cli.py), and
the checkout's `invoke` too (tasks.py adds the lab's tasks beside them).

They run the same per-host procedures as the `fab` tasks (fabfile/procedures.py), N sites at a
time, and report once: one table, an HTML report, and the exit status `fab` gives for the same
outcome (fabfile/errors.py). While a batch runs, each site shows one line per step (prefixed,
never interleaved); everything else it printed goes to the report and --json.
"""

from __future__ import annotations

import sys

from invoke import Collection, Exit, task
from tabulate import tabulate

from . import html_report, procedures
from . import rehearse as rehearsal
from .errors import InputError, Refused, as_exit, batch_code
from .fleet import DEFAULT_PARALLEL, Connections, FleetOptions, failed_sites, run_fleet, summary_table, verify_table
from .inventory import INVENTORY_HELP, admin_password, load_inventory
from .plan import RollbackOptions
from .report import Printer, dumps_json, to_jsonable
from .runner import set_log_dir
from .tasks import no_fab_dry

VERIFY_PARALLEL = 8
REPORT_HELP = "where to write the batch's HTML report (default: beside the audit logs)"
FLEET_HELP = {
    "sites": "comma-separated site names from the inventory (default: every site)",
    "group": "a group from the inventory",
    "inventory": INVENTORY_HELP,
    "parallel": f"how many sites at once (default {DEFAULT_PARALLEL})",
    "max-failures": "start no new site after this many failed (0 = no limit; --parallel 1 --max-failures 1 = canary)",
    "ssh-config": "ssh_config file to read host settings from (default ~/.ssh/config)",
    "connect-timeout": "seconds to wait for each SSH connection (default 10)",
    "json": "print the results as JSON",
    "log-dir": "where audit logs and the report go (default: $NETMON_AUDIT_DIR, else $XDG_STATE_HOME/netmon-rollback)",
}


class StepLines(Printer):
    """A site's printer in a batch: every line is kept (report, --json), but only the end of each
    step (done / FAILED) and the run's milestones reach the terminal, plus -e's commands."""

    def __init__(self, inner: Printer):
        super().__init__(inner.site, prefix=inner.prefix, stream=inner.stream, quiet=True)
        self.inner = inner
        self.lines = inner.lines
        self.started = inner.started

    def line(self, text: str = "") -> None:
        (self.inner.line if str(text).startswith("    $ ") else super().line)(text)

    def progress(self, text: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {text}"
        (super().line if text.rstrip().endswith("...") else self.inner.line)(line)


def _select(c, inventory, sites, group, log_dir, task_name: str):
    """The sites to work on; refuse invoke's --dry where it has no meaning, honour --log-dir."""
    if task_name != "rollback":
        no_fab_dry(c, task_name)
    set_log_dir(log_dir or None)
    inv = load_inventory(inventory or None)
    chosen = inv.select([s.strip() for s in sites.split(",") if s.strip()] if sites else None, group or None)
    if not chosen:
        raise InputError(f"no sites in {inv.path or 'the inventory'} — add sites, or pass --inventory PATH")
    return chosen


def _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=False) -> FleetOptions:
    if int(parallel) < 1 or int(max_failures) < 0 or int(connect_timeout) < 1:
        raise InputError("--parallel and --connect-timeout must be >= 1, --max-failures >= 0")
    return FleetOptions(parallel=int(parallel), max_failures=int(max_failures), ssh_config=ssh_config or None,
                        connect_timeout=int(connect_timeout), quiet=quiet)


def _per_site(c, procedure):
    """``procedure(cx, site, printer)`` with invoke's -e and -T carried onto each site's connection,
    and the site's lines cut down to one per step."""
    echo, command_timeout = bool(c.config.run.echo), c.config.timeouts.command

    def work(cx, site, out):
        if echo:
            cx.config.run.echo = True
        if command_timeout:
            site = site.replace(command_timeout=int(command_timeout))
        return procedure(cx, site, StepLines(out))
    return work


def _finish(results, as_json: bool, tables: list[str], report_task: str | None = None, report: str = "") -> None:
    if as_json:
        print(dumps_json([to_jsonable(r) for r in results]))
    else:
        print()
        print("\n\n".join(t for t in tables if t))
    if report_task:
        path = html_report.write_report(results, report_task, report or None)
        print(f"report: {path}", file=sys.stderr if as_json else sys.stdout)
    bad = failed_sites(results)
    if bad:
        raise Exit(f"\n{len(bad)} of {len(results)} site(s) not OK: {','.join(bad)} — "
                   f"rerun with --sites {','.join(bad)} once fixed",
                   code=batch_code([r.code for r in results if not r.ok]))


def _verify_of(results) -> str:
    """One fleet-wide verify table of the sites that got as far as verifying."""
    checked = [r for r in results if r.checks]
    return verify_table(checked) if checked else ""


@task(help={**FLEET_HELP, "parallel": f"how many sites at once (default {VERIFY_PARALLEL})"})
@as_exit
def verify(c, sites="", group="", inventory="", json=False, parallel=VERIFY_PARALLEL, max_failures=0, ssh_config="",
           connect_timeout=10, log_dir=""):
    """Verify checks on every selected site at once: one comparison table, non-zero if any is unhealthy."""
    chosen = _select(c, inventory, sites, group, log_dir, "verify")
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)  # the scroll: -e lines only
    passwords = _passwords(chosen)
    results = run_fleet(chosen, "verify", _per_site(
        c, lambda cx, site, out: procedures.verify_result(cx, site, out, as_json=True, password=passwords[site.name])),
        opts)
    _finish(results, json, [verify_table(results)])


def _passwords(chosen) -> dict[str, str]:
    """The admin password of every site, resolved here, before any worker starts: one prompt per
    distinct source, never N prompts racing on one terminal ("" = none: a worker never prompts)."""
    cache: dict[str, str] = {}
    out = {}
    for site in chosen:
        key = site.admin_password_file or ""
        if key not in cache:
            cache[key] = admin_password(site, prompt=True) or ""
        out[site.name] = cache[key]
    return out


@task(help=FLEET_HELP)
@as_exit
def status(c, sites="", group="", inventory="", json=False, parallel=DEFAULT_PARALLEL, max_failures=0, ssh_config="",
           connect_timeout=10, log_dir=""):
    """Read-only status of every selected site, then a verdict per site."""
    chosen = _select(c, inventory, sites, group, log_dir, "status")
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)
    results = run_fleet(chosen, "status", _per_site(
        c, lambda cx, site, out: procedures.status_site(cx, site, out, as_json=json)), opts)
    rows = [[r.site, r.summary or r.error, r.next_step or "-"] for r in results]
    _finish(results, json, [tabulate(rows, headers=["site", "verdict", "reasons"])])


@task(help={**FLEET_HELP, "report": REPORT_HELP})
@as_exit
def backup(c, sites="", group="", inventory="", json=False, parallel=DEFAULT_PARALLEL, max_failures=0, ssh_config="",
           connect_timeout=10, log_dir="", report=""):
    """A verified pg_dump of every selected site (backup_dir/netmon_pre_tsdb_<UTC>.dump + .sha256); the
    batch's HTML report lists each copy with its size and sha256."""
    chosen = _select(c, inventory, sites, group, log_dir, "backup")
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)
    results = run_fleet(chosen, "backup", _per_site(c, procedures.backup_site), opts)
    _finish(results, json, [summary_table(results)], report_task="backup", report=report)


@task(help={
    **FLEET_HELP,
    "mode": "convert (every row kept, online), clean (drop flow tables, keep the rest) or restore (the pre-migration dump)",
    "dump": "restore: the dump's path on every server (default: each server's newest netmon_pre_tsdb_*.dump)",
    "commit": "git revision to revert the five files to (default: detected per server)",
    "yes": "do not ask for the one batch confirmation",
    "dry-run": "probe every site (read-only) and print each plan; change nothing (invoke --dry: the same)",
    "no-safety-dump": "skip the safety dump of the current database (not advised)",
    "timeout": "seconds any one remote command may take (default: invoke -T, else the inventory's)",
    "report": REPORT_HELP,
})
@as_exit
def rollback(c, mode="", sites="", group="", inventory="", dump="", commit="", yes=False, dry_run=False,
             no_safety_dump=False, timeout=0, json=False, parallel=DEFAULT_PARALLEL, max_failures=0, ssh_config="",
             connect_timeout=10, log_dir="", report=""):
    """Roll the selected sites back, N at a time: one confirmation for the batch, one summary table."""
    dry_run = dry_run or bool(c.config.run.dry)
    ro = RollbackOptions(mode=mode, dump=dump or None, commit=commit or None, yes=True, dry_run=dry_run,
                         safety_dump=not no_safety_dump, timeout=int(timeout) or None)
    ro.validate()
    chosen = _select(c, inventory, sites, group, log_dir, "rollback")
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)
    passwords = _passwords(chosen) if not dry_run else {s.name: None for s in chosen}
    with Connections(opts) as connections:  # one per site: the confirmation's preflight and the run share it
        shown = _confirm_batch(chosen, ro, opts, connections) if not yes and not dry_run else {}

        def one(cx, site, out):
            pinned = shown.get(site.name)
            if pinned is not None and not pinned.ok:
                return procedures.HostResult(site.name, "rollback", False,
                                             error=f"not run: its preflight failed ({pinned.error})",
                                             code=pinned.code or 3, next_step="fix what the error says, then rerun this site")
            extra = {}
            if pinned is not None and "plan_commands" in pinned.data:  # run exactly the plan that was shown
                extra = {"ts": pinned.data["ts"], "expect_plan": pinned.data["plan_commands"]}
            return procedures.rollback_site(cx, site, RollbackOptions(**{**vars(ro), **extra}), printer=out,
                                            password=passwords[site.name])

        results = run_fleet(chosen, "rollback", _per_site(c, one), opts, connections)
    tables = [_plans(results) if dry_run else "", summary_table(results), _verify_of(results)]
    _finish(results, json, tables, report_task="rollback", report=report)



@task(help={**FLEET_HELP, "mode": "the rollback to rehearse on each site: convert, clean or restore",
            "report": REPORT_HELP,
            "measure-restart": rehearsal.MEASURE_RESTART_HELP})
@as_exit
def rehearse(c, mode="", sites="", group="", inventory="", json=False, parallel=DEFAULT_PARALLEL, max_failures=0,
             ssh_config="", connect_timeout=10, log_dir="", report="", measure_restart=False):
    """Rehearse the rollback on a throwaway copy of every selected site's data: one row a site, by predicted downtime."""
    if not mode:
        raise InputError("no mode given — use --mode=convert, --mode=clean or --mode=restore")
    chosen = _select(c, inventory, sites, group, log_dir, "rehearse")
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)
    results = run_fleet(chosen, "rehearse", _per_site(
        c, lambda cx, site, out: rehearsal.rehearse_site(cx, site, mode, out, as_json=True,
                                                        measure_restart=measure_restart)), opts)
    _finish(results, json, [rehearsal.fleet_table(results)], report_task="rehearse", report=report)


def _plans(results) -> str:
    """Each site's plan, one numbered line per step (or why it has none)."""
    lines = []
    for r in results:
        if not r.ok:
            lines.append(f"  {r.site}: preflight FAILED — {r.error}")
        elif r.summary == "already rolled back":
            lines.append(f"  {r.site}: already rolled back — will only verify")
        else:
            lines.append(f"  {r.site}:")
            lines.extend(f"    {i}. {step}" for i, step in enumerate(r.data.get("steps", []), 1))
    return "\n".join(lines)


def _confirm_batch(chosen, ro: RollbackOptions, opts: FleetOptions, connections: Connections) -> dict:
    """Probe every site read-only, show the plans, ask once. No terminal: refuse. Returns each
    site's previewed result: the run then does exactly the plan shown (on the same connections),
    or reports the site."""
    if not sys.stdin.isatty():
        raise Refused("no terminal to confirm the batch on — rerun with --yes (or --dry-run to see the plans)")
    preview = FleetOptions(**{**vars(opts), "quiet": True})
    dry = RollbackOptions(**{**vars(ro), "dry_run": True})
    plans = run_fleet(chosen, "plan", lambda cx, site, out: procedures.rollback_site(cx, site, dry, printer=out),
                      preview, connections)
    print(f"Rollback --mode={ro.mode} of {len(chosen)} site(s), {opts.parallel} at a time"
          + (f", stopping after {opts.max_failures} failure(s)" if opts.max_failures else "") + ":")
    print(_plans(plans))
    if input("Type 'yes' to roll back these sites: ").strip().lower() not in ("y", "yes"):
        raise Refused("not confirmed — nothing was changed")
    return {r.site: r for r in plans}


def collection() -> Collection:
    """The fleet's tasks, a new Collection each call (the checkout's tasks.py adds the lab to its own)."""
    return Collection(verify, status, backup, rollback, rehearse)
