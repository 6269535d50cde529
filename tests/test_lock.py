"""The lock's server side, run for real with this machine's sh, flock and timeout: the shell text
the tool sends is what is tested, not a model of it."""

import json
import subprocess
import time

import pytest

from fabfile.facts.host import lock_script, parse_lock
from fabfile.facts.parts import keyed
from fabfile.inventory import SiteSettings
from fabfile.lock import BUSY, Holder, LockHeld, ServerLock, holder_script, parse_status


def holder(tmp_path, expire: int = 30) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", holder_script(str(tmp_path), expire)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def take(proc: subprocess.Popen, who: dict) -> str:
    proc.stdin.write(json.dumps(who) + "\n")
    proc.stdin.flush()
    return proc.stdout.readline()


def status(tmp_path) -> str:
    """What status reads of the lock: the host script's lock fact (facts/host.lock_script), run for real."""
    out = subprocess.run(["sh", "-c", lock_script(SiteSettings(backup_dir=str(tmp_path)))], capture_output=True, text=True)
    return parse_lock(keyed(out.stdout))


WHO = {"operator": "ana", "laptop": "lt1", "pid": 42, "task": "rollback", "since": "2026-12-01 09:00:00 UTC"}


def test_a_second_run_is_refused_and_told_who_holds_the_lock(tmp_path):
    first = holder(tmp_path)
    assert take(first, WHO).startswith("LOCKED ")
    assert parse_status(status(tmp_path)).describe() == "ana@lt1, pid 42, task rollback, since 2026-12-01 09:00:00 UTC"
    second = subprocess.run(["sh", "-c", holder_script(str(tmp_path))], input=json.dumps({**WHO, "pid": 7}) + "\n",
                            capture_output=True, text=True, timeout=10)
    assert second.returncode == BUSY and Holder.parse(second.stdout).pid == 42
    first.stdin.close()  # the run ends: its channel closes
    assert first.wait(timeout=10) == 0
    assert status(tmp_path).strip() == "free"


def test_a_run_that_died_lets_go_and_a_live_one_keeps_it(tmp_path):
    proc = holder(tmp_path, expire=1)
    assert take(proc, WHO).startswith("LOCKED ")
    for _ in range(4):  # heartbeats keep it, well past the expiry
        time.sleep(0.5)
        proc.stdin.write("hb\n")
        proc.stdin.flush()
        assert proc.poll() is None and parse_status(status(tmp_path)) is not None
    deadline = time.monotonic() + 10  # no heartbeat: let go within the expiry
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.returncode == 0 and status(tmp_path).strip() == "free"
    again = holder(tmp_path)
    assert take(again, {**WHO, "pid": 8}).startswith("LOCKED ")
    again.stdin.close()
    assert again.wait(timeout=10) == 0


class BusyChannel:
    """A channel whose holder script answered "busy" and closed before the request was sent."""

    def __init__(self, answer: bytes):
        self.answer = answer

    def settimeout(self, _t):
        pass

    def exec_command(self, _cmd):
        pass

    def sendall(self, _data):
        raise OSError("Socket is closed")  # what paramiko raises on a channel the server closed

    def recv_ready(self):
        return bool(self.answer)

    def recv(self, _n):
        out, self.answer = self.answer, b""
        return out

    def exit_status_ready(self):
        return True

    def recv_exit_status(self):
        return BUSY

    def close(self):
        pass


class Transport:
    def __init__(self, chan):
        self.chan = chan

    def open_session(self, timeout=None):
        return self.chan


class Conn:
    def __init__(self, chan):
        self.transport = Transport(chan)


def test_a_busy_lock_that_closes_its_channel_first_still_names_its_holder():
    chan = BusyChannel((json.dumps(WHO) + "\n").encode())
    with pytest.raises(LockHeld, match=r"lab1 is busy: another run holds its lock \(ana@lt1, pid 42"):
        ServerLock(Conn(chan), "lab1", "/root", "rollback").acquire(timeout=2)
