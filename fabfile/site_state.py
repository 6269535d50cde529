"""The state of a server, assembled in one place from the facts (fabfile/facts/) that the probe's two
remote commands read: :func:`probe_site` runs the host script, then, when the database container
runs, the database script, and changes nothing. A fact that could not be read is named in
``SiteState.unknown`` with its reason, never left looking empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .commands import Command, q
from .errors import PreflightError
from .facts import compose, docker, git, host, postgres
from .facts.compose import backend_log_part, command_preloads, is_timescale_image
from .facts.docker import Container
from .facts.git import pre_migration_rev
from .facts.host import DUMP_PREFIX, Backup
from .facts.parts import Extra, Unknown, host_part, keyed, reason, split_parts, with_parts
from .facts.postgres import FLOW_TABLES, OLD_PREFIX, SIDE_PREFIX, age_part, db_probe, ext_count, has_timescaledb
from .inventory import SiteSettings


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
    qa_failed: str | None = None  # status: how scripts/qa_check.sh failed (None: it passed, or did not run)
    now: float = 0.0
    backend_log: str = ""
    db_name: str = "netmon"
    partials: list[str] = field(default_factory=list)  # stale .partial files in backup_dir
    plain_image: bool | None = None  # is the plain image on the server?
    timescale_image: bool | None = None  # and the TimescaleDB image (site.timescale_image)?
    build_services: list[str] = field(default_factory=list)  # compose services with build:
    lock: str = ""  # "held <holder json>" or "free" ("": unknown)
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
        return self.containers.get(name, Container(name, "unknown" if "containers" in self.unknown else "missing"))

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
        return pre_migration_rev(self.git_history)


# --- the host script ------------------------------------------------------------------------

def host_probe(site: SiteSettings, extra: Extra | None = None) -> Command:
    """Every host fact in one shell script, each fact's lines in turn (the first is the docker
    check, after which a task's parts start: :func:`~fabfile.facts.parts.with_parts`)."""
    script = "\n".join([
        host.presence_script(site),
        compose.file_script(site),
        host.clock_script(site),
        host.backups_script(site),
        host.app_files_script(site),
        git.script(site),
        host.lock_script(site),
        host.journal_script(site),
        docker.image_script("plain_image", site.plain_image),
        docker.image_script("timescale_image", site.timescale_image),
        compose.ps_script(site),
        docker.inspect_script(site),
    ])
    extra = extra or Extra()
    return Command("sh -c " + q(with_parts(script, extra)), what="host probe", changes=False,
                   stdin=extra.stdin, stdin_note=extra.stdin_note)


def _known(state: SiteState, fact: str, value):
    """``value``, or None with ``fact`` recorded as unknown when it is :class:`Unknown`."""
    if isinstance(value, Unknown):
        state.unknown[fact] = value.reason
        return None
    return value


def apply_host_lines(state: SiteState, text: str) -> None:
    """The host script's output → the host's facts."""
    kv = keyed(text)
    state.docker, state.app_dir = host.parse_presence(kv)
    text_of_compose = compose.parse_file(kv)
    state.compose_file = text_of_compose is not None
    state.compose_text = _known(state, "compose", text_of_compose) or ""
    state.now = _known(state, "clock", host.parse_clock(kv)) or 0.0
    state.backup_free_kb, state.backups, state.partials = _known(state, "backups", host.parse_backups(kv, state.now)) \
        or (None, [], [])
    state.files, state.mentions, state.qa_check = _known(state, "files", host.parse_app_files(kv)) or ([], [], False)
    state.git, state.git_head, state.git_dirty, state.git_history = _known(state, "git", git.parse(kv)) or (False, "", [], [])
    state.lock = _known(state, "lock", host.parse_lock(kv)) or ""
    state.journal = _known(state, "journal", host.parse_journal(kv)) or []
    state.plain_image = _known(state, "plain_image", docker.parse_image(kv, "plain_image"))
    state.timescale_image = _known(state, "timescale_image", docker.parse_image(kv, "timescale_image"))
    state.ps = _known(state, "ps", compose.parse_ps(kv, state.app_dir)) or []
    state.containers = _known(state, "containers", docker.parse_containers(kv)) or {}
    if state.compose_text:
        state.db_image, state.db_command, state.build_services = compose.parse_services(state.compose_text)


# --- the database script --------------------------------------------------------------------

def apply_tsdb_rows(state: SiteState, lines: list[str]) -> None:
    """TimescaleDB's catalog rows → the state's hypertables, aggregates and jobs."""
    tsdb = postgres.parse_tsdb(lines)
    state.hypertables += tsdb.pop("hypertables")
    state.compressed += tsdb.pop("compressed")
    state.caggs += tsdb.pop("caggs")
    vars(state).update(tsdb)


