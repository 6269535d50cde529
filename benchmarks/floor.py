"""The floor: the downtime of the bare restart any rollback must include, against the downtime of
`fab rollback --mode=restore` and `--mode=convert` on the same site, side by side in one run.

Two `migrated` lab sites. On each, the bare restart is pasted as one shell script over SSH (no round
trips of its own, polls every 0.1 s): stop the backend (the writer), recreate the db container, start
the backend, until /api/health answers 200. It runs before the rollback (TimescaleDB image) and after
it (plain image), `--floors` times each; the floor is the median of them. Between them, the rollback: restore on lab1,
convert on lab2. Downtime is measured the same way for all: /api/health polled from the laptop side
every 0.1 s (restore_downtime.py), seconds without a 200 until it answers 200 for good.

    .venv/bin/python -m benchmarks.floor                 # 20k flow rows a site (~2 min)
    .venv/bin/python -m benchmarks.floor --flows 200000
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from tabulate import tabulate

from .common import audit_dir, audit_records, fab, header, lab_up, median, ratio, run, ssh, tool_env
from .restore_downtime import Side

DOWNTIME_STEPS = ("stop-writers", "swap", "convert-switch", "start-db", "start-app")
# The restart every rollback's downtime holds, and nothing else: each poll as tight as the machine allows.
# The backend starts with --no-deps, as the tool starts it: the db was waited for already, and without it
# compose waits for the db's first healthcheck (every 10 s), which no rollback has to wait for.
BARE_RESTART = """\
set -e
cd /root/netmon
docker compose stop backend
docker compose up -d --pull never --no-build --force-recreate db
i=0
until docker exec netmon-db pg_isready -U netmon -d netmon >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -lt 1200 ] || { echo "db not ready after 120s" >&2; exit 1; }
  sleep 0.1
done
docker compose up -d --no-deps --pull never --no-build backend
i=0
until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' http://localhost:8000/api/health)" = 200 ]; do
  i=$((i + 1)); [ "$i" -lt 1200 ] || { echo "health not 200 after 120s" >&2; exit 1; }
  sleep 0.1
done
echo "bare restart: health 200"
"""


def measured(side: Side) -> tuple[float, float]:
    """(downtime, total) of one run; fails loudly when the run failed or never came back."""
    down, back = side.poller.outage(side.t0)
    if side.error is not None or side.result is None or side.result.returncode != 0 or back is None:
        detail = repr(side.error) if side.error else side.result.tail(20) if side.result else "no result"
        raise SystemExit(f"{side.name} on {side.site} failed (back: {back}):\n{detail}")
    return down, side.result.seconds


def main(argv=None, summary: list[str] | None = None) -> int:
    """``summary``: the ratios are appended to it too (benchmarks/speed.py collects them)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=20_000, help="flow rows per site (default 20000)")
    ap.add_argument("--floors", type=int, default=2, help="bare restarts before and after each rollback (default 2)")
    ap.add_argument("--name", default="bfl", help="the lab's name (default bfl)")
    args = ap.parse_args(argv)

    header("floor: a bare restart vs the downtime of restore and convert, on the same site", args.name)
    rows, ratios, steps = [], [], []
    with lab_up(args.name, sites=2, flows=args.flows, variants=["migrated", "migrated"]) as lab, audit_dir() as audit:
        for site, mode in (("lab1", "restore"), ("lab2", "convert")):
            env = tool_env(lab, audit / site)
            url = f"http://{lab.site(site).ip}:8000/api/health"
            bare = [Side(f"bare restart ({image} image)", site, url, lambda site=site: ssh(lab, site, BARE_RESTART))
                    for image in ["TimescaleDB"] * args.floors + ["plain"] * args.floors]
            tool = Side(f"rollback --mode={mode}", site, url,
                        lambda site=site, mode=mode, env=env: run(fab(lab, [site], "rollback", f"--mode={mode}", "--yes"),
                                                                  env=env))
            floors = []
            for side in [*bare[:args.floors], tool, *bare[args.floors:]]:
                side()
                down, total = measured(side)
                if side is not tool:
                    floors.append(down)
                rows.append([site, side.name, f"{down:.2f}", f"{total:.1f}"])
            down = measured(tool)[0]
            floor = median(floors)
            ratios.append(f"{mode} downtime ÷ floor on {site}: {ratio(down, floor)} ({down:.2f} s against {floor:.2f} s, "
                          f"the median of {' '.join(f'{x:.2f}' for x in floors)}; aim ≤ 1.2)")
            seconds: dict[str, float] = defaultdict(float)
            for r in audit_records(audit / site):
                if r["step"] in DOWNTIME_STEPS:
                    seconds[r["step"]] += r["seconds"]
            steps.append(f"{mode}: remote seconds of the downtime's steps: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    print()
    print(tabulate(rows, headers=["site", "run", "downtime s", "total s"]))
    for line in steps + ratios:
        print(f"   {line}")
    if summary is not None:
        summary.extend(ratios)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
