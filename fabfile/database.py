"""Database steps: drop the flow tables and the extension (clean), restore into a side database and
swap it in (restore), and take timescaledb out of shared_preload_libraries wherever it is set.

Each function returns the exact commands; the runner runs them (or prints them under --dry-run).
"""

from __future__ import annotations

from . import commands as cmds
from .commands import Command, Expect, ident, literal, q
from .facts.postgres import has_timescaledb, remove_timescaledb
from .inventory import SiteSettings
from .site_state import SiteState

TSDB_EVENT_TRIGGERS_OFF = (
    "DO $$DECLARE r record; BEGIN "
    "FOR r IN SELECT e.evtname FROM pg_event_trigger e WHERE e.evtenabled <> 'D' AND (e.evtname ILIKE '%timescale%' "
    "OR e.oid IN (SELECT d.objid FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid "
    "WHERE x.extname = 'timescaledb' AND d.classid = 'pg_event_trigger'::regclass)) "
    "LOOP EXECUTE format('ALTER EVENT TRIGGER %I DISABLE', r.evtname); END LOOP; END$$"
)
DROP_EXTENSION = "DROP EXTENSION IF EXISTS timescaledb CASCADE"
#: every DDL waits this long for its lock, then fails with a clear error instead of hanging
LOCK_TIMEOUT = "SET lock_timeout = '15s'"


def clean_commands(site: SiteSettings, state: SiteState, plain_image: bool) -> list[Command]:
    """Clean mode in the app database: flow tables (a continuous aggregate as a materialized view)
    and the extension, in one transaction."""
    stmts = [LOCK_TIMEOUT]
    if plain_image:
        stmts.append(TSDB_EVENT_TRIGGERS_OFF)
    if "flow_summary_5m" in state.caggs:
        # a continuous aggregate is a view (relkind v): TimescaleDB wants DROP MATERIALIZED VIEW for
        # it, while without its library PostgreSQL refuses that (42809) and takes DROP VIEW
        kind = state.relations.get("flow_summary_5m", ("v", 0))[0]
        verb = "VIEW" if kind == "v" and plain_image else "MATERIALIZED VIEW"
        stmts.append(f"DROP {verb} IF EXISTS flow_summary_5m CASCADE")
    if "flow_summary_5m" in state.relations and "flow_summary_5m" not in state.caggs:
        stmts.append("DROP TABLE IF EXISTS flow_summary_5m CASCADE")
    if "flow_records" in state.relations:
        stmts.append("DROP TABLE IF EXISTS flow_records CASCADE")
    if state.extension.get(site.db_name):
        stmts.append(DROP_EXTENSION)
    if all(st in (LOCK_TIMEOUT, TSDB_EVENT_TRIGGERS_OFF) for st in stmts):
        return []
    sql = "BEGIN; " + "; ".join(stmts) + "; COMMIT"
    return [Command(cmds.psql(site, sql), what=f"drop flow tables and timescaledb in {site.db_name}")]


def drop_extension_commands(site: SiteSettings, dbs: list[str], plain_image: bool) -> list[Command]:
    out = []
    for db in dbs:
        stmts = [LOCK_TIMEOUT, *([TSDB_EVENT_TRIGGERS_OFF] if plain_image else []), DROP_EXTENSION]
        out.append(Command(cmds.psql(site, *stmts, db=db), what=f"drop timescaledb in {db}"))
    return out


def preload_commands(site: SiteSettings, state: SiteState) -> list[Command]:
    """Remove timescaledb from shared_preload_libraries in every config file that sets it.
    postgresql.auto.conf via ALTER SYSTEM (SET to the remaining libraries, or RESET — never ''),
    other files (postgresql.conf) by rewriting that one line inside the container."""
    out = []
    seen = set()
    for path, line, setting in state.preload_files:
        if not has_timescaledb(setting) or (path, line) in seen:
            continue
        seen.add((path, line))
        rest = remove_timescaledb(setting)
        if path.endswith("postgresql.auto.conf"):
            sql = (f"ALTER SYSTEM SET shared_preload_libraries = {literal(rest)}" if rest
                   else "ALTER SYSTEM RESET shared_preload_libraries")
            out.append(Command(cmds.psql(site, sql, db="postgres"), what=f"preload: {sql}"))
        else:
            new = f"shared_preload_libraries = '{rest}'" if rest else "#shared_preload_libraries = ''"
            new += "  # timescaledb removed by netmon-rollback"
            tmp = q(path + ".rollback")
            # by content, not line number: a rerun of the same command changes nothing more
            pattern = r"^[[:space:]]*shared_preload_libraries[[:space:]]*=.*timescaledb"
            script = (f"awk -v new={q(new)} -v pat={q(pattern)} '$0 ~ pat {{print new; next}} {{print}}' {q(path)} > {tmp} "
                      f"&& cat {tmp} > {q(path)} && rm -f {tmp}")
            out.append(Command(cmds.dexec(site, "sh", "-c", script), what=f"preload: rewrite line {line} of {path}"))
    return out


