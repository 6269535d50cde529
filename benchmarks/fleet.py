"""Fleet scaling: does `invoke verify` on 8 sites cost little more than on 1, and what does a batch
rollback save over single-site rollbacks run one after another?

One lab of 2×8 small sites, all `migrated`:
1. `invoke rollback --mode=clean --yes --parallel P` on lab1..lab8 (one batch), against
   `fab -H labK rollback --mode=clean --yes` for K = 9..16, one after another: ratio batch/sequential.
2. With lab9..lab16's stacks stopped, on the now rolled-back lab1..lab8, in rounds (so background
   noise hits every form alike): `invoke verify` on 1 site and on 8, and `fab -H lab1 verify` and `fab -H lab1,...,lab8 verify`
   (fab runs the hosts one after another); median of R rounds; t(8)/t(1) for both (aim: invoke ≤ 1.5).
   verify ends with an "ingestion resumed" check that polls for a new flow row (1 s pauses; the
   backend ingests a few rows a second), so each site's verify has a floor of about 1-2 s.

    .venv/bin/python -m benchmarks.fleet
    .venv/bin/python -m benchmarks.fleet --rounds 1 --sites 3     # quick
"""

from __future__ import annotations

import argparse
import os

from tabulate import tabulate

from .common import BenchmarkError, audit_dir, fab, header, idle_busy, invoke, lab_up, median, ratio, run, tool_env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=8, help="fleet size N (default 8; the lab has 2N sites)")
    ap.add_argument("--flows", type=int, default=2000, help="flow rows per site (default 2000)")
    ap.add_argument("--rounds", type=int, default=5, help="verify rounds; medians are reported (default 5)")
    ap.add_argument("--parallel", type=int, default=8, help="invoke rollback --parallel (default 8; the tool's own is 4)")
    ap.add_argument("--name", default="bnf", help="the lab's name (default bnf)")
    args = ap.parse_args(argv)
    n = args.sites
    batch_sites = [f"lab{i}" for i in range(1, n + 1)]
    single_sites = [f"lab{i}" for i in range(n + 1, 2 * n + 1)]

    header(f"fleet: invoke verify on 1 vs {n} sites, batch vs one-by-one rollback", args.name)
    with lab_up(args.name, sites=2 * n, flows=args.flows) as lab, audit_dir() as audit:
        env = tool_env(lab, audit)
        inv = ["--inventory", str(lab.inventory)]

        print(f"\n-- rollback --mode=clean: {n} sites in one batch (--parallel {args.parallel}) "
              f"vs {n} single-site fab runs one after another")
        batch = run(invoke("rollback", "--mode=clean", "--yes", *inv, "--sites", ",".join(batch_sites),
                           "--parallel", str(args.parallel)), env=env).check()
        singles = [run(fab(lab, [s], "rollback", "--mode=clean", "--yes"), env=env).check() for s in single_sites]
        seq = sum(t.seconds for t in singles)
        print(f"   batch ({','.join(batch_sites)}): {batch.seconds:.1f}s")
        print(f"   one after another ({','.join(single_sites)}): {seq:.1f}s "
              f"(each: {', '.join(f'{t.seconds:.1f}' for t in singles)})")
        print(f"   ratio batch/sequential: {ratio(batch.seconds, seq)} (speed-up {ratio(seq, batch.seconds)}×)")

        for s in single_sites:  # done with: stop their stacks so they do not load the machine during verify
            lab.site(s).run("cd /root/netmon && docker compose stop")
        print(f"\n-- verify on the rolled-back {','.join(batch_sites)} ({','.join(single_sites)} stopped; "
              f"machine {100 * idle_busy():.0f}% busy before): {args.rounds} round(s)")
        forms = {
            "invoke verify, 1 site": invoke("verify", *inv, "--sites", batch_sites[0]),
            f"invoke verify, {n} sites": invoke("verify", *inv, "--sites", ",".join(batch_sites)),
            "fab verify, 1 host": fab(lab, batch_sites[:1], "verify"),
            f"fab verify, {n} hosts": fab(lab, batch_sites, "verify"),
        }
        times: dict[str, list[float]] = {k: [] for k in forms}
        cpu: dict[str, list[float]] = {k: [] for k in forms}
        busy: dict[str, list[float]] = {k: [] for k in forms}
        for r in range(args.rounds):
            for label, argv_ in forms.items():
                timed = run(argv_, env=env)
                if timed.returncode != 0:
                    raise BenchmarkError(f"round {r + 1}, {label}: {' '.join(argv_)} exited {timed.returncode}:\n"
                                         f"{timed.tail()}")
                times[label].append(timed.seconds)
                cpu[label].append(timed.cpu)
                busy[label].append(timed.busy)
        med = {k: median(v) for k, v in times.items()}
        print(tabulate([[k, f"{med[k]:.2f}", " ".join(f"{x:.2f}" for x in v), f"{median(cpu[k]):.2f}",
                         f"{100 * median(busy[k]):.0f}%"] for k, v in times.items()],
                       headers=["form", "median s", "runs s", "client CPU s", "machine busy"]))
        labels = list(forms)
        print(f"\n   t({n})/t(1): invoke verify {ratio(med[labels[1]], med[labels[0]])} (aim ≤ 1.5), "
              f"fab -H verify {ratio(med[labels[3]], med[labels[2]])}")
        print(f"   {n} sites: invoke/fab {ratio(med[labels[1]], med[labels[3]])}")
        print(f"   the client's own CPU for {n} sites: {median(cpu[labels[1]]):.2f}s of {med[labels[1]]:.2f}s wall; the sites'"
              f" work (sshd, docker stand-in, psql, PostgreSQL) runs on the same {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
