"""Unit tests of restart_estimate.py: the backend's stop and start told from what the live server
shows (docker inspect, /proc, its log), never by stopping it."""

import re

import pytest

from fabfile import restart_estimate as re_est
from fabfile.inventory import SiteSettings
from fabfile.runner import Runner
from tests.fakes import FakeContext

SITE = SiteSettings(name="s1")
#: the probe's answer as a lab site gives it (two starts in the log: a restart, then the last start)
ANSWER = """2026-12-02T06:29:20.616181Z|8099|<no value>|<no value>
SigCgt:\t0000000100004002
@@logs
2026-12-02T06:29:11.471755934Z 2026-12-02 06:29:11,468 INFO Application startup complete.
2026-12-02T06:29:19.900000000Z 2026-12-02 06:29:19,900 INFO Shutting down
2026-12-02T06:29:20.350000000Z 2026-12-02 06:29:20,350 INFO Application shutdown complete.
2026-12-02T06:29:20.796181111Z 2026-12-02 06:29:20,796 INFO Application startup complete.
"""


def test_the_start_is_the_last_start_to_the_first_ready_line_after_it():
    facts = re_est.parse(ANSWER)
    assert facts["sigterm"] is True and facts["init"] is False and facts["stop_timeout"] is None
    assert re_est.app_start(facts) == pytest.approx(0.18, abs=1e-6)  # not the earlier run's ready line


def test_the_stop_is_read_from_a_stop_in_the_log_else_from_how_the_process_takes_the_signal():
    assert re_est.app_stop(re_est.parse(ANSWER)) == (pytest.approx(0.45, abs=1e-6), "its last stop, from its log")
    no_stop = re.sub(r".*(Shutting down|shutdown complete).*\n", "", ANSWER)
    assert re_est.app_stop(re_est.parse(no_stop))[0] == 0.0  # it catches SIGTERM: it exits at once
    ignores = no_stop.replace("0000000100004002", "0000000000000002")
    assert re_est.app_stop(re_est.parse(ignores)) == (10.0, "it ignores SIGTERM: docker kills it after its stop "
                                                            "timeout (10s)")
    assert re_est.app_stop(re_est.parse(ignores.replace("<no value>|<no value>", "<no value>|3")))[0] == 3.0
    assert re_est.app_stop(re_est.parse(ignores.replace("<no value>|<no value>", "true|<no value>")))[0] == 0.0
    unknown = no_stop.replace("SigCgt:\t0000000100004002", "SigCgt: unknown")
    assert re_est.app_stop(re_est.parse(unknown))[0] is None  # unknown, never guessed


def answers(probe: str, twins_exit: int = 0):
    return [(r"^i=\$\(docker inspect", probe, 0), (r"docker compose ps -q backend$", "abc\n", twins_exit),
            (r"pg_stat_activity", "3\n", twins_exit), (r"^curl ", "200", 0)]


def test_the_estimate_adds_start_stop_and_the_commands_and_sends_only_reads():
    c = FakeContext(answers(ANSWER))
    est = re_est.estimate(Runner(c, "s1"), SITE)
    assert est["start"] == pytest.approx(0.18) and est["stop"] == pytest.approx(0.45)
    assert est["commands"] is not None and est["seconds"] == pytest.approx(0.18 + 0.45 + est["commands"], abs=0.002)
    assert len(c.commands) == 1 + 3 * re_est.TWIN_SAMPLES
    assert not any(re.search(r"\b(stop|up|restart|kill|rm|start)\b", cmd.replace("StartedAt", "")) for cmd in c.commands)


def test_an_unreadable_part_makes_the_estimate_unknown():
    crashloop = re.sub(r".*startup complete.*\n", "", ANSWER)  # never ready since its last start
    est = re_est.estimate(Runner(FakeContext(answers(crashloop)), "s1"), SITE)
    assert est["start"] is None and est["seconds"] is None and "no 'Application startup complete.' line" in est["how"]
    est = re_est.estimate(Runner(FakeContext(answers(ANSWER, twins_exit=1)), "s1"), SITE)
    assert est["commands"] is None and est["seconds"] is None
    est = re_est.estimate(Runner(FakeContext(answers("Error: No such object: netmon-backend\n")), "s1"), SITE)
    assert est["seconds"] is None