# --- restore --------------------------------------------------------------------------------

def count_sql(tables: list[str]) -> str:
    parts = [f"SELECT {literal(t)}, count(*) FROM {cmds.qualified(t)}" for t in sorted(tables)]  # noqa: S608
    return " UNION ALL ".join(parts)


def restore_side_commands(site: SiteSettings, dump_path: str, side: str, expected: dict[str, int]) -> list[Command]:
    """Restore ``dump_path`` into a new database ``side`` (from template0) while the stack serves,
    then check every table's row count against the dump. Starts by dropping ``side`` (WITH FORCE:
    a run whose connection died may have left its pg_restore working in there), so a rerun of the
    step starts clean."""
    ident(side)
    in_container = f"/tmp/{side}.dump"  # noqa: S108 - the container's private /tmp
    return [
        Command(cmds.psql(site, f"DROP DATABASE IF EXISTS {ident(side)} WITH (FORCE)", db="postgres"),
                what=f"drop what an earlier attempt left of {side}"),
        Command(f"docker cp {q(dump_path)} {q(site.db_container + ':' + in_container)}", what="copy the dump into the container"),
        Command(cmds.psql(site, f"CREATE DATABASE {ident(side)} OWNER {ident(site.db_user)} TEMPLATE template0", db="postgres"),
                what=f"create side database {side} from template0"),
        Command(cmds.dexec(site, "pg_restore", "-U", site.db_user, "-d", side, "--no-owner", "--no-privileges",
                           "-j", str(max(1, site.restore_jobs)), in_container) + " 2>&1",
                what=f"pg_restore into {side}", check=Expect("restore", side), ok_codes=(0, 1), timeout=site.command_timeout),
        Command(cmds.psql(site, count_sql(list(expected)), db=side), what=f"check {side} row counts against the dump",
                check=Expect("counts", dict(expected)), timeout=site.command_timeout),
        Command(cmds.dexec(site, "rm", "-f", in_container), what="remove the dump copy from the container"),
    ]


def swap_commands(site: SiteSettings, side: str, old: str) -> list[Command]:
    """Swap the restored database in: connections to the app database are refused and ended,
    then both renames run in ONE transaction (PostgreSQL allows ALTER DATABASE RENAME in one), and
    connections are allowed again — on the old name after the swap, on the app database if
    anything failed. One psql session (ON_ERROR_STOP: a failed statement ends it), one
    ``docker exec`` in the downtime."""
    db, name = ident(site.db_name), literal(site.db_name)
    refuse = f"ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false"
    end = (f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {name} "  # noqa: S608
           "AND pid <> pg_backend_pid()")
    swap = (f"BEGIN; ALTER DATABASE {db} RENAME TO {ident(old)}; ALTER DATABASE {ident(side)} RENAME TO {db}; "
            f"ALTER DATABASE {ident(old)} WITH ALLOW_CONNECTIONS true; COMMIT")
    repair = f"ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true"
    script = (f"{cmds.psql(site, refuse, end, swap, db='postgres')} "
              f"|| {{ rc=$?; {cmds.psql(site, repair, db='postgres')}; exit $rc; }}")
    return [Command(script, what=f"swap in one transaction: {site.db_name} → {old}, {side} → {site.db_name}")]


def swap_done_probe(site: SiteSettings, side: str, old: str) -> Command:
    """Done when the old name exists and the side name is gone (the transaction committed)."""
    sql = (f"SELECT count(*) FILTER (WHERE datname = {literal(old)}) || '|' || "  # noqa: S608
           f"count(*) FILTER (WHERE datname = {literal(side)}) FROM pg_database")
    return Command(cmds.psql(site, sql, db="postgres"), what="has the swap committed", changes=False,
                   check=Expect("stdout", "1|0"), ok_codes=(0,))


def allow_connections_commands(site: SiteSettings, db: str) -> list[Command]:
    return [Command(cmds.psql(site, f"ALTER DATABASE {ident(db)} WITH ALLOW_CONNECTIONS true", db="postgres"),
                    what=f"allow connections to {db} again (an earlier swap failed half-way)")]


def drop_database_commands(site: SiteSettings, names: list[str], force: bool = False) -> list[Command]:
    """DROP DATABASE; ``force`` ends sessions still in it (an interrupted run's pg_restore)."""
    suffix = " WITH (FORCE)" if force else ""
    return [Command(cmds.psql(site, f"DROP DATABASE IF EXISTS {ident(n)}{suffix}", db="postgres"), what=f"drop {n}")
            for n in names]
