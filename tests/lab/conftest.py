"""Fixtures of the stand-in tests that run throwaway PostgreSQL servers (see pgcluster.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.lab.images import build_timescaledb_image


@pytest.fixture(scope="module")
def workdir():
    """A temp dir for one test module's clusters and files; the server's user `postgres` can reach it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the server runs as user postgres)")
    root = Path(tempfile.mkdtemp(prefix="netmon-standin-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image(workdir) -> Path:
    """The lab's timescale/timescaledb image, built under workdir."""
    build_timescaledb_image(workdir / "image")
    return workdir / "image"
