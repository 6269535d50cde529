"""The checkout's invoke tasks: the fleet's (fabfile/fleet_tasks.py; installed, they are the
`netmon-fleet` command) and the lab's (`invoke lab.up|down|status`). The lab is imported only when
a lab task runs: the fleet tasks need nothing from tests/.
"""

from __future__ import annotations

from invoke import Collection, Exit, task
from tabulate import tabulate

from fabfile import fleet_tasks

# --- the lab (imported when a lab task runs: only a checkout has tests/) ----------------------

LAB_NAME = "lab"  # tests.lab.lab.DEFAULT_NAME, named here so that loading the tasks imports no lab


def _lab():
    from tests.lab import lab  # noqa: PLC0415 - the fleet tasks must load without tests/

    return lab


@task(help={
    "sites": "how many sites (lab1..labN); default 3",
    "flows": "flow rows per site before the migration; default 10000",
    "variant": "one starting state for every site (the lab's variants: see README, or a wrong name lists them)",
    "variants": "comma-separated states, one per site in order (the rest get 'migrated')",
    "name": f"the lab's name, so several labs can exist at once; default {LAB_NAME!r}",
    "latency": "one-way delay in ms on every site's SSH (a relay on 127.0.0.1 per site; default: none)",
    "jitter": "± ms of random variation on --latency (bytes are never reordered); default 0",
    "ingest-rate": "flow rows a second each site's backend writes; default light (3), so 8-site labs fit on 2 cores",
    "engine": "docker (a real Docker Engine per site) or standin (the docker CLI stand-in); "
              "default $NETMON_LAB_ENGINE, else docker",
})
def up(c, sites=3, flows=10_000, variant="", variants="", name=LAB_NAME, latency="", jitter="", ingest_rate="",
       engine=""):
    """Bring up N stand-in NetMon servers (clears what an earlier run of this lab left)."""
    if variant and variants:
        raise Exit("lab.up: give --variant or --variants, not both", code=2)
    chosen = [v.strip() for v in (variants or variant).split(",") if v.strip()] or None
    try:
        latency_ms, jitter_ms = (float(latency) if latency != "" else None), float(jitter or 0)
    except ValueError:
        raise Exit(f"lab.up: --latency {latency!r} / --jitter {jitter!r}: give milliseconds as numbers", code=2) from None
    try:
        rate = float(ingest_rate) if str(ingest_rate).strip() else None
    except ValueError:
        raise Exit(f"lab.up: --ingest-rate wants rows a second, not {ingest_rate!r}", code=2) from None
    lab = _lab()
    try:
        lab.Lab(name).up(sites=int(sites), flows=int(flows), variants=chosen, latency_ms=latency_ms, jitter_ms=jitter_ms,
                         ingest_rate=rate, engine_name=engine or None)
    except lab.LabError as exc:
        raise Exit(f"lab.up: {exc}", code=1) from None


@task(help={"name": f"the lab's name; default {LAB_NAME!r}"})
def down(c, name=LAB_NAME):
    """Remove everything the lab made: processes, namespaces, links, mounts, files."""
    lab = _lab()
    try:
        lab.Lab(name).down()
    except lab.LabError as exc:
        raise Exit(f"lab.down: {exc}", code=2) from None


@task(name="status", help={"name": f"the lab's name; default {LAB_NAME!r}"})
def lab_status(c, name=LAB_NAME):
    """A table of the lab's sites and their state, read from each site."""
    lab = _lab()
    try:
        rows = lab.Lab(name).status()
    except lab.LabError as exc:
        raise Exit(f"lab.status: {exc}", code=2) from None
    if not rows:
        raise Exit(f"lab {name}: not up — run `invoke lab.up`", code=1)
    print(tabulate(rows, headers="keys"))


ns = fleet_tasks.collection()
ns.add_collection(Collection("lab", up, down, lab_status))
