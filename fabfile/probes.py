"""Read-only probes and the pure parsers of their output, gathered into a :class:`SiteState`.

Each probe is a read-only command (``Command(changes=False)``); each parser is a pure function
that unit tests feed recorded output to. :func:`probe_site` runs them all and never changes
anything on the server.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

import yaml

from . import commands as cmds
from .commands import Command, q
from .errors import PreflightError
from .inventory import SiteSettings

#: the runbook's five files a TimescaleDB migration modifies
APP_FILES = (
    "docker-compose.yml",
    "scripts/init.sql",
    "backend/app/main.py",
    "backend/app/services/flow_rollup.py",
    "backend/requirements.txt",
)
FLOW_TABLES = ("flow_records", "flow_summary_5m")
DUMP_PREFIX = "netmon_pre_tsdb_"
SAFETY_PREFIX = "netmon_pre_rollback_"
SIDE_PREFIX = "netmon_restore_"
OLD_PREFIX = "netmon_old_"
JOURNAL = "netmon_rollback_journal.jsonl"


# --- parsers --------------------------------------------------------------------------------

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


@dataclass
class Container:
    name: str
    status: str  # created, running, paused, restarting, removing, exited, dead, missing
    health: str = ""
    restarts: int = 0
    image: str = ""
    started: float | None = None  # epoch seconds of .State.StartedAt


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
    """Lines of ``{{.Name}}|{{.State.Status}}|health|{{.RestartCount}}|{{.Config.Image}}|{{.State.StartedAt}}``."""
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


@dataclass
class TocEntry:
    dump_id: int
    kind: str
    schema: str
    name: str
    owner: str = ""


_TOC_KINDS = sorted([
    "TABLE DATA", "TABLE", "SEQUENCE SET", "SEQUENCE OWNED BY", "SEQUENCE", "INDEX ATTACH", "INDEX",
    "FK CONSTRAINT", "CHECK CONSTRAINT", "CONSTRAINT", "DEFAULT ACL", "DEFAULT", "MATERIALIZED VIEW DATA",
    "MATERIALIZED VIEW", "VIEW", "EXTENSION", "SCHEMA", "COMMENT", "FUNCTION", "PROCEDURE", "AGGREGATE",
    "TRIGGER", "EVENT TRIGGER", "TYPE", "DOMAIN", "ACL", "RULE", "POLICY", "PUBLICATION", "DATABASE",
    "ENCODING", "STDSTRINGS", "SEARCHPATH", "BLOB", "BLOBS", "LARGE OBJECT", "STATISTICS", "COLLATION",
    "CAST", "OPERATOR", "TABLE ATTACH", "ROW SECURITY", "SERVER", "FOREIGN TABLE", "USER MAPPING",
], key=len, reverse=True)
_TOC_LINE = re.compile(r"^(\d+);\s+\d+\s+\d+\s+(.*)$")


def parse_toc(text: str) -> list[TocEntry]:
    """``pg_restore -l`` listing → entries (comment lines skipped)."""
    out = []
    for line in (text or "").splitlines():
        m = _TOC_LINE.match(line.strip())
        if not m:
            continue
        rest = m.group(2)
        kind = next((k for k in _TOC_KINDS if rest == k or rest.startswith(k + " ")), None)
        if kind is None:
            kind, _, rest2 = rest.partition(" ")
            rest = rest2
        else:
            rest = rest[len(kind):].strip()
        parts = rest.split()
        schema = parts[0] if parts else ""
        name = parts[1] if len(parts) > 1 else ""
        owner = parts[-1] if len(parts) > 2 else ""
        out.append(TocEntry(int(m.group(1)), kind, schema, name, owner))
    return out


def toc_problems(entries: list[TocEntry]) -> list[str]:
    """Why a dump is not a usable pre-migration backup (empty list = fine)."""
    problems = []
    if not entries:
        return ["it holds no objects"]
    tsdb = [e for e in entries if "timescaledb" in f"{e.schema} {e.name}".lower()]
    if tsdb:
        e = tsdb[0]
        problems.append(f"it holds TimescaleDB objects ({e.kind} {e.schema} {e.name}, {len(tsdb)} in all)")
    if not any(e.kind == "TABLE" and e.name == "flow_records" for e in entries):
        problems.append("it holds no flow_records table")
    return problems


@dataclass
class Readback:
    """Result of reading a whole dump back (``dump_readback``)."""

    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    exit: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.complete and self.exit == 0 and not self.errors


def parse_readback(stdout: str, stderr: str) -> Readback:
    rb = Readback()
    for line in (stdout or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "rows" and parts[2].isdigit():
            rb.counts[parts[1]] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "end":
            rb.complete = parts[1] == "0"
    for line in (stderr or "").splitlines():
        m = re.match(r"^pg_restore_exit=(\d+)$", line.strip())
        if m:
            rb.exit = int(m.group(1))
        elif "error" in line.lower() or "fatal" in line.lower():
            rb.errors.append(line.strip())
    if rb.exit not in (0, None) and not rb.errors:
        rb.errors.append(f"pg_restore exited {rb.exit}")
    return rb


_IGNORED = re.compile(r"errors ignored on restore:\s*(\d+)", re.I)


def restore_errors(stdout: str, stderr: str, exited: int) -> list[str]:
    """pg_restore's own verdict: any "error" line or "errors ignored on restore: N>0" = failure."""
    text = f"{stdout or ''}\n{stderr or ''}"
    errors = [ln.strip() for ln in text.splitlines() if re.search(r"\berror\b", ln, re.I) and not _IGNORED.search(ln)]
    m = _IGNORED.search(text)
    if m and int(m.group(1)) > 0:
        errors.insert(0, f"pg_restore: errors ignored on restore: {m.group(1)}")
    if exited != 0 and not errors:
        errors.append(f"pg_restore exited {exited}")
    return errors


