"""Output: per-site printers (whole lines, never interleaved), tables, JSON."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, is_dataclass
from typing import Any

from tabulate import tabulate

_LOCK = threading.Lock()


class Printer:
    """One site's output. Lines are written whole under a process-wide lock, optionally prefixed
    with the site name (parallel runs), and kept in ``lines`` so a caller can show them later.
    ``quiet`` keeps lines only in the buffer (e.g. --json)."""

    def __init__(self, site: str, prefix: bool = False, stream=None, quiet: bool = False):
        self.site = site
        self.prefix = prefix
        self.stream = stream
        self.quiet = quiet
        self.lines: list[str] = []
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str = "") -> None:
        for part in str(text).split("\n"):
            out = f"[{self.site}] {part}" if self.prefix else part
            self.lines.append(out)
            if not self.quiet:
                with _LOCK:
                    stream = self.stream or sys.stdout
                    stream.write(out + "\n")
                    stream.flush()

    def progress(self, text: str) -> None:
        self.line(f"[{self.elapsed():7.1f}s] {text}")

    def block(self, text: str) -> None:
        self.line(text.rstrip("\n"))


def table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="simple")


def to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def dumps_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=False, default=str)


def checks_table(checks) -> str:
    rows = [[ch.name, ch.expected, ch.actual, "PASS" if ch.ok else "FAIL"] for ch in checks]
    return table(rows, ["check", "expected", "actual", "result"])


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"
