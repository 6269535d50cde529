"""Database steps: drop the flow tables and the extension (clean), restore into a side database and
swap it in (restore), and take timescaledb out of shared_preload_libraries wherever it is set.

Each function returns the exact commands; the runner runs them (or prints them under --dry-run).
"""

from __future__ import annotations

from . import commands as cmds
from .commands import Command, ident, literal, q
from .inventory import SiteSettings
from .probes import SiteState, has_timescaledb, remove_timescaledb, restore_errors, rows

TSDB_EVENT_TRIGGERS_OFF = (
    "DO $$DECLARE r record; BEGIN "
    "FOR r IN SELECT e.evtname FROM pg_event_trigger e WHERE e.evtenabled <> 'D' AND (e.evtname ILIKE '%timescale%' "
    "OR e.oid IN (SELECT d.objid FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid "
    "WHERE x.extname = 'timescaledb' AND d.classid = 'pg_event_trigger'::regclass)) "
    "LOOP EXECUTE format('ALTER EVENT TRIGGER %I DISABLE', r.evtname); END LOOP; END$$"
)
DROP_EXTENSION = "DROP EXTENSION IF EXISTS timescaledb CASCADE"


def clean_commands(site: SiteSettings, state: SiteState, plain_image: bool) -> list[Command]:
    """Clean mode in the app database: flow tables (a continuous aggregate as a materialized view)
    and the extension, in one transaction."""
    stmts = []
    if plain_image:
        stmts.append(TSDB_EVENT_TRIGGERS_OFF)
    if "flow_summary_5m" in state.caggs:
        stmts.append("DROP MATERIALIZED VIEW IF EXISTS flow_summary_5m CASCADE")
    if "flow_summary_5m" in state.relations and "flow_summary_5m" not in state.caggs:
        stmts.append("DROP TABLE IF EXISTS flow_summary_5m CASCADE")
    if "flow_records" in state.relations:
        stmts.append("DROP TABLE IF EXISTS flow_records CASCADE")
    if state.extension.get(site.db_name):
        stmts.append(DROP_EXTENSION)
    if not stmts or stmts == [TSDB_EVENT_TRIGGERS_OFF]:
        return []
    sql = "BEGIN; " + "; ".join(stmts) + "; COMMIT"
    return [Command(cmds.psql(site, sql), what=f"drop flow tables and timescaledb in {site.db_name}")]


def drop_extension_commands(site: SiteSettings, dbs: list[str], plain_image: bool) -> list[Command]:
    out = []
    for db in dbs:
        stmts = ([TSDB_EVENT_TRIGGERS_OFF] if plain_image else []) + [DROP_EXTENSION]
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
            script = (f"awk -v n={int(line)} -v new={q(new)} 'NR==n{{print new; next}}{{print}}' {q(path)} > {tmp} "
                      f"&& cat {tmp} > {q(path)} && rm -f {tmp}")
            out.append(Command(cmds.dexec(site, "sh", "-c", script), what=f"preload: rewrite line {line} of {path}"))
    return out


# --- restore --------------------------------------------------------------------------------

def side_name(ts: str) -> str:
    return f"netmon_restore_{ts}"


def old_name(ts: str) -> str:
    return f"netmon_old_{ts}"


def count_sql(tables: list[str]) -> str:
    parts = [f"SELECT {literal(t)}, count(*) FROM {cmds.qualified(t)}" for t in sorted(tables)]  # noqa: S608
    return " UNION ALL ".join(parts)


def check_counts(expected: dict[str, int], text: str) -> str | None:
    got = {r[0]: int(r[1]) for r in rows(text) if len(r) >= 2 and r[1].isdigit()}
    for table, n in sorted(expected.items()):
        if table not in got:
            return f"table {table} is missing after the restore"
        if got[table] != n:
            return f"table {table} has {got[table]} rows after the restore, the dump holds {n}"
    return None


def restore_side_commands(site: SiteSettings, dump_path: str, side: str, expected: dict[str, int],
                          drop_first: list[str]) -> list[Command]:
    """Restore ``dump_path`` into a new database ``side`` (from template0) while the stack serves,
    then check every table's row count against the dump."""
    ident(side)
    in_container = f"/tmp/{side}.dump"  # noqa: S108 - the container's private /tmp
    # WITH (FORCE): a run whose connection died may have left its pg_restore working in there
    out = [Command(cmds.psql(site, f"DROP DATABASE IF EXISTS {ident(d)} WITH (FORCE)", db="postgres"),
                   what=f"drop unfinished side database {d}") for d in drop_first]

    def judge_restore(result) -> str | None:
        errors = restore_errors(result.stdout, result.stderr, result.exited)
        return f"pg_restore into {side} reported errors: {errors[0]} — the site's database is untouched" if errors else None

    out += [
        Command(f"docker cp {q(dump_path)} {q(site.db_container + ':' + in_container)}", what="copy the dump into the container"),
        Command(cmds.psql(site, f"CREATE DATABASE {ident(side)} OWNER {ident(site.db_user)} TEMPLATE template0", db="postgres"),
                what=f"create side database {side} from template0"),
        Command(cmds.dexec(site, "pg_restore", "-U", site.db_user, "-d", side, "--no-owner", "--no-privileges",
                           "-j", str(max(1, site.restore_jobs)), in_container) + " 2>&1",
                what=f"pg_restore into {side}", check=judge_restore, ok_codes=(0, 1), timeout=site.command_timeout),
        Command(cmds.psql(site, count_sql(list(expected)), db=side), what=f"check {side} row counts against the dump",
                check=lambda r: check_counts(expected, r.stdout), timeout=site.command_timeout),
        Command(cmds.dexec(site, "rm", "-f", in_container), what="remove the dump copy from the container"),
    ]
    return out


def swap_commands(site: SiteSettings, side: str, old: str) -> list[Command]:
    """Rename the app database away and the side database into its place (no connections allowed)."""
    db = ident(site.db_name)
    return [
        Command(cmds.psql(
            site,
            f"ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false",
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {literal(site.db_name)} "  # noqa: S608
            "AND pid <> pg_backend_pid()",
            f"ALTER DATABASE {db} RENAME TO {ident(old)}",
            f"ALTER DATABASE {ident(old)} WITH ALLOW_CONNECTIONS true",
            f"ALTER DATABASE {ident(side)} RENAME TO {db}",
            db="postgres"), what=f"swap: {site.db_name} → {old}, {side} → {site.db_name}"),
    ]


def finish_swap_commands(site: SiteSettings, side: str) -> list[Command]:
    return [Command(cmds.psql(site, f"ALTER DATABASE {ident(side)} RENAME TO {ident(site.db_name)}", db="postgres"),
                    what=f"finish swap: {side} → {site.db_name}")]


def drop_database_commands(site: SiteSettings, names: list[str], force: bool = False) -> list[Command]:
    """DROP DATABASE; ``force`` ends sessions still in it (an interrupted run's pg_restore)."""
    suffix = " WITH (FORCE)" if force else ""
    return [Command(cmds.psql(site, f"DROP DATABASE IF EXISTS {ident(n)}{suffix}", db="postgres"), what=f"drop {n}")
            for n in names]
