"""Every speed figure of the wire and the downtime in one run: WAN latency (benchmarks/latency.py:
verify and status round trips, `invoke verify` on 1 and 8 sites against Ansible, a restore at 50 ms
÷ at 0 ms), restore's downtime at 1M rows against the runbook's Option B and against 10k rows
(benchmarks/restore_downtime.py), and restore's and convert's downtime against a bare restart
(benchmarks/floor.py). Each part brings up its own lab, measures side by side, and takes it down;
the figures of all of them are printed together at the end, each with its aim.

    .venv/bin/python -m benchmarks.speed                 # about 20 minutes on 2 cores
    .venv/bin/python -m benchmarks.speed --quick         # small sites, one round (a few minutes)
"""

from __future__ import annotations

import argparse
import time

from . import floor, latency, restore_downtime
from .common import machine

PARTS = {
    "latency": (latency.main, [], ["--sites", "3", "--rounds", "1", "--restore-pairs", "1"]),
    "restore": (restore_downtime.main, [], ["--flows", "50000", "--small", "5000"]),
    "floor": (floor.main, [], ["--flows", "5000", "--floors", "1"]),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sites and one round of each part (a smoke run)")
    ap.add_argument("--only", default="", help="comma-separated parts to run (default all: " + ", ".join(PARTS) + ")")
    args = ap.parse_args(argv)
    chosen = [p for p in PARTS if not args.only or p in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(PARTS) - {""}
    if unknown:
        ap.error(f"unknown part(s) {', '.join(sorted(unknown))}: choose from {', '.join(PARTS)}")

    figures: dict[str, list[str]] = {}
    codes: dict[str, int] = {}
    started = time.monotonic()
    for part in chosen:
        run, full, quick = PARTS[part]
        figures[part] = []
        codes[part] = run(quick if args.quick else full, summary=figures[part])
    print(f"\n== all figures ({machine()}, {time.monotonic() - started:.0f} s in all)")
    for part in chosen:
        print(f"-- {part}{'' if codes[part] == 0 else f' (exit {codes[part]}: a run in it failed)'}")
        for line in figures[part] or ["(nothing measured)"]:
            print(f"   {line}")
    return max(codes.values(), default=0)


if __name__ == "__main__":
    raise SystemExit(main())
