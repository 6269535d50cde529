"""Fleet runs: one per-host procedure across many sites, N at a time, reported once.

Each site gets its own Connection, audit log and printer (nothing shared that can race); a
failing site is a row in the summary, never an exception that stops the others. After
``max_failures`` failed sites no new site starts (``--parallel 1 --max-failures 1`` = canary).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from fabric import Config

from .connection import make_connection
from .inventory import SiteSettings
from .procedures import HostResult
from .report import Printer, table

DEFAULT_PARALLEL = 4
PASS, FAIL = "ok", "FAIL"

Work = Callable[[object, SiteSettings, Printer], HostResult]


@dataclass
class FleetOptions:
    parallel: int = DEFAULT_PARALLEL
    max_failures: int = 0  # 0: no limit
    connect_timeout: int = 10
    ssh_config: str | None = None
    quiet: bool = False  # keep per-site lines in buffers only (--json)


def fabric_config(ssh_config: str | None) -> Config:
    """A Fabric config that reads the given ssh_config (else the user's ~/.ssh/config)."""
    return Config(runtime_ssh_path=ssh_config) if ssh_config else Config()


class Connections:
    """One SSH connection per site for a whole fleet run, so that a batch's read-only preflight and
    its run share it (the handshake is several round trips: over a WAN, seconds). Each is made by
    the site's worker (so the fleet's connects are concurrent) and opened there; a connection that
    died in between is opened again by the task's session. Close them all at the end (``with``)."""

    def __init__(self, opts: FleetOptions):
        self.config = fabric_config(opts.ssh_config)
        self.connect_timeout = opts.connect_timeout
        self._by_site: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, site: SiteSettings):
        with self._lock:
            c = self._by_site.get(site.name)
        if c is None:
            c = make_connection(site, config=self.config, connect_timeout=self.connect_timeout)
            with self._lock:
                c = self._by_site.setdefault(site.name, c)
        return c

    def release(self, site: SiteSettings) -> None:
        with self._lock:
            c = self._by_site.pop(site.name, None)
        if c is not None:
            c.close()

    def close(self) -> None:
        with self._lock:
            conns, self._by_site = list(self._by_site.values()), {}
        for c in conns:
            c.close()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_fleet(sites: list[SiteSettings], task: str, work: Work, opts: FleetOptions,
              connections: Connections | None = None) -> list[HostResult]:
    """Run ``work(c, site, printer)`` on every site, ``opts.parallel`` at a time; results in site order.
    ``connections``: shared with another run of the same batch (left open); else this run's own."""
    own = connections is None
    conns = Connections(opts) if own else connections
    results: dict[str, HostResult] = {}
    failures = 0
    lock = threading.Lock()

    def one(site: SiteSettings) -> HostResult:
        printer = Printer(site.name, prefix=True, quiet=opts.quiet)
        started = time.monotonic()
        try:
            result = work(conns.get(site), site, printer)
        except Exception as err:  # noqa: BLE001 — a crash in one site is that site's row, not the fleet's end
            result = HostResult(site.name, task, False, error=f"{type(err).__name__}: {err}",
                                next_step="see the audit log under logs/, then rerun this site", code=1)
        finally:
            if own:  # nothing else of this batch needs it
                conns.release(site)
        result.seconds = result.seconds or time.monotonic() - started
        result.data.setdefault("output", printer.lines)
        return result

    queue = list(sites)
    try:
        with ThreadPoolExecutor(max(1, opts.parallel)) as pool:
            running: dict[Future, SiteSettings] = {}
            while queue or running:
                with lock:
                    stop = opts.max_failures and failures >= opts.max_failures
                while queue and not stop and len(running) < max(1, opts.parallel):
                    site = queue.pop(0)
                    running[pool.submit(one, site)] = site
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    site = running.pop(fut)
                    result = fut.result()
                    results[site.name] = result
                    if not result.ok:
                        with lock:
                            failures += 1
    finally:
        if own:
            conns.close()
    for site in queue:  # never started: the failure budget ran out
        results[site.name] = HostResult(site.name, task, False, summary="not started",
                                        error=f"not started: {failures} site(s) failed (--max-failures {opts.max_failures})",
                                        next_step=f"fix the failed sites, then rerun with --sites {site.name},...", code=9)
    return [results[s.name] for s in sites]


def summary_table(results: list[HostResult]) -> str:
    rows = [[r.site, PASS if r.ok else FAIL, r.summary or r.error, f"{r.seconds:.1f}s", r.next_step or "-"]
            for r in results]
    return table(rows, ["site", "result", "what happened", "took", "next"])


def verify_matrix(results: list[HostResult]) -> tuple[list[str], list[list[str]]]:
    """One row per site, one column per check: 'ok', or 'FAIL: <actual>' where it differs."""
    names: list[str] = []
    for r in results:
        for ch in r.checks:
            if ch.key not in names:
                names.append(ch.key)
    rows = []
    for r in results:
        by_name = {ch.key: ch for ch in r.checks}
        cells = []
        for name in names:
            ch = by_name.get(name)
            cells.append("-" if ch is None else PASS if ch.ok else f"{FAIL}: {ch.actual}")
        overall = "healthy" if r.ok else (f"unhealthy ({sum(not ch.ok for ch in r.checks)} failed)" if r.checks
                                          else f"unreachable: {r.error}")
        rows.append([r.site, *cells, overall])
    return ["site", *names, "overall"], rows


def verify_table(results: list[HostResult]) -> str:
    headers, rows = verify_matrix(results)
    return table(rows, headers)


def failed_sites(results: list[HostResult]) -> list[str]:
    return [r.site for r in results if not r.ok]
