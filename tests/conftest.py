"""Shared fixtures: labs of stand-in NetMon servers for end-to-end tests."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.lab.lab import Lab


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under xdist's loadgroup every module is one work unit (its module-scoped lab is made once),
    unless its tests name an xdist_group of their own (a module with two labs may split in two).
    Without xdist nothing changes."""
    if not getattr(config.option, "loadgroup", False):  # set by xdist in its workers
        return
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="module")
def lab_factory():
    """Bring up a lab with a unique name; every lab made here is taken down when the module that
    made it is done (an idle site still ingests and runs its jobs: labs left up until the end of
    the run slowed every later module down)."""
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (the lab uses network and mount namespaces)")
    made: list[Lab] = []

    def make(sites: int = 1, variants: list[str] | None = None, flows: int = 2000, ingest_rate: float | None = None) -> Lab:
        lab = Lab("t" + secrets.token_hex(3))
        made.append(lab)
        lab.up(sites=sites, flows=flows, variants=variants, log=lambda *_: None, ingest_rate=ingest_rate)
        return lab

    yield make
    for lab in made:
        lab.down(log=lambda *_: None)
