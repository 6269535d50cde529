"""What WAN latency costs: the tool at 0 ms and at 50 ms one-way, side by side in one run, and an
Ansible play of the same checks on the same sites.

One lab (`bnl`) whose SSH goes through the lab's latency relay (`lab.up --latency`); the relay's
delay is switched between 0 and 50 ms between measurements (`Lab.set_latency`), so both arms take
the same path and only the delay differs. Sites: lab1..N `rolled-back` (verify passes there),
and two small `migrated` ones for a restore at each latency. Sections (each a function in SECTIONS,
run in order; a new measurement is one more function there):

1. `fab verify` and `fab status` of lab1: wall time, wall ÷ RTT, the round trips the wire added
   ((t(50) − t(0)) ÷ RTT) and those the relay counted; verify's ingestion wait (noted in the audit
   log, server clock) reported apart: it runs alongside the other parts of the host script.
2. `invoke verify` on 1 and N sites, and `ansible-playbook benchmarks/ansible/verify.yml` (the same
   checks; ansible-core in benchmarks/.venv-ansible, pipelining and ControlPersist on, forks 8, a
   fresh ControlPath per run like the tool's one connection per run): t(N)/t(1) for both, and ours ÷
   Ansible's at N.
3. `fab rollback --mode=restore --yes` total time at 50 ms ÷ at 0 ms (pairs of sites in the same state).

Rounds interleave the latencies and forms so background load hits them alike; medians are kept.

    .venv/bin/python -m benchmarks.latency
    .venv/bin/python -m benchmarks.latency --sites 3 --rounds 1        # quick
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from tests.lab import relay
from tests.lab.lab import Lab

from .common import (
    REPO,
    BenchmarkError,
    Timed,
    audit_dir,
    audit_records,
    clear,
    fab,
    header,
    invoke,
    median,
    ratio,
    run,
    tool_env,
)

HERE = Path(__file__).resolve().parent
ANSIBLE_VENV = HERE / ".venv-ansible"
ANSIBLE_REQUIREMENTS = HERE / "ansible" / "requirements.txt"
PLAY = HERE / "ansible" / "verify.yml"


@dataclass
class Bench:
    """What every section gets: the lab, the tool's environment, the options, and the result lines."""

    lab: Lab
    env: dict
    audit: Path
    args: argparse.Namespace
    verify_sites: list[str]
    restore_sites: list[str]
    summary: list[str] = field(default_factory=list)

    def at(self, latency_ms: float) -> None:
        self.lab.set_latency(latency_ms)


@contextmanager
def relayed_lab(name: str, sites: int, flows: int, variants: list[str], latency_ms: float) -> Iterator[Lab]:
    """A lab of our own behind the latency relay for the length of the block; taken down whatever happens."""
    lab, started = Lab(name), time.monotonic()
    try:
        lab.up(sites=sites, flows=flows, variants=variants, latency_ms=latency_ms, log=lambda *_: None)
        print(f"   lab {name}: {sites} site(s) ({', '.join(sorted(set(variants)))}), {flows} flow rows each, "
              f"behind the relay, up in {time.monotonic() - started:.1f}s")
        yield lab
    finally:
        lab.down(log=lambda *_: None)
        print(f"   lab {name}: down")


def ingest_wait(directory: Path) -> float:
    """Seconds verify's ingestion check waited on purpose for a new flow row (server clock, as the
    tool noted it in its audit log). The wait runs alongside the host script's other parts, so it
    lengthens the run only where it outlasts them."""
    return sum(r["seconds"] for r in audit_records(directory, kind="wait"))


def timed_tool(b: Bench, argv: list[str], label: str) -> tuple[Timed, list[dict], int, int]:
    """One run of the tool: its time, its audit records, and the round trips the relay counted on its
    SSH connections (load- and delay-independent, unlike the time), and how many connections."""
    clear(b.audit)
    offset = relay.log_size(b.lab.relay_dir)
    timed = run(argv, env=b.env)
    if timed.returncode != 0:
        raise BenchmarkError(f"{label}: {' '.join(argv)} exited {timed.returncode}:\n{timed.tail()}")
    connections = relay.connections_since(b.lab.relay_dir, offset)
    return timed, audit_records(b.audit), sum(c["turns"] for c in connections), len(connections)