def rows(text: str) -> list[list[str]]:
    """psql -tA -F '|' output → rows of fields."""
    return [line.split("|") for line in (text or "").splitlines() if line.strip()]


def remove_timescaledb(setting: str) -> str:
    """``'timescaledb,pg_stat_statements'`` → ``'pg_stat_statements'`` (whitespace/quotes tolerated)."""
    libs = [p.strip().strip("'\"") for p in (setting or "").split(",")]
    return ",".join(p for p in libs if p and p.lower() != "timescaledb")


def has_timescaledb(setting: str) -> bool:
    return any(p.strip().strip("'\"").lower() == "timescaledb" for p in (setting or "").split(","))


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


def is_timescale_image(image: str) -> bool:
    return "timescale" in (image or "").lower()


def command_preloads(command) -> bool:
    if isinstance(command, list):
        command = " ".join(str(x) for x in command)
    return "timescaledb" in str(command or "").lower()


# --- state ----------------------------------------------------------------------------------

@dataclass
class Backup:
    path: str
    size: int
    age: float
    has_sha: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class SiteState:
    """What the probes found. ``None`` means "could not be determined"."""

    docker: bool = False
    app_dir: bool = False
    compose_file: bool = False
    files: list[str] = field(default_factory=list)
    compose_text: str = ""
    file_texts: dict[str, str] = field(default_factory=dict)
    db_image: str = ""
    db_command: str = ""
    ps: list[dict] = field(default_factory=list)
    containers: dict[str, Container] = field(default_factory=dict)
    db_answers: bool = False
    db_error: str = ""
    databases: dict[str, bool] = field(default_factory=dict)  # name → allows connections
    extension: dict[str, bool | None] = field(default_factory=dict)  # db → has timescaledb
    preload: str = ""
    preload_source: str = ""
    preload_sourcefile: str = ""
    preload_files: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, setting)
    relations: dict[str, tuple[str, int]] = field(default_factory=dict)  # name → (relkind, children)
    hypertables: list[str] = field(default_factory=list)
    compressed: list[str] = field(default_factory=list)
    caggs: list[str] = field(default_factory=list)
    failed_jobs: int = 0
    table_count: int | None = None
    db_size: int | None = None
    #: bytes the public hypertables' chunks hold (convert's copies need about as much)
    hypertable_bytes: int | None = None
    ts_column: str = ""
    flow_age: float | None = None
    flow_query_error: str = ""
    db_free_kb: int | None = None
    backup_free_kb: int | None = None
    backups: list[Backup] = field(default_factory=list)
    git: bool = False
    git_head: str = ""
    git_dirty: list[str] = field(default_factory=list)
    git_history: list[tuple[str, str]] = field(default_factory=list)  # (rev, plain|tsdb), newest first
    mentions: list[str] = field(default_factory=list)  # app files still mentioning TimescaleDB
    qa_check: bool = False
    now: float = 0.0
    backend_log: str = ""
    db_name: str = "netmon"
    partials: list[str] = field(default_factory=list)  # stale .partial files in backup_dir
    plain_image: bool | None = None  # is the plain image on the server?
    build_services: list[str] = field(default_factory=list)  # compose services with build:
    lock: str = ""  # "held <holder json>" or "free"
    journal: list[str] = field(default_factory=list)  # the journal's last lines
    #: the probe commands' raw output ("host", "db"): the parts a task added (:class:`Extra`) parse it
    outputs: dict[str, str] = field(default_factory=dict)
    #: fact → why it could not be read. A fact named here is unknown, never absent.
    unknown: dict[str, str] = field(default_factory=dict)

    # derived ------------------------------------------------------------------------------
    def known(self, *facts: str) -> bool:
        return not any(f in self.unknown for f in facts)

    def why(self, *facts: str) -> str:
        return "; ".join(f"{f}: {self.unknown[f]}" for f in facts if f in self.unknown)

    def container(self, name: str) -> Container:
        return self.containers.get(name, Container(name, "missing"))

    @property
    def compose_timescale(self) -> bool:
        return is_timescale_image(self.db_image) or command_preloads(self.db_command)

    @property
    def preload_timescaledb(self) -> bool:
        return has_timescaledb(self.preload) or any(has_timescaledb(s) for _, _, s in self.preload_files)

    @property
    def extension_dbs(self) -> list[str]:
        return [db for db, has in self.extension.items() if has]

    @property
    def side_dbs(self) -> list[str]:
        """Side databases of restores that never finished (they hold a partial restore)."""
        return sorted(d for d in self.databases if d.startswith(SIDE_PREFIX))

    @property
    def kept_dbs(self) -> list[str]:
        """Old databases a restore kept (renamed away, never dropped without a copy)."""
        return sorted(d for d in self.databases if d.startswith(OLD_PREFIX))

    @property
    def leftovers(self) -> list[str]:
        return self.side_dbs

    def flow_plain(self, name: str) -> bool:
        rel = self.relations.get(name)
        return bool(rel) and rel[0] == "r" and rel[1] == 0 and name not in self.hypertables and name not in self.caggs

    @property
    def timescale_anywhere(self) -> bool:
        """TimescaleDB anywhere but in the old databases a restore kept on purpose."""
        return bool(self.compose_timescale or self.preload_timescaledb
                    or [d for d in self.extension_dbs if d not in self.kept_dbs] or self.hypertables or self.caggs)

    @property
    def rolled_back(self) -> bool:
        """The database side is done: plain image, no preload, no extension (but in kept copies),
        plain flow tables, no unfinished side database — every one of these facts read, none unknown."""
        return (self.db_answers and not self.unknown and not self.timescale_anywhere and not self.leftovers
                and all(self.flow_plain(t) for t in FLOW_TABLES))

    def pre_migration_rev(self) -> str | None:
        """The newest commit whose docker-compose.yml runs the plain image."""
        for rev, kind in self.git_history:
            if kind == "plain":
                return rev
        return None


