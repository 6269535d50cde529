"""`invoke lab.up --engine docker` against `--engine standin`, 1 site and 8, in one run (issue 13).

Side by side: the stand-in lab (1, then N sites), the real engine warm (its image cache filled;
1, then N sites), then the engine cold once (the images' tarball removed, so the lab builds and
caches them again; the debootstrap root file system stays cached unless --cold-rootfs), and the
memory an N-site engine lab holds (PSS of every process of the lab: daemons, shims, containers).

    .venv/bin/python -m benchmarks.lab_engine                    # ~12 min
    .venv/bin/python -m benchmarks.lab_engine --sites 3 --no-cold  # quick
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tests.lab import engine
from tests.lab.lab import Lab, lab_processes

from .common import header, invoke, run

BUDGET_8 = 120.0  # issue 13's aim for 8 warm engine sites


def lab_memory(lab: Lab) -> float:
    """MiB of PSS of every process the lab runs: in its namespaces, naming its directory, or in
    its sites' cgroups (the containers)."""
    pids = lab_processes(lab.root)
    for site in lab.sites():
        for top in engine.cgroup_dirs(site.cgroup_parent):
            for procs in top.rglob("cgroup.procs"):
                pids |= {int(p) for p in procs.read_text().split()}
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def up_down(lab: Lab, sites: int, flows: int, eng: str, measure=None) -> float:
    """Seconds `lab.up` took; MEASURE(lab) runs while the lab is up."""
    up = run(invoke("lab.up", "--name", lab.name, "--sites", str(sites), "--flows", str(flows), "--engine", eng)).check()
    if measure:
        measure(lab)
    down = run(invoke("lab.down", "--name", lab.name)).check()
    print(f"   {eng:8} lab.up --sites {sites}: {up.seconds:.1f}s   (lab.down {down.seconds:.1f}s)")
    return up.seconds


def memory(lab: Lab) -> None:
    mib = lab_memory(lab)
    n = len(lab.sites())
    print(f"   docker   the {n}-site lab holds {mib:.0f} MiB (PSS), {mib / n:.0f} MiB a site")
    loads = [s.dir.joinpath("build.log").read_text().splitlines()[0] for s in lab.sites()]
    print("   " + "\n   ".join(f"{s.name}: {line}" for s, line in zip(lab.sites(), loads, strict=True)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=8, help="the larger lab (default 8)")
    ap.add_argument("--flows", type=int, default=2000, help="flow rows per site (default 2000)")
    ap.add_argument("--name", default="bne", help="the lab's name (default bne)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold run (no image rebuild)")
    ap.add_argument("--cold-rootfs", action="store_true", help="cold also without the debootstrap cache")
    args = ap.parse_args(argv)

    header(f"lab.up --engine docker vs standin: 1 site vs {args.sites}, {args.flows} flow rows each", args.name)
    lab = Lab(args.name)
    t: dict[tuple[str, int], float] = {}
    try:
        engine.ensure_images(log=lambda m: print("   " + m))  # warm before timing
        for eng in ("standin", "docker"):
            for n in (1, args.sites):
                t[eng, n] = up_down(lab, n, args.flows, eng, memory if (eng, n) == ("docker", args.sites) else None)
        if not args.no_cold:
            engine.images_tarball().unlink(missing_ok=True)
            shutil.rmtree(engine.layer_store(), ignore_errors=True)
            if args.cold_rootfs:
                for rootfs in engine.CACHE.glob("rootfs-*.tar"):
                    rootfs.unlink()
            print("   (next: image cache cold)")
            t["cold", 1] = up_down(lab, 1, args.flows, "docker")
    finally:
        lab.down(log=lambda *_: None)
    n = args.sites
    print(f"\n   docker/standin: 1 site {t['docker', 1] / t['standin', 1]:.2f}, "
          f"{n} sites {t['docker', n] / t['standin', n]:.2f}")
    print(f"   t({n})/t(1): standin {t['standin', n] / t['standin', 1]:.2f}, docker {t['docker', n] / t['docker', 1]:.2f}")
    if ("cold", 1) in t:
        print(f"   cold/warm (1 site, docker): {t['cold', 1] / t['docker', 1]:.2f}")
    if n == 8:
        print(f"   8 warm engine sites within {BUDGET_8:.0f}s: {'yes' if t['docker', 8] <= BUDGET_8 else 'NO'}"
              f" ({t['docker', 8]:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
