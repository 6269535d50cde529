"""PostgreSQL and TimescaleDB facts, read by one script run inside the database container: the
cluster (databases, the preload setting and the files that set it), TimescaleDB per database, the
app database's flow tables, TimescaleDB's catalog, the data directory's free space, the newest flow.

Each part is ``@@TAG`` ... ``@@rc TAG N`` (:func:`~fabfile.facts.parts.db_part`); each ``parse_*``
is a pure parser of one part's lines."""

from __future__ import annotations

from .. import commands as cmds
from ..commands import Command, q
from ..inventory import SiteSettings
from .parts import Extra, db_part, rows, truthy

FLOW_TABLES = ("flow_records", "flow_summary_5m")
SIDE_PREFIX = "netmon_restore_"
OLD_PREFIX = "netmon_old_"

CLUSTER_SQL = [
    "SELECT 'db', datname, datallowconn, datistemplate FROM pg_database",
    "SELECT 'preload', setting, source, coalesce(sourcefile, '') FROM pg_settings WHERE name = 'shared_preload_libraries'",
    "SELECT 'file', sourcefile, sourceline, coalesce(setting, ''), applied FROM pg_file_settings "
    "WHERE name = 'shared_preload_libraries'",
    "SELECT 'now', extract(epoch FROM now())::bigint",
]
EXT_SQL = "SELECT 'ext', count(*) FROM pg_extension WHERE extname = 'timescaledb'"


def db_sql() -> list[str]:
    return [
        EXT_SQL,
        "SELECT 'rel', c.relname, c.relkind, (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname IN ('flow_records', 'flow_summary_5m')",
        "SELECT 'tables', count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        "SELECT 'size', pg_database_size(current_database())",
        "SELECT 'tscol', column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = 'flow_records' AND data_type LIKE 'timestamp%' ORDER BY ordinal_position",
    ]


TSDB_SQL = [
    "SELECT 'hyper', hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
    "WHERE hypertable_schema = 'public'",
    "SELECT 'cagg', view_name FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'public'",
    "SELECT 'jobfail', count(*) FROM timescaledb_information.job_stats WHERE last_run_status = 'Failed'",
    # what convert's copies take: the chunks with their indexes (a compressed chunk counts as stored)
    "SELECT 'tssize', coalesce(sum(pg_total_relation_size(format('%I.%I', chunk_schema, chunk_name)::regclass)), 0) "
    "FROM timescaledb_information.chunks WHERE hypertable_schema = 'public'",
]

#: status: the newest flow's age, through the first timestamp column (quoted by format's %I)
AGE_SQL = ("SELECT format('SELECT %L, coalesce(extract(epoch FROM now() - max(%I))::bigint::text, %L) FROM flow_records', "
           "'age', column_name, '') FROM information_schema.columns WHERE table_schema = 'public' "
           "AND table_name = 'flow_records' AND data_type LIKE 'timestamp%' ORDER BY ordinal_position LIMIT 1 \\gexec")


def psql_args(site: SiteSettings, db: str, sql: list[str]) -> str:
    """psql inside the database container (the probe's script runs there), one -c per statement."""
    args = ["psql", "-U", site.db_user, "-d", db, "-v", "ON_ERROR_STOP=1", "-X", "-tA", "-F", "|"]
    for stmt in sql:
        args += ["-c", stmt]
    return " ".join(q(a) for a in args)


def psql_part(site: SiteSettings, tag: str, db: str, sql: list[str]) -> str:
    return db_part(tag, psql_args(site, db, sql))


def age_part(site: SiteSettings) -> str:
    return db_part("age", f"printf '%s\\n' {q(AGE_SQL)} | {psql_args(site, site.db_name, [])}")


def db_probe(site: SiteSettings, extra: Extra | None = None) -> Command:
    """Every database fact in one ``docker exec``: the cluster (read through the first database
    that lets us in), each database's extension, the app database's tables, TimescaleDB's catalog,
    the data directory's free space. Each part ends with its own ``@@rc TAG STATUS`` line."""
    cluster = [psql_part(site, "cluster", db, [*CLUSTER_SQL, "SELECT 'via', current_database()"])
               for db in ("postgres", "template1", site.db_name)]
    parts = [
        f"pg_isready -U {q(site.db_user)} -d postgres >/dev/null 2>&1; echo \"@@ready $?\"",
        " || ".join(f"({c} | tee /tmp/.netmon-probe; grep -q '^@@rc cluster 0$' /tmp/.netmon-probe)" for c in cluster)
        + "; rm -f /tmp/.netmon-probe",
        psql_part(site, "ext:postgres", "postgres", [EXT_SQL]),
        psql_part(site, "ext:template1", "template1", [EXT_SQL]),
        psql_part(site, "app", site.db_name, db_sql()),
        psql_part(site, "tsdb", site.db_name, TSDB_SQL),
        "echo '@@df'; df -Pk /var/lib/postgresql/data 2>&1 | awk 'NR==2{print \"free \" $4}'; echo \"@@rc df $?\"",
        *(extra.db if extra else []),
    ]
    return Command(cmds.dexec(site, "sh", "-c", "\n".join(parts)), what="database probe", changes=False,
                   ok_codes=tuple(range(256)))