# --- probe commands -------------------------------------------------------------------------
#
# Two remote commands gather the whole state: one shell script for the host (files, backups,
# git, containers, images, lock, journal) and one script run inside the database container for
# every database fact. Each part prints its own tagged lines and its own exit status, so a part
# that failed makes its facts unknown while the rest still reads.

@dataclass
class Extra:
    """Read-only parts a task adds to the two probe commands, so that they cost no round trip of
    their own: ``host`` lines of shell for the host script (their output tagged ``x.TAG=``, see
    :func:`host_part`), ``db`` parts for the database script (``@@TAG`` ... ``@@rc TAG N``), and
    ``stdin`` for the host script (a secret: the parts read it on fd 3; never logged)."""

    host: list[str] = field(default_factory=list)
    db: list[str] = field(default_factory=list)
    stdin: str | None = None
    stdin_note: str | None = None


def host_tagged(tag: str, shell: str) -> str:
    """A host part: ``shell``'s output (stdout and stderr) as ``x.TAG=line`` lines, then ``x.TAG.rc=N``."""
    return (f"out=$( {shell} 2>&1 ); rc=$?; [ -n \"$out\" ] && printf '%s\\n' \"$out\" | sed 's/^/x.{tag}=/'; "
            f"echo \"x.{tag}.rc=$rc\"")


