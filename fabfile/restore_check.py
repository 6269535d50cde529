"""``fab restore-check DUMP``: prove on the server that a dump restores on the plain PostgreSQL image
with ``pg_restore`` alone, holding every row it says it holds.

The restore runs in a throwaway container of ``site.plain_image`` (its own volume, no published
port, so trust authentication needs no password and reaches nothing), never in the live database;
the container and its volume are removed at the end, also when a step fails.
"""

from __future__ import annotations

from . import commands as cmds
from .commands import Command, q
from .database import count_sql
from .dumps import sealed_probe, utc_stamp
from .errors import InputError
from .facts.dumps import parse_readback, restore_errors
from .facts.parts import rows
from .inventory import SiteSettings
from .procedures import HostResult, _guard, session
from .report import Printer, table

CHECK_DB = "restore_check"
READY_SECONDS = 60


def throwaway_names(ts: str) -> tuple[str, str]:
    """(container, volume) of one restore-check run."""
    return f"netmon-restore-check-{ts}", f"netmon_restore_check_{ts}"


def remove_commands(container: str, volume: str) -> list[Command]:
    """Remove the throwaway container and its volume; neither being there is no error."""
    return [Command(f"docker rm -f {q(container)}", what=f"remove throwaway container {container}"),
            Command(f"docker volume rm -f {q(volume)}", what=f"remove throwaway volume {volume}")]


def start_commands(site: SiteSettings, container: str, volume: str) -> list[Command]:
    """Start the plain image on a volume of its own and wait until it takes TCP connections (the
    image's init server listens on its socket only: TCP answers once initialisation is over)."""
    run = (f"docker run -d --rm --name {q(container)} -e POSTGRES_HOST_AUTH_METHOD=trust "
           f"-v {q(volume + ':/var/lib/postgresql/data')} {q(site.plain_image)}")
    ready = cmds.dexec(site, "pg_isready", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", container=container)
    return [Command(run, what=f"start a throwaway {site.plain_image} container {container}"),
            Command(ready, what=f"wait for {container} to accept connections", poll=READY_SECONDS, changes=False)]


def check_psql(site: SiteSettings, container: str, sql: str, db: str = CHECK_DB) -> str:
    return cmds.dexec(site, "psql", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-X", "-tA", "-F", "|",
                      "-c", sql, container=container)


def restore_command(site: SiteSettings, container: str, path: str) -> Command:
    """pg_restore alone, from the host file on stdin (owners and grants are the site's roles, which
    a fresh cluster lacks: --no-owner --no-privileges, as the restore mode runs it)."""
    inner = cmds.dexec(site, "pg_restore", "-U", "postgres", "-d", CHECK_DB, "--no-owner", "--no-privileges",
                       stdin=True, container=container)
    return Command(f"{inner} < {q(path)} 2>&1", what=f"pg_restore {path} into {CHECK_DB}", ok_codes=(0, 1),
                   timeout=site.command_timeout)


def compare(expected: dict[str, int], output: str) -> tuple[list[list], list[str]]:
    """Rows for the table (table, in the dump, restored, verdict) and the mismatches, in words."""
    got = {r[0]: int(r[1]) for r in rows(output) if len(r) >= 2 and r[1].isdigit()}
    lines, problems = [], []
    for name, n in sorted(expected.items()):
        restored = got.get(name)
        ok = restored == n
        lines.append([name, n, "missing" if restored is None else restored, "ok" if ok else "MISMATCH"])
        if not ok:
            problems.append(f"table {name} is missing after the restore" if restored is None
                            else f"table {name} has {restored} rows after the restore, the dump holds {n}")
    return lines, problems


def restore_check(runner, site: SiteSettings, path: str, ts: str | None = None) -> tuple[bool, str, list[list]]:
    """(passed, one-line verdict, table rows). Raises :class:`InputError` when there is no such file."""
    out = runner.run(Command(f"test -f {q(path)}", what="dump exists", changes=False, ok_codes=(0, 1)))
    if not out.ok:
        raise InputError(f"{path} not found on {runner.site} — give an existing dump file")
    sidecar = runner.run(Command(f"test -f {q(path + '.sha256')}", what="sha256 file", changes=False, ok_codes=(0, 1)))
    if sidecar.ok:
        if not runner.run(sealed_probe(path)).ok:
            return False, f"{path} does not match its recorded sha256 — it changed since it was written", []
    container, volume = throwaway_names(ts or utc_stamp())
    try:
        for command in remove_commands(container, volume) + start_commands(site, container, volume):
            runner.must(command)
        out = runner.run(Command(cmds.dump_readback(site, path, container=container), what=f"read {path} back whole",
                                 changes=False, timeout=site.command_timeout))
        readback = parse_readback(out.stdout, out.stderr)
        if not readback.ok:
            reason = (readback.errors or ["it ends in the middle of a table"])[0]
            return False, f"{path} is truncated or damaged ({reason})", []
        runner.must(Command(check_psql(site, container, f"CREATE DATABASE {CHECK_DB} TEMPLATE template0", db="postgres"),
                            what=f"create {CHECK_DB} from template0"))
        out = runner.run(restore_command(site, container, path))
        errors = restore_errors(out.stdout, out.stderr, out.exited)
        if errors:
            detail = f"{errors[0]}; first: {errors[1]}" if len(errors) > 1 else errors[0]
            return False, f"{path} does not restore on {site.plain_image} with pg_restore alone: {detail}", []
        for name in readback.counts:
            cmds.qualified(name)  # every table name must be a plain identifier
        out = runner.must(Command(check_psql(site, container, count_sql(list(readback.counts))),
                                  what="count every table's rows", timeout=site.command_timeout))
        lines, problems = compare(readback.counts, out.stdout)
        if problems:
            return False, f"{path}: {problems[0]} ({len(problems)} table(s) differ)", lines
        total = sum(readback.counts.values())
        return True, (f"{path} restores on {site.plain_image} with pg_restore alone: {len(lines)} tables, "
                      f"{total} rows, every count matches the dump"), lines
    finally:
        for command in remove_commands(container, volume):
            runner.run(command)


def restore_check_site(c, site: SiteSettings, dump: str, printer: Printer | None = None) -> HostResult:
    """The per-host procedure of ``fab restore-check``: a HostResult, failed on any mismatch."""
    def body() -> HostResult:
        runner = session(c, site, "restore-check", printer)
        path = dump if dump.startswith("/") else f"{site.backup_dir}/{dump}"
        runner.step = "restore-check"
        runner.printer.progress(f"restore {path} into a throwaway {site.plain_image} container")
        ok, verdict, lines = restore_check(runner, site, path)
        if lines:
            runner.printer.block(table(lines, ["table", "in the dump", "restored", ""]))
        if not ok:
            return HostResult(runner.site, "restore-check", False, error=f"restore-check failed: {verdict}", code=1,
                              next_step="take a new copy (fab backup) and check it", audit_log=str(runner.audit.path))
        runner.printer.line(f"restore-check passed: {verdict}")
        return HostResult(runner.site, "restore-check", True, summary=verdict, audit_log=str(runner.audit.path))
    return _guard("restore-check", site, printer, body)
