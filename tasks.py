"""Invoke tasks run from the laptop: the fleet (verify, status, backup, rollback across sites from
the inventory) and the lab (`invoke lab.up|down|status`).

The fleet tasks run the same per-host procedures as the `fab` tasks (fabfile/procedures.py),
N sites at a time, and report once: one table, and an exit status scripts can trust.
"""

from __future__ import annotations

import sys

from invoke import Collection, Exit, task
from tabulate import tabulate

from fabfile import procedures
from fabfile.errors import RollbackError
from fabfile.fleet import DEFAULT_PARALLEL, FleetOptions, failed_sites, run_fleet, summary_table, verify_table
from fabfile.inventory import INVENTORY_ENV, load_inventory
from fabfile.plan import RollbackOptions
from fabfile.report import dumps_json, to_jsonable
from tests.lab.lab import DEFAULT_NAME, VARIANTS, Lab, LabError

FLEET_HELP = {
    "sites": "comma-separated site names from the inventory (default: every site)",
    "group": "a group from the inventory",
    "inventory": f"inventory file (default: ${INVENTORY_ENV}, else ./hosts.yml)",
    "parallel": f"how many sites at once (default {DEFAULT_PARALLEL})",
    "max-failures": "start no new site after this many failed (0 = no limit; --parallel 1 --max-failures 1 = canary)",
    "ssh-config": "ssh_config file to read host settings from (default ~/.ssh/config)",
    "connect-timeout": "seconds to wait for each SSH connection (default 10)",
    "json": "print the results as JSON",
}


def _select(inventory, sites, group):
    try:
        inv = load_inventory(inventory or None)
        chosen = inv.select([s.strip() for s in sites.split(",") if s.strip()] if sites else None, group or None)
    except RollbackError as err:
        raise Exit(f"error: {err.message}", code=2) from None
    if not chosen:
        raise Exit(f"error: no sites in {inv.path or 'the inventory'} — add sites, or pass --inventory PATH", code=2)
    return chosen


def _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=False) -> FleetOptions:
    if int(parallel) < 1 or int(max_failures) < 0 or int(connect_timeout) < 1:
        raise Exit("error: --parallel and --connect-timeout must be >= 1, --max-failures >= 0", code=2)
    return FleetOptions(parallel=int(parallel), max_failures=int(max_failures), ssh_config=ssh_config or None,
                        connect_timeout=int(connect_timeout), quiet=quiet)


def _finish(results, as_json: bool, table: str) -> None:
    if as_json:
        print(dumps_json([to_jsonable(r) for r in results]))
    else:
        print()
        print(table)
    bad = failed_sites(results)
    if bad:
        raise Exit(f"\n{len(bad)} of {len(results)} site(s) not OK: {','.join(bad)} — "
                   f"rerun with --sites {','.join(bad)} once fixed", code=1)


@task(help=FLEET_HELP)
def verify(c, sites="", group="", inventory="", json=False, parallel=8, max_failures=0, ssh_config="",
           connect_timeout=10):
    """Verify checks on every selected site at once: one comparison table, non-zero if any is unhealthy."""
    chosen = _select(inventory, sites, group)
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=True)
    results = run_fleet(chosen, "verify", lambda cx, site, out: procedures.verify_result(cx, site, out, as_json=True),
                        opts)
    _finish(results, json, verify_table(results))


@task(help=FLEET_HELP)
def status(c, sites="", group="", inventory="", json=False, parallel=DEFAULT_PARALLEL, max_failures=0, ssh_config="",
           connect_timeout=10):
    """Read-only status of every selected site, then a verdict per site."""
    chosen = _select(inventory, sites, group)
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)
    results = run_fleet(chosen, "status", lambda cx, site, out: procedures.status_site(cx, site, out, as_json=json),
                        opts)
    rows = [[r.site, r.summary or r.error, r.next_step or "-"] for r in results]
    _finish(results, json, tabulate(rows, headers=["site", "verdict", "reasons"]))


@task(help={**FLEET_HELP})
def backup(c, sites="", group="", inventory="", json=False, parallel=DEFAULT_PARALLEL, max_failures=0, ssh_config="",
           connect_timeout=10):
    """A verified pg_dump of every selected site (backup_dir/netmon_pre_tsdb_<UTC>.dump + .sha256)."""
    chosen = _select(inventory, sites, group)
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)
    results = run_fleet(chosen, "backup", procedures.backup_site, opts)
    _finish(results, json, summary_table(results))