def host_part(text: str, tag: str) -> tuple[int | None, list[str]]:
    """A host part's (exit status, lines) from the host script's output; status None: it did not
    finish (the script died or the part never ran), so its facts are unknown."""
    key, rc, lines = f"x.{tag}=", None, []
    for line in (text or "").splitlines():
        if line.startswith(key):
            lines.append(line[len(key):])
        elif line.startswith(f"x.{tag}.rc="):
            value = line.split("=", 1)[1].strip()
            rc = int(value) if value.isdigit() else None
    return rc, lines


def backend_log_part(site: SiteSettings, tail: int) -> str:
    return host_tagged("log", cmds.compose(site, "logs", f"--tail={tail}", "backend"))


def host_probe(site: SiteSettings, extra: Extra | None = None) -> Command:
    from .lock import lock_path  # noqa: PLC0415 - lock imports commands, this module's neighbour

    app, bak = q(site.app_dir), q(site.backup_dir)
    files = " ".join(q(f) for f in APP_FILES)
    names = " ".join(q(n) for n in site.containers.values())
    fmt = q("{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.RestartCount}}|"
            "{{.Config.Image}}|{{.State.StartedAt}}")
    lock = q(lock_path(site.backup_dir))
    script = f"""
docker compose version >/dev/null 2>&1 && echo docker=yes || echo docker=no
[ -d {app} ] && echo app=yes || echo app=no
[ -f {app}/docker-compose.yml ] && echo "compose_b64=$(base64 -w0 {app}/docker-compose.yml)"
echo now=$(date +%s)
df -Pk {bak} 2>/dev/null | awk 'NR==2{{print "backup_free_kb=" $4}}'
for f in {bak}/{DUMP_PREFIX}*.dump {bak}/{SAFETY_PREFIX}*.dump; do
  [ -f "$f" ] && echo "backup=$(stat -c '%s|%Y' "$f")|$([ -f "$f.sha256" ] && echo sha || echo nosha)|$f"
done
for f in {bak}/.netmon_*.partial; do [ -f "$f" ] && echo "partial=$f"; done
for f in {files}; do [ -f {app}/"$f" ] && echo "file=$f"; done
for f in backend/app/main.py backend/app/services/flow_rollup.py; do
  [ -f {app}/"$f" ] && grep -qiE 'timescale|time_bucket|hypertable' {app}/"$f" && echo "mentions=$f"
done
[ -x {app}/scripts/qa_check.sh ] && echo qa=yes
if [ -d {app}/.git ] && command -v git >/dev/null 2>&1 && cd {app}; then
  echo git=yes
  echo "head=$(git rev-parse HEAD 2>/dev/null)"
  git status --porcelain -- {files} 2>/dev/null | sed 's/^/dirty=/'
  for r in $(git log --format=%H -n 50 -- docker-compose.yml 2>/dev/null); do
    if git show "$r:docker-compose.yml" 2>/dev/null | grep -qi timescale; then echo "rev=$r tsdb"; else echo "rev=$r plain"; fi
  done
  cd /
fi
if [ -e {lock} ] && ! flock -n -s {lock} true 2>/dev/null; then echo "lock=held $(head -n 1 {lock})"; else echo lock=free; fi
[ -f {bak}/{JOURNAL} ] && tail -n 400 {bak}/{JOURNAL} | sed 's/^/journal=/'
if out=$(docker image inspect --format '{{{{.Id}}}}' {q(site.plain_image)} 2>&1); then echo plain_image=yes
elif printf '%s' "$out" | grep -qi 'no such image'; then echo plain_image=no
else echo "plain_image=unknown $(printf '%s' "$out" | tail -n 1 | cut -c1-200)"; fi
(cd {app} 2>/dev/null && docker compose ps -a --format json 2>&1; echo "ps_rc=$?") | sed 's/^/ps=/'
docker inspect --format {fmt} {names} 2>/dev/null | sed 's/^/inspect=/'
"""
    extra = extra or Extra()
    return Command("sh -c " + q(with_parts(script.strip(), extra)), what="host probe", changes=False,
                   stdin=extra.stdin, stdin_note=extra.stdin_note)


