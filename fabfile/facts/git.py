"""Git facts of the app directory: is it a repository, HEAD, the five files' uncommitted changes,
and which image each past docker-compose.yml ran (the pre-migration revision is the newest plain one)."""

from __future__ import annotations

from ..commands import q
from ..inventory import SiteSettings
from .host import APP_FILES
from .parts import last


def script(site: SiteSettings) -> str:
    """The host script's git lines (``git=``, ``head=``, ``dirty=``, ``rev=REV plain|tsdb``)."""
    app = q(site.app_dir)
    files = " ".join(q(f) for f in APP_FILES)
    return (f"if [ -d {app}/.git ] && command -v git >/dev/null 2>&1 && cd {app}; then\n"
            "  echo git=yes\n"
            "  echo \"head=$(git rev-parse HEAD 2>/dev/null)\"\n"
            f"  git status --porcelain -- {files} 2>/dev/null | sed 's/^/dirty=/'\n"
            "  for r in $(git log --format=%H -n 50 -- docker-compose.yml 2>/dev/null); do\n"
            "    if git show \"$r:docker-compose.yml\" 2>/dev/null | grep -qi timescale; then echo \"rev=$r tsdb\"; "
            "else echo \"rev=$r plain\"; fi\n"
            "  done\n"
            "  cd /\n"
            "fi")


def parse(kv: dict[str, list[str]]) -> tuple[bool, str, list[str], list[tuple[str, str]]]:
    """→ (a git repository, HEAD, dirty files, [(rev, plain|tsdb)] newest first)."""
    dirty = [v[3:].strip() if len(v) > 3 else v.strip() for v in kv.get("dirty", [])]
    history = []
    for value in kv.get("rev", []):
        rev, _, kind = value.partition(" ")
        history.append((rev, kind.strip()))
    return "git" in kv, (last(kv, "head") or "").strip(), dirty, history


def pre_migration_rev(history: list[tuple[str, str]]) -> str | None:
    """The newest commit whose docker-compose.yml runs the plain image."""
    return next((rev for rev, kind in history if kind == "plain"), None)
