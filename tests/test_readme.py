"""README.md and tests/lab/README.md against the tree: every module is named in a layout table,
and the exit-status table is the one the code prints."""

from __future__ import annotations

import re
from pathlib import Path

from fabfile import errors

ROOT = Path(__file__).resolve().parents[1]
READMES = {ROOT / "README.md": ROOT, ROOT / "tests/lab/README.md": ROOT / "tests/lab"}


def named_paths() -> set[Path]:
    """Every path a README's tables name. A table cell's `token` is read relative to the README's
    directory, to the directory of the row's first path (``fabfile/database.py``, ``files.py``), and
    to the path a heading above the table names (``### ... (`standin/dockercli/`)``)."""
    named: set[Path] = set()
    for readme, base in READMES.items():
        section = base
        for line in readme.read_text().splitlines():
            if line.startswith("#"):
                dirs = re.findall(r"`([^`\s]+/)`", line)
                section = base / dirs[0] if dirs else base
                continue
            if not line.startswith("|"):
                continue
            tokens = re.findall(r"`([^`\s]+)`", line)
            with_dir = [t for t in tokens if "/" in t]
            row_dir = base
            if with_dir:
                first = base / with_dir[0]
                row_dir = first if with_dir[0].endswith("/") else first.parent
            for token in tokens:
                named |= {(d / token).resolve() for d in (base, row_dir, section)}
    return named


def modules() -> list[Path]:
    found = [*ROOT.glob("fabfile/**/*.py"), *ROOT.glob("tests/lab/standin/**/*.py")]
    app = ROOT / "tests/lab/standin/app"
    return sorted(p for p in found if p.name != "__init__.py" and app not in p.parents)


def test_every_module_is_named_in_a_readme_layout():
    named = named_paths()
    missing = [str(p.relative_to(ROOT)) for p in modules() if p.resolve() not in named]
    assert missing == [], f"add these to README.md's or tests/lab/README.md's layout: {missing}"
    assert len(modules()) > 40  # the globs found the tree


def test_the_exit_status_table_in_readme_is_the_one_the_code_prints():
    assert errors.exit_codes_text(markdown=True) in (ROOT / "README.md").read_text()
