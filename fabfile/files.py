"""Reverting the runbook's five files: git checkout of the pre-migration revision, or (no git, no
such commit) a manual revert of docker-compose.yml, scripts/init.sql and backend/requirements.txt.
Whatever is there is saved first (a tar of the files, and the uncommitted diff as a patch)."""

from __future__ import annotations

import io
import re

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from .commands import Command, q
from .errors import PreflightError
from .facts.host import APP_FILES
from .inventory import SiteSettings
from .site_state import SiteState

_TSDB_SQL = re.compile(r"timescaledb|create_hypertable|add_compression_policy|add_retention_policy|"
                       r"add_continuous_aggregate_policy|timescaledb\.compress|remove_.*_policy", re.I)


def _yaml_for(text: str) -> YAML:
    """A round-trip YAML with the file's own indentation, so a dump changes only what was edited."""
    _, sequence, offset = load_yaml_guess_indent(text)
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in text.splitlines()
               if ln.strip() and not ln.lstrip().startswith(("-", "#"))]
    mapping = min((i for i in indents if i), default=2)
    yaml = YAML()  # round-trip: comments, key order, quotes and flow style kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=mapping, sequence=sequence or mapping, offset=offset or 0)
    return yaml


def _edit_db_service(text: str, edit) -> str:
    """``text`` with ``edit(db)`` applied to ``services.db`` (the compose service, never another
    key named db), dumped back with everything else as it was."""
    try:
        yaml = _yaml_for(text)
        data = yaml.load(text)
    except YAMLError as err:
        raise PreflightError(f"docker-compose.yml is not valid YAML ({str(err).splitlines()[0]}) — "
                             "fix it by hand, then rerun") from None
    services = data.get("services") if isinstance(data, CommentedMap) else None
    db = services.get("db") if isinstance(services, CommentedMap) else None
    if not isinstance(db, CommentedMap):
        return text
    edit(db)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _revert_db(db: CommentedMap, plain_image: str) -> None:
    image = db.get("image")
    if isinstance(image, str) and "timescale" in image.lower():
        db["image"] = plain_image
    command = db.get("command")
    words = command if isinstance(command, list) else [command]
    if "timescaledb" in " ".join(str(w) for w in words).lower():
        del db["command"]


def revert_compose(text: str, plain_image: str = "postgres:16-alpine") -> str:
    """The db service back on the plain image, its TimescaleDB preload ``command:`` removed;
    comments, layout and every other service exactly as they were."""
    return _edit_db_service(text, lambda db: _revert_db(db, plain_image))


_DOLLAR = re.compile(r"\$[A-Za-z_0-9]*\$")


def revert_init_sql(text: str) -> str:
    """scripts/init.sql without its TimescaleDB statements. A statement runs to a ``;`` outside
    dollar quotes (a DO $$ ... $$ block is one statement), and the comment lines right above it go
    with it."""
    out: list[str] = []
    unit: list[str] = []  # comment lines, then one statement
    quote: str | None = None

    def flush() -> None:
        code = "".join(ln for ln in unit if not ln.strip().startswith("--"))
        if not _TSDB_SQL.search(code if code.strip() else "".join(unit)):
            out.extend(unit)
        unit.clear()

    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if quote is None and not stripped:
            flush()
            out.append(line)
            continue
        unit.append(line)
        if stripped.startswith("--") and quote is None:
            continue
        for tag in _DOLLAR.findall(line.split("--", 1)[0] if quote is None else line):
            quote = tag if quote is None else (None if tag == quote else quote)
        if quote is None and stripped.endswith(";"):
            flush()
    flush()
    return "".join(out)


def revert_requirements(text: str) -> str:
    """backend/requirements.txt without psycopg2-binary or TimescaleDB packages."""
    keep = []
    for line in text.splitlines(keepends=True):
        name = re.split(r"[=<>!~\[ ;]", line.strip(), maxsplit=1)[0].lower()
        if name in ("psycopg2-binary", "psycopg2") or "timescale" in line.lower():
            continue
        keep.append(line)
    return "".join(keep)


def save_commands(site: SiteSettings, state: SiteState, ts: str) -> list[Command]:
    """Keep a copy of the files as they are (and the uncommitted diff) before overwriting them."""
    present = [f for f in APP_FILES if f in state.files]
    out = []
    if present:
        tarball = f"{site.backup_dir}/netmon_files_pre_rollback_{ts}.tar.gz"
        # a rerun of the step must not overwrite the first copy with files it already reverted
        names = " ".join(q(f) for f in present)
        out.append(Command(f"[ -e {q(tarball)} ] || tar -czf {q(tarball)} -C {q(site.app_dir)} {names}",
                           what=f"save the current files to {tarball}"))
    if state.git and state.git_dirty:
        patch = f"{site.backup_dir}/netmon_uncommitted_{ts}.patch"
        out.append(Command(f"[ -e {q(patch)} ] || git -C {q(site.app_dir)} diff HEAD -- " + " ".join(q(f) for f in APP_FILES)
                           + f" > {q(patch)}",
                           what=f"save the uncommitted changes to {patch}"))
    return out


def git_revert_commands(site: SiteSettings, rev: str, files_in_rev: list[str]) -> list[Command]:
    return [Command(f"git -C {q(site.app_dir)} checkout {q(rev)} -- " + " ".join(q(f) for f in files_in_rev),
                    what=f"git checkout {rev[:12]} -- the migration's files")]


def write_file_command(site: SiteSettings, rel: str, content: str) -> Command:
    path = f"{site.app_dir}/{rel}"
    tmp = f"{path}.rollback-tmp"
    return Command(f"cat > {q(tmp)} && mv {q(tmp)} {q(path)}", what=f"rewrite {rel} (manual revert)",
                   stdin=content, stdin_note=f"reverted {rel}, {len(content)} bytes")


def manual_revert(site: SiteSettings, state: SiteState) -> tuple[list[Command], list[str]]:
    """Commands of the manual revert, and the files that need a person."""
    out = []
    for rel, fn in (("docker-compose.yml", lambda t: revert_compose(t, site.plain_image)),
                    ("scripts/init.sql", revert_init_sql),
                    ("backend/requirements.txt", revert_requirements)):
        text = state.file_texts.get(rel)
        if text is None:
            continue
        new = fn(text)
        if new != text:
            out.append(write_file_command(site, rel, new))
    return out, list(state.mentions)


def compose_on_image(text: str, image: str) -> str:
    """The compose file with the db service on ``image`` (nothing else changed): a data directory
    that preloads timescaledb, put back on the plain image by hand, starts again on TimescaleDB's."""
    return _edit_db_service(text, lambda db: db.__setitem__("image", image))


def compose_without_preload(text: str, plain_image: str = "postgres:16-alpine") -> str:
    """The reverted compose file with the db started as ``postgres -c shared_preload_libraries=``:
    the fallback that lets a data directory which still preloads timescaledb start on the plain
    image (the command line overrides postgresql.conf and postgresql.auto.conf)."""
    def edit(db: CommentedMap) -> None:
        _revert_db(db, plain_image)
        command = CommentedSeq(DoubleQuotedScalarString(w) for w in ("postgres", "-c", "shared_preload_libraries="))
        command.fa.set_flow_style()
        db.insert(list(db).index("image") + 1 if "image" in db else 0, "command", command)
    return _edit_db_service(text, edit)
