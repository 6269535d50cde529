"""The status picture of one server and its verdict (pure, from a probed SiteState: the probe
also ran the optional scripts/qa_check.sh)."""

from __future__ import annotations

import re

from .facts.compose import is_timescale_image
from .facts.postgres import FLOW_TABLES, has_timescaledb
from .inventory import SiteSettings
from .journal import unfinished
from .lock import parse_status
from .report import human_age, human_size, table
from .site_state import SiteState

ROLLED_BACK = "rolled back"
HEALTHY = "TimescaleDB active and healthy"
PROBLEMS = "TimescaleDB active with problems"
PARTIAL = "partly rolled back"
UNKNOWN = "state partly unknown"
RECENT_START = 120  # seconds: a container restarted this recently, after earlier restarts, is looping


def signals(site: SiteSettings, state: SiteState, qa_failed: str | None = None) -> list[str]:
    """The runbook's "When to Rollback" signals found on the server."""
    out = []
    backend = state.container(site.backend_container)
    # a loop is seen between two crashes as often as during one: "running" a few seconds after a restart counts
    recent = backend.started is not None and state.now and state.now - backend.started < RECENT_START
    if backend.status == "restarting" or (backend.restarts > 0 and (backend.status != "running" or recent)):
        out.append(f"backend in a restart loop ({backend.status}, {backend.restarts} restarts)")
    elif backend.status != "running":
        out.append(f"backend is {backend.status}")
    if not state.db_answers:
        out.append(f"database does not answer ({state.db_error})")
    if state.flow_query_error:
        out.append(f"flow queries fail: {state.flow_query_error}")
    if state.flow_age is not None and state.flow_age > site.ingest_stale_seconds:
        out.append(f"ingestion stopped: newest flow is {human_age(state.flow_age)} old")
    rollup = [ln for ln in state.backend_log.splitlines() if re.search(r"rollup", ln, re.I) and re.search(r"error", ln, re.I)]
    if rollup:
        out.append(f"rollup errors in the backend log ({len(rollup)} lines)")
    if qa_failed:
        out.append(f"scripts/qa_check.sh fails: {qa_failed}")
    if state.failed_jobs:
        out.append(f"{state.failed_jobs} TimescaleDB job(s) failing (compression/retention)")
    return out


def verdict_of(state: SiteState, found: list[str]) -> str:
    if state.unknown:
        return UNKNOWN
    if state.rolled_back:
        return ROLLED_BACK
    if state.extension.get("netmon") or state.hypertables:
        return PROBLEMS if found else HEALTHY
    if state.timescale_anywhere or state.leftovers:
        return PARTIAL
    return PROBLEMS if found else ROLLED_BACK


