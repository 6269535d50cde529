"""Declarative checks of a command's outcome: a name and its arguments, so a plan is data (it can
be written to the journal, printed as JSON, read back and run again by a later run). Each kind is a
pure function of (outcome, argument) that returns a problem text, or None when the outcome is fine."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .commands import Expect
from .facts.dumps import parse_readback, parse_toc, restore_errors
from .facts.parts import rows


def _readback(out, what: str) -> str | None:
    rb = parse_readback(out.stdout, out.stderr)
    if not rb.ok:
        return f"the new {what} does not read back whole ({(rb.errors or ['it ends in the middle of a table'])[0]})"
    return None


def _toc(out, what: str) -> str | None:
    if not any(e.kind == "TABLE DATA" for e in parse_toc(out.stdout)):
        return f"the new {what} lists no table data"
    return None


def seal_output(stdout: str) -> tuple[str, int | None]:
    """``<sha256> <size>`` printed by :func:`commands.seal_dump` → (sha256, size)."""
    parts = (stdout or "").strip().splitlines()[-1:] or [""]
    fields = parts[0].split()
    sha = fields[0] if fields else ""
    size = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return sha, size


def _seal(out, path: str) -> str | None:
    sha, _ = seal_output(out.stdout)
    return None if re.fullmatch(r"[0-9a-f]{64}", sha) else f"no sha256 for {path}"


def _counts(out, expected: dict[str, int]) -> str | None:
    got = {r[0]: int(r[1]) for r in rows(out.stdout) if len(r) >= 2 and r[1].isdigit()}
    for table, n in sorted(expected.items()):
        if table not in got:
            return f"table {table} is missing after the restore"
        if got[table] != n:
            return f"table {table} has {got[table]} rows after the restore, the dump holds {n}"
    return None


def _restore(out, side: str) -> str | None:
    errors = restore_errors(out.stdout, out.stderr, out.exited)
    return f"pg_restore into {side} reported errors: {errors[0]} — the site's database is untouched" if errors else None


def _http(out, code: str) -> str | None:
    got = out.stdout.strip()
    return None if got == code else f"health answered {got or 'nothing'}"


def _gone_volume(out, _arg) -> str | None:
    return None if out.ok or "no such volume" in (out.stderr + out.stdout).lower() else (
        out.stderr.strip() or "volume rm failed")


def _stdout_is(out, text: str) -> str | None:
    got = out.stdout.strip()
    return None if got == text else f"read back {got or 'nothing'}, expected {text}"


JUDGES: dict[str, Callable[[Any, Any], str | None]] = {
    "readback": _readback, "toc": _toc, "seal": _seal, "counts": _counts, "restore": _restore, "http": _http,
    "volume-gone": _gone_volume, "stdout": _stdout_is,
}


def judge(expect: Expect, out) -> str | None:
    return JUDGES[expect.kind](out, expect.arg)
