"""The tool's own overhead: its wall time against the sum of its remote commands' own durations.

On a small site (2000 flow rows) the remote work is short, so what the tool adds — Python start-up,
SSH connection, local work and waits between commands — shows. The audit log has every remote
command with its duration; overhead = total / sum, and total - sum in seconds, split into start-up
(process start to first command), between commands, and finish (last command to exit).

`verify` waits on the server for a new flow row (the "ingestion resumed" check), alongside the
other parts of its host probe: that wait is inside the host probe's own duration, printed apart
(the tool notes it in its audit log).

    .venv/bin/python -m benchmarks.tool_overhead
    .venv/bin/python -m benchmarks.tool_overhead --verify-runs 1
"""

from __future__ import annotations

import argparse

from tabulate import tabulate

from .common import BIN, Timed, audit_dir, audit_records, clear, fab, header, lab_up, median, run, tool_env


def breakdown(timed: Timed, records: list[dict], waits: list[dict]) -> dict:
    """Where the wall time went, from the audit log's per-command start and end times."""
    remote = sum(r["seconds"] for r in records)
    between = sum(max(0.0, cur["start"] - prev["end"]) for prev, cur in zip(records, records[1:], strict=False))
    ingest_wait = sum(w["seconds"] for w in waits)
    return {
        "commands": len(records),
        "total": timed.seconds,
        "remote": remote,
        "startup": records[0]["start"] - timed.started if records else 0.0,
        "between": between,
        "ingest_wait": ingest_wait,
        "finish": timed.started + timed.seconds - records[-1]["end"] if records else 0.0,
    }


def row(label: str, b: dict) -> list:
    return [label, b["commands"], f"{b['total']:.2f}", f"{b['remote']:.2f}", f"{b['total'] / b['remote']:.2f}",
            f"{b['total'] - b['remote']:.2f}", f"{b['startup']:.2f}", f"{b['between']:.2f}",
            f"{b['ingest_wait']:.2f}", f"{b['finish']:.2f}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=2000, help="flow rows on the site (default 2000)")
    ap.add_argument("--verify-runs", type=int, default=3, help="how many verify runs (default 3; the median is kept)")
    ap.add_argument("--name", default="bno", help="the lab's name (default bno)")
    args = ap.parse_args(argv)

    header("tool overhead: wall time vs the remote commands' own durations", args.name)
    with lab_up(args.name, sites=1, flows=args.flows) as lab, audit_dir() as audit:
        env = tool_env(lab, audit)
        bare = run([str(BIN / "fab"), "--version"]).check()
        rows = []
        rollback = run(fab(lab, ["lab1"], "rollback", "--mode=restore", "--yes"), env=env).check()
        rows.append(row("rollback --mode=restore", breakdown(rollback, audit_records(audit), audit_records(audit, kind="wait"))))
        verifies = []
        for i in range(args.verify_runs):
            clear(audit)
            timed = run(fab(lab, ["lab1"], "verify"), env=env).check()
            verifies.append(breakdown(timed, audit_records(audit), audit_records(audit, kind="wait")))
            rows.append(row(f"verify #{i + 1}", verifies[-1]))
        print()
        print(tabulate(rows, headers=["task", "cmds", "total s", "sum remote s", "total/sum", "total-sum s",
                                      "start-up s", "between s", "(ingestion wait, inside) s", "finish s"]))
        print(f"\n   `fab --version` alone (Python start-up and imports): {bare.seconds:.2f}s")
        mid = sorted(verifies, key=lambda b: b["total"])[len(verifies) // 2]
        print(f"   median verify: total {median([b['total'] for b in verifies]):.2f}s, "
              f"overhead total/sum {mid['total'] / mid['remote']:.2f} (its ingestion wait, {mid['ingest_wait']:.2f}s, "
              "is inside the host probe's time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
