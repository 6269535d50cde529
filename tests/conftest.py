"""Shared fixtures: labs of stand-in NetMon servers for end-to-end tests."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.lab.lab import Lab


@pytest.fixture(scope="session")
def lab_factory():
    """Bring up a lab with a unique name; every lab made here is taken down at the end."""
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
