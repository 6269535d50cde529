"""Making, checking, checksumming and copying pg_dump archives.

A dump is written under a temporary name (``.<name>.partial``, which no glob of the tool matches),
read back whole (every data block, rows counted per table), its TOC listed, its sha256 recorded
beside it (``<name>.sha256``), and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import commands as cmds
from .commands import Command, Expect, ident, literal, q
from .errors import CommandFailed, InputError, PreflightError
from .expect import seal_output
from .facts.dumps import Readback, TocEntry, parse_readback, parse_toc, toc_problems
from .facts.parts import db_part, split_parts
from .facts.postgres import EXT_SQL, TSDB_SQL, ext_count
from .inventory import SiteSettings
from .site_state import SiteState, apply_tsdb_rows


def utc_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S")


def partial_name(final_path: str) -> str:
    directory, _, base = final_path.rpartition("/")
    return f"{directory}/.{base}.partial"


@dataclass
class DumpInfo:
    path: str
    size: int | None = None
    sha256: str = ""
    toc: list[TocEntry] = field(default_factory=list)
    readback: Readback = field(default_factory=Readback)

    @property
    def tables(self) -> list[str]:
        return [f"{e.schema}.{e.name}" for e in self.toc if e.kind == "TABLE"]

    @property
    def counts(self) -> dict[str, int]:
        return self.readback.counts


#: scratch databases of portable copies (dropped at the end of each copy; a rerun drops leftovers)
PORTABLE_PREFIX = "netmon_portable_"
#: the convert toolkit's schema (fabfile/convert.py), never part of a copy
TOOLKIT_SCHEMA = "netmon_rollback"
#: what a portable copy leaves out of a ``pg_restore -l`` listing: TimescaleDB's extension, its schemas
#: and everything in them (chunks, their indexes and defaults), the insert blocker its hypertables and
#: caggs carry; the convert toolkit's schema and the triggers it puts on hypertables.
TSDB_TOC = rf"timescaledb|ts_insert_blocker|ts_cagg_invalidation_trigger|{TOOLKIT_SCHEMA}"
#: the application's own DDL for the summary table a continuous aggregate replaced (its main.py)
SUMMARY_DDL = {
    "flow_summary_5m": ("bucket timestamptz, device_id integer, src_ip inet, dst_ip inet, protocol smallint, "
                        "bytes bigint, packets bigint, flow_count bigint, "
                        "PRIMARY KEY (bucket, device_id, src_ip, dst_ip, protocol)",
                        "bucket, device_id, src_ip, dst_ip, protocol, bytes::bigint, packets::bigint, "
                        "flow_count::bigint"),
}


def portable_args(state: SiteState, where: str = "the server") -> dict:
    """The probed facts :func:`make_dump_commands` needs for a copy of the app database:
    ``make_dump_commands(site, final, what=..., **portable_args(state))``. Refuses when the database
    holds TimescaleDB but its catalog could not be read: the copy would miss the hypertables' rows."""
    has = state.extension.get(state.db_name)
    if (has is None and state.db_name in state.databases) or (has and not state.known("tsdb")):
        raise PreflightError(f"cannot tell which tables of {state.db_name} on {where} are hypertables "
                             f"({state.why('app', 'tsdb') or 'extension unknown'}) — a copy would miss their rows; "
                             "nothing was changed")
    return {"timescaledb": bool(has), "hypertables": list(state.hypertables), "caggs": list(state.caggs),
            "stale": sorted(d for d in state.databases if d.startswith(PORTABLE_PREFIX))}


def probe_portable(runner, site: SiteSettings, db: str) -> dict:
    """:func:`portable_args` for any database ``db`` (e.g. one a restore kept, which the site probe
    does not read): its extension, hypertables and continuous aggregates, read now."""
    out = runner.must(Command(cmds.psql(site, EXT_SQL, db=db), what=f"does {db} hold TimescaleDB", changes=False))
    state = SiteState(db_name=db, databases={db: True}, extension={db: ext_count(out.stdout.splitlines())})
    if state.extension[db]:
        out = runner.must(Command(cmds.psql(site, *TSDB_SQL, db=db), what=f"TimescaleDB's catalog in {db}",
                                  changes=False))
        apply_tsdb_rows(state, out.stdout.splitlines())
    return portable_args(state, runner.site)


