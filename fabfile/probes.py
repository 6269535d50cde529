"""Read-only probes and the pure parsers of their output, gathered into a :class:`SiteState`.

Each probe is a read-only command (``Command(changes=False)``); each parser is a pure function
that unit tests feed recorded output to. :func:`probe_site` runs them all and never changes
anything on the server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

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


def _clean(value: str) -> str:
    value = value.strip()
    return "" if value == "<no value>" else value


def parse_inspect(text: str) -> dict[str, Container]:
    """Lines of ``{{.Name}}|{{.State.Status}}|health|{{.RestartCount}}|{{.Config.Image}}``."""
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
    event_triggers: list[tuple[str, str]] = field(default_factory=list)
    table_count: int | None = None
    table_count_all: int | None = None
    db_size: int | None = None
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

    # derived ------------------------------------------------------------------------------
    @property
    def db_container_running(self) -> bool:
        return any(c.status == "running" for n, c in self.containers.items() if n.endswith("db"))

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
    def leftovers(self) -> list[str]:
        return sorted(d for d in self.databases if d.startswith(("netmon_restore_", "netmon_old_")))

    def flow_plain(self, name: str) -> bool:
        rel = self.relations.get(name)
        return bool(rel) and rel[0] == "r" and rel[1] == 0 and name not in self.hypertables and name not in self.caggs

    @property
    def timescale_anywhere(self) -> bool:
        return bool(self.compose_timescale or self.preload_timescaledb or self.extension_dbs
                    or self.hypertables or self.caggs)

    @property
    def rolled_back(self) -> bool:
        """Plain image, no preload, no extension anywhere, plain flow tables, no leftovers."""
        return (self.db_answers and not self.timescale_anywhere and not self.leftovers
                and all(self.flow_plain(t) for t in FLOW_TABLES))

    def pre_migration_rev(self) -> str | None:
        """The newest commit whose docker-compose.yml runs the plain image."""
        for rev, kind in self.git_history:
            if kind == "plain":
                return rev
        return None


# --- probe commands -------------------------------------------------------------------------

def host_probe(site: SiteSettings) -> Command:
    app, bak = q(site.app_dir), q(site.backup_dir)
    files = " ".join(q(f) for f in APP_FILES)
    script = f"""
docker compose version >/dev/null 2>&1 && echo docker=yes || echo docker=no
[ -d {app} ] && echo app=yes || echo app=no
[ -f {app}/docker-compose.yml ] && echo compose_file=yes
echo now=$(date +%s)
df -Pk {bak} 2>/dev/null | awk 'NR==2{{print "backup_free_kb=" $4}}'
for f in {bak}/{DUMP_PREFIX}*.dump {bak}/{SAFETY_PREFIX}*.dump; do
  [ -f "$f" ] && echo "backup=$(stat -c '%s|%Y' "$f")|$([ -f "$f.sha256" ] && echo sha || echo nosha)|$f"
done
for f in {files}; do [ -f {app}/"$f" ] && echo "file=$f"; done
for f in backend/app/main.py backend/app/services/flow_rollup.py; do
  [ -f {app}/"$f" ] && grep -qiE 'timescale|time_bucket|hypertable' {app}/"$f" && echo "mentions=$f"
done
[ -x {app}/scripts/qa_check.sh ] && echo qa=yes
[ -d {app}/.git ] && command -v git >/dev/null 2>&1 && echo git=yes
true
"""
    return Command("sh -c " + q(script.strip()), what="host probe", changes=False)


def git_probe(site: SiteSettings) -> Command:
    files = " ".join(q(f) for f in APP_FILES)
    script = f"""
cd {q(site.app_dir)} || exit 1
echo "head=$(git rev-parse HEAD 2>/dev/null)"
git status --porcelain -- {files} 2>/dev/null | sed 's/^/dirty=/'
for r in $(git log --format=%H -n 50 -- docker-compose.yml 2>/dev/null); do
  if git show "$r:docker-compose.yml" 2>/dev/null | grep -qi timescale; then echo "rev=$r tsdb"; else echo "rev=$r plain"; fi