def apply_db_probe(state: SiteState, text: str) -> None:
    """The database probe's output → facts; a part that failed makes its facts unknown."""
    parts = split_parts(text)
    state.db_error = postgres.ready_error(parts.get("ready", (None, []))[0])
    state.db_answers = not state.db_error
    if not state.db_answers:
        return
    code, lines = parts.get("cluster", (None, []))
    if code != 0:
        why = reason(lines, code)
        for fact in ("databases", "preload", "ext:postgres", "ext:template1", "app", "tsdb"):
            state.unknown[fact] = f"no database lets the probe in ({why})"
        return
    cluster = postgres.parse_cluster(lines)
    state.databases.update(cluster["databases"])
    if "preload" in cluster:
        state.preload, state.preload_source, state.preload_sourcefile = cluster["preload"]
    state.preload_files += cluster["preload_files"]
    state.now = cluster.get("now", state.now)
    for db in ("postgres", "template1"):
        if db not in state.databases:
            continue
        code, lines = parts.get(f"ext:{db}", (None, []))
        has = ext_count(lines) if code == 0 else None
        if has is None:
            why = (f"it does not allow connections: ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true" if not state.databases[db]
                   else reason(lines, code))
            state.unknown[f"ext:{db}"] = f"cannot read database {db} ({why})"
        state.extension[db] = has
    if state.db_name not in state.databases:
        return
    code, lines = parts.get("app", (None, []))
    has = ext_count(lines) if code == 0 else None
    state.extension[state.db_name] = has
    if has is None:
        why = "it does not allow connections" if not state.databases[state.db_name] else reason(lines, code)
        state.unknown["app"] = f"cannot read database {state.db_name} ({why})"
        return
    app = postgres.parse_app(lines)
    state.relations.update(app.pop("relations"))
    state.ts_column = app.pop("ts_column", state.ts_column)
    vars(state).update(app)
    if has:
        code, lines = parts.get("tsdb", (None, []))
        if code != 0:
            state.unknown["tsdb"] = f"cannot read TimescaleDB's catalog in {state.db_name} ({reason(lines, code)})"
        else:
            apply_tsdb_rows(state, lines)
    free = postgres.parse_df(parts.get("df", (None, []))[1])
    state.db_free_kb = state.db_free_kb if free is None else free
    # a continuous aggregate shows up as a view (or matview); record it as one
    rel = state.relations.get("flow_summary_5m")
    if rel and rel[0] in ("v", "m") and "flow_summary_5m" not in state.caggs:
        state.caggs.append("flow_summary_5m")


def apply_age(state: SiteState, part: tuple[int | None, list[str]] | None) -> None:
    """The newest flow's age (status), when the app database was read; a failed query is named."""
    if not state.db_answers or not state.known("app") or part is None:
        return
    code, lines = part
    if code != 0:
        state.flow_query_error = reason(lines, code)
        return
    age = postgres.parse_age(lines)
    state.flow_age = state.flow_age if age is None else age


# --- queries of the state -------------------------------------------------------------------

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
        extra.host += [backend_log_part(site, 200), host.qa_part(site)]
        extra.db.append(age_part(site))
    out = runner.run(host_probe(site, extra))
    if not out.ok:
        raise PreflightError(f"the host probe failed on {runner.site} (exit {out.exited}: "
                             f"{(out.stderr or out.stdout).strip()[-200:]}) — check the SSH user's shell")
    state.outputs["host"] = out.stdout
    apply_host_lines(state, out.stdout)
    if deep:
        state.backend_log = "\n".join(host_part(out.stdout, "log")[1])
        if state.qa_check:
            state.qa_failed = _known(state, "qa", host.parse_qa(*host_part(out.stdout, "qa")))
    if not state.docker or not state.app_dir:
        return state
    if "containers" in state.unknown:
        state.db_error = f"the state of {site.db_container} is unknown"
        state.unknown["db"] = state.unknown["containers"]
        return state
    db = state.container(site.db_container)
    if db.status != "running":
        state.db_error = f"container {site.db_container} is {db.status}"
        return state
    out = runner.run(db_probe(site, extra))
    if "@@ready" not in out.stdout:
        refused = docker.exec_refused(out.stderr or out.stdout)
        if refused:
            state.db_error = f"container {site.db_container} is {refused}"
            return state
        state.db_error = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["docker exec failed"]
        state.db_error = state.db_error[0][:200]
        state.unknown["db"] = f"docker exec into {site.db_container} failed ({state.db_error})"
        return state
    state.outputs["db"] = out.stdout
    apply_db_probe(state, out.stdout)
    if deep:
        apply_age(state, split_parts(out.stdout).get("age"))
    return state