@task(help={
    **FLEET_HELP,
    "mode": "clean (drop flow tables, keep the rest) or restore (the pre-migration dump)",
    "dump": "restore: the dump's path on every server (default: each server's newest netmon_pre_tsdb_*.dump)",
    "commit": "git revision to revert the five files to (default: detected per server)",
    "yes": "do not ask for the one batch confirmation",
    "dry-run": "probe every site (read-only) and print each plan; change nothing",
    "no-safety-dump": "skip the safety dump of the current database (not advised)",
    "timeout": "seconds any one remote command may take",
})
def rollback(c, mode="", sites="", group="", inventory="", dump="", commit="", yes=False, dry_run=False,
             no_safety_dump=False, timeout=0, json=False, parallel=DEFAULT_PARALLEL, max_failures=0, ssh_config="",
             connect_timeout=10):
    """Roll the selected sites back, N at a time: one confirmation for the batch, one summary table."""
    ro = RollbackOptions(mode=mode, dump=dump or None, commit=commit or None, yes=True, dry_run=dry_run,
                         safety_dump=not no_safety_dump, timeout=int(timeout) or None)
    try:
        ro.validate()
    except RollbackError as err:
        raise Exit(f"error: {err.message}", code=2) from None
    chosen = _select(inventory, sites, group)
    opts = _opts(parallel, max_failures, ssh_config, connect_timeout, quiet=json)
    if not yes and not dry_run:
        _confirm_batch(chosen, ro, opts)

    def work(cx, site, out):
        return procedures.rollback_site(cx, site, RollbackOptions(**{**vars(ro)}), printer=out)

    results = run_fleet(chosen, "rollback", work, opts)
    _finish(results, json, summary_table(results))


def _confirm_batch(chosen, ro: RollbackOptions, opts: FleetOptions) -> None:
    """Probe every site read-only, show the plans, ask once. No terminal: refuse."""
    if not sys.stdin.isatty():
        raise Exit("error: no terminal to confirm the batch on — rerun with --yes (or --dry-run to see the plans)",
                   code=2)
    preview = FleetOptions(**{**vars(opts), "quiet": True})
    dry = RollbackOptions(**{**vars(ro), "dry_run": True})
    plans = run_fleet(chosen, "plan", lambda cx, site, out: procedures.rollback_site(cx, site, dry, printer=out),
                      preview)
    print(f"Rollback --mode={ro.mode} of {len(chosen)} site(s), {opts.parallel} at a time"
          + (f", stopping after {opts.max_failures} failure(s)" if opts.max_failures else "") + ":")
    for r in plans:
        if not r.ok:
            print(f"  {r.site}: preflight FAILED — {r.error}")
        elif r.summary == "already rolled back":
            print(f"  {r.site}: already rolled back — will only verify")
        else:
            print(f"  {r.site}:")
            for i, step in enumerate(r.data.get("steps", []), 1):
                print(f"    {i}. {step}")
    if input("Type 'yes' to roll back these sites: ").strip().lower() not in ("y", "yes"):
        raise Exit("not confirmed — nothing was changed", code=1)


@task(help={
    "sites": "how many sites (lab1..labN); default 3",
    "flows": "flow rows per site before the migration; default 10000",
    "variant": f"one starting state for every site: {', '.join(VARIANTS)}",
    "variants": "comma-separated states, one per site in order (the rest get 'migrated')",
    "name": f"the lab's name, so several labs can exist at once; default {DEFAULT_NAME!r}",
    "engine": "standin (the docker CLI stand-in) or docker (a real Docker Engine per site); "
              "default $NETMON_LAB_ENGINE, else standin",
})
def up(c, sites=3, flows=10_000, variant="", variants="", name=DEFAULT_NAME, engine=""):
    """Bring up N stand-in NetMon servers (clears what an earlier run of this lab left)."""
    if variant and variants:
        raise Exit("lab.up: give --variant or --variants, not both", code=2)
    chosen = [v.strip() for v in (variants or variant).split(",") if v.strip()] or None
    try:
        Lab(name).up(sites=int(sites), flows=int(flows), variants=chosen, engine_name=engine or None)
    except LabError as exc:
        raise Exit(f"lab.up: {exc}", code=1) from None


@task(help={"name": f"the lab's name; default {DEFAULT_NAME!r}"})
def down(c, name=DEFAULT_NAME):
    """Remove everything the lab made: processes, namespaces, links, mounts, files."""
    try:
        Lab(name).down()
    except LabError as exc:
        raise Exit(f"lab.down: {exc}", code=2) from None


@task(name="status", help={"name": f"the lab's name; default {DEFAULT_NAME!r}"})
def lab_status(c, name=DEFAULT_NAME):
    """A table of the lab's sites and their state, read from each site."""
    try:
        rows = Lab(name).status()
    except LabError as exc:
        raise Exit(f"lab.status: {exc}", code=2) from None
    if not rows:
        raise Exit(f"lab {name}: not up — run `invoke lab.up`", code=1)
    print(tabulate(rows, headers="keys"))


ns = Collection(verify, status, backup, rollback, Collection("lab", up, down, lab_status))
