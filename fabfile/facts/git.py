"""Git facts of the app directory: is it a repository, HEAD, the five files' uncommitted changes,
and which image each past docker-compose.yml ran (the pre-migration revision is the newest plain one)."""

from __future__ import annotations

from ..commands import q
from ..inventory import SiteSettings
from .host import APP_FILES
from .parts import Unknown, failure, last, reported


def script(site: SiteSettings) -> str:
    """The host script's git lines (``git=``, ``head=``, ``dirty=``, ``rev=REV plain|tsdb``)."""
    app = q(site.app_dir)
    files = " ".join(q(f) for f in APP_FILES)
    # no .git: not a repository (a fact); a .git that git cannot read (or no git): unknown
    return reported("git", (
        f"[ -d {app}/.git ] || exit 0\n"
        f"command -v git >/dev/null || {{ echo 'git: command not found' >&2; exit 127; }}\n"
        f"cd {app} || exit\n"
        "echo git=yes\n"
        "h=$(git rev-parse HEAD) || exit; echo \"head=$h\"\n"
        f"d=$(git status --porcelain -- {files}) || exit; [ -z \"$d\" ] || printf '%s\\n' \"$d\" | sed 's/^/dirty=/'\n"
        "revs=$(git log --format=%H -n 50 -- docker-compose.yml) || exit\n"
        "for r in $revs; do\n"
        "  c=$(git show \"$r:docker-compose.yml\" 2>/dev/null) || continue  # the commit that deleted it\n"
        "  if printf '%s' \"$c\" | grep -qi timescale; then echo \"rev=$r tsdb\"; else echo \"rev=$r plain\"; fi\n"
        "done"))


def parse(kv: dict[str, list[str]]) -> tuple[bool, str, list[str], list[tuple[str, str]]] | Unknown:
    """→ (a git repository, HEAD, dirty files, [(rev, plain|tsdb)] newest first)."""
    failed = failure(kv, "git", "git in the app directory")
    if failed:
        return failed
    dirty = [v[3:].strip() if len(v) > 3 else v.strip() for v in kv.get("dirty", [])]
    history = []
    for value in kv.get("rev", []):
        rev, _, kind = value.partition(" ")
        history.append((rev, kind.strip()))
    return "git" in kv, (last(kv, "head") or "").strip(), dirty, history


def pre_migration_rev(history: list[tuple[str, str]]) -> str | None:
    """The newest commit whose docker-compose.yml runs the plain image."""
    return next((rev for rev, kind in history if kind == "plain"), None)