def portable_disk_need(state: SiteState) -> int:
    """Bytes a portable copy needs on the database volume beyond today's dump: the scratch database
    holds about what the database holds (``state.db_size``), 0 when the copy is a plain pg_dump."""
    if not (state.extension.get(state.db_name) or state.hypertables or state.caggs):
        return 0
    return state.db_size or 0


def scratch_name(final_path: str) -> str:
    """``…/netmon_pre_rollback_20261201_101500.dump`` → ``netmon_portable_20261201_101500``."""
    base = final_path.rpartition("/")[2]
    m = re.search(r"\d{8}_\d{6}", base)
    tag = m.group(0) if m else hashlib.sha256(final_path.encode()).hexdigest()[:12]
    return PORTABLE_PREFIX + tag


def make_dump_commands(site: SiteSettings, final_path: str, db: str | None = None, what: str = "dump",
                       timescaledb: bool = False, hypertables: Sequence[str] = (), caggs: Sequence[str] = (),
                       stale: Sequence[str] = ()) -> list[Command]:
    """pg_dump to a temporary name, read it back whole, list it, seal it (sha256, rename).
    The temporary file is unlinked first: a pg_dump left running by a run that died writes on
    into its own, unlinked file, never into this one.

    A database that holds TimescaleDB (``timescaledb``, ``hypertables``, ``caggs``: probed facts,
    see :func:`portable_args`) is first copied into a scratch database without it, so the dump
    restores on the plain image with pg_restore alone (:func:`portable_commands`)."""
    tmp = partial_name(final_path)
    source = db or site.db_name
    portable = bool(timescaledb or hypertables or caggs)
    scratch = scratch_name(final_path) if portable else source
    commands = portable_commands(site, source, scratch, hypertables, caggs, stale) if portable else []
    commands += [
        Command(f"rm -f {q(tmp)} && " + cmds.pg_dump_to(site, tmp, db=scratch), what=f"pg_dump {scratch} to {tmp}",
                timeout=site.command_timeout),
        Command(cmds.dump_readback(site, tmp), what=f"read {tmp} back whole", check=Expect("readback", f"{what} {tmp}"),
                timeout=site.command_timeout),
        Command(cmds.dump_list(site, tmp), what=f"list {tmp}", check=Expect("toc", f"{what} {tmp}")),
        Command(cmds.seal_dump(tmp, final_path), what=f"record sha256 and rename to {final_path}",
                check=Expect("seal", final_path)),
    ]
    if portable:
        commands += drop_scratch_commands(site, [scratch], "drop the scratch database of the portable copy")
    return commands


def drop_scratch_commands(site: SiteSettings, names: Sequence[str], what: str) -> list[Command]:
    """Drop scratch databases and their files in the container (WITH FORCE: a copy that died may
    still hold a connection)."""
    out = []
    for name in names:
        out.append(Command(cmds.psql(site, f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)", db="postgres"),
                           what=f"{what} ({name})"))
        out.append(Command(cmds.dexec(site, "rm", "-f", *scratch_files(name).values()),
                           what=f"{what} ({name}): its files in the container"))
    return out


def scratch_files(scratch: str) -> dict[str, str]:
    """The portable copy's work files, in the db container's private /tmp."""
    return {"src": f"/tmp/{scratch}.src", "toc": f"/tmp/{scratch}.toc", "list": f"/tmp/{scratch}.list"}  # noqa: S108


def pipe_into(site: SiteSettings, source: str, read_sql: str, scratch: str, *write_sql: str) -> str:
    """What ``read_sql`` prints in ``source`` fed to psql in ``scratch`` (``write_sql`` first as -c,
    else the input is SQL); pipefail: a read that fails half way fails the command."""
    read = cmds.psql(site, read_sql, db=source)
    args = ["psql", "-U", site.db_user, "-d", scratch, "-v", "ON_ERROR_STOP=1", "-X", "-q"]
    for stmt in write_sql:
        args += ["-c", stmt]
    return f"bash -o pipefail -c {q(read + ' | ' + cmds.dexec(site, *args, stdin=True))}"


def copy_rows(site: SiteSettings, source: str, scratch: str, table: str, select: str) -> str:
    """``COPY (select) TO STDOUT`` from ``source`` into ``COPY table FROM STDIN`` in ``scratch``, where
    no ordinary trigger fires (as pg_restore --disable-triggers)."""
    return pipe_into(site, source, f"COPY ({select}) TO STDOUT", scratch,
                     "SET session_replication_role = replica", f"COPY {table} FROM STDIN")


