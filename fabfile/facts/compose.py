"""Docker Compose facts: the compose file (its db service's image and command, the services it
builds) and ``docker compose ps``, whose JSON changed shape across Compose versions (DESIGN.md §5)."""

from __future__ import annotations

import base64
import json

import yaml

from .. import commands as cmds
from ..commands import q
from ..inventory import SiteSettings
from .parts import Unknown, host_tagged, last


def file_script(site: SiteSettings) -> str:
    app = q(site.app_dir)
    return f"[ -f {app}/docker-compose.yml ] && echo \"compose_b64=$(base64 -w0 {app}/docker-compose.yml)\""


def parse_file(kv: dict[str, list[str]]) -> str | Unknown | None:
    """The compose file's text; None: there is none; Unknown: it is there but not text."""
    value = last(kv, "compose_b64")
    if value is None:
        return None
    try:
        return base64.b64decode(value).decode()
    except (ValueError, UnicodeDecodeError):
        return Unknown("docker-compose.yml cannot be read as text")


def ps_script(site: SiteSettings) -> str:
    return f"(cd {q(site.app_dir)} 2>/dev/null && docker compose ps -a --format json 2>&1; echo \"ps_rc=$?\") | sed 's/^/ps=/'"


def parse_ps(kv: dict[str, list[str]], app_dir: bool) -> list[dict] | Unknown:
    """The ps lines (``ps=``, ending with ``ps=ps_rc=N``) → containers; a failed ps in an existing
    app directory is unknown (without one, there is nothing to list)."""
    lines = [v for v in kv.get("ps", []) if not v.startswith("ps_rc=")]
    codes = [v[6:] for v in kv.get("ps", []) if v.startswith("ps_rc=")]
    if codes and codes[-1] == "0":
        try:
            return parse_compose_ps("\n".join(lines))
        except ValueError:
            return Unknown("docker compose ps printed no JSON")
    if app_dir:
        return Unknown(f"docker compose ps failed: {(lines or ['no answer'])[-1][:200]}")
    return []


def parse_compose_ps(text: str) -> list[dict]:
    """``docker compose ps --format json``: NDJSON (Compose ≥ 2.21), a JSON array (older), or
    ``null`` (nothing matched)."""
    text = (text or "").strip()
    if not text or text == "null":
        return []
    if text.startswith("["):
        data = json.loads(text)
        return [d for d in data or [] if isinstance(d, dict)]
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "null":
            continue
        item = json.loads(line)
        if isinstance(item, list):
            out.extend(d for d in item if isinstance(d, dict))
        elif isinstance(item, dict):
            out.append(item)
    return out


def compose_db_service(text: str) -> dict:
    """The ``db`` service of a docker-compose.yml (image, command, ...), {} when unreadable."""
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        return {}
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        return {}
    db = services.get("db")
    return db if isinstance(db, dict) else {}


def parse_services(text: str) -> tuple[str, str, list[str]]:
    """A compose file → (the db service's image, its command as one string, services with ``build:``)."""
    db = compose_db_service(text)
    cmd = db.get("command", "")
    try:
        services = (yaml.safe_load(text) or {}).get("services") or {}
    except (yaml.YAMLError, AttributeError):
        services = {}
    built = [name for name, spec in services.items() if isinstance(spec, dict) and spec.get("build")]
    return str(db.get("image", "")), " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd or ""), built


def is_timescale_image(image: str) -> bool:
    return "timescale" in (image or "").lower()


def command_preloads(command) -> bool:
    if isinstance(command, list):
        command = " ".join(str(x) for x in command)
    return "timescaledb" in str(command or "").lower()


def backend_log_part(site: SiteSettings, tail: int) -> str:
    """A host part (status, verify): the backend's last ``tail`` log lines, tagged ``x.log=``."""
    return host_tagged("log", cmds.compose(site, "logs", f"--tail={tail}", "backend"))
