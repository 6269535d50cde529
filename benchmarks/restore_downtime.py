"""Downtime and total time of `fab rollback --mode=restore` against the runbook's literal Option B.

Two identical `migrated` lab sites (1M flow rows by default): the tool on lab1, the runbook's
commands as one shell script over SSH on lab2; and the tool on a small site of a second lab
(`--small`, 10k rows), for downtime(1M) ÷ downtime(10k). Meanwhile each site's /api/health is polled from
the laptop side every 0.1 s (1 s timeout): downtime = seconds without a 200, from the command's
start until it answers 200 for good. The tool restores into a side database while the stack still
serves, so its downtime should not grow with the dump; the runbook's does.

By default both run at the same time (threads): on a shared, noisy machine that is fairer than
one after the other, since both see the same background load — but they also compete for the
same 2 cores, so each is slower than it would be alone. --one-after-another runs tool then runbook.

    .venv/bin/python -m benchmarks.restore_downtime                 # 1M rows, several minutes
    .venv/bin/python -m benchmarks.restore_downtime --flows 20000   # quick
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from collections import defaultdict
from contextlib import ExitStack

from tabulate import tabulate

from .common import (
    HealthPoller,
    Timed,
    audit_dir,
    audit_records,
    dump_flow_rows,
    fab,
    header,
    lab_up,
    psql,
    ratio,
    run,
    ssh,
    tool_env,
)

# The runbook's check 4, polled until it passes (bounded), as the end of each runbook script.
HEALTH_UNTIL_200 = """\
i=0
until curl -sf -o /dev/null http://localhost:8000/api/health; do
  i=$((i + 1)); [ "$i" -lt 600 ] || { echo "health not 200 after 300s" >&2; exit 1; }
  sleep 0.5
done
echo "runbook: health 200"
"""

FIVE_FILES = "docker-compose.yml scripts/init.sql backend/app/main.py backend/app/services/flow_rollup.py " \
             "backend/requirements.txt"

# The runbook, Step 1, Step 2 Option A, Step 3 Option B, then its check 4 until it passes.
# pg_restore's exit status is recorded, not fatal: an operator pasting the block would carry on.
RUNBOOK_OPTION_B = f"""\
set -eu
PS4='+ $(date +%s.%N) '  # each command traced with its start time, for the per-command durations
set -x
cd /root/netmon
docker compose down
git log --oneline -20
# The pre-migration commit, as the operator reads it off `git log`: the one before the migration commit.
MIGRATION_COMMIT=$(git log --format=%H -i --grep=timescale -1)
PRE_MIGRATION_COMMIT=$(git rev-parse "$MIGRATION_COMMIT^")
echo "reverting to $PRE_MIGRATION_COMMIT (before $MIGRATION_COMMIT)"
git checkout "$PRE_MIGRATION_COMMIT" -- {FIVE_FILES}
docker compose up -d db
sleep 5
docker exec netmon-db psql -U netmon -d postgres -c "DROP DATABASE netmon"
docker exec netmon-db psql -U netmon -d postgres -c "CREATE DATABASE netmon OWNER netmon"
docker cp /root/netmon_pre_tsdb_*.dump netmon-db:/tmp/backup.dump
docker exec netmon-db pg_restore -U netmon -d netmon --no-owner --no-privileges /tmp/backup.dump \\
  || echo "pg_restore exited $?"
docker exec netmon-db rm /tmp/backup.dump
docker compose up -d --build backend frontend nginx
""" + HEALTH_UNTIL_200


TRACE = re.compile(r"^\++ (\d+\.\d+) (.*)$")


def runbook_commands(timed: Timed) -> list[tuple[float, str]]:
    """(seconds, command) for each command of the script, from its trace lines' start times."""
    starts = [(float(m[1]), m[2]) for m in map(TRACE.match, timed.output.splitlines()) if m]
    ends = [t for t, _ in starts[1:]] + [timed.started + timed.seconds]
    return [(end - t, cmd) for (t, cmd), end in zip(starts, ends, strict=True)]


def slowest(items: list[tuple[float, str]], n: int = 5) -> str:
    return "\n".join(f"     {sec:6.1f}s  {what[:110]}" for sec, what in sorted(items, reverse=True)[:n])


class Side:
    """One site's run: the command, its health poller, and what it measured."""

    def __init__(self, name: str, site: str, url: str, start):
        self.name, self.site, self.url, self._start = name, site, url, start
        self.result: Timed | None = None
        self.error: BaseException | None = None
        self.poller = HealthPoller(url)
        self.t0 = 0.0

    def __call__(self, barrier: threading.Barrier | None = None) -> None:
        self.poller.start()
        if barrier is not None:
            barrier.wait()
        self.t0 = time.monotonic()
        try:
            self.result = self._start()
        except BaseException as err:  # reported with the figures, never lost in a thread
            self.error = err
        self.poller.stop_when_stable()