def with_parts(script: str, extra: Extra) -> str:
    """``script`` with the host parts of ``extra`` run alongside it (each in the background, into a
    file of its own, printed in order at the end), so the slowest part sets the time, not their sum.
    They start after its first line (the docker check). The parts read ``extra.stdin`` on fd 3;
    nothing else may eat it."""
    first, _, rest = script.partition("\n")
    if extra.stdin is not None:
        first = "exec 3<&0 </dev/null; " + first
    if not extra.host:
        return f"{first}\n{rest}\ntrue"
    launch = "xd=$(mktemp -d 2>/dev/null) || xd=\n"
    for i, part in enumerate(extra.host):
        launch += f'if [ -n "$xd" ]; then ( {part} ) > "$xd/{i}" 2>&1 & else {part}; fi\n'
    files = " ".join(f'"$xd/{i}"' for i in range(len(extra.host)))
    return (f"{first}\n{launch}{rest}\nwait\n"
            f'[ -n "$xd" ] && cat {files} 2>/dev/null; [ -n "$xd" ] && rm -rf "$xd"\ntrue')


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


def psql_args(site: SiteSettings, db: str, sql: list[str]) -> str:
    """psql inside the database container (the probe's script runs there), one -c per statement."""
    args = ["psql", "-U", site.db_user, "-d", db, "-v", "ON_ERROR_STOP=1", "-X", "-tA", "-F", "|"]
    for stmt in sql:
        args += ["-c", stmt]
    return " ".join(q(a) for a in args)


def db_part(tag: str, shell: str) -> str:
    """A part of the database script: ``@@TAG``, its output, ``@@rc TAG N``."""
    return f"echo '@@{tag}'; {shell} 2>&1; echo \"@@rc {tag} $?\""


def _psql_part(site: SiteSettings, tag: str, db: str, sql: list[str]) -> str:
    return db_part(tag, psql_args(site, db, sql))


#: status: the newest flow's age, through the first timestamp column (quoted by format's %I)
AGE_SQL = ("SELECT format('SELECT %L, coalesce(extract(epoch FROM now() - max(%I))::bigint::text, %L) FROM flow_records', "
           "'age', column_name, '') FROM information_schema.columns WHERE table_schema = 'public' "
           "AND table_name = 'flow_records' AND data_type LIKE 'timestamp%' ORDER BY ordinal_position LIMIT 1 \\gexec")


def age_part(site: SiteSettings) -> str:
    return db_part("age", f"printf '%s\\n' {q(AGE_SQL)} | {psql_args(site, site.db_name, [])}")


def db_probe(site: SiteSettings, extra: Extra | None = None) -> Command:
    """Every database fact in one ``docker exec``: the cluster (read through the first database
    that lets us in), each database's extension, the app database's tables, TimescaleDB's catalog,
    the data directory's free space. Each part ends with its own ``@@rc TAG STATUS`` line."""
    cluster = [_psql_part(site, "cluster", db, [*CLUSTER_SQL, "SELECT 'via', current_database()"])
               for db in ("postgres", "template1", site.db_name)]
    parts = [
        f"pg_isready -U {q(site.db_user)} -d postgres >/dev/null 2>&1; echo \"@@ready $?\"",
        " || ".join(f"({c} | tee /tmp/.netmon-probe; grep -q '^@@rc cluster 0$' /tmp/.netmon-probe)" for c in cluster)
        + "; rm -f /tmp/.netmon-probe",
        _psql_part(site, "ext:postgres", "postgres", [EXT_SQL]),
        _psql_part(site, "ext:template1", "template1", [EXT_SQL]),
        _psql_part(site, "app", site.db_name, db_sql()),
        _psql_part(site, "tsdb", site.db_name, TSDB_SQL),
        "echo '@@df'; df -Pk /var/lib/postgresql/data 2>&1 | awk 'NR==2{print \"free \" $4}'; echo \"@@rc df $?\"",
        *(extra.db if extra else []),
    ]
    return Command(cmds.dexec(site, "sh", "-c", "\n".join(parts)), what="database probe", changes=False,
                   ok_codes=tuple(range(256)))