def portable_commands(site: SiteSettings, source: str, scratch: str, hypertables: Sequence[str],
                      caggs: Sequence[str], stale: Sequence[str] = ()) -> list[Command]:
    """Copy ``source`` into ``scratch`` without TimescaleDB, one command per thing that can fail:
    the schema and the plain tables' rows from pg_dump with TimescaleDB's entries filtered out of its
    listing (``pg_restore -L``), each hypertable's rows read through the hypertable (compressed chunks
    are readable only that way), each continuous aggregate as a plain table of what its view shows,
    then the indexes, constraints and triggers (post-data) over the filled tables."""
    files = scratch_files(scratch)
    for name in (*hypertables, *caggs):
        ident(name)  # every name validated before any command exists
    excluded = [f"--exclude-table-data={pattern}" for pattern in ("_timescaledb*.*", "timescaledb*.*",
                                                                  f"{TOOLKIT_SCHEMA}.*")]
    excluded += [f"--exclude-table-data=public.{n}" for n in (*hypertables, *caggs)]
    drop_toc = "|".join([TSDB_TOC, *(f"(^| ){n}( |$)" for n in caggs)])
    restore = ["pg_restore", "-U", site.db_user, "-d", scratch, "--exit-on-error", "-L", files["list"]]
    commands = drop_scratch_commands(site, sorted({*stale, scratch}), "drop what an earlier copy left")
    commands += [
        Command(cmds.psql(site, f"CREATE DATABASE {ident(scratch)} OWNER {ident(site.db_user)} TEMPLATE template0",
                          db="postgres"), what=f"create scratch database {scratch} from template0"),
        Command(cmds.dexec(site, "pg_dump", "-U", site.db_user, "-Fc", *excluded, "-f", files["src"], source),
                what=f"pg_dump {source}'s schema and plain tables' rows (no hypertable or chunk data)",
                timeout=site.command_timeout),
        Command(cmds.dexec(site, "sh", "-c", f"pg_restore -l -f {q(files['toc'])} {q(files['src'])} && "
                           f"grep -v -E {q(drop_toc)} {q(files['toc'])} > {q(files['list'])}"),
                what="list that dump without TimescaleDB's entries"),
        Command(cmds.dexec(site, *restore, "--section=pre-data", "--section=data", files["src"]),
                what=f"restore the schema and the plain tables into {scratch}", timeout=site.command_timeout),
    ]
    for name in hypertables:
        table = f"public.{ident(name)}"
        commands.append(Command(copy_rows(site, source, scratch, table, f"SELECT * FROM {table}"),  # noqa: S608
                                what=f"copy hypertable {name}'s rows, read through the hypertable, into {scratch}",
                                timeout=site.command_timeout))
    for name in caggs:
        table = f"public.{ident(name)}"
        if name in SUMMARY_DDL:
            ddl, columns = SUMMARY_DDL[name]
            create = cmds.psql(site, f"CREATE TABLE {table} ({ddl})", db=scratch)
        else:  # no DDL of the application's: the view's own columns and types, as a plain table
            columns = "*"
            ddl_sql = (f"SELECT format('CREATE TABLE %s (%s);', {literal(table)}, string_agg(quote_ident(attname) "  # noqa: S608
                       "|| ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)) FROM pg_attribute "
                       f"WHERE attrelid = {literal(table)}::regclass AND attnum > 0 AND NOT attisdropped")
            create = pipe_into(site, source, ddl_sql, scratch)
        commands.append(Command(create, what=f"create {name} as a plain table in {scratch}"))
        commands.append(Command(copy_rows(site, source, scratch, table, f"SELECT {columns} FROM {table}"),  # noqa: S608
                                what=f"copy the rows continuous aggregate {name} shows into {scratch}",
                                timeout=site.command_timeout))
    # read after the rows: every id copied is below the value the copy's sequences carry
    setval = ("SELECT format('SELECT setval(%L, %s, %s);', format('%I.%I', schemaname, sequencename), last_value, "
              "'true') FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL")
    commands.append(Command(pipe_into(site, source, setval, scratch), what=f"carry the sequences' values into {scratch}"))
    commands.append(Command(cmds.dexec(site, *restore, "--section=post-data", files["src"]),
                            what=f"create the indexes, constraints and triggers in {scratch}",
                            timeout=site.command_timeout))
    return commands


