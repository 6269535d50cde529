"""How facts ride on the probe's two remote commands, and the value of a fact that could not be read.

The host script prints ``key=value`` lines (:func:`keyed`) and the parts a task adds as ``x.TAG=``
lines (:func:`host_part`); the database script prints ``@@TAG`` ... ``@@rc TAG N`` blocks
(:func:`split_parts`). A part that failed or never finished reads as :class:`Unknown`, never as empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Unknown:
    """A fact that could not be read, and why: an empty answer and a failed read never look alike."""

    reason: str


@dataclass
class Extra:
    """Read-only parts a task adds to the two probe commands, so that they cost no round trip of
    their own: ``host`` lines of shell for the host script (their output tagged ``x.TAG=``, see
    :func:`host_part`), ``db`` parts for the database script (``@@TAG`` ... ``@@rc TAG N``), and
    ``stdin`` for the host script (a secret: the parts read it on fd 3; never logged)."""

    host: list[str] = field(default_factory=list)
    db: list[str] = field(default_factory=list)
    stdin: str | None = None
    stdin_note: str | None = None


def keyed(text: str) -> dict[str, list[str]]:
    """The host script's ``key=value`` lines → key → its values, in order."""
    out: dict[str, list[str]] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def last(kv: dict[str, list[str]], key: str) -> str | None:
    """The last value printed for ``key`` (None: never printed)."""
    values = kv.get(key)
    return values[-1] if values else None


def reported(key: str, shell: str) -> str:
    """A fact's lines of the host script that report their own exit status: ``shell`` runs in a
    subshell, its stdout as is, then ``KEY.rc=N`` and, when N is not 0, the last line of its stderr
    as ``KEY.err=`` (:func:`failure` reads them), so a read that failed never looks empty."""
    return (f"{{ _e=$( {{ {shell}\n}} 2>&1 >&4 4>&- ); _r=$?; }} 4>&1; echo \"{key}.rc=$_r\"; "
            f"[ \"$_r\" = 0 ] || [ -z \"$_e\" ] || printf '%s\\n' \"$_e\" | tail -n 1 | cut -c1-200 | sed 's/^/{key}.err=/'")


def failure(kv: dict[str, list[str]], key: str, what: str) -> Unknown | None:
    """Unknown (with why) when the :func:`reported` fact ``key`` failed or never reported; else None."""
    rc = (last(kv, f"{key}.rc") or "").strip()
    if rc == "0":
        return None
    if not rc:
        return Unknown(f"{what}: no answer (the host script stopped before it)")
    err = last(kv, f"{key}.err")
    return Unknown(f"{what} failed (exit {rc}{': ' + err.strip() if err and err.strip() else ''})")


def host_tagged(tag: str, shell: str) -> str:
    """A host part: ``shell``'s output (stdout and stderr) as ``x.TAG=line`` lines, then ``x.TAG.rc=N``."""
    return (f"out=$( {shell} 2>&1 ); rc=$?; [ -n \"$out\" ] && printf '%s\\n' \"$out\" | sed 's/^/x.{tag}=/'; "
            f"echo \"x.{tag}.rc=$rc\"")


def host_part(text: str, tag: str) -> tuple[int | None, list[str]]:
    """A host part's (exit status, lines) from the host script's output; status None: it did not
    finish (the script died or the part never ran), so its facts are unknown."""
    key, rc, lines = f"x.{tag}=", None, []
    for line in (text or "").splitlines():
        if line.startswith(key):
            lines.append(line[len(key):])
        elif line.startswith(f"x.{tag}.rc="):
            value = line.split("=", 1)[1].strip()
            rc = int(value) if value.isdigit() else None
    return rc, lines


def with_parts(script: str, extra: Extra) -> str:
    """``script`` with the host parts of ``extra`` run alongside it (each in the background, into a
    file of its own, printed in order at the end), so the slowest part sets the time, not their sum.
    They start after its first line (the docker check). The parts read ``extra.stdin`` on fd 3;
    nothing else may eat it."""
    first, _, rest = script.partition("\n")
    if extra.stdin is not None:
        first = "exec 3<&0 </dev/null; " + first
    if not extra.host:
        return f"{first}\n{rest}\ntrue"
    launch = "xd=$(mktemp -d 2>/dev/null) || xd=\n"
    for i, part in enumerate(extra.host):
        launch += f'if [ -n "$xd" ]; then ( {part} ) > "$xd/{i}" 2>&1 & else {part}; fi\n'
    files = " ".join(f'"$xd/{i}"' for i in range(len(extra.host)))
    return (f"{first}\n{launch}{rest}\nwait\n"
            f'[ -n "$xd" ] && cat {files} 2>/dev/null; [ -n "$xd" ] && rm -rf "$xd"\ntrue')


def db_part(tag: str, shell: str) -> str:
    """A part of the database script: ``@@TAG``, its output, ``@@rc TAG N``."""
    return f"echo '@@{tag}'; {shell} 2>&1; echo \"@@rc {tag} $?\""


def split_parts(text: str) -> dict[str, tuple[int | None, list[str]]]:
    """``@@TAG`` ... ``@@rc TAG N`` blocks → TAG → (exit status, lines). A block without its
    ``@@rc`` line (the script died) has status None."""
    parts: dict[str, tuple[int | None, list[str]]] = {}
    current, lines = None, []
    for line in (text or "").splitlines():
        if line.startswith("@@ready "):
            value = line.split()[1]
            parts["ready"] = (int(value) if value.isdigit() else None, [])
        elif line.startswith("@@rc "):
            _, tag, code = (line.split() + ["", ""])[:3]
            parts[tag] = (int(code) if code.isdigit() else None, lines)
            current, lines = None, []
        elif line.startswith("@@") and " " not in line:
            if current is not None:
                parts[current] = (None, lines)
            current, lines = line[2:], []
        elif current is not None:
            lines.append(line)
    if current is not None:
        parts[current] = (None, lines)
    return parts


def reason(lines: list[str], code: int | None) -> str:
    """Why a part failed: its last line that is not a row, else how it ended."""
    text = [ln.strip() for ln in lines if ln.strip() and "|" not in ln]
    detail = text[-1] if text else ("no answer" if code is None else f"exit {code}")
    return detail[:200]


def rows(text: str) -> list[list[str]]:
    """psql -tA -F '|' output → rows of fields."""
    return [line.split("|") for line in (text or "").splitlines() if line.strip()]


def truthy(v: str) -> bool:
    return v.strip().lower() in ("t", "true", "on", "yes", "1")