def status_report(runner, site: SiteSettings, state: SiteState) -> tuple[str, str, list[str], dict]:
    found = signals(site, state, state.qa_failed)
    verdict = verdict_of(state, found)
    parts = [f"== {runner.site}"]
    crow = [[n, state.container(n).status, state.container(n).health or "-", state.container(n).image or "-"]
            for n in site.containers.values()]
    parts.append(table(crow, ["container", "state", "health", "image"]))
    parts.append(f"compose db image: {state.db_image or '?'}" + (f"   command: {state.db_command}" if state.db_command else ""))
    if state.db_answers:
        ext = [[db, "yes" if has else (f"unknown ({state.why('app' if db == site.db_name else 'ext:' + db) or '?'})"
                                      if has is None else "no")] for db, has in sorted(state.extension.items())]
        parts.append(table(ext, ["database", "timescaledb"]))
        srcs = [f"{f}:{ln}" for f, ln, s in state.preload_files if has_timescaledb(s)]
        parts.append(f"shared_preload_libraries = '{state.preload}' (source: {state.preload_source}"
                     + (f" {state.preload_sourcefile}" if state.preload_sourcefile else "") + ")"
                     + (f"; timescaledb set in {', '.join(srcs)}" if srcs else ""))
        parts.append(f"hypertables: {', '.join(state.hypertables) or 'none'};  continuous aggregates: "
                     f"{', '.join(state.caggs) or 'none'};  compression: {', '.join(state.compressed) or 'none'}")
        frow = []
        for t in FLOW_TABLES:
            rel = state.relations.get(t)
            kind = "plain" if state.flow_plain(t) else ("missing" if not rel else "TimescaleDB")
            frow.append([t, rel[0] if rel else "missing", rel[1] if rel else "-", kind])
        parts.append(table(frow, ["flow table", "relkind", "children", "kind"]))
        parts.append(f"tables in public: {state.table_count} (expected {site.expected_tables});  database size: "
                     f"{human_size(state.db_size)};  newest flow: {human_age(state.flow_age)} ago")
        if state.leftovers:
            parts.append(f"left by an unfinished rollback: {', '.join(state.leftovers)}")
        if state.kept_dbs:
            parts.append(f"kept by a restore (the old database, no safety dump was taken): {', '.join(state.kept_dbs)}")
    else:
        parts.append(f"database: does not answer ({state.db_error})")
    if "backups" in state.unknown:
        parts.append(f"backups: unknown ({state.unknown['backups']})")
    elif state.backups:
        parts.append(table([[b.path, human_size(b.size), human_age(b.age), "yes" if b.has_sha else "no"] for b in state.backups],
                           ["backup", "size", "age", "sha256 file"]))
    else:
        parts.append(f"backups: none in {site.backup_dir}")
    if "git" in state.unknown:
        parts.append(f"git: unknown ({state.unknown['git']})")
    elif state.git:
        rev = state.pre_migration_rev()
        parts.append(f"git: HEAD {state.git_head[:12]}; uncommitted: {', '.join(state.git_dirty) or 'none'}; "
                     f"pre-migration commit: {rev[:12] if rev else 'not found'}")
    else:
        parts.append(f"git: {site.app_dir} is not a git repository")
    for fact, why in state.unknown.items():
        parts.append(f"unknown: {fact} ({why})")
    holder = parse_status(state.lock)
    if "lock" in state.unknown:
        parts.append(f"lock: unknown ({state.unknown['lock']})")
    else:
        parts.append(f"lock: held by {holder.describe()}" if holder else "lock: free")
    run = unfinished(state.journal)
    if "journal" in state.unknown:
        parts.append(f"journal: unknown ({state.unknown['journal']})")
    elif run is not None:
        parts.append(f"journal: {run.describe()} — rerun it to finish")
    for s in found:
        parts.append(f"signal: {s}")
    advice = advised_mode(site, state)
    line = f"verdict: {verdict}"
    if verdict == PROBLEMS:
        line += " — rollback advised: " + "; ".join(found)
        if advice:
            parts.append(f"advised: {advice}")
    elif verdict == PARTIAL:
        line += " — rerun rollback to finish"
    elif verdict == UNKNOWN:
        line += " — " + "; ".join(f"{k}: {v}" for k, v in state.unknown.items())
    parts.append(line)
    data = {
        "site": runner.site, "verdict": verdict, "signals": found,
        "containers": {n: state.container(n).status for n in site.containers.values()},
        "db_image": state.db_image, "extension": state.extension, "preload": state.preload,
        "hypertables": state.hypertables, "continuous_aggregates": state.caggs, "table_count": state.table_count,
        "backups": [{"path": b.path, "size": b.size, "age_seconds": b.age, "sha256_file": b.has_sha} for b in state.backups],
        "git_head": state.git_head, "git_dirty": state.git_dirty, "pre_migration_commit": state.pre_migration_rev(),
        "unknown": state.unknown, "lock": holder.__dict__ if holder else None,
        "unfinished_run": run.describe() if run else None, "kept_databases": state.kept_dbs,
        "advised": advice, "convert_needs_bytes": state.hypertable_bytes,
    }
    return "\n".join(parts), verdict, found, data


def advised_mode(site: SiteSettings, state: SiteState) -> str:
    """Convert keeps every row, and needs the database answering on the TimescaleDB image and room
    on its volume for the copies; otherwise restore (or clean, without a backup)."""
    image = state.container(site.db_container).image or state.db_image or ""
    if state.db_answers and is_timescale_image(image) and (state.hypertables or state.caggs):
        need, free = state.hypertable_bytes, state.db_free_kb
        room = f"needs about {human_size(need)} on the database volume" if need is not None else "disk need unknown"
        if need is not None and free is not None:
            room += f" ({human_size(free * 1024)} free)"
            if free * 1024 < need:
                return f"--mode=restore: convert {room}, too little — free space to keep every row with convert"
        return f"--mode=convert (keeps every row, online; {room})"
    if state.backups:
        return "--mode=restore (the database does not answer on the TimescaleDB image, so convert cannot read it)"
    return "--mode=clean (no pre-migration backup, and convert needs the database on the TimescaleDB image)"