def sealed_probe(path: str) -> Command:
    """Is ``path`` there and does it match the sha256 recorded beside it? (prints sha and size)"""
    directory, _, base = path.rpartition("/")
    script = (f"cd {q(directory or '/')} && sha256sum -c --status {q(base + '.sha256')} && "
              f"echo \"$(cut -d' ' -f1 {q(base + '.sha256')}) $(stat -c %s {q(base)})\"")
    return Command(script, what=f"is {path} sealed", changes=False)


def run_dump(runner, commands: list[Command], info: DumpInfo) -> DumpInfo:
    """Run :func:`make_dump_commands`' commands, filling ``info`` from what they print."""
    for command in commands:
        out = runner.must(command)
        kind = command.check.kind if command.check is not None else ""
        if kind == "readback":
            info.readback = parse_readback(out.stdout, out.stderr)
        elif kind == "toc":
            info.toc = parse_toc(out.stdout)
        elif kind == "seal":
            info.sha256, info.size = seal_output(out.stdout)
    return info


def archive_dbname(listing: str) -> str:
    """The database an archive was dumped from, as ``pg_restore -l``'s header names it (a portable
    copy names its scratch database, ``netmon_portable_*``)."""
    m = re.search(r"^;\s+dbname: (\S+)", listing or "", re.M)
    return m.group(1) if m else ""


CHECK_PARTS = ("size", "sidecar", "sha256", "list", "readback", "readback_err")


def check_script(site: SiteSettings, path: str) -> str:
    """Every read-only check of a dump file in one command (one round trip): its size, its recorded
    sha256, its sha256, its table of contents and a read-back of it whole, each a part of its own
    (``@@TAG`` … ``@@rc TAG N``, facts/parts.split_parts); the read-back's stderr (pg_restore's
    verdict) is a part apart, so a table whose name says "error" is not taken for one."""
    return "\n".join([
        "e=$(mktemp 2>/dev/null) || e=/tmp/.netmon-readback.$$",
        db_part("size", f"stat -c %s {q(path)}"),
        db_part("sidecar", f"cat {q(path + '.sha256')}"),
        db_part("sha256", cmds.sha256_of(path)),
        db_part("list", cmds.dump_list(site, path)),
        f"echo '@@readback'; {{ {cmds.dump_readback(site, path)}; }} 2>\"$e\"; echo \"@@rc readback $?\"",
        "echo '@@readback_err'; cat \"$e\"; echo \"@@rc readback_err $?\"; rm -f \"$e\"",
    ])


def check_dump(runner, site: SiteSettings, path: str, instead: str = "give another dump with --dump") -> DumpInfo:
    """Read-only: is ``path`` (on the server) a whole pg_dump archive fit to restore? One-line
    :class:`InputError` otherwise, ending with ``instead`` (what to do)."""
    info = DumpInfo(path)
    out = runner.run(Command(f"sh -c {q(check_script(site, path))}", what="dump checks (size, sha256, listing, read-back)",
                             changes=False, timeout=site.command_timeout))
    parts = split_parts(out.stdout)
    unread = [tag for tag in CHECK_PARTS if parts.get(tag, (None,))[0] is None]
    if unread:  # the script did not finish: what the dump is, is unknown
        detail = (out.stderr or out.stdout).strip().splitlines()
        why = detail[-1][:200] if detail else f"exit {out.exited}"
        raise PreflightError(f"could not check dump {path} on {runner.site} ({why}; unread: {', '.join(unread)}) — "
                             "nothing was changed; rerun")
    (size_rc, size), (side_rc, sidecar), (_, actual) = parts["size"], parts["sidecar"], parts["sha256"]
    if size_rc != 0 or not "".join(size).strip().isdigit():
        raise InputError(f"dump {path} not found on {runner.site} — give an existing file with --dump "
                         f"(backups live in {site.backup_dir})")
    info.size = int("".join(size).strip())
    # the recorded sha256 first: a file that changed since it was sealed is refused as such
    info.sha256 = " ".join(actual).split()[0] if parts["sha256"][0] == 0 and " ".join(actual).split() else ""
    if side_rc == 0 and " ".join(sidecar).split():
        recorded = " ".join(sidecar).split()[0]
        if recorded != info.sha256:
            raise InputError(f"{path} does not match its recorded sha256 ({path}.sha256: {recorded[:12]}…, "
                             f"file: {info.sha256[:12]}…) — it changed since it was written; {instead}")
    list_rc, listing_lines = parts["list"]
    listing = "\n".join(listing_lines) + "\n"
    info.toc = parse_toc(listing)
    if list_rc != 0 or not info.toc:
        reason = listing_lines[-1].strip() if listing_lines else "no table of contents"
        if "valid archive" in reason or "magic" in reason or "not appear" in reason:
            raise InputError(f"{path} is not a pg_dump archive — give a file made with pg_dump -Fc")
        raise InputError(f"{path} cannot be read as a pg_dump archive ({reason}) — {instead}")
    info.readback = parse_readback("\n".join(parts["readback"][1]), "\n".join(parts["readback_err"][1]))
    if not info.readback.ok:
        reason = (info.readback.errors or ["it ends in the middle of a table"])[0]
        raise InputError(f"{path} is truncated or damaged ({reason}) — {instead}")
    problems = toc_problems(info.toc)
    if archive_dbname(listing).startswith(PORTABLE_PREFIX):
        problems.insert(0, "it is a portable copy of a database that held TimescaleDB")
    if problems:
        raise InputError(f"{path} is not a pre-migration backup: {problems[0]} (taken after the migration?) — {instead}")
    for table in info.counts:
        cmds.qualified(table)  # every table name must be a plain identifier
    return info


