"""How facts ride on the probe's two commands (fabfile/facts/parts.py)."""

import subprocess

from fabfile.facts import parts
from tests.fakes import recorded


def test_parts_run_alongside_the_host_script_and_read_stdin_on_fd_3():
    extra = parts.Extra(host=["echo a", "echo b"], stdin="{}\n")
    script = parts.with_parts("first\nrest", extra)
    lines = script.splitlines()
    assert lines[0] == "exec 3<&0 </dev/null; first"  # nothing but the parts can read stdin
    assert lines.index("rest") > max(i for i, ln in enumerate(lines) if "echo b" in ln)  # started before the rest
    assert lines[-3:-1] == ["wait", '[ -n "$xd" ] && cat "$xd/0" "$xd/1" 2>/dev/null; [ -n "$xd" ] && rm -rf "$xd"']


def test_parts_script_in_a_real_shell_keeps_stdin_for_the_parts_and_their_order():
    extra = parts.Extra(host=["sleep 0.3; echo slow", "tr a-z A-Z <&3"], stdin="secret\n")
    script = parts.with_parts("cat; echo main", extra)  # the script's own cat must not eat the parts' stdin
    out = subprocess.run(["sh", "-c", script], input="secret\n", capture_output=True, text=True, timeout=10)
    assert out.stdout.splitlines() == ["main", "slow", "SECRET"]


def test_host_tagged_part_in_a_real_shell_and_its_status():
    part = parts.host_tagged("t", "sh -c 'echo one; echo two >&2; exit 3'")
    script = parts.with_parts("echo docker=yes", parts.Extra(host=[part]))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10).stdout
    assert parts.host_part(out, "t") == (3, ["one", "two"])
    assert parts.host_part(out, "never") == (None, [])  # a part that never ran: no status, so unknown
    assert parts.keyed(out)["docker"] == ["yes"]


def test_split_parts_of_recorded_database_output():
    blocks = parts.split_parts(recorded("db_probe_postgres_refuses.txt"))
    assert blocks["ready"] == (0, [])
    assert blocks["cluster"][0] == 0 and "via|template1" in blocks["cluster"][1]  # the second try let it in
    code, lines = blocks["ext:postgres"]
    assert code == 2 and "not currently accepting connections" in parts.reason(lines, code)
    assert parts.split_parts("@@app\next|1\n")["app"] == (None, ["ext|1"])  # died inside: no status
    assert parts.reason([], None) == "no answer" and parts.reason(["a|b"], 4) == "exit 4"
    assert parts.rows("a|b\n\nc|d\n") == [["a", "b"], ["c", "d"]]