# -- 1. fab verify / status of one site ----------------------------------------------------------

def single_site(b: Bench) -> None:
    rtt = 2 * b.args.latency / 1000
    site = b.verify_sites[0]
    print(f"\n-- fab verify and fab status of {site} at 0 and {b.args.latency:g} ms one-way "
          f"(RTT {rtt * 1000:.0f} ms), {b.args.rounds} round(s)")
    forms = {"fab verify": fab(b.lab, [site], "verify"), "fab status": fab(b.lab, [site], "status")}
    seen: dict[tuple[str, float], list[tuple[float, float, int, float, int]]] = {}
    for _ in range(b.args.rounds):
        for latency in (0, b.args.latency):
            b.at(latency)
            for label, argv in forms.items():
                timed, records, turns, conns = timed_tool(b, argv, f"{label} at {latency:g} ms")
                seen.setdefault((label, latency), []).append(
                    (timed.seconds, ingest_wait(b.audit), len(records), timed.busy, turns, conns))
    for (label, latency), runs in seen.items():
        print(f"   {label} at {latency:g} ms: runs {' '.join(f'{x[0]:.2f}' for x in runs)} s "
              f"(ingestion wait {' '.join(f'{x[1]:.2f}' for x in runs)} s; round trips counted by the relay "
              f"{' '.join(str(x[4]) for x in runs)} on {' '.join(str(x[5]) for x in runs)} connection(s); machine busy "
              f"{' '.join(f'{100 * x[3]:.0f}%' for x in runs)})")
    rows = []
    for label in forms:
        t0, w0, n0 = (median([x[i] for x in seen[(label, 0)]]) for i in range(3))
        t1, w1, n1 = (median([x[i] for x in seen[(label, b.args.latency)]]) for i in range(3))
        counted = median([x[4] for x in seen[(label, 0)] + seen[(label, b.args.latency)]])
        added = (t1 - t0) / rtt
        rows.append([label, f"{n1:.0f}", f"{t0:.2f}", f"{t1:.2f}", f"{w0:.2f}", f"{w1:.2f}", f"{t1 / rtt:.1f}",
                     f"{added:.1f}", f"{counted:.0f}", f"{counted + 1.5:.1f}"])
        b.summary.append(f"{label}: {t0:.2f}s at 0 ms, {t1:.2f}s at {b.args.latency:g} ms = {t1 / rtt:.1f} RTT "
                         f"(ingestion wait {w0:.2f}/{w1:.2f}s, alongside the rest); the wire added {added:.1f} round "
                         f"trips; the relay counted {counted:.0f} (+ 1.5 for TCP's handshake: {counted + 1.5:.1f}), "
                         f"{n1:.0f} remote command(s)")
    print(tabulate(rows, headers=["task", "remote cmds", "t@0 s", f"t@{b.args.latency:g} s", "ingest wait@0 s",
                                  f"ingest wait@{b.args.latency:g} s", "t ÷ RTT", "round trips added", "counted",
                                  "counted + TCP"]))
    print("   round trips added = (t at the latency − t at 0 ms) ÷ RTT: what the wire costs, the SSH handshake "
          "included (the ingestion wait, a new flow row within ~1 s, runs alongside the other parts and is left in: "
          "it moves this by a few round trips from run to run); counted = times the server sent after the client "
          "did, on the tool's connections, as the relay saw them (median of all runs); + TCP = with the 1.5 round "
          "trips the relay holds a new connection for (SYN, SYN-ACK, ACK)")


# -- 2. invoke verify and Ansible, 1 and N sites --------------------------------------------------

def ansible_ready() -> Path:
    """ansible-playbook in the benchmark's own venv (made once, from benchmarks/ansible/requirements.txt)."""
    playbook = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if not playbook.exists():
        print(f"   installing ansible-core into {ANSIBLE_VENV.relative_to(REPO)} (once)")
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "-r", str(ANSIBLE_REQUIREMENTS)],
                       check=True)
    return playbook


