"""The verify checks: the runbook's seven, plus the ones that can actually fail (DESIGN.md §1.6).
Each check reads the server; none changes it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import commands as cmds
from .commands import Command, q
from .facts.compose import backend_log_part, is_timescale_image
from .facts.parts import Extra, host_part, host_tagged, with_parts
from .facts.postgres import FLOW_TABLES, has_timescaledb, psql_args
from .inventory import SiteSettings
from .site_state import SiteState, probe_site, require_site
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


# --- the checks' parts of the two probe commands, and their parsers ------------------------------
#
# verify reads everything in the probe's two commands: the HTTP checks, the backend log and the
# ingestion wait are parts of the host script, run alongside its facts. A part that did not finish
# reads as unknown, never as absent.

#: server side: the access token out of the login answer (it never leaves the server)
_ACCESS_SED = r"""s/.*"access_token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p"""


def login_part(site: SiteSettings) -> str:
    """Log in with the JSON on fd 3, then ask for the flow stats with the token; prints the two
    HTTP codes and whether a token came back. The password and the token stay in the shell's
    variables and pipes (printf is a builtin): never on a command line, never printed."""
    base = site.api_url.rstrip("/")
    login = (f"curl -s -m 15 -X POST -H 'Content-Type: application/json' --data-binary @- -w '\\n%{{http_code}}' "
             f"{q(base + '/api/auth/login')} <&3")
    stats = f"curl -s -m 15 -H @- -o /dev/null -w '%{{http_code}}' {q(base + '/api/flows/stats?hours=1')}"
    return (f"resp=$({login}); echo \"x.login=$(printf '%s\\n' \"$resp\" | tail -n 1)\"; "
            f"tok=$(printf '%s\\n' \"$resp\" | sed '$d' | sed -n {q(_ACCESS_SED)}); resp=; "
            f"if [ -n \"$tok\" ]; then echo x.token=yes; "
            f"echo \"x.stats=$(printf 'Authorization: Bearer %s\\n' \"$tok\" | {stats})\"; else echo x.token=no; fi; "
            "tok=; echo x.login.rc=0")


def ingest_part(site: SiteSettings, wait: float) -> str:
    """A new flow row within ``wait`` seconds, waited for on the server alongside the other parts:
    ``+N`` or ``none``, and the seconds it waited (``waited T0 T1``, server clock); exit 3 when
    flow_records cannot be read. One ``docker exec``: the polls are psql inside the container."""
    query = psql_args(site, site.db_name, ["SELECT coalesce(max(id), 0) FROM flow_records"])
    script = (f"t0=$(date +%s.%N); b=$({query}) || exit 3; end=$(($(date +%s) + {int(wait)})); "
              f"while :; do n=$({query}) || exit 3; [ \"$n\" -gt \"$b\" ] && {{ r=\"+$((n - b))\"; break; }}; "
              "[ $(date +%s) -ge $end ] && { r=none; break; }; sleep 0.2; done; "
              "echo \"waited $t0 $(date +%s.%N)\"; echo \"$r\"")
    return host_tagged("ingest", cmds.dexec(site, "sh", "-c", script))


def verify_extra(site: SiteSettings, password: str | None, wait: float) -> Extra:
    """verify's parts of the probe: health, login + stats (the login JSON on stdin), the backend log,
    the ingestion wait."""
    host = [host_tagged("health", cmds.curl_status(health_url(site))), backend_log_part(site, 30),
            ingest_part(site, wait)]
    extra = Extra(host=host)
    if password:
        extra.host.append(login_part(site))
        extra.stdin = json.dumps({"username": site.admin_user, "password": password}) + "\n"
        extra.stdin_note = "login JSON (secret)"
    return extra


def parse_health(text: str) -> str:
    """The health part → curl's HTTP code (000: nothing answered; '' when the part did not finish)."""
    code, lines = host_part(text, "health")
    return lines[-1].strip() if code is not None and lines else ""


def parse_login(text: str) -> tuple[str, bool | None, str]:
    """The login part → (login's HTTP code, a token came back (None: unknown), stats' HTTP code)."""
    rc, _ = host_part(text, "login")
    values = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition("=")
        if key in ("x.login", "x.token", "x.stats"):
            values[key[2:]] = value.strip()
    token = {"yes": True, "no": False}.get(values.get("token", ""))
    if rc != 0:
        return values.get("login", ""), None, ""
    return values.get("login", ""), token, values.get("stats", "")


def parse_backend_log(text: str) -> tuple[int | None, list[str]]:
    """The backend log part → (docker compose logs' exit status, the error lines)."""
    code, lines = host_part(text, "log")
    return code, [ln for ln in lines if "error" in ln.lower()]


