"""How close a rehearsal's predicted downtime comes to the real run's, per mode, on the same site.

One lab of `migrated` sites under ingestion, one site per mode. On each site, one after another:
`fab rehearse --mode=M --json` (the prediction; with --measure-restart, `fab rehearse
--measure-restart`), then at once `invoke rollback --mode=M --sites S --yes --json` (the real run,
its step timeline) while /api/health is polled from the laptop side every 0.1 s. Compared, per mode:

- the database steps inside the downtime (what a rehearsal runs on its throwaway copy): predicted
  and real, the same step keys on both sides;
- the whole downtime: predicted = those steps + the live backend's stop and start, estimated
  read-only (the default) or measured once (--measure-restart); real = the run's downtime steps,
  and the outage the poller saw.

    .venv/bin/python -m benchmarks.rehearse_accuracy                      # 100k rows, ~3 min
    .venv/bin/python -m benchmarks.rehearse_accuracy --measure-restart
    .venv/bin/python -m benchmarks.rehearse_accuracy --flows 500000
"""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

from fabfile.rehearse import LIVE_STEPS

from .common import audit_dir, fab, header, invoke, lab_up, ratio, run, tool_env
from .restore_downtime import Side

MODES = ("convert", "restore", "clean")


def downtime(timeline: list[dict], keys: set[str] | None = None) -> float:
    """Seconds of the downtime steps (of ``keys`` only, when given)."""
    return sum(s["seconds"] for s in timeline if s["downtime"] and (keys is None or s["key"] in keys))


def first_json(text: str, opener: str):
    """The JSON document the command printed (lines such as the report's path may follow it)."""
    return json.JSONDecoder().raw_decode(text[text.index(opener):])[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=100_000, help="flow rows per site (default 100000)")
    ap.add_argument("--ingest-rate", type=float, default=50, help="flow rows a second each backend writes")
    ap.add_argument("--name", default="bra", help="the lab's name (default bra)")
    ap.add_argument("--measure-restart", action="store_true",
                    help="rehearse with --measure-restart (the live backend restarted once) instead of the estimate")
    args = ap.parse_args(argv)
    extra = ["--measure-restart"] if args.measure_restart else []

    header("rehearsal accuracy: predicted downtime vs the real run right after, same site", args.name)
    rows, failed = [], False
    with lab_up(args.name, sites=len(MODES), flows=args.flows, variants=["migrated"] * len(MODES),
                ingest_rate=args.ingest_rate) as lab, audit_dir() as audit:
        env = tool_env(lab, audit)
        for i, mode in enumerate(MODES, 1):
            site = f"lab{i}"
            rehearsal = run(fab(lab, [site], "rehearse", f"--mode={mode}", *extra, "--json"), env=env)
            side = Side(mode, site, f"http://{lab.site(site).ip}:8000/api/health", lambda site=site, mode=mode: run(
                invoke("rollback", f"--mode={mode}", "--sites", site, "--yes", "--json", "--inventory",
                       str(lab.inventory)), env=env))
            side()
            if rehearsal.returncode or side.result is None or side.result.returncode:
                failed = True
                print(f"   {mode} on {site}: rehearsal exited {rehearsal.returncode}, rollback "
                      f"{side.result.returncode if side.result else side.error}\n"
                      f"{rehearsal.tail(8)}\n{side.result.tail(8) if side.result else ''}")
                continue
            predicted, real = first_json(rehearsal.output, "{"), first_json(side.result.output, "[")[0]
            timeline = real["data"]["timeline"]
            db_keys = {s["key"] for s in timeline if s["downtime"] and s["key"] not in LIVE_STEPS}
            outage, _ = side.poller.outage(side.t0)
            p_all = predicted["predicted_downtime"]
            p_db = downtime(predicted["timeline"], {s["key"] for s in predicted["timeline"]} - {"measure-restart"})
            r_db, r_all = downtime(timeline, db_keys), downtime(timeline)
            est = predicted.get("downtime_estimated")
            r_app = r_all - r_db
            rows.append([mode, f"{p_db:.2f}", f"{r_db:.2f}", ratio(p_db, r_db),
                         "measured" if predicted.get("restart_measured") else "-" if est is None else f"{est:.2f}",
                         f"{r_app:.2f}", f"{p_all:.2f}", f"{r_all:.2f}",
                         ratio(p_all, r_all), f"{outage:.2f}", ratio(p_all, outage), ", ".join(sorted(db_keys))])
    print()
    print(tabulate(rows, headers=["mode", "predicted db steps s", "real db steps s", "÷ (db)",
                                  "estimated backend s", "real backend steps s",
                                  "predicted all s", "real downtime steps s", "÷ (all)", "real outage seen s",
                                  "÷ (outage)", "db steps inside the downtime"]))
    print("\n   aim: predicted ÷ real within 0.7–1.3")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
