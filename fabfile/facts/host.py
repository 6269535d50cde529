"""Facts about the server itself, read by the host script: docker, the app directory and the
runbook's five files, the clock, the backup directory, the run lock and the journal.

Each ``*_script`` is that fact's lines of the host script (``key=value`` output); each ``parse_*``
is its pure parser, fed :func:`~fabfile.facts.parts.keyed` output."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..commands import q
from ..inventory import SiteSettings
from ..lock import lock_path
from .parts import Unknown, failure, host_tagged, last, reported

#: the runbook's five files a TimescaleDB migration modifies
APP_FILES = (
    "docker-compose.yml",
    "scripts/init.sql",
    "backend/app/main.py",
    "backend/app/services/flow_rollup.py",
    "backend/requirements.txt",
)
DUMP_PREFIX = "netmon_pre_tsdb_"
SAFETY_PREFIX = "netmon_pre_rollback_"
JOURNAL = "netmon_rollback_journal.jsonl"


@dataclass
class Backup:
    path: str
    size: int
    age: float
    has_sha: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def presence_script(site: SiteSettings) -> str:
    """docker (with compose) on the SSH user's PATH, and the app directory. Its first line is the
    docker check: a task's parts start after it."""
    return ("docker compose version >/dev/null 2>&1 && echo docker=yes || echo docker=no\n"
            f"[ -d {q(site.app_dir)} ] && echo app=yes || echo app=no")


def parse_presence(kv: dict[str, list[str]]) -> tuple[bool, bool]:
    """→ (docker, app_dir)."""
    return last(kv, "docker") == "yes", last(kv, "app") == "yes"


def clock_script(site: SiteSettings) -> str:
    return reported("clock", "t=$(date +%s) && echo \"now=$t\"")


def parse_clock(kv: dict[str, list[str]]) -> float | Unknown:
    """The server's epoch seconds (0.0: printed nothing usable)."""
    failed = failure(kv, "clock", "date +%s")
    if failed:
        return failed
    values = [v for v in kv.get("now", []) if v.isdigit()]
    return float(values[-1]) if values else 0.0


def backups_script(site: SiteSettings) -> str:
    """The backup directory: its free space, the dumps (size, mtime, a .sha256 beside them) and
    stale ``.partial`` files."""
    bak = q(site.backup_dir)
    # a directory that is not there holds no backups; one that cannot be listed is unknown
    return reported("backups", (
        f"r=0; [ ! -e {bak} ] || ls -A {bak} >/dev/null || r=$?\n"
        f"df -Pk {bak} 2>/dev/null | awk 'NR==2{{print \"backup_free_kb=\" $4}}'\n"
        f"for f in {bak}/{DUMP_PREFIX}*.dump {bak}/{SAFETY_PREFIX}*.dump; do\n"
        "  [ -f \"$f\" ] || continue; st=$(stat -c '%s|%Y' \"$f\") || { r=$?; continue; }\n"
        "  echo \"backup=$st|$([ -f \"$f.sha256\" ] && echo sha || echo nosha)|$f\"\n"
        "done\n"
        f"for f in {bak}/.netmon_*.partial; do [ -f \"$f\" ] && echo \"partial=$f\"; done\n"
        "(exit $r)"))


def parse_backups(kv: dict[str, list[str]], now: float) -> tuple[int | None, list[Backup], list[str]] | Unknown:
    """→ (free KiB in the backup directory, the dumps with their age at ``now``, stale partials)."""
    failed = failure(kv, "backups", "listing the backup directory")
    if failed:
        return failed
    free = [v for v in kv.get("backup_free_kb", []) if v.isdigit()]
    backups = []
    for value in kv.get("backup", []):
        size, mtime, sha, path = value.split("|", 3)
        backups.append(Backup(path, int(size), max(0.0, now - float(mtime)) if now else 0.0, sha == "sha"))
    return (int(free[-1]) if free else None), backups, list(kv.get("partial", []))


