"""The backend's part of a rollback's downtime, estimated without touching the live stack.

The real run stops the backend (``docker compose stop backend``, then ends the sessions it left),
and after the database steps starts it again (``docker compose up -d --no-deps backend``) and
waits for /api/health. A rehearsal cannot run those on the live site without taking it down, so
it reads what they will cost:

- the app's start: from the live backend's last start, ``State.StartedAt`` to its first
  "Application startup complete." log line after it (uvicorn's line, which NetMon's backend prints
  once it serves);
- the app's stop: a stop in its log ("Shutting down" to "Application shutdown complete.", uvicorn's
  lines) when there is one; else none when the process exits on the stop signal (it catches SIGTERM,
  read from /proc/PID/status, or runs under ``init``); else the stop timeout docker waits before
  it kills (``Config.StopTimeout``, 10 s by default);
- the four commands' own cost (the round trip, compose reading the project, a docker exec, the
  health probe): each timed once through read-only twins (``docker compose ps``, a ``SELECT`` on the
  live database, one GET of /api/health), each the median of three.

Any part that cannot be read makes the estimate unknown (the prediction stays a lower bound).
"""

from __future__ import annotations

import statistics
from datetime import datetime

from . import commands as cmds
from . import stack
from .commands import Command, q
from .inventory import SiteSettings

READY_LINE = "Application startup complete."
STOP_LINES = ("Shutting down", "Application shutdown complete.")
#: docker stop's wait before SIGKILL when the container sets none
DEFAULT_STOP_TIMEOUT = 10
SIGTERM_BIT = 1 << (15 - 1)
SEP = "@@logs"
#: the estimate's parts, in the order the real run meets them
PARTS = ("stop", "start", "commands")
#: each twin is timed this many times and its median taken (one sample swings with the server's load)
TWIN_SAMPLES = 3


def probe(site: SiteSettings) -> Command:
    """The live backend's start time, pid, init, stop timeout, caught signals and its start and stop log lines."""
    b = q(site.backend_container)
    fmt = q("{{.State.StartedAt}}|{{.State.Pid}}|{{.HostConfig.Init}}|{{.Config.StopTimeout}}")
    lines = " ".join(f"-e {q(x)}" for x in (READY_LINE, *STOP_LINES))
    return Command(f"i=$(docker inspect -f {fmt} {b}) && echo \"$i\" && p=${{i#*|}} && p=${{p%%|*}} && "
                   "(grep '^SigCgt:' \"/proc/$p/status\" 2>/dev/null || echo 'SigCgt: unknown') && "
                   f"echo {SEP} && docker logs --timestamps {b} 2>&1 | grep -F {lines} | tail -n 200",
                   what="read the live backend's last start and stop (docker inspect, its log)", changes=False,
                   ok_codes=tuple(range(256)))


def twins(site: SiteSettings) -> list[tuple[Command, int]]:
    """Read-only commands that cost what the real stop's and start's commands cost but for the app's own work,
    each with how many of the real run's commands it stands for: compose (stop, then up), the live
    database's exec (the sessions ended), the health GET."""
    return [(Command(cmds.compose(site, "ps", "-q", "backend"), what="time docker compose (read-only)", changes=False), 2),
            (Command(cmds.psql(site, "SELECT count(*) FROM pg_stat_activity", db="postgres"),
                     what="time a docker exec on the live database (read-only)", changes=False), 1),
            (Command(cmds.curl_status(stack.health_url(site), 2), what="time one GET of /api/health", changes=False), 1)]


def stamp(text: str) -> datetime | None:
    """Docker's RFC 3339 time (nanoseconds cut to microseconds); None when it is not one."""
    text = text.strip()
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        when = datetime.fromisoformat(head + (f".{frac[:6]:0<6}" if frac else "") + "+00:00")
    except ValueError:
        return None
    return when


def parse(out: str) -> dict:
    """The probe's answer as {"started", "pid", "init", "stop_timeout", "sigterm", "lines": [(time, text)]};
    what could not be read is None."""
    head, _, logs = out.partition(SEP)
    first, *rest = head.strip().splitlines() or [""]
    fields = [f.strip() for f in first.split("|")]
    sig = rest[0].split(":", 1)[1].strip() if rest and ":" in rest[0] else "unknown"
    try:
        caught = bool(int(sig, 16) & SIGTERM_BIT)
    except ValueError:
        caught = None
    lines = []
    for line in logs.strip().splitlines():
        when, _, text = line.partition(" ")
        when = stamp(when)
        if when:
            lines.append((when, text))
    timeout = fields[3] if len(fields) > 3 else ""
    return {"started": stamp(fields[0]) if fields else None, "pid": fields[1] if len(fields) > 1 else None,
            "init": (fields[2] == "true") if len(fields) > 2 else None,
            "stop_timeout": int(timeout) if timeout.isdigit() else None, "sigterm": caught, "lines": lines}


def app_start(facts: dict) -> float | None:
    """Seconds from the last start to the first ready line after it."""
    started = facts["started"]
    if not started:
        return None
    ready = [t for t, text in facts["lines"] if READY_LINE in text and t >= started]
    return (ready[0] - started).total_seconds() if ready else None


def app_stop(facts: dict) -> tuple[float | None, str]:
    """Seconds the app takes to stop, and how that was told."""
    began = None
    last = None
    for when, text in facts["lines"]:
        if STOP_LINES[0] in text:
            began = when
        elif STOP_LINES[1] in text and began:
            last, began = (when - began).total_seconds(), None
    if last is not None:
        return last, "its last stop, from its log"
    if facts["init"] or facts["sigterm"]:
        return 0.0, "it exits on the stop signal (" + ("init" if facts["init"] else "it catches SIGTERM") + ")"
    if facts["sigterm"] is False:
        timeout = facts["stop_timeout"] if facts["stop_timeout"] is not None else DEFAULT_STOP_TIMEOUT
        return float(timeout), f"it ignores SIGTERM: docker kills it after its stop timeout ({timeout}s)"
    return None, "cannot tell whether it exits on the stop signal"


def estimate(runner, site: SiteSettings) -> dict:
    """{"seconds" (None when unknown), "start", "stop", "commands", "how"}: read-only on the live site."""
    facts = parse(runner.run(probe(site)).stdout)
    start, (stop, how) = app_start(facts), app_stop(facts)
    timed = [([runner.run(c) for _ in range(TWIN_SAMPLES)], n) for c, n in twins(site)]
    ok = all(o.exited == 0 for runs, _ in timed[:2] for o in runs)
    commands = round(sum(n * statistics.median(o.duration for o in runs) for runs, n in timed), 3) if ok else None
    parts = {"start": None if start is None else round(start, 3), "stop": None if stop is None else round(stop, 3),
             "commands": commands}
    known = None not in parts.values()
    why = ("the app's start from its last start to its first '" + READY_LINE + "' line" if start is not None
           else "no '" + READY_LINE + "' line after its last start")
    return {"seconds": round(sum(parts.values()), 3) if known else None, **parts,
            "how": f"{why}; its stop: {how}; the commands timed by read-only twins"
                   + ("" if commands is not None else " (they failed)")}
