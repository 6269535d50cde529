"""A recording stand-in for a Fabric Connection in unit tests: answers the commands a test declares
(by regex) and fails the test on any other command."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from invoke.runners import Result


class FakeContext:
    def __init__(self, answers=None):
        self.answers = list(answers or [])  # (regex, stdout, exit[, stderr])
        self.calls: list[dict] = []

    def run(self, cmd, **kw):
        stream = kw.get("in_stream")
        stdin = stream.getvalue() if stream not in (None, False) and hasattr(stream, "getvalue") else None
        self.calls.append({"cmd": cmd, "stdin": stdin, "kw": kw})
        for answer in self.answers:
            pattern, stdout, exited = answer[:3]
            stderr = answer[3] if len(answer) > 3 else ""
            if re.search(pattern, cmd):
                if callable(stdout):  # computed from the command: (stdout, stderr, exit)
                    stdout, stderr, exited = stdout(cmd, stdin)
                return Result(stdout=stdout, stderr=stderr, exited=exited, command=cmd)
        raise AssertionError(f"undeclared command sent to the fake server: {cmd[:300]}")

    @property
    def commands(self) -> list[str]:
        return [c["cmd"] for c in self.calls]


#: the regex of a step script (fabfile/runner.batch_script)
BATCH = r"^printf '@@[0-9a-f]+ s 0 "


def batch_reply(results, exited: int | None = None):
    """An answer for FakeContext: what a step script prints when its commands end as ``results`` say
    ((stdout, stderr, exit) each, in order; the last one ``None``: the script was cut while it ran,
    its end never reported). ``exited``: the script's own exit status (default the last exit)."""
    def reply(cmd, _stdin):
        token = re.match(r"^printf '@@([0-9a-f]+) s 0 ", cmd).group(1)
        out = err = ""
        last = 0
        for k, result in enumerate(results):
            out += f"@@{token} s {k} 10{k}.000000000\n"
            err += f"@@{token} s {k}\n"
            if result is None:
                break
            stdout, stderr, last = result
            out += f"{stdout}\n@@{token} e {k} {last} 10{k}.500000000\n"
            err += f"{stderr}\n@@{token} e {k}\n"
        return out, err, last if exited is None else exited
    return reply


def run_locally(cmd, stdin):
    """An answer for FakeContext that runs the command in a local bash, as the server's shell would."""
    done = subprocess.run(["bash", "-c", cmd], input=stdin or "", capture_output=True, text=True, timeout=60)
    return done.stdout, done.stderr, done.returncode


RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> str:
    """Output of the real probe commands on a lab site (tests/recorded/, made with ssh against it)."""
    return (RECORDED / name).read_text()


def probe_answers(host: str = "host_probe_migrated.txt", db: str = "db_probe_migrated.txt"):
    """The fake server's answers to the probe's two commands: recorded output of a lab site."""
    return [
        (r"^sh -c .*docker compose version", recorded(host), 0),
        (r"^docker exec netmon-db sh -c .*@@ready", recorded(db), 0),
    ]


#: the regex of the one command that checks a dump file (fabfile/dumps.check_script)
DUMP_CHECKS = r"(?s)^sh -c .*@@readback"
MIN_TOC = "216; 1259 1 TABLE public flow_records netmon\n217; 0 1 TABLE DATA public flow_records netmon\n"


def dump_checks(size: str | None = "2048", sidecar: str | None = None, sha256: str = "ab" * 32,
                listing: str = MIN_TOC, readback: str = "rows public.flow_records 10\nend 0\n",
                readback_err: str = "pg_restore_exit=0\n") -> str:
    """What check_script prints, part by part (a part None: its command failed), as the recorded
    real outputs in tests/recorded/dump_checks_*.txt have it."""
    def part(tag: str, text: str | None, fail: str) -> str:
        body, rc = (text, 0) if text is not None else (fail, 1)
        return f"@@{tag}\n{body.rstrip(chr(10))}\n@@rc {tag} {rc}\n".replace("\n\n@@rc", "\n@@rc")
    return (part("size", size, "stat: cannot statx: No such file or directory")
            + part("sidecar", sidecar, "cat: x.sha256: No such file or directory")
            + part("sha256", f"{sha256}  /root/x.dump", "")
            + part("list", listing, "pg_restore: error: input file does not appear to be a valid archive")
            + part("readback", readback, "") + part("readback_err", readback_err, ""))