def _truthy(v: str) -> bool:
    return v.strip().lower() in ("t", "true", "on", "yes", "1")


def split_parts(text: str) -> dict[str, tuple[int | None, list[str]]]:
    """``@@TAG`` ... ``@@rc TAG N`` blocks → TAG → (exit status, lines). A block without its
    ``@@rc`` line (the script died) has status None."""
    parts: dict[str, tuple[int | None, list[str]]] = {}
    current, lines = None, []
    for line in (text or "").splitlines():
        if line.startswith("@@ready "):
            value = line.split()[1]
            parts["ready"] = (int(value) if value.isdigit() else None, [])
        elif line.startswith("@@rc "):
            _, tag, code = (line.split() + ["", ""])[:3]
            parts[tag] = (int(code) if code.isdigit() else None, lines)
            current, lines = None, []
        elif line.startswith("@@") and " " not in line:
            if current is not None:
                parts[current] = (None, lines)
            current, lines = line[2:], []
        elif current is not None:
            lines.append(line)
    if current is not None:
        parts[current] = (None, lines)
    return parts


def _reason(lines: list[str], code: int | None) -> str:
    text = [ln.strip() for ln in lines if ln.strip() and "|" not in ln]
    detail = text[-1] if text else ("no answer" if code is None else f"exit {code}")
    return detail[:200]


def apply_cluster_rows(state: SiteState, lines: list[str]) -> None:
    for r in rows("\n".join(lines)):
        tag = r[0]
        if tag == "db" and len(r) >= 4:
            state.databases[r[1]] = _truthy(r[2])
        elif tag == "preload" and len(r) >= 4:
            state.preload, state.preload_source, state.preload_sourcefile = r[1], r[2], r[3]
        elif tag == "file" and len(r) >= 5:
            line = int(r[2]) if r[2].isdigit() else 0
            state.preload_files.append((r[1], line, r[3]))
        elif tag == "now" and len(r) >= 2 and r[1].isdigit():
            state.now = float(r[1])


def ext_count(lines: list[str]) -> bool | None:
    for r in rows("\n".join(lines)):
        if r[0] == "ext" and len(r) >= 2 and r[1].isdigit():
            return int(r[1]) > 0
    return None


def apply_db_rows(state: SiteState, lines: list[str]) -> None:
    for r in rows("\n".join(lines)):
        tag = r[0]
        if tag == "rel" and len(r) >= 4:
            state.relations[r[1]] = (r[2], int(r[3]) if r[3].isdigit() else 0)
        elif tag == "tables" and r[1].isdigit():
            state.table_count = int(r[1])
        elif tag == "size" and r[1].isdigit():
            state.db_size = int(r[1])
        elif tag == "tscol" and not state.ts_column:
            state.ts_column = r[1]


def apply_tsdb_rows(state: SiteState, lines: list[str]) -> None:
    for r in rows("\n".join(lines)):
        if r[0] == "hyper" and len(r) >= 2:
            state.hypertables.append(r[1])
            if len(r) >= 3 and _truthy(r[2]):
                state.compressed.append(r[1])
        elif r[0] == "cagg" and len(r) >= 2:
            state.caggs.append(r[1])
        elif r[0] == "jobfail" and len(r) >= 2 and r[1].isdigit():
            state.failed_jobs = int(r[1])
        elif r[0] == "tssize" and len(r) >= 2 and r[1].isdigit():
            state.hypertable_bytes = int(r[1])


