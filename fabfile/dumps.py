"""Making, checking, checksumming and copying pg_dump archives.

A dump is written under a temporary name (``.<name>.partial``, which no glob of the tool matches),
read back whole (every data block, rows counted per table), its TOC listed, its sha256 recorded
beside it (``<name>.sha256``), and only then renamed into place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import commands as cmds
from .commands import Command, q
from .errors import CommandFailed, InputError
from .expect import Expect, seal_output
from .inventory import SiteSettings
from .probes import Readback, TocEntry, parse_readback, parse_toc, toc_problems


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


def make_dump_commands(site: SiteSettings, final_path: str, db: str | None = None, what: str = "dump") -> list[Command]:
    """pg_dump to a temporary name, read it back whole, list it, seal it (sha256, rename).
    The temporary file is unlinked first: a pg_dump left running by a run that died writes on
    into its own, unlinked file, never into this one."""
    tmp = partial_name(final_path)
    return [
        Command(f"rm -f {q(tmp)} && " + cmds.pg_dump_to(site, tmp, db=db), what=f"pg_dump {db or site.db_name} to {tmp}",
                timeout=site.command_timeout),
        Command(cmds.dump_readback(site, tmp), what=f"read {tmp} back whole", check=Expect("readback", f"{what} {tmp}"),
                timeout=site.command_timeout),
        Command(cmds.dump_list(site, tmp), what=f"list {tmp}", check=Expect("toc", f"{what} {tmp}")),
        Command(cmds.seal_dump(tmp, final_path), what=f"record sha256 and rename to {final_path}",
                check=Expect("seal", final_path)),
    ]


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


def check_dump(runner, site: SiteSettings, path: str, instead: str = "give another dump with --dump") -> DumpInfo:
    """Read-only: is ``path`` (on the server) a whole pg_dump archive fit to restore? One-line
    :class:`InputError` otherwise, ending with ``instead`` (what to do)."""
    info = DumpInfo(path)
    out = runner.run(Command(f"stat -c %s {q(path)}", what="dump size", changes=False, ok_codes=(0, 1)))
    if not out.ok or not out.stdout.strip().isdigit():
        raise InputError(f"dump {path} not found on {runner.site} — give an existing file with --dump "
                         f"(backups live in {site.backup_dir})")
    info.size = int(out.stdout.strip())
    # the recorded sha256 first: a file that changed since it was sealed is refused as such
    sidecar = runner.run(Command(f"cat {q(path + '.sha256')}", what="recorded sha256", changes=False, ok_codes=(0, 1)))
    actual = runner.run(Command(cmds.sha256_of(path), what="sha256 of dump", changes=False))
    info.sha256 = actual.stdout.split()[0] if actual.stdout.split() else ""
    if sidecar.ok and sidecar.stdout.split():
        recorded = sidecar.stdout.split()[0]
        if recorded != info.sha256:
            raise InputError(f"{path} does not match its recorded sha256 ({path}.sha256: {recorded[:12]}…, "
                             f"file: {info.sha256[:12]}…) — it changed since it was written; {instead}")
    out = runner.run(Command(cmds.dump_list(site, path), what="list dump", changes=False, ok_codes=(0, 1)))
    info.toc = parse_toc(out.stdout)
    if not out.ok or not info.toc:
        text = (out.stderr or out.stdout).strip().splitlines()
        reason = text[-1] if text else "no table of contents"
        if "valid archive" in reason or "magic" in reason or "not appear" in reason:
            raise InputError(f"{path} is not a pg_dump archive — give a file made with pg_dump -Fc")
        raise InputError(f"{path} cannot be read as a pg_dump archive ({reason}) — {instead}")
    out = runner.run(Command(cmds.dump_readback(site, path), what="read dump back whole", changes=False,
                             timeout=site.command_timeout))
    info.readback = parse_readback(out.stdout, out.stderr)
    if not info.readback.ok:
        reason = (info.readback.errors or ["it ends in the middle of a table"])[0]
        raise InputError(f"{path} is truncated or damaged ({reason}) — {instead}")
    problems = toc_problems(info.toc)
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
