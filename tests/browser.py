"""A real headless Chromium (Debian's chromium package) for the tests that open a run report:
``--dump-dom`` gives the page as the browser parsed it, ``--screenshot`` a PNG of it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is missing: run `make setup` (Debian's chromium package)")
    return found


def browse(tmp_path: Path, report: Path, *args: str) -> subprocess.CompletedProcess:
    """Open ``report`` (a file: no network) in headless Chromium with ``args``; a profile of its own in tmp_path."""
    profile = tmp_path / "profile"
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
            *args, report.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def dom(tmp_path: Path, report: Path) -> str:
    """The report's DOM as Chromium built it."""
    out = browse(tmp_path, report, "--dump-dom")
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def screenshot(tmp_path: Path, report: Path, name: str = "report.png", height: int = 1800) -> Path:
    """A PNG of the report, kept in the test's tmp dir to look at."""
    shot = tmp_path / name
    out = browse(tmp_path, report, f"--screenshot={shot}", f"--window-size=1280,{height}", "--hide-scrollbars")
    assert out.returncode == 0, out.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    return shot


def sections(page: str) -> dict[str, str]:
    """Each site's ``<section>`` of a report's DOM, by site name, in order."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<section class="site" id="[^"]+" data-site="([^"]+)"', page)]
    ends = [s for s, _ in starts[1:]] + [len(page)]
    return {name: page[start:end] for (start, name), end in zip(starts, ends, strict=True)}