def apply_db_probe(state: SiteState, text: str) -> None:
    """The database probe's output → facts; a part that failed makes its facts unknown."""
    parts = split_parts(text)
    ready = parts.get("ready", (None, []))[0]
    if ready != 0:
        state.db_answers = False
        state.db_error = {1: "the server rejects connections (starting up?)", 2: "no response from the server",
                          3: "pg_isready got no valid parameters"}.get(ready, "pg_isready did not run")
        return
    state.db_answers = True
    code, lines = parts.get("cluster", (None, []))
    if code != 0:
        reason = _reason(lines, code)
        for fact in ("databases", "preload", "ext:postgres", "ext:template1", "app", "tsdb"):
            state.unknown[fact] = f"no database lets the probe in ({reason})"
        return
    apply_cluster_rows(state, lines)
    for db in ("postgres", "template1"):
        if db not in state.databases:
            continue
        code, lines = parts.get(f"ext:{db}", (None, []))
        has = ext_count(lines) if code == 0 else None
        if has is None:
            why = (f"it does not allow connections: ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true" if not state.databases[db]
                   else _reason(lines, code))
            state.extension[db] = None
            state.unknown[f"ext:{db}"] = f"cannot read database {db} ({why})"
        else:
            state.extension[db] = has
    if state.db_name not in state.databases:
        return
    code, lines = parts.get("app", (None, []))
    has = ext_count(lines) if code == 0 else None
    if has is None:
        why = "it does not allow connections" if not state.databases[state.db_name] else _reason(lines, code)
        state.extension[state.db_name] = None
        state.unknown["app"] = f"cannot read database {state.db_name} ({why})"
        return
    state.extension[state.db_name] = has
    apply_db_rows(state, lines)
    if has:
        code, lines = parts.get("tsdb", (None, []))
        if code != 0:
            state.unknown["tsdb"] = f"cannot read TimescaleDB's catalog in {state.db_name} ({_reason(lines, code)})"
        else:
            apply_tsdb_rows(state, lines)
    code, lines = parts.get("df", (None, []))
    for line in lines:
        if line.startswith("free ") and line[5:].strip().isdigit():
            state.db_free_kb = int(line[5:].strip())
    # a continuous aggregate shows up as a view (or matview); record it as one
    rel = state.relations.get("flow_summary_5m")
    if rel and rel[0] in ("v", "m") and "flow_summary_5m" not in state.caggs:
        state.caggs.append("flow_summary_5m")


def apply_host_lines(state: SiteState, text: str) -> None:
    ps_lines: list[str] = []
    inspect_lines: list[str] = []
    ps_rc = None
    for line in (text or "").splitlines():
        key, _, value = line.partition("=")
        if key == "docker":
            state.docker = value == "yes"
        elif key == "app":
            state.app_dir = value == "yes"
        elif key == "compose_b64":
            state.compose_file = True
            try:
                state.compose_text = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                state.unknown["compose"] = "docker-compose.yml cannot be read as text"
        elif key == "now" and value.isdigit():
            state.now = float(value)
        elif key == "backup_free_kb" and value.isdigit():
            state.backup_free_kb = int(value)
        elif key == "backup":
            size, mtime, sha, path = value.split("|", 3)
            state.backups.append(Backup(path, int(size), float(mtime), sha == "sha"))
        elif key == "partial":
            state.partials.append(value)
        elif key == "file":
            state.files.append(value)
        elif key == "mentions":
            state.mentions.append(value)
        elif key == "qa":
            state.qa_check = True
        elif key == "git":
            state.git = True
        elif key == "head":
            state.git_head = value.strip()
        elif key == "dirty":
            state.git_dirty.append(value[3:].strip() if len(value) > 3 else value.strip())
        elif key == "rev":
            rev, _, kind = value.partition(" ")
            state.git_history.append((rev, kind.strip()))
        elif key == "lock":
            state.lock = value
        elif key == "journal":
            state.journal.append(value)
        elif key == "plain_image":
            state.plain_image = {"yes": True, "no": False}.get(value.split(" ", 1)[0])
            if state.plain_image is None:
                state.unknown["plain_image"] = f"docker image inspect failed: {value[8:] or 'no answer'}"
        elif key == "ps":
            if value.startswith("ps_rc="):
                ps_rc = value[6:]
            else:
                ps_lines.append(value)
        elif key == "inspect":
            inspect_lines.append(value)
    for b in state.backups:
        b.age = max(0.0, state.now - b.age) if state.now else 0.0
    if ps_rc == "0":
        try:
            state.ps = parse_compose_ps("\n".join(ps_lines))
        except ValueError:
            state.unknown["ps"] = "docker compose ps printed no JSON"
    elif state.app_dir:
        state.unknown["ps"] = f"docker compose ps failed: {(ps_lines or ['no answer'])[-1][:200]}"
    state.containers = parse_inspect("\n".join(inspect_lines))
    if state.compose_text:
        apply_compose(state, state.compose_text)


