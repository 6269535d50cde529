"""Command templates. Every value that reaches a shell goes through ``shlex.quote``; every SQL
identifier is validated first (:func:`ident`). A :class:`Command` is what a plan step holds and
what the runner runs: the exact shell text, what goes on its stdin, and how its result is judged."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .inventory import SiteSettings

q = shlex.quote

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def ident(name: str) -> str:
    """A validated SQL identifier, double-quoted. Refuses anything but letters, digits and _."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise InputError(f"refusing SQL identifier {name!r} — only letters, digits and _ are allowed")
    return f'"{name}"'


def qualified(name: str) -> str:
    """``schema.table`` (or ``table``) → validated, quoted ``"schema"."table"``."""
    parts = name.split(".")
    if len(parts) > 2:
        raise InputError(f"refusing SQL name {name!r} — expected schema.table")
    return ".".join(ident(p) for p in parts)


def literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Expect:
    """How a command's outcome is judged: a check's name and its argument (fabfile/expect.py judges)."""
    kind: str
    arg: Any = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "arg": self.arg}

    @classmethod
    def from_dict(cls, data: dict | None) -> Expect | None:
        return cls(data["kind"], data.get("arg")) if data else None


@dataclass
class Command:
    """One remote command as a plan shows it and the runner runs it."""

    cmd: str
    #: what the command does, for the plan and the audit log
    what: str = ""
    #: text fed on stdin (secret stdin is never logged or printed)
    stdin: str | None = None
    stdin_note: str | None = None
    #: False for read-only probes (they run under --dry-run too)
    changes: bool = True
    timeout: float | None = None
    #: repeat until it succeeds, for at most this many seconds
    poll: float | None = None
    ok_codes: tuple[int, ...] = (0,)
    #: how the outcome is judged beyond its exit status: an :class:`~fabfile.expect.Expect`
    check: Any = field(default=None, compare=False)

    def to_dict(self) -> dict:
        """The command as data (journal, --json); the reverse of :meth:`from_dict`."""
        return {"cmd": self.cmd, "what": self.what, "stdin": self.stdin, "stdin_note": self.stdin_note,
                "changes": self.changes, "timeout": self.timeout, "poll": self.poll, "ok_codes": list(self.ok_codes),
                "check": self.check.to_dict() if self.check is not None else None}

    @classmethod
    def from_dict(cls, data: dict) -> Command:
        return cls(cmd=data["cmd"], what=data.get("what", ""), stdin=data.get("stdin"), stdin_note=data.get("stdin_note"),
                   changes=data.get("changes", True), timeout=data.get("timeout"), poll=data.get("poll"),
                   ok_codes=tuple(data.get("ok_codes") or (0,)), check=Expect.from_dict(data.get("check")))

    def display(self) -> str:
        text = self.cmd
        if self.stdin is not None:
            text += f"  <<< {self.stdin_note or f'{len(self.stdin)} bytes on stdin'}"
        if self.poll:
            text = f"(poll up to {int(self.poll)}s) {text}"
        return text


# --- docker ---------------------------------------------------------------------------------

def compose(site: SiteSettings, *args: str) -> str:
    return f"cd {q(site.app_dir)} && docker compose " + " ".join(q(a) for a in args)


def dexec(site: SiteSettings, *args: str, stdin: bool = False, container: str | None = None) -> str:
    """``docker exec [-i] CONTAINER ARGS`` (``-i`` whenever something is fed on stdin)."""
    flag = "-i " if stdin else ""
    return f"docker exec {flag}{q(container or site.db_container)} " + " ".join(q(a) for a in args)


# --- psql -----------------------------------------------------------------------------------

def psql(site: SiteSettings, *sql: str, db: str | None = None) -> str:
    """psql with ON_ERROR_STOP, no psqlrc, tuples only, unaligned; one -c per statement."""
    args = ["psql", "-U", site.db_user, "-d", db or site.db_name, "-v", "ON_ERROR_STOP=1", "-X", "-tA", "-F", "|"]
    for stmt in sql:
        args += ["-c", stmt]
    return dexec(site, *args)


def pg_isready(site: SiteSettings, db: str | None = None) -> str:
    return dexec(site, "pg_isready", "-U", site.db_user, "-d", db or site.db_name)


def pg_dump_to(site: SiteSettings, path: str, db: str | None = None) -> str:
    return dexec(site, "pg_dump", "-U", site.db_user, "-Fc", db or site.db_name) + f" > {q(path)}"