def parse_ingest(text: str) -> tuple[str, float]:
    """The ingestion part → ('+N' | 'none' | '' when it could not read flow_records or did not
    finish, seconds waited on the server)."""
    code, lines = host_part(text, "ingest")
    waited = 0.0
    for line in lines:
        words = line.split()
        if len(words) == 3 and words[0] == "waited":
            try:
                waited = max(0.0, float(words[2]) - float(words[1]))
            except ValueError:
                waited = 0.0
    result = lines[-1].strip() if lines else ""
    if code != 0 or not (result == "none" or result.startswith("+")):
        return "", waited
    return result, waited


def login_and_stats(site: SiteSettings, password: str | None, text: str) -> Check:
    name = "login + /api/flows/stats (runbook 5)"
    if not password:
        return Check(name, "200", "no admin password: set NETMON_ADMIN_PASSWORD or admin_password_file", False)
    login, token, stats = parse_login(text)
    if token is None:
        return Check(name, "200", "unknown (the login check did not finish)", False)
    if login != "200":
        return Check(name, "200", f"login answered {login or 'nothing'}", False)
    if not token:
        return Check(name, "200", "login answered without access_token", False)
    return Check(name, "200", stats or "nothing", stats == "200")


def ingestion(state: SiteState, wait: float, text: str) -> Check:
    """A new flow row within ``wait`` seconds, waited for on the server (no round trip of its own)."""
    name = "ingestion resumed (new flow row)"
    expected = f"new row within {wait:.0f}s"
    if not state.db_answers or not state.known("app"):
        return Check(name, expected, "unknown (" + (state.why("app") or state.db_error or "database does not answer") + ")",
                     False)
    result, _ = parse_ingest(text)
    if not result:
        return Check(name, expected, "unknown (flow_records cannot be read)", False)
    if result == "none":
        return Check(name, expected, "no new row", False)
    return Check(name, expected, f"{result} (max id)", True)


def _unknown(state: SiteState, *facts: str) -> str | None:
    if not state.db_answers:
        return f"unknown (database does not answer: {state.db_error})"
    why = state.why(*facts)
    return f"unknown ({why})" if why else None


def _wait(site: SiteSettings, ingest_wait: float | None) -> float:
    return site.ingest_wait_seconds if ingest_wait is None else ingest_wait


def verify_state(runner, site: SiteSettings, state: SiteState, password: str | None,
                 ingest_wait: float | None = None, text: str | None = None) -> list[Check]:
    """Every check; one whose input is unknown fails and says why. ``text``: the output of the
    probe that carried verify's parts (:func:`verify_checks`); without it (a state probed for
    something else) the parts run as one command of their own."""
    wait = _wait(site, ingest_wait)
    runner.add_secret(password)
    if text is None:
        text = run_parts(runner, verify_extra(site, password, wait))
    note_wait(runner, text)
    checks: list[Check] = []
    names = list(site.containers.values())
    down = [f"{n}={state.container(n).status}" for n in names if state.container(n).status != "running"]
    why = state.why("containers")
    checks.append(Check("all five containers running (runbook 1)", "5/5 running",
                        f"unknown ({why})" if why else ("5/5 running" if not down else ", ".join(down)), not down))
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
    code = parse_health(text)
    checks.append(Check("backend /api/health (runbook 4)", "200", code or "no answer", code == "200"))
    checks.append(login_and_stats(site, password, text))
    rc, errors = parse_backend_log(text)
    checks.append(Check("no errors in the last 30 backend log lines (runbook 6)", "0",
                        (str(len(errors)) + (f": {errors[-1].strip()[:80]}" if errors else "")) if rc == 0
                        else "unknown (docker compose logs " + ("did not finish)" if rc is None else f"failed: exit {rc})"),
                        rc == 0 and not errors))
    unknown = _unknown(state, "app")
    checks.append(Check("tables in public (runbook 7, BASE TABLE)", str(site.expected_tables),
                        unknown or ("?" if state.table_count is None else str(state.table_count)),
                        not unknown and state.table_count == site.expected_tables))
    checks.append(ingestion(state, wait, text))
    return checks


def run_parts(runner, extra: Extra) -> str:
    """verify's parts alone, as one command (for a state probed without them)."""
    out = runner.run(Command("sh -c " + q(with_parts(":", extra)), what="verify checks", changes=False,
                             ok_codes=tuple(range(256)), stdin=extra.stdin, stdin_note=extra.stdin_note))
    return out.stdout


def note_wait(runner, text: str) -> None:
    """The ingestion check's deliberate wait, in the audit log beside the command that held it."""
    _, waited = parse_ingest(text)
    if runner.audit is not None and waited:
        runner.audit.write(site=runner.site, step=runner.step, kind="wait", what="ingestion wait", seconds=round(waited, 3))


def verify_checks(runner, site: SiteSettings, password: str | None, ingest_wait: float | None = None) -> list[Check]:
    """Every check from the probe's two commands, verify's own parts added to them."""
    state = probe_site(runner, site, extra=verify_extra(site, password, _wait(site, ingest_wait)))
    require_site(site, state, runner.site)
    return verify_state(runner, site, state, password, ingest_wait,
                        text="\n".join(state.outputs.get(k, "") for k in ("host", "db")))

