"""Docker facts: each container's state as ``docker inspect`` reports it (never the table's STATUS
text, DESIGN.md §5), and whether the plain image is in the server's image store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ..commands import q
from ..inventory import SiteSettings
from .parts import Unknown, last

INSPECT_FORMAT = ("{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.RestartCount}}|"
                  "{{.Config.Image}}|{{.State.StartedAt}}")


@dataclass
class Container:
    name: str
    status: str  # created, running, paused, restarting, removing, exited, dead, missing
    health: str = ""
    restarts: int = 0
    image: str = ""
    started: float | None = None  # epoch seconds of .State.StartedAt


def image_script(key: str, image: str) -> str:
    """``KEY=yes|no|unknown …``: is ``image`` in the server's image store (docker's own answer)."""
    return (f"if out=$(docker image inspect --format '{{{{.Id}}}}' {q(image)} 2>&1); then echo {key}=yes\n"
            f"elif printf '%s' \"$out\" | grep -qi 'no such image'; then echo {key}=no\n"
            f"else echo \"{key}=unknown $(printf '%s' \"$out\" | tail -n 1 | cut -c1-200)\"; fi")


def parse_image(kv: dict[str, list[str]], key: str) -> bool | Unknown | None:
    """Is the image on the server? None: the line never came; Unknown: docker could not say."""
    value = last(kv, key)
    if value is None:
        return None
    word, _, why = value.partition(" ")
    found = {"yes": True, "no": False}.get(word)
    return Unknown(f"docker image inspect failed: {why or 'no answer'}") if found is None else found


EXEC_REFUSED = re.compile(r"Container \S+ is (restarting|not running|paused)", re.I)


def exec_refused(text: str) -> str | None:
    """The container state in docker's refusal of an exec ("restarting", "not running", "paused"),
    or None: the container changed state between the inspect and the exec, which is a known fact
    (it does not answer), not a failed probe."""
    m = EXEC_REFUSED.search(text or "")
    return m.group(1).lower() if m else None


#: docker's word for a name it does not have (CLI 20.10: "Error: No such object: X"; newer: "No such container")
NO_SUCH = re.compile(r"No such (?:object|container): \S+", re.I)


def inspect_script(site: SiteSettings) -> str:
    """Every container's state; docker's errors come too (a name it lacks is missing, anything else
    — the daemon down, no permission — leaves every state unknown)."""
    names = " ".join(q(n) for n in site.containers.values())
    return f"docker inspect --format {q(INSPECT_FORMAT)} {names} 2>&1 | sed 's/^/inspect=/'"


def parse_containers(kv: dict[str, list[str]]) -> dict[str, Container] | Unknown:
    """The containers docker described; a name it said it lacks is simply absent from them. Any
    other error makes the whole fact unknown: docker did not say what runs."""
    lines = kv.get("inspect", [])
    errors = [ln.strip() for ln in lines if ln.strip() and "|" not in ln and not NO_SUCH.search(ln)]
    if errors:
        return Unknown(f"docker inspect failed: {errors[-1][:200]}")
    return parse_inspect("\n".join(lines))


def started_epoch(value: str) -> float | None:
    """Docker's RFC 3339 StartedAt (nanoseconds, Z) → epoch seconds; None for the zero time."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value.strip())
    if not m or value.startswith("0001-"):
        return None
    stamp = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return stamp.timestamp() + float("0" + (m.group(2) or ""))


def _clean(value: str) -> str:
    value = value.strip()
    return "" if value == "<no value>" else value


def parse_inspect(text: str) -> dict[str, Container]:
    """Lines of :data:`INSPECT_FORMAT` → container name → :class:`Container`."""
    out: dict[str, Container] = {}
    for line in (text or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        name = parts[0].lstrip("/")
        restarts = _clean(parts[3]) if len(parts) > 3 else ""
        out[name] = Container(
            name=name,
            status=_clean(parts[1]).lower(),
            health=_clean(parts[2]) if len(parts) > 2 else "",
            restarts=int(restarts) if restarts.isdigit() else 0,
            image=_clean(parts[4]) if len(parts) > 4 else "",
            started=started_epoch(parts[5]) if len(parts) > 5 else None,
        )
    return out
