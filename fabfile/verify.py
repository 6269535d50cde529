"""The verify checks: the runbook's seven, plus the ones that can actually fail (DESIGN.md §1.6).
Each check reads the server; none changes it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import commands as cmds
from .commands import Command, q
from .inventory import SiteSettings
from .probes import FLOW_TABLES, SiteState, has_timescaledb, is_timescale_image, probe_site, require_site
from .stack import health_url

#: check name (without its "(runbook N)" tag) → short column name in fleet tables
SHORT_NAMES = {
    "all five containers running": "containers",
    "no timescaledb in any database": "no tsdb",
    "flow_records exists": "flows table",
    "flow_records is a plain table": "flow_records plain",
    "flow_summary_5m is a plain table": "summary plain",
    "shared_preload_libraries without timescaledb": "preload",
    "db runs the plain image": "image",
    "backend /api/health": "health",
    "login + /api/flows/stats": "login+stats",
    "no errors in the last 30 backend log lines": "log",
    "tables in public": "tables",
    "ingestion resumed": "ingest",
}
SHORT_PREFIXES = {"timescaledb extension in": "tsdb ext"}


@dataclass
class Check:
    name: str
    expected: str
    actual: str
    ok: bool
    key: str = ""  # a short column name for fleet tables

    def __post_init__(self):
        base = self.name.split(" (")[0]
        prefixed = next((v for k, v in SHORT_PREFIXES.items() if base.startswith(k)), None)
        self.key = self.key or SHORT_NAMES.get(base) or prefixed or base


def _http(out) -> tuple[str, str]:
    """curl -w '\\n%{http_code}' output → (body, code)."""
    body, _, code = (out.stdout or "").rstrip("\n").rpartition("\n")
    return body, code.strip()


def login_and_stats(runner, site: SiteSettings, password: str | None) -> Check:
    name = "login + /api/flows/stats (runbook 5)"
    if not password:
        return Check(name, "200", "no admin password: set NETMON_ADMIN_PASSWORD or admin_password_file", False)
    runner.add_secret(password)
    base = site.api_url.rstrip("/")
    body = json.dumps({"username": site.admin_user, "password": password})
    out = runner.run(Command(
        "curl -s -m 15 -X POST -H 'Content-Type: application/json' --data-binary @- "
        f"-w '\\n%{{http_code}}' {q(base + '/api/auth/login')}",
        what="login", stdin=body, stdin_note="login JSON (secret)", changes=False, ok_codes=(0, 7, 22, 28)))
    text, code = _http(out)
    if code != "200":
        return Check(name, "200", f"login answered {code or 'nothing'}", False)
    try:
        token = json.loads(text)["access_token"]
    except (ValueError, KeyError, TypeError):
        return Check(name, "200", "login answered without access_token", False)
    runner.add_secret(token)
    out = runner.run(Command(
        f"curl -s -m 15 -H @- -o /dev/null -w '%{{http_code}}' {q(base + '/api/flows/stats?hours=1')}",
        what="flow stats", stdin=f"Authorization: Bearer {token}\n", stdin_note="bearer header (secret)",
        changes=False, ok_codes=(0, 7, 22, 28)))
    code = out.stdout.strip()
    return Check(name, "200", code or "nothing", code == "200")


def ingestion(runner, site: SiteSettings, state: SiteState, wait: float) -> Check:
    """A new flow row within ``wait`` seconds, waited for on the server (one round trip)."""
    name = "ingestion resumed (new flow row)"
    expected = f"new row within {wait:.0f}s"
    if not state.db_answers or not state.known("app"):
        return Check(name, expected, "unknown (" + (state.why("app") or state.db_error or "database does not answer") + ")",
                     False)
    query = cmds.psql(site, "SELECT coalesce(max(id), 0) FROM flow_records")
    script = (f"b=$({query}) || exit 3; end=$(($(date +%s) + {int(wait)})); "
              f"while :; do n=$({query}) || exit 3; [ \"$n\" -gt \"$b\" ] && {{ echo \"+$((n - b))\"; exit 0; }}; "
              "[ $(date +%s) -ge $end ] && { echo none; exit 0; }; sleep 0.5; done")
    out = runner.run(Command("sh -c " + q(script), what="ingestion: wait for a new flow row", changes=False, ok_codes=(0, 3),
                             timeout=wait + 60))
    result = out.stdout.strip().splitlines()[-1:] or [""]
    if out.exited != 0 or not result[0]:
        return Check(name, expected, "unknown (flow_records cannot be read)", False)
    if result[0] == "none":
        return Check(name, expected, "no new row", False)
    return Check(name, expected, f"{result[0]} (max id)", True)


def _unknown(state: SiteState, *facts: str) -> str | None:
    if not state.db_answers:
        return f"unknown (database does not answer: {state.db_error})"
    why = state.why(*facts)
    return f"unknown ({why})" if why else None


def verify_state(runner, site: SiteSettings, state: SiteState, password: str | None,
                 ingest_wait: float | None = None) -> list[Check]:
    """Every check; one whose input is unknown fails and says why."""
    checks: list[Check] = []
    names = list(site.containers.values())
    down = [f"{n}={state.container(n).status}" for n in names if state.container(n).status != "running"]
    checks.append(Check("all five containers running (runbook 1)", "5/5 running",
                        "5/5 running" if not down else ", ".join(down), not down))
    ext_app = state.extension.get(site.db_name)
    unknown = _unknown(state, "app")
    checks.append(Check(f"timescaledb extension in {site.db_name} (runbook 2)", "0",
                        unknown or ("?" if ext_app is None else str(int(bool(ext_app)))), not unknown and ext_app is False))
    unknown = _unknown(state, "databases", "ext:postgres", "ext:template1", "app")
    kept = state.kept_dbs  # old databases a restore kept on purpose: they may still hold it
    dbs = [d for d in state.extension_dbs if d not in kept]
    actual = unknown or ", ".join(dbs) or "none"
    if kept and not unknown:
        actual += f" (kept copy: {', '.join(kept)})"
    checks.append(Check("no timescaledb in any database", "none" + (" (but kept copies)" if kept else ""), actual,
                        not unknown and not dbs))
    unknown = _unknown(state, "app")
    present = "1" if "flow_records" in state.relations else "0"
    checks.append(Check("flow_records exists (runbook 3)", "1", unknown or present, not unknown and present == "1"))
    for table in FLOW_TABLES:
        rel = state.relations.get(table)
        unknown = _unknown(state, "app", "tsdb")
        if unknown:
            actual = unknown
        elif not rel:
            actual = "missing"
        else:
            kind = {"r": "table", "p": "partitioned", "v": "view", "m": "materialized view"}.get(rel[0], rel[0])
            actual = f"{kind}, {rel[1]} children" + (", hypertable" if table in state.hypertables else "") + (
                ", continuous aggregate" if table in state.caggs else "")
        checks.append(Check(f"{table} is a plain table", "table, 0 children", actual,
                            not unknown and state.flow_plain(table)))
    unknown = _unknown(state, "preload")
    where = [f for f, _, s in state.preload_files if has_timescaledb(s)]
    checks.append(Check("shared_preload_libraries without timescaledb", "no timescaledb",
                        unknown or (state.preload or "''") + (f" (in {', '.join(where)})" if where else ""),
                        not unknown and not state.preload_timescaledb))
    image = state.container(site.db_container).image or state.db_image
    checks.append(Check("db runs the plain image", site.plain_image, image or "?",
                        bool(image) and not is_timescale_image(image) and not is_timescale_image(state.db_image)))
    out = runner.run(Command(cmds.curl_status(health_url(site)), what="health", changes=False, ok_codes=(0, 7, 22, 28)))
    code = out.stdout.strip()
    checks.append(Check("backend /api/health (runbook 4)", "200", code or "no answer", code == "200"))
    checks.append(login_and_stats(runner, site, password))
    out = runner.run(Command(cmds.compose(site, "logs", "--tail=30", "backend"), what="backend log",
                             changes=False, ok_codes=(0, 1)))
    errors = [ln for ln in out.stdout.splitlines() if "error" in ln.lower()]
    checks.append(Check("no errors in the last 30 backend log lines (runbook 6)", "0",
                        (str(len(errors)) + (f": {errors[-1].strip()[:80]}" if errors else "")) if out.ok
                        else f"unknown (docker compose logs failed: exit {out.exited})", out.ok and not errors))
    unknown = _unknown(state, "app")
    checks.append(Check("tables in public (runbook 7, BASE TABLE)", str(site.expected_tables),
                        unknown or ("?" if state.table_count is None else str(state.table_count)),
                        not unknown and state.table_count == site.expected_tables))
    wait = site.ingest_wait_seconds if ingest_wait is None else ingest_wait
    checks.append(ingestion(runner, site, state, wait))
    return checks


def verify_checks(runner, site: SiteSettings, password: str | None, ingest_wait: float | None = None) -> list[Check]:
    state = probe_site(runner, site)
    require_site(site, state, runner.site)
    return verify_state(runner, site, state, password, ingest_wait)

