"""What a pg_dump archive holds, read back: its TOC listing (``pg_restore -l``), the whole read-back
(every data block, rows counted per table), and pg_restore's own verdict. Pure parsers; the commands
that produce this output are built where dumps are made and checked (fabfile/dumps.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class TocEntry:
    dump_id: int
    kind: str
    schema: str
    name: str
    owner: str = ""


_TOC_KINDS = sorted([
    "TABLE DATA", "TABLE", "SEQUENCE SET", "SEQUENCE OWNED BY", "SEQUENCE", "INDEX ATTACH", "INDEX",
    "FK CONSTRAINT", "CHECK CONSTRAINT", "CONSTRAINT", "DEFAULT ACL", "DEFAULT", "MATERIALIZED VIEW DATA",
    "MATERIALIZED VIEW", "VIEW", "EXTENSION", "SCHEMA", "COMMENT", "FUNCTION", "PROCEDURE", "AGGREGATE",
    "TRIGGER", "EVENT TRIGGER", "TYPE", "DOMAIN", "ACL", "RULE", "POLICY", "PUBLICATION", "DATABASE",
    "ENCODING", "STDSTRINGS", "SEARCHPATH", "BLOB", "BLOBS", "LARGE OBJECT", "STATISTICS", "COLLATION",
    "CAST", "OPERATOR", "TABLE ATTACH", "ROW SECURITY", "SERVER", "FOREIGN TABLE", "USER MAPPING",
], key=len, reverse=True)
_TOC_LINE = re.compile(r"^(\d+);\s+\d+\s+\d+\s+(.*)$")


def parse_toc(text: str) -> list[TocEntry]:
    """``pg_restore -l`` listing → entries (comment lines skipped)."""
    out = []
    for line in (text or "").splitlines():
        m = _TOC_LINE.match(line.strip())
        if not m:
            continue
        rest = m.group(2)
        kind = next((k for k in _TOC_KINDS if rest == k or rest.startswith(k + " ")), None)
        if kind is None:
            kind, _, rest2 = rest.partition(" ")
            rest = rest2
        else:
            rest = rest[len(kind):].strip()
        parts = rest.split()
        schema = parts[0] if parts else ""
        name = parts[1] if len(parts) > 1 else ""
        owner = parts[-1] if len(parts) > 2 else ""
        out.append(TocEntry(int(m.group(1)), kind, schema, name, owner))
    return out


def toc_problems(entries: list[TocEntry]) -> list[str]:
    """Why a dump is not a usable pre-migration backup (empty list = fine)."""
    problems = []
    if not entries:
        return ["it holds no objects"]
    tsdb = [e for e in entries if "timescaledb" in f"{e.schema} {e.name}".lower()]
    if tsdb:
        e = tsdb[0]
        problems.append(f"it holds TimescaleDB objects ({e.kind} {e.schema} {e.name}, {len(tsdb)} in all)")
    if not any(e.kind == "TABLE" and e.name == "flow_records" for e in entries):
        problems.append("it holds no flow_records table")
    return problems


@dataclass
class Readback:
    """Result of reading a whole dump back (``dump_readback``)."""

    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    exit: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.complete and self.exit == 0 and not self.errors


def parse_readback(stdout: str, stderr: str) -> Readback:
    rb = Readback()
    for line in (stdout or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "rows" and parts[2].isdigit():
            rb.counts[parts[1]] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "end":
            rb.complete = parts[1] == "0"
    for line in (stderr or "").splitlines():
        m = re.match(r"^pg_restore_exit=(\d+)$", line.strip())
        if m:
            rb.exit = int(m.group(1))
        elif "error" in line.lower() or "fatal" in line.lower():
            rb.errors.append(line.strip())
    if rb.exit not in (0, None) and not rb.errors:
        rb.errors.append(f"pg_restore exited {rb.exit}")
    return rb


_IGNORED = re.compile(r"errors ignored on restore:\s*(\d+)", re.I)


def restore_errors(stdout: str, stderr: str, exited: int) -> list[str]:
    """pg_restore's own verdict: any "error" line or "errors ignored on restore: N>0" = failure."""
    text = f"{stdout or ''}\n{stderr or ''}"
    errors = [ln.strip() for ln in text.splitlines() if re.search(r"\berror\b", ln, re.I) and not _IGNORED.search(ln)]
    m = _IGNORED.search(text)
    if m and int(m.group(1)) > 0:
        errors.insert(0, f"pg_restore: errors ignored on restore: {m.group(1)}")
    if exited != 0 and not errors:
        errors.append(f"pg_restore exited {exited}")
    return errors