def ready_error(code: int | None) -> str:
    """pg_isready's status → why the server does not answer ("" = it answers)."""
    if code == 0:
        return ""
    return {1: "the server rejects connections (starting up?)", 2: "no response from the server",
            3: "pg_isready got no valid parameters"}.get(code, "pg_isready did not run")


def parse_cluster(lines: list[str]) -> dict:
    """The cluster part → ``databases`` (name → allows connections), ``preload`` (setting, source,
    sourcefile, or absent), ``preload_files`` [(file, line, setting)], ``now`` (absent if not read)."""
    out: dict = {"databases": {}, "preload_files": []}
    for r in rows("\n".join(lines)):
        tag = r[0]
        if tag == "db" and len(r) >= 4:
            out["databases"][r[1]] = truthy(r[2])
        elif tag == "preload" and len(r) >= 4:
            out["preload"] = (r[1], r[2], r[3])
        elif tag == "file" and len(r) >= 5:
            out["preload_files"].append((r[1], int(r[2]) if r[2].isdigit() else 0, r[3]))
        elif tag == "now" and len(r) >= 2 and r[1].isdigit():
            out["now"] = float(r[1])
    return out


def ext_count(lines: list[str]) -> bool | None:
    """Does the database hold the timescaledb extension (None: the count was not read)."""
    for r in rows("\n".join(lines)):
        if r[0] == "ext" and len(r) >= 2 and r[1].isdigit():
            return int(r[1]) > 0
    return None


def parse_app(lines: list[str]) -> dict:
    """The app database's part → ``relations`` (flow table → (relkind, children)) and, when read,
    ``table_count``, ``db_size``, ``ts_column`` (the first timestamp column of flow_records)."""
    out: dict = {"relations": {}}
    for r in rows("\n".join(lines)):
        tag = r[0]
        if tag == "rel" and len(r) >= 4:
            out["relations"][r[1]] = (r[2], int(r[3]) if r[3].isdigit() else 0)
        elif tag == "tables" and r[1].isdigit():
            out["table_count"] = int(r[1])
        elif tag == "size" and r[1].isdigit():
            out["db_size"] = int(r[1])
        elif tag == "tscol" and not out.get("ts_column"):
            out["ts_column"] = r[1]
    return out


def parse_tsdb(lines: list[str]) -> dict:
    """TimescaleDB's catalog → ``hypertables``, ``compressed``, ``caggs`` and, when read,
    ``failed_jobs``, ``hypertable_bytes``."""
    out: dict = {"hypertables": [], "compressed": [], "caggs": []}
    for r in rows("\n".join(lines)):
        if r[0] == "hyper" and len(r) >= 2:
            out["hypertables"].append(r[1])
            if len(r) >= 3 and truthy(r[2]):
                out["compressed"].append(r[1])
        elif r[0] == "cagg" and len(r) >= 2:
            out["caggs"].append(r[1])
        elif r[0] == "jobfail" and len(r) >= 2 and r[1].isdigit():
            out["failed_jobs"] = int(r[1])
        elif r[0] == "tssize" and len(r) >= 2 and r[1].isdigit():
            out["hypertable_bytes"] = int(r[1])
    return out


def parse_df(lines: list[str]) -> int | None:
    """Free KiB of the data directory (None: not read)."""
    free = [ln[5:].strip() for ln in lines if ln.startswith("free ") and ln[5:].strip().isdigit()]
    return int(free[-1]) if free else None


def parse_age(lines: list[str]) -> float | None:
    """Seconds since the newest flow (None: flow_records has no timestamp column, or no rows)."""
    ages = [float(r[1]) for r in rows("\n".join(lines)) if r[0] == "age" and len(r) > 1 and r[1].lstrip("-").isdigit()]
    return ages[-1] if ages else None


def remove_timescaledb(setting: str) -> str:
    """``'timescaledb,pg_stat_statements'`` → ``'pg_stat_statements'`` (whitespace/quotes tolerated)."""
    libs = [p.strip().strip("'\"") for p in (setting or "").split(",")]
    return ",".join(p for p in libs if p and p.lower() != "timescaledb")


def has_timescaledb(setting: str) -> bool:
    return any(p.strip().strip("'\"").lower() == "timescaledb" for p in (setting or "").split(","))