def apply_compose(state: SiteState, text: str) -> None:
    db = compose_db_service(text)
    state.db_image = str(db.get("image", ""))
    cmd = db.get("command", "")
    state.db_command = " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd or "")
    try:
        services = (yaml.safe_load(text) or {}).get("services") or {}
    except (yaml.YAMLError, AttributeError):
        services = {}
    state.build_services = [name for name, spec in services.items() if isinstance(spec, dict) and spec.get("build")]


def dump_backups(state: SiteState) -> list[Backup]:
    """Pre-migration dumps, newest first by name (the timestamp is in the name)."""
    found = [b for b in state.backups if b.name.startswith(DUMP_PREFIX)]
    return sorted(found, key=lambda b: b.name, reverse=True)


def require_site(site: SiteSettings, state: SiteState, where: str) -> None:
    """The site is one this tool can work on: docker with compose, app_dir, its compose file."""
    if not state.docker:
        raise PreflightError(f"docker (with compose) not found on {where} — install Docker there or fix the SSH user's PATH")
    if not state.app_dir:
        raise PreflightError(f"app_dir {site.app_dir} not found on {where} — set app_dir for this site in hosts.yml")
    if not state.compose_file:
        raise PreflightError(f"{site.app_dir}/docker-compose.yml not found on {where} — is app_dir right?")


def require_known(state: SiteState, where: str, *facts: str) -> None:
    """A plan that needs an unknown fact refuses, changing nothing."""
    missing = [f for f in (facts or tuple(state.unknown)) if f in state.unknown]
    if missing:
        raise PreflightError(f"cannot read the state of {where}: {state.why(*missing)} — nothing was changed; "
                             "fix that (status shows it), then rerun")


# --- the probe run --------------------------------------------------------------------------

def probe_site(runner, site: SiteSettings, deep: bool = False, extra: Extra | None = None) -> SiteState:
    """Run the read-only probes: two remote commands, whatever ``deep`` (status's facts: the newest
    flow, the backend log) and ``extra`` (a task's own parts) add to them."""
    state = SiteState(db_name=site.db_name)
    extra = Extra(list(extra.host), list(extra.db), extra.stdin, extra.stdin_note) if extra else Extra()
    if deep:
        extra.host.append(backend_log_part(site, 200))
        extra.db.append(age_part(site))
    out = runner.run(host_probe(site, extra))
    if not out.ok:
        raise PreflightError(f"the host probe failed on {runner.site} (exit {out.exited}: "
                             f"{(out.stderr or out.stdout).strip()[-200:]}) — check the SSH user's shell")
    state.outputs["host"] = out.stdout
    apply_host_lines(state, out.stdout)
    if deep:
        state.backend_log = "\n".join(host_part(out.stdout, "log")[1])
    if not state.docker or not state.app_dir:
        return state
    db = state.container(site.db_container)
    if db.status != "running":
        state.db_error = f"container {site.db_container} is {db.status}"
        return state
    out = runner.run(db_probe(site, extra))
    if "@@ready" not in out.stdout:
        state.db_error = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["docker exec failed"]
        state.db_error = state.db_error[0][:200]
        state.unknown["db"] = f"docker exec into {site.db_container} failed ({state.db_error})"
        return state
    state.outputs["db"] = out.stdout
    apply_db_probe(state, out.stdout)
    if deep:
        apply_age(state, split_parts(out.stdout).get("age"))
    return state


def apply_age(state: SiteState, part: tuple[int | None, list[str]] | None) -> None:
    """The newest flow's age (status), when the app database was read; a failed query is named."""
    if not state.db_answers or not state.known("app") or part is None:
        return
    code, lines = part
    if code != 0:
        state.flow_query_error = _reason(lines, code)
        return
    for r in rows("\n".join(lines)):
        if r[0] == "age" and len(r) > 1 and r[1].lstrip("-").isdigit():
            state.flow_age = float(r[1])
