"""Downtime, total time and rows kept of `fab rollback --mode=convert` at 10k and at 1M flow rows,
against the runbook's literal Option A, side by side in one run.

Three `migrated` lab sites under ingestion (a few hundred flow rows a second): convert on a small
site (10k rows) and on a big one (1M rows by default), the runbook's Step 1, Step 2 and Option A
pasted as one shell script on a third big site. A third of each site's chunks are compressed first
(the rows then live where only a read through the hypertable finds them). /api/health is polled from
the laptop side every 0.1 s: downtime = seconds without a 200 from the command's start until it
answers 200 for good. Rows kept: every flow id the backend committed (the lab's committed_flow_ids)
and every row the site held at the start, found in flow_records afterwards.

    .venv/bin/python -m benchmarks.convert_downtime                # 1M rows, several minutes
    .venv/bin/python -m benchmarks.convert_downtime --flows 50000  # quick
"""

from __future__ import annotations

import argparse
import threading
from collections import defaultdict

from tabulate import tabulate

from .common import audit_dir, audit_records, fab, header, lab_up, psql, ratio, run, ssh, tool_env
from .restore_downtime import FIVE_FILES, HEALTH_UNTIL_200, Side

# The runbook as an operator pastes it: Step 1, Step 2 (git), Option A, the services, check 4.
# No `set -e`: a pasted block carries on past an error, as a terminal does.
RUNBOOK_OPTION_A = f"""\
cd /root/netmon
docker compose down
MIGRATION_COMMIT=$(git log --format=%H -i --grep=timescale -1)
git checkout "$MIGRATION_COMMIT^" -- {FIVE_FILES}
docker compose up -d db
sleep 5
docker exec -i netmon-db psql -U netmon -d netmon <<'SQL'
DROP TABLE IF EXISTS flow_records CASCADE;
DROP TABLE IF EXISTS flow_summary_5m CASCADE;
DROP EXTENSION IF EXISTS timescaledb CASCADE;
SQL
docker compose up -d --build backend frontend nginx
""" + HEALTH_UNTIL_200

COMPRESS_A_THIRD = ("SELECT count(compress_chunk(c)) FROM (SELECT c, row_number() OVER () AS n "
                    "FROM show_chunks('flow_records', older_than => interval '1 day') c) x WHERE n % 3 = 1")
KEPT = ("SELECT count(*) FILTER (WHERE id <= {max_id}) || '/' || count(*) FROM flow_records")


def committed_missing(lab, site: str) -> int:
    """Committed flow ids (the backend's own record) not in flow_records now."""
    out = ssh(lab, site, "sort -u /root/netmon-lab/committed_flow_ids > /tmp/c; docker exec netmon-db psql -U netmon "
                         "-d netmon -XtAc 'SELECT id FROM flow_records' 2>/dev/null | sort > /tmp/k; "
                         "comm -23 /tmp/c /tmp/k | wc -l")
    return int(out.output.strip().splitlines()[-1]) if out.returncode == 0 else -1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1_000_000, help="flow rows on the big sites (default 1000000)")
    ap.add_argument("--small", type=int, default=10_000, help="flow rows on the small site (default 10000)")
    ap.add_argument("--ingest-rate", type=float, default=200, help="flow rows a second each backend writes")
    ap.add_argument("--name", default="bcv", help="the labs' name prefix (default bcv)")
    args = ap.parse_args(argv)

    header("convert downtime: fab rollback --mode=convert at 10k and 1M rows vs the runbook's Option A", args.name)
    with lab_up(args.name + "b", sites=2, flows=args.flows, variants=["migrated", "migrated"],
                ingest_rate=args.ingest_rate) as big, \
            lab_up(args.name + "s", sites=1, flows=args.small, variants=["migrated"], ingest_rate=args.ingest_rate) as small, \
            audit_dir() as audit:
        plan = [("convert", small, "lab1"), ("convert", big, "lab1"), ("runbook A", big, "lab2")]
        start = {}
        for _, lab, site in plan:
            compressed = psql(lab, site, COMPRESS_A_THIRD)
            n, max_id = psql(lab, site, "SELECT count(*) || '/' || max(id) FROM flow_records").split("/")
            start[(lab.name, site)] = (int(n), int(max_id), compressed)
        sides = []
        for what, lab, site in plan:
            url = f"http://{lab.site(site).ip}:8000/api/health"
            if what == "convert":
                env = tool_env(lab, audit / lab.name)
                sides.append(Side(what, site, url, lambda lab=lab, site=site, env=env: run(
                    fab(lab, [site], "rollback", "--mode=convert", "--yes"), env=env)))
            else:
                sides.append(Side(what, site, url, lambda lab=lab, site=site: ssh(lab, site, RUNBOOK_OPTION_A)))
        barrier = threading.Barrier(len(sides))
        threads = [threading.Thread(target=side, args=(barrier,)) for side in sides]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        rows, downs, failed = [], {}, False
        for side, (what, lab, site) in zip(sides, plan, strict=True):
            n, max_id, compressed = start[(lab.name, site)]
            down, healthy_after = side.poller.outage(side.t0)
            kept_text = psql(lab, site, KEPT.format(max_id=int(max_id))) or "0/0"
            kept, now = (int(x) for x in kept_text.split("/"))
            missing = committed_missing(lab, site)
            ok = side.result is not None and side.result.returncode == 0 and healthy_after is not None
            if what == "convert":
                ok = ok and kept == n and missing == 0
                failed |= not ok
            downs[(what, n)] = down
            rows.append([what, f"{n:,}", compressed, f"{side.result.seconds:.1f}" if side.result else "-", f"{down:.1f}",
                         f"{kept:,}/{n:,}", missing, "ok" if ok else "FAILED"])
            if side.result is not None and side.result.returncode != 0:
                print(f"   {what} on {lab.name}/{site} exited {side.result.returncode}:\n{side.result.tail(12)}")
        print()
        print(tabulate(rows, headers=["run", "rows at start", "chunks compressed", "total s", "downtime s",
                                      "rows of the start kept", "committed ids missing", "result"]))
        for lab in (small, big):
            steps: dict[str, float] = defaultdict(float)
            for r in audit_records(audit / lab.name):
                steps[r["step"]] += r["seconds"]
            print(f"   convert on {lab.name}, seconds of remote commands per step: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
        big_n, small_n = start[(big.name, "lab1")][0], start[(small.name, "lab1")][0]
        print(f"\n   downtime convert({big_n:,}) / convert({small_n:,}): "
              f"{ratio(downs[('convert', big_n)], downs[('convert', small_n)])} (aim <= 1.3)")
        runbook = downs[("runbook A", start[(big.name, "lab2")][0])]
        print(f"   downtime convert({big_n:,}) / runbook Option A({big_n:,}): "
              f"{ratio(downs[('convert', big_n)], runbook)} (aim <= 0.3)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