done
true
"""
    return Command("sh -c " + q(script.strip()), what="git probe", changes=False)


def cat_file(site: SiteSettings, rel: str) -> Command:
    return Command(f"cat {q(site.app_dir + '/' + rel)}", what=f"read {rel}", changes=False)


def ps_probe(site: SiteSettings) -> Command:
    return Command(cmds.compose(site, "ps", "-a", "--format", "json"), what="compose ps", changes=False, ok_codes=(0, 1))


def inspect_probe(site: SiteSettings) -> Command:
    return Command(cmds.inspect_state(list(site.containers.values())), what="container states",
                   changes=False, ok_codes=(0, 1))


CLUSTER_SQL = [
    "SELECT 'db', datname, datallowconn, datistemplate FROM pg_database",
    "SELECT 'preload', setting, source, coalesce(sourcefile, '') FROM pg_settings WHERE name = 'shared_preload_libraries'",
    "SELECT 'file', sourcefile, sourceline, coalesce(setting, ''), applied FROM pg_file_settings "
    "WHERE name = 'shared_preload_libraries'",
    "SELECT 'ext', extname FROM pg_extension WHERE extname = 'timescaledb'",
    "SELECT 'now', extract(epoch FROM now())::bigint",
]


def db_sql() -> list[str]:
    return [
        "SELECT 'ext', extname FROM pg_extension WHERE extname = 'timescaledb'",
        "SELECT 'rel', c.relname, c.relkind, (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname IN ('flow_records', 'flow_summary_5m')",
        "SELECT 'tables', count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        "SELECT 'tables_all', count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        "SELECT 'size', pg_database_size(current_database())",
        "SELECT 'evt', evtname, evtenabled FROM pg_event_trigger",
        "SELECT 'tscol', column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = 'flow_records' AND data_type LIKE 'timestamp%' ORDER BY ordinal_position",
    ]


TSDB_SQL = [
    "SELECT 'hyper', hypertable_name, compression_enabled FROM timescaledb_information.hypertables",
    "SELECT 'cagg', view_name FROM timescaledb_information.continuous_aggregates",
    "SELECT 'jobfail', count(*) FROM timescaledb_information.job_stats WHERE last_run_status = 'Failed'",
]


def psql_lenient(site: SiteSettings, sql: list[str], db: str) -> Command:
    """psql without ON_ERROR_STOP (each statement stands alone) — for optional catalog views."""
    args = ["psql", "-U", site.db_user, "-d", db, "-X", "-tA", "-F", "|"]
    for stmt in sql:
        args += ["-c", stmt]
    return Command(cmds.dexec(site, *args), what=f"catalog probe ({db})", changes=False, ok_codes=(0, 1, 2, 3))


def _truthy(v: str) -> bool:
    return v.strip().lower() in ("t", "true", "on", "yes", "1")


def apply_cluster_rows(state: SiteState, text: str, site: SiteSettings) -> None:
    for r in rows(text):
        tag = r[0]
        if tag == "db" and len(r) >= 4:
            state.databases[r[1]] = _truthy(r[2])
        elif tag == "preload" and len(r) >= 4:
            state.preload, state.preload_source, state.preload_sourcefile = r[1], r[2], r[3]
        elif tag == "file" and len(r) >= 5:
            line = int(r[2]) if r[2].isdigit() else 0
            state.preload_files.append((r[1], line, r[3]))
        elif tag == "ext" and len(r) >= 2:
            state.extension["postgres"] = True
        elif tag == "now" and len(r) >= 2 and r[1].isdigit():
            state.now = float(r[1])
    state.extension.setdefault("postgres", False)


def apply_db_rows(state: SiteState, text: str) -> None:
    for r in rows(text):
        tag = r[0]
        if tag == "ext":
            state.extension[state_db(state)] = True
        elif tag == "rel" and len(r) >= 4:
            state.relations[r[1]] = (r[2], int(r[3]) if r[3].isdigit() else 0)
        elif tag == "tables" and r[1].isdigit():
            state.table_count = int(r[1])
        elif tag == "tables_all" and r[1].isdigit():
            state.table_count_all = int(r[1])
        elif tag == "size" and r[1].isdigit():
            state.db_size = int(r[1])
        elif tag == "evt" and len(r) >= 3:
            state.event_triggers.append((r[1], r[2]))
        elif tag == "tscol" and not state.ts_column:
            state.ts_column = r[1]


def state_db(state: SiteState) -> str:
    return getattr(state, "_db_name", "netmon")


def apply_tsdb_rows(state: SiteState, text: str) -> None:
    for r in rows(text):
        if r[0] == "hyper" and len(r) >= 2:
            state.hypertables.append(r[1])
            if len(r) >= 3 and _truthy(r[2]):
                state.compressed.append(r[1])
        elif r[0] == "cagg" and len(r) >= 2:
            state.caggs.append(r[1])
        elif r[0] == "jobfail" and len(r) >= 2 and r[1].isdigit():
            state.failed_jobs = int(r[1])


def apply_host_lines(state: SiteState, text: str) -> None:
    for line in (text or "").splitlines():
        key, _, value = line.partition("=")
        if key == "docker":
            state.docker = value == "yes"
        elif key == "app":
            state.app_dir = value == "yes"
        elif key == "compose_file":
            state.compose_file = True
        elif key == "now" and value.isdigit():
            state.now = float(value)
        elif key == "backup_free_kb" and value.isdigit():
            state.backup_free_kb = int(value)
        elif key == "backup":
            size, mtime, sha, path = value.split("|", 3)
            state.backups.append(Backup(path, int(size), 0.0, sha == "sha"))
            state.backups[-1].age = float(mtime)  # epoch for now; made an age below
        elif key == "file":
            state.files.append(value)
        elif key == "mentions":
            state.mentions.append(value)
        elif key == "qa":
            state.qa_check = True
        elif key == "git":
            state.git = True
    for b in state.backups:
        b.age = max(0.0, state.now - b.age) if state.now else 0.0


def apply_git_lines(state: SiteState, text: str) -> None:
    for line in (text or "").splitlines():
        key, _, value = line.partition("=")
        if key == "head":
            state.git_head = value.strip()
        elif key == "dirty":
            state.git_dirty.append(value[3:].strip() if len(value) > 3 else value.strip())
        elif key == "rev":
            rev, _, kind = value.partition(" ")
            state.git_history.append((rev, kind.strip()))


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


# --- the probe run --------------------------------------------------------------------------

def probe_site(runner, site: SiteSettings, deep: bool = False) -> SiteState:
    """Run every read-only probe; ``deep`` adds the status-only ones (flow age, backend log)."""
    state = SiteState()
    state._db_name = site.db_name
    out = runner.run(host_probe(site))
    apply_host_lines(state, out.stdout)
    if not state.docker or not state.app_dir:
        return state
    if state.compose_file:
        out = runner.run(cat_file(site, "docker-compose.yml"))
        state.compose_text = out.stdout if out.ok else ""
        db = compose_db_service(state.compose_text)
        state.db_image = str(db.get("image", ""))
        cmd = db.get("command", "")
        state.db_command = " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd or "")
    if state.git:
        apply_git_lines(state, runner.run(git_probe(site)).stdout)
    out = runner.run(ps_probe(site))
    try:
        state.ps = parse_compose_ps(out.stdout)
    except ValueError:
        state.ps = []
    out = runner.run(inspect_probe(site))
    state.containers = parse_inspect(out.stdout)
    if state.container(site.db_container).status != "running":
        state.db_error = f"container {site.db_container} is {state.container(site.db_container).status}"
        return state
    out = runner.run(Command(cmds.psql(site, *CLUSTER_SQL, db="postgres"), what="cluster probe", changes=False,
                             ok_codes=(0, 1, 2)))
    if not out.ok:
        state.db_error = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["database does not answer"]
        state.db_error = state.db_error[0]
        return state
    state.db_answers = True
    apply_cluster_rows(state, out.stdout, site)
    if state.databases.get("template1", False):
        out = runner.run(Command(cmds.psql(site, "SELECT 'ext', extname FROM pg_extension WHERE extname = 'timescaledb'",
                                           db="template1"), what="template1 probe", changes=False, ok_codes=(0, 1, 2)))
        state.extension["template1"] = "timescaledb" in out.stdout
    for name in state.databases:
        if name.startswith(("netmon_restore_", "netmon_old_")):
            state.extension.setdefault(name, None)
    if site.db_name in state.databases:
        out = runner.run(Command(cmds.psql(site, *db_sql(), db=site.db_name), what="database probe",
                                 changes=False, ok_codes=(0, 1, 2)))
        state.extension[site.db_name] = False
        apply_db_rows(state, out.stdout)
        if state.extension.get(site.db_name):
            apply_tsdb_rows(state, runner.run(psql_lenient(site, TSDB_SQL, site.db_name)).stdout)
        # a continuous aggregate shows up as a view (or matview); record it as one
        rel = state.relations.get("flow_summary_5m")
        if rel and rel[0] in ("v", "m") and "flow_summary_5m" not in state.caggs:
            state.caggs.append("flow_summary_5m")
    out = runner.run(Command(cmds.dexec(site, "df", "-Pk", "/var/lib/postgresql/data") + " | awk 'NR==2{print $4}'",
                             what="database disk", changes=False, ok_codes=(0, 1, 126, 127)))
    if out.stdout.strip().isdigit():
        state.db_free_kb = int(out.stdout.strip())
    if deep:
        deep_probes(runner, site, state)
    return state


def deep_probes(runner, site: SiteSettings, state: SiteState) -> None:
    if state.db_answers and state.ts_column:
        col = cmds.ident(state.ts_column)
        sql = f"SELECT 'age', coalesce(extract(epoch FROM now() - max({col}))::bigint::text, '') FROM flow_records"  # noqa: S608
        out = runner.run(Command(cmds.psql(site, sql),
                                 what="newest flow", changes=False, ok_codes=(0, 1, 2)))
        if out.ok:
            for r in rows(out.stdout):
                if r[0] == "age" and len(r) > 1 and r[1].lstrip("-").isdigit():
                    state.flow_age = float(r[1])
        else:
            state.flow_query_error = (out.stderr.strip().splitlines() or ["error"])[-1]
    out = runner.run(Command(cmds.compose(site, "logs", "--tail=200", "backend"), what="backend log",
                             changes=False, ok_codes=(0, 1)))
    state.backend_log = out.stdout