def main(argv=None, summary: list[str] | None = None) -> int:
    """``summary``: the headline ratios are appended to it too (benchmarks/speed.py collects them)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1_000_000, help="flow rows per site (default 1000000)")
    ap.add_argument("--small", type=int, default=10_000,
                    help="flow rows of a third site the tool restores at the same time, for downtime(big) ÷ "
                         "downtime(small) (default 10000; 0: no third site)")
    ap.add_argument("--name", default="bnr", help="the lab's name (default bnr)")
    ap.add_argument("--one-after-another", action="store_true", help="run the tool, then the runbook (default: together)")
    args = ap.parse_args(argv)

    header("restore downtime: fab rollback --mode=restore vs the runbook's Option B", args.name)
    with ExitStack() as stack:
        big = stack.enter_context(lab_up(args.name, sites=2, flows=args.flows, variants=["migrated", "migrated"]))
        small = stack.enter_context(lab_up(args.name + "s", sites=1, flows=args.small, variants=["migrated"])) \
            if args.small else None
        audit = stack.enter_context(audit_dir())
        plan = [("tool", big, "lab1"), ("runbook", big, "lab2")] + ([("tool, small site", small, "lab1")] if small else [])
        dumps = {(lab.name, s): dump_flow_rows(lab, s) for _, lab, s in plan}
        print(f"   pre-migration dumps: {', '.join(f'{k[0]}/{k[1]} {n} flow rows (max id {m})' for k, (n, m) in dumps.items())}")

        sides = []
        for what, lab, site in plan:
            url = f"http://{lab.site(site).ip}:8000/api/health"
            if what == "runbook":
                sides.append(Side(what, site, url, lambda lab=lab, site=site: ssh(lab, site, RUNBOOK_OPTION_B)))
            else:
                env = tool_env(lab, audit / lab.name)
                sides.append(Side(what, site, url, lambda lab=lab, site=site, env=env: run(
                    fab(lab, [site], "rollback", "--mode=restore", "--yes"), env=env)))
        if args.one_after_another:
            print("   order: one after another: " + ", then ".join(f"{w} on {lab.name}/{s}" for w, lab, s in plan))
            for side in sides:
                side()
        else:
            print(f"   order: {len(sides)} at the same time (threads; they share 2 cores)")
            barrier = threading.Barrier(len(sides))
            threads = [threading.Thread(target=side, args=(barrier,)) for side in sides]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        failed = False
        rows, downs = [], {}
        for side, (what, lab, site) in zip(sides, plan, strict=True):
            n, max_id = dumps[(lab.name, site)]
            down, healthy_after = side.poller.outage(side.t0)
            downs[what] = down
            sql = (f"SELECT count(*) FILTER (WHERE id <= {int(max_id)}) || '/' || count(*) || '/' || "  # noqa: S608 — an int
                   "(SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb') FROM flow_records")
            from_dump, total, tsdb = (int(x) for x in psql(lab, site, sql).split("/"))
            ok = (side.result is not None and side.result.returncode == 0 and healthy_after is not None
                  and from_dump == n and tsdb == 0)
            failed |= not ok
            rows.append([side.name, f"{lab.name}/{site}", f"{side.result.seconds:.1f}" if side.result else "-",
                         f"{down:.1f}", f"{healthy_after:.1f}" if healthy_after is not None else "never",
                         f"{from_dump}/{n}", total, tsdb, "ok" if ok else "FAILED"])
            if side.error is not None:
                print(f"   {side.name}: {side.error!r}")
            elif side.result.returncode != 0:
                print(f"   {side.name} exited {side.result.returncode}; output tail:\n{side.result.tail(25)}")
        print()
        print(tabulate(rows, headers=["run", "site", "total s", "downtime s", "200 for good after s",
                                      "dump rows back", "flow rows now", "timescaledb ext", "result"]))

        records = audit_records(audit / big.name)
        steps: dict[str, float] = defaultdict(float)
        for r in records:
            steps[r["step"]] += r["seconds"]
        print("\n   tool: seconds of remote commands per step: "
              + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
        print("   tool: slowest remote commands (audit log):\n"
              + slowest([(r["seconds"], f"[{r['step']}] {r['what'] or r['cmd']}") for r in records]))
        tool, book = sides[0], sides[1]
        if book.result:
            print("   runbook: slowest commands (shell trace):\n" + slowest(runbook_commands(book.result)))
        figures = []
        if tool.result and book.result:
            figures.append(f"restore downtime at {args.flows:,} rows, tool ÷ the runbook's Option B: "
                           f"{ratio(downs['tool'], downs['runbook'])} ({downs['tool']:.1f} s against "
                           f"{downs['runbook']:.1f} s; aim ≤ 0.2); total {ratio(tool.result.seconds, book.result.seconds)}")
        if small and tool.result and sides[2].result:
            figures.append(f"restore downtime at {args.flows:,} rows ÷ at {args.small:,}: "
                           f"{ratio(downs['tool'], downs['tool, small site'])} ({downs['tool']:.1f} s against "
                           f"{downs['tool, small site']:.1f} s; aim ≤ 1.2)")
        print()
        for line in figures:
            print(f"   {line}")
        print("   (the tool's total includes its safety dump, the side restore while serving, and verify; "
              "the runbook's includes its fixed sleep 5)")
        if summary is not None:
            summary.extend(figures)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