def ansible_run(b: Bench, playbook: Path, sites: list[str], workdir: Path) -> Timed:
    """One `ansible-playbook` run over the lab's ssh_config, with a ControlPath of its own: ControlPersist
    shares one SSH connection per site across the play's tasks, as the tool shares one across its commands."""
    control = Path(tempfile.mkdtemp(prefix="cp-", dir=workdir))
    (workdir / "hosts.ini").write_text("[sites]\n" + "".join(f"{s}\n" for s in sites))
    (workdir / "ansible.cfg").write_text(
        "[defaults]\nforks = 8\nhost_key_checking = True\ngathering = explicit\n"
        "interpreter_python = /usr/bin/python3\nretry_files_enabled = False\n"
        f"local_tmp = {workdir}/local\n"
        "[ssh_connection]\npipelining = True\n"
        f"ssh_args = -F {b.lab.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
        f"control_path_dir = {control}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    try:
        return run([str(playbook), "-i", str(workdir / "hosts.ini"), str(PLAY),
                    "-e", f"admin_password_file={b.lab.admin_password_file}"], env=env)
    finally:
        for sock in control.iterdir():  # end the persisted masters: the next run starts cold, as ours does
            subprocess.run(["ssh", "-F", str(b.lab.ssh_config), "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                           check=False, capture_output=True, timeout=30)


def fleet_vs_ansible(b: Bench) -> None:
    n, one = len(b.verify_sites), b.verify_sites[:1]
    playbook = ansible_ready()
    print(f"\n-- invoke verify and the Ansible play on 1 and {n} sites, at 0 and {b.args.latency:g} ms, "
          f"{b.args.rounds} round(s)")
    inv = ["--inventory", str(b.lab.inventory)]
    forms: dict[str, Callable[[Path], Timed]] = {
        "invoke verify, 1": lambda _: run(invoke("verify", *inv, "--sites", one[0]), env=b.env),
        f"invoke verify, {n}": lambda _: run(invoke("verify", *inv, "--sites", ",".join(b.verify_sites)), env=b.env),
        "ansible, 1": lambda w: ansible_run(b, playbook, one, w),
        f"ansible, {n}": lambda w: ansible_run(b, playbook, b.verify_sites, w),
    }
    times: dict[tuple[str, float], list[float]] = {}
    busy: dict[tuple[str, float], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="netmon-bench-ansible-") as work:
        for r in range(b.args.rounds):
            for latency in (0, b.args.latency):
                b.at(latency)
                for label, go in forms.items():
                    timed = go(Path(work))
                    if timed.returncode != 0:
                        raise BenchmarkError(f"round {r + 1}, {label} at {latency:g} ms exited {timed.returncode}:\n"
                                             f"{timed.tail(25)}")
                    times.setdefault((label, latency), []).append(timed.seconds)
                    busy.setdefault((label, latency), []).append(timed.busy)
    med = {k: median(v) for k, v in times.items()}
    labels = list(forms)
    rows = [[label, *(f"{med[(label, lat)]:.2f}" for lat in (0, b.args.latency)),
             *(" ".join(f"{x:.2f}" for x in times[(label, lat)]) for lat in (0, b.args.latency)),
             " ".join(f"{100 * x:.0f}%" for lat in (0, b.args.latency) for x in busy[(label, lat)])]
            for label in labels]
    print(tabulate(rows, headers=["form", "t@0 s", f"t@{b.args.latency:g} s", "runs@0 s",
                                  f"runs@{b.args.latency:g} s", "machine busy"]))
    for lat in (0, b.args.latency):
        ours = ratio(med[(labels[1], lat)], med[(labels[0], lat)])
        theirs = ratio(med[(labels[3], lat)], med[(labels[2], lat)])
        vs = ratio(med[(labels[1], lat)], med[(labels[3], lat)])
        line = f"at {lat:g} ms: t({n})/t(1) invoke {ours}, Ansible {theirs}; invoke ÷ Ansible at {n} sites {vs}"
        print(f"   {line}")
        b.summary.append(line)


# -- 3. a whole rollback at 0 and at the latency --------------------------------------------------

def restore_total(b: Bench) -> None:
    """Pairs of sites in the same state: one restored at 0 ms, the other at the latency; the order
    alternates from pair to pair so neither latency always goes first."""
    pairs = [b.restore_sites[i:i + 2] for i in range(0, len(b.restore_sites), 2)]
    print(f"\n-- fab rollback --mode=restore --yes at 0 and {b.args.latency:g} ms: {len(pairs)} pair(s) of migrated "
          f"sites, {b.args.flows} flow rows each")
    totals: dict[float, list[float]] = {0: [], b.args.latency: []}
    for k, pair in enumerate(pairs):
        order = [(pair[0], 0), (pair[1], b.args.latency)]
        for site, latency in order if k % 2 == 0 else order[::-1]:
            b.at(latency)
            timed, records, turns, _ = timed_tool(b, fab(b.lab, [site], "rollback", "--mode=restore", "--yes"),
                                                  f"restore of {site} at {latency:g} ms")
            totals[latency].append(timed.seconds)
            print(f"   {site} at {latency:g} ms: {timed.seconds:.2f}s, {len(records)} remote cmds, {turns} round trips, "
                  f"machine {100 * timed.busy:.0f}% busy")
    t0, t1 = median(totals[0]), median(totals[b.args.latency])
    line = (f"rollback --mode=restore total: {t0:.2f}s at 0 ms, {t1:.2f}s at {b.args.latency:g} ms (medians of "
            f"{len(pairs)}): ratio {ratio(t1, t0)} (aim ≤ 1.5)")
    print(f"   {line}")
    b.summary.append(line)


#: The measurements, in order (a new one: one more ``def section(b: Bench) -> None`` here). Restore's and
#: convert's downtime against the floor of a bare restart is benchmarks/floor.py (no latency needed).
SECTIONS: list[Callable[[Bench], None]] = [single_site, fleet_vs_ansible, restore_total]


def main(argv=None, summary: list[str] | None = None) -> int:
    """``summary``: the summary lines are appended to it too (benchmarks/speed.py collects them)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=50, help="one-way latency in ms to compare with 0 (default 50)")
    ap.add_argument("--sites", type=int, default=8, help="sites for the fleet forms (default 8)")
    ap.add_argument("--flows", type=int, default=2000, help="flow rows per site (default 2000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each timed form; medians kept (default 3)")
    ap.add_argument("--restore-pairs", type=int, default=2,
                    help="pairs of migrated sites restored, one at 0 ms and one at the latency (default 2)")
    ap.add_argument("--only", default="", help="comma-separated section names to run (default all: "
                    + ", ".join(s.__name__ for s in SECTIONS) + ")")
    ap.add_argument("--name", default="bnl", help="the lab's name (default bnl)")
    args = ap.parse_args(argv)
    if args.latency <= 0:
        ap.error("--latency must be > 0 (it is compared with 0)")
    chosen = [s for s in SECTIONS if not args.only or s.__name__ in args.only.split(",")]
    verify_sites = [f"lab{i}" for i in range(1, args.sites + 1)]
    restore_sites = [f"lab{args.sites + 1 + i}" for i in range(2 * args.restore_pairs)]
    variants = ["rolled-back"] * args.sites + ["migrated"] * len(restore_sites)

    header(f"latency: the tool at 0 and {args.latency:g} ms one-way, and Ansible", args.name)
    with relayed_lab(args.name, len(variants), args.flows, variants, args.latency) as lab, audit_dir() as audit:
        b = Bench(lab, tool_env(lab, audit), audit, args, verify_sites, restore_sites)
        for section in chosen:
            section(b)
        print("\n== summary")
        for line in b.summary:
            print(f"   {line}")
        if summary is not None:
            summary.extend(b.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
