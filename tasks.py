"""Invoke tasks run from the laptop: the lab (`invoke lab.up|down|status`).

Fleet tasks across sites join this collection as they land.
"""

from invoke import Collection, Exit, task
from tabulate import tabulate

from tests.lab.lab import DEFAULT_NAME, VARIANTS, Lab, LabError


def _lab(name: str) -> Lab:
    try:
        return Lab(name)
    except LabError as exc:
        raise Exit(f"lab: {exc}", code=2) from None


@task(help={
    "sites": "how many sites (lab1..labN); default 3",
    "flows": "flow rows per site before the migration; default 10000",
    "variant": f"one starting state for every site: {', '.join(VARIANTS)}",
    "variants": "comma-separated states, one per site in order (the rest get 'migrated')",
    "name": f"the lab's name, so several labs can exist at once; default {DEFAULT_NAME!r}",
})
def up(c, sites=3, flows=10_000, variant="", variants="", name=DEFAULT_NAME):
    """Bring up N stand-in NetMon servers (clears what an earlier run of this lab left)."""
    if variant and variants:
        raise Exit("lab.up: give --variant or --variants, not both", code=2)
    chosen = [v.strip() for v in (variants or variant).split(",") if v.strip()] or None
    lab = _lab(name)
    try:
        lab.up(sites=int(sites), flows=int(flows), variants=chosen)
    except LabError as exc:
        raise Exit(f"lab.up: {exc}", code=1) from None


@task(help={"name": f"the lab's name; default {DEFAULT_NAME!r}"})
def down(c, name=DEFAULT_NAME):
    """Remove everything the lab made: processes, namespaces, links, mounts, files."""
    _lab(name).down()


@task(help={"name": f"the lab's name; default {DEFAULT_NAME!r}"})
def status(c, name=DEFAULT_NAME):
    """A table of the lab's sites and their state, read from each site."""
    rows = _lab(name).status()
    if not rows:
        raise Exit(f"lab {name}: not up — run `invoke lab.up`", code=1)
    print(tabulate(rows, headers="keys"))


lab = Collection("lab", up, down, status)
ns = Collection(lab)
