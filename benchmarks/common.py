"""What every benchmark needs: its own lab (always taken down), timed commands run as a user
would, the tool's audit logs, and a poller that measures a site's downtime from the laptop side."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.lab.lab import Lab

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# No proxy, ever: the benchmarks talk to lab addresses only.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def machine() -> str:
    load = os.getloadavg()
    return (f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {platform.node()}, {os.cpu_count()} cores, "
            f"load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")


def other_labs(mine: str) -> list[str]:
    """Labs of other sessions that are up while we measure (they compete for the same cores)."""
    base = Path("/var/lib/netmon-lab")
    return sorted(p.name for p in base.iterdir() if p.is_dir() and p.name != mine) if base.exists() else []


def header(title: str, lab_name: str) -> None:
    print(f"== {title}")
    print(f"   {machine()}")
    others = other_labs(lab_name)
    print(f"   other labs up on this machine: {', '.join(others) if others else 'none'}")



@contextmanager
def lab_up(name: str, sites: int, flows: int, variants: list[str] | None = None,
           ingest_rate: float | None = None) -> Iterator[Lab]:
    """A lab of our own for the length of the block; taken down whatever happens."""
    lab = Lab(name)
    started = time.monotonic()
    try:
        lab.up(sites=sites, flows=flows, variants=variants, log=lambda *_: None, ingest_rate=ingest_rate)
        print(f"   lab {name}: {sites} site(s), {flows} flow rows each, up in {time.monotonic() - started:.1f}s")
        yield lab
    finally:
        lab.down(log=lambda *_: None)
        print(f"   lab {name}: down")


@dataclass
class Timed:
    argv: list[str]
    seconds: float
    returncode: int
    output: str
    started: float  # time.time() at start, to line the audit log's timestamps up with
    cpu: float = 0.0  # the command's own CPU seconds (user + sys) on this machine, children included
    busy: float = 0.0  # share of the whole machine's cores busy meanwhile (lab sites and other users too)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])

    def check(self) -> Timed:
        if self.returncode != 0:
            raise BenchmarkError(f"{' '.join(self.argv)} exited {self.returncode}:\n{self.tail()}")
        return self


class BenchmarkError(Exception):
    """A measured command failed: the message has the command and its output's tail."""


def run(argv: list[str], env: dict | None = None, stdin: str | None = None, timeout: float = 3600) -> Timed:
    """Run a command from the checkout as a user would, and time it (wall clock).

    ``cpu`` is exact only when no other command runs at the same time (children's usage is pooled)."""
    wall, started, before = time.time(), time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = _cpu_ticks()
    proc = subprocess.run(argv, check=False, cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
    busy = _busy_since(ticks)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Timed(argv, time.monotonic() - started, proc.returncode, proc.stdout + proc.stderr, wall, cpu, busy)


def idle_busy(seconds: float = 3.0) -> float:
    """Share of the machine's cores busy over ``seconds`` while we run nothing (the background)."""
    ticks = _cpu_ticks()
    time.sleep(seconds)
    return _busy_since(ticks)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_since(ticks: tuple[int, int]) -> float:
    now = _cpu_ticks()
    total = now[1] - ticks[1]
    return (now[0] - ticks[0]) / total if total else 0.0


def tool_env(lab: Lab, audit_dir: Path) -> dict:
    """The environment the tool runs in: the lab's inventory (admin password) and our own audit dir."""
    return {**os.environ, "NETMON_INVENTORY": str(lab.inventory), "NETMON_AUDIT_DIR": str(audit_dir)}


def fab(lab: Lab, hosts: list[str], *args: str) -> list[str]:
    return [str(BIN / "fab"), "-S", str(lab.ssh_config), "-H", ",".join(hosts), *args]


def invoke(*args: str) -> list[str]:
    return [str(BIN / "invoke"), *args]


@contextmanager
def audit_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="netmon-bench-audit-") as d:
        yield Path(d)


def audit_records(directory: Path, kind: str | None = None) -> list[dict]:
    """Every remote command the tool logged under ``directory`` (one JSON object per line); with
    ``kind="wait"`` instead the deliberate waits it noted inside them (verify's ingestion wait)."""
    records = []
    for f in sorted(directory.glob("audit_*.jsonl")):
        records += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    records = [r for r in records if (r.get("kind") == "wait") == (kind == "wait")]
    for r in records:
        r["end"] = datetime.fromisoformat(r["ts"]).timestamp()
        r["start"] = r["end"] - r["seconds"]
    return sorted(records, key=lambda r: r["start"])


def clear(directory: Path) -> None:
    for f in directory.glob("audit_*.jsonl"):
        f.unlink()


def median(values: list[float]) -> float:
    return statistics.median(values)


def ssh(lab: Lab, host: str, script: str, timeout: float = 3600) -> Timed:
    """Run a shell script on a site over the lab's real SSH, as an operator pasting it would."""
    return run(["ssh", "-F", str(lab.ssh_config), host, "bash -s"], stdin=script, timeout=timeout)


def psql(lab: Lab, site: str, sql: str) -> str:
    """One value read from a site's database, through its docker, from inside the site."""
    cmd = f"docker exec netmon-db psql -U netmon -d netmon -X -tA -c \"{sql}\""
    return lab.site(site).run(cmd, timeout=60).stdout.strip()


def dump_flow_rows(lab: Lab, site: str) -> tuple[int, int]:
    """(rows, max id) of flow_records in the site's pre-migration dump, read on the host."""
    dumps = sorted((lab.site(site).dir / "root").glob("netmon_pre_tsdb_*.dump"))
    data = subprocess.run([str(PG_BIN / "pg_restore"), "-a", "-t", "flow_records", "-f", "-", str(dumps[-1])],
                          capture_output=True, text=True, check=True).stdout
    rows, max_id, copying = 0, 0, False
    for line in data.splitlines():
        if line.startswith("COPY "):
            copying = True
        elif line == "\\.":
            copying = False
        elif copying:
            rows += 1
            max_id = max(max_id, int(line.split("\t", 1)[0]))
    return rows, max_id


def health(url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of ``url``, or None when nothing answered in time."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


@dataclass
class HealthPoller:
    """Polls a URL every ``interval`` seconds from the laptop side, in a thread of its own.

    Each sample's status stands for the time until the next sample starts, so a 1 s timeout
    counts as 1 s of downtime, not 0.1 s."""

    url: str
    interval: float = 0.1
    samples: list[tuple[float, bool]] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> HealthPoller:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            self.samples.append((t, health(self.url) == 200))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def stop_when_stable(self, settle: float = 3.0, limit: float = 300.0) -> None:
        """Stop once the URL has answered 200 for ``settle`` seconds on end (or after ``limit``)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ok_since = self._ok_since()
            if ok_since is not None and time.monotonic() - ok_since >= settle:
                break
            time.sleep(self.interval)
        self._stop.set()
        self._thread.join()

    def _ok_since(self) -> float | None:
        since = None
        for t, ok in list(self.samples):
            since = (since or t) if ok else None
        return since

    def outage(self, since: float) -> tuple[float, float | None]:
        """(seconds without a 200, seconds until it answered 200 for good), counted from ``since``.

        The second is None when it never recovered while we polled."""
        samples = [s for s in self.samples if s[0] >= since]
        bad = [i for i, (_, ok) in enumerate(samples) if not ok]
        if not bad:
            return 0.0, 0.0
        last = bad[-1]
        if last + 1 >= len(samples):
            return samples[-1][0] - samples[bad[0]][0], None
        down = sum(samples[i + 1][0] - samples[i][0] for i in bad)
        return down, samples[last + 1][0] - since


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"