def app_files_script(site: SiteSettings) -> str:
    """Which of the five files exist, which app files still mention TimescaleDB, the QA script."""
    app = q(site.app_dir)
    files = " ".join(q(f) for f in APP_FILES)
    return reported("files", (
        f"r=0; [ ! -d {app} ] || [ -x {app} ] || {{ echo cannot enter {app} >&2; r=1; }}\n"
        f"for f in {files}; do [ -f {app}/\"$f\" ] && echo \"file=$f\"; done\n"
        "for f in backend/app/main.py backend/app/services/flow_rollup.py; do\n"
        f"  [ -f {app}/\"$f\" ] || continue; grep -qiE 'timescale|time_bucket|hypertable' {app}/\"$f\"; g=$?\n"
        "  [ $g = 0 ] && echo \"mentions=$f\"; [ $g -le 1 ] || r=$g\n"
        "done\n"
        f"[ -x {app}/scripts/qa_check.sh ] && echo qa=yes\n"
        "(exit $r)"))


def parse_app_files(kv: dict[str, list[str]]) -> tuple[list[str], list[str], bool] | Unknown:
    """→ (the five files present, files mentioning TimescaleDB, qa_check.sh present)."""
    failed = failure(kv, "files", "reading the app's files")
    if failed:
        return failed
    return list(kv.get("file", [])), list(kv.get("mentions", [])), "qa" in kv


#: how long status lets scripts/qa_check.sh run
QA_SECONDS = 120


def qa_part(site: SiteSettings) -> str:
    """A host part (status): the application's scripts/qa_check.sh, where it is executable, bounded."""
    app = q(site.app_dir)
    run = f"cd {app} && timeout {QA_SECONDS} ./scripts/qa_check.sh"
    return host_tagged("qa", f"[ ! -x {app}/scripts/qa_check.sh ] || {{ {run}; }}")


def parse_qa(rc: int | None, lines: list[str]) -> str | None | Unknown:
    """None when it passed (or there is none); its failure in one line (the first critical one);
    Unknown when the part did not finish."""
    if rc is None:
        return Unknown("scripts/qa_check.sh did not finish")
    if rc == 0:
        return None
    critical = [ln for ln in lines if re.search(r"critical|fail|error", ln, re.I)] or lines
    return f"exit {rc}" + (f": {critical[0][:80]}" if critical else "") + (" (timed out)" if rc == 124 else "")


def lock_script(site: SiteSettings) -> str:
    """Read-only: a shared flock attempt never blocks a run (exit 1 of ``flock -n``: someone holds it)."""
    lock = q(lock_path(site.backup_dir))
    return reported("lock", (
        f"r=0; if [ -e {lock} ]; then flock -n -s {lock} true; f=$?\n"
        f"  if [ $f = 0 ]; then echo lock=free; elif [ $f = 1 ]; then h=$(head -n 1 {lock}) || r=$?; echo \"lock=held $h\"\n"
        "  else r=$f; fi\n"
        "else echo lock=free; fi; (exit $r)"))


def parse_lock(kv: dict[str, list[str]]) -> str | Unknown:
    """``"held <holder json>"`` or ``"free"``."""
    return failure(kv, "lock", "reading the run lock") or last(kv, "lock") or Unknown("reading the run lock: no answer")


def journal_script(site: SiteSettings) -> str:
    path = q(f"{site.backup_dir}/{JOURNAL}")
    return reported("journal", (
        f"r=0; if [ -e {path} ]; then t=$(tail -n 400 {path}) || r=$?\n"
        "  [ -z \"$t\" ] || printf '%s\\n' \"$t\" | sed 's/^/journal=/'; fi; (exit $r)"))


def parse_journal(kv: dict[str, list[str]]) -> list[str] | Unknown:
    """The journal's last lines (JSON, one record each)."""
    failed = failure(kv, "journal", "reading the journal")
    if failed:
        return failed
    return list(kv.get("journal", []))