def dump_list(site: SiteSettings, path: str) -> str:
    """pg_restore -l of a host file fed on stdin (the archive's table of contents)."""
    return dexec(site, "pg_restore", "-l", stdin=True) + f" < {q(path)}"


# awk: count the data lines of each COPY block of a plain-SQL restore script.
_COUNT_AWK = r"""/^COPY /{t=$2; n=0; c=1; next} c && /^\\\.$/{print "rows " t " " n; c=0; next} c{n++} END{print "end " c}"""


def dump_readback(site: SiteSettings, path: str, container: str | None = None) -> str:
    """Read the whole archive (every data block) and count the rows of each table.
    pg_restore's exit status is reported on stderr as ``pg_restore_exit=N``."""
    inner = dexec(site, "pg_restore", "-f", "-", stdin=True, container=container) + f" < {q(path)}"
    return f"{{ {inner}; echo \"pg_restore_exit=$?\" >&2; }} | awk {q(_COUNT_AWK)}"


def sha256_of(path: str) -> str:
    return f"sha256sum {q(path)}"


def seal_dump(tmp_path: str, final_path: str) -> str:
    """Record the sha256 beside the final name, then rename the temporary file into place."""
    directory, _, base = final_path.rpartition("/")
    sidecar = final_path + ".sha256"
    return (
        f"h=$(sha256sum < {q(tmp_path)} | cut -d' ' -f1) && "
        f"printf '%s  %s\\n' \"$h\" {q(base)} > {q(sidecar)} && "
        f"mv {q(tmp_path)} {q(final_path)} && echo \"$h $(stat -c %s {q(final_path)})\""
    )


def curl_status(url: str, seconds: int = 10) -> str:
    return f"curl -s -o /dev/null -m {int(seconds)} -w '%{{http_code}}' {q(url)}"


#: a server-side wait's first tries, 0.1 s apart (a short wait ends within 0.1 s of its outcome);
#: after them every 0.5 s (each try may be a docker exec: a long wait must not load the server)
QUICK_TRIES = 20


def wait_until(test: str, seconds: int, failure: str, then: str = "") -> str:
    """One remote command that retries the shell condition ``test`` on the server (every 0.1 s for the
    first :data:`QUICK_TRIES` tries, then every 0.5 s), giving up after ``seconds`` s (to the server
    clock's second; never sooner): a wait costs one round trip, not one per attempt. Given up, it exits
    1 with ``failure`` (shell words, already quoted; may name a variable ``test`` set) on stderr;
    passed, it runs ``then``."""
    script = (f"end=$(($(date +%s) + {int(seconds)})); n=0; until {test}; do "
              f"if [ \"$(date +%s)\" -gt \"$end\" ]; then echo {failure} >&2; exit 1; fi; n=$((n + 1)); "
              f"if [ \"$n\" -lt {QUICK_TRIES} ]; then sleep 0.1; else sleep 0.5; fi; done"
              + (f"; {then}" if then else ""))
    return f"sh -c {q(script)}"


def wait_http(url: str, code: str, seconds: int) -> str:
    """Until ``url`` answers ``code`` (at most ``seconds`` s); prints the last answer."""
    return wait_until(f'c=$({curl_status(url, 2)}) && [ "$c" = {q(code)} ]', seconds,
                      q(f"{url} did not answer {code} within {seconds}s") + ' "(last answer: ${c:-none})"',
                      then='echo "$c"')


def wait_pg_isready(site: SiteSettings, seconds: int) -> str:
    """Until pg_isready in the db container says it accepts connections (at most ``seconds`` s)."""
    return wait_until(f"o=$({pg_isready(site)} 2>&1)", seconds,
                      q(f"{site.db_container} did not accept connections within {seconds}s") + ' "(pg_isready: ${o:-nothing})"')


def wait_running(containers: list[str], seconds: int) -> str:
    """Until every one of ``containers`` is running (at most ``seconds`` s); a failure names those that are not."""
    names = " ".join(q(n) for n in containers)
    each = f"docker inspect --format '{{{{.Name}}}} {{{{.State.Status}}}}' {names} 2>&1"
    return wait_until(f'o=$({each}) && ! printf "%s\\n" "$o" | grep -qv " running$"', seconds,
                      q(f"not running after {seconds}s:") + ' "$(printf "%s\\n" "$o" | grep -v " running$" | tr "\\n" " ")"')