def check_dump_file(runner, path: str, instead: str) -> None:
    """Read-only, without the database: the file is there, matches its recorded sha256 and starts
    like a pg_dump archive (for the fallback, whose database cannot read it yet)."""
    out = runner.run(Command(f"test -f {q(path)} && head -c 5 {q(path)}", what="dump header", changes=False,
                             ok_codes=(0, 1)))
    if not out.ok:
        raise InputError(f"dump {path} not found on {runner.site} — give an existing file with --dump")
    if out.stdout != "PGDMP":
        raise InputError(f"{path} is not a pg_dump archive — give a file made with pg_dump -Fc")
    sealed = runner.run(sealed_probe(path))
    missing = runner.run(Command(f"test -f {q(path + '.sha256')}", what="sha256 file", changes=False, ok_codes=(0, 1)))
    if missing.ok and not sealed.ok:
        raise InputError(f"{path} does not match its recorded sha256 — it changed since it was written; {instead}")


# --- copying --------------------------------------------------------------------------------

def local_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remote_sha256(runner, path: str) -> str:
    out = runner.must(Command(cmds.sha256_of(path), what=f"sha256 of {path}", changes=False))
    return out.stdout.split()[0]


def fetch(runner, remote_path: str, local_dir: Path) -> tuple[Path, str]:
    """Copy a dump from the server to ``local_dir``; the sha256 must match at both ends."""
    local_dir.mkdir(parents=True, exist_ok=True)
    target = local_dir / remote_path.rsplit("/", 1)[-1]
    expected = remote_sha256(runner, remote_path)
    partial = target.with_name(f".{target.name}.partial")
    runner.c.get(remote_path, local=str(partial))
    got = local_sha256(partial)
    if got != expected:
        partial.unlink(missing_ok=True)
        raise CommandFailed(f"copy of {remote_path} arrived damaged (sha256 {got[:12]}… ≠ {expected[:12]}…) — retry")
    partial.rename(target)
    target.with_name(target.name + ".sha256").write_text(f"{expected}  {target.name}\n")
    return target, expected


def push(runner, local_path: Path, remote_dir: str) -> tuple[str, str]:
    """Copy a local dump to ``remote_dir`` on the server; sha256 checked there, sidecar written."""
    if not local_path.is_file():
        raise InputError(f"{local_path} not found — give an existing dump file")
    expected = local_sha256(local_path)
    final = f"{remote_dir.rstrip('/')}/{local_path.name}"
    tmp = partial_name(final)
    runner.c.put(str(local_path), remote=tmp)
    got = remote_sha256(runner, tmp)
    if got != expected:
        runner.run(Command(f"rm -f {q(tmp)}", what="remove damaged copy"))
        raise CommandFailed(f"copy of {local_path} arrived damaged on {runner.site} — retry")
    runner.must(Command(cmds.seal_dump(tmp, final), what=f"record sha256 and rename to {final}"))
    return final, expected
