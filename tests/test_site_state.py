"""The state assembled from the facts (fabfile/site_state.py): the probe's two commands, fed a
lab site's recorded output, and what a fact that failed reads as."""

import pytest

from fabfile import site_state
from fabfile.errors import PreflightError
from fabfile.facts.parts import split_parts
from fabfile.facts.postgres import FLOW_TABLES, db_probe
from fabfile.inventory import SiteSettings
from fabfile.plan import RollbackOptions, preflight
from fabfile.runner import Runner
from fabfile.status import status_report
from tests.fakes import FakeContext, probe_answers, recorded


def test_probe_site_builds_state_from_recorded_output():
    c = FakeContext(probe_answers())
    state = site_state.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert len(c.calls) == 2  # the whole state in two round trips
    assert state.docker and state.app_dir and state.git and state.unknown == {}
    assert state.compose_timescale and state.db_answers and state.plain_image is True
    assert state.extension == {"postgres": False, "template1": False, "netmon": True}
    assert state.hypertables == ["flow_records"] and state.compressed == ["flow_records"]
    assert state.hypertable_bytes == 761856  # what convert's copies will need
    assert state.relations["flow_records"] == ("r", 8) and not state.flow_plain("flow_records")
    assert state.pre_migration_rev() == "21aa2a8a8904da0a6ddfd930623a132043a4b078"
    assert state.backups[0].age == 9 and not state.backups[0].has_sha
    assert [c.status for c in state.containers.values()] == ["running"] * 5 and len(state.ps) == 5
    assert state.build_services == ["backend", "frontend"] and state.lock == "free" and state.journal == []
    assert state.now == 1796118143 and state.db_free_kb == 80511212  # the database's clock read last
    assert not state.rolled_back and state.timescale_anywhere
    # probes never change anything: every command is read-only
    assert all(not cmd.changes for cmd in (site_state.host_probe(SiteSettings()), db_probe(SiteSettings())))


def test_a_rolled_back_site_reads_as_rolled_back():
    c = FakeContext(probe_answers("host_probe_verify_rolled_back.txt", "db_probe_rolled_back.txt"))
    state = site_state.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert state.unknown == {} and state.rolled_back and not state.timescale_anywhere
    assert state.db_image == "postgres:16-alpine" and all(state.flow_plain(t) for t in FLOW_TABLES)


def test_a_database_that_refuses_connections_is_unknown_not_absent():
    """Recorded on a fresh-volume lab site after ALTER DATABASE postgres WITH ALLOW_CONNECTIONS false."""
    c = FakeContext(probe_answers("host_probe_fresh_volume.txt", "db_probe_postgres_refuses.txt"))
    state = site_state.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert state.db_answers and state.databases["postgres"] is False
    assert state.extension["postgres"] is None and "ALLOW_CONNECTIONS true" in state.unknown["ext:postgres"]
    assert state.extension["template1"] is True and state.extension["netmon"] is True  # read through template1
    assert state.preload_timescaledb and state.preload_sourcefile.endswith("/postgresql.conf")
    assert not state.rolled_back
    with pytest.raises(PreflightError, match="cannot read database postgres"):
        site_state.require_known(state, "s1", "ext:postgres")


def test_a_probe_cut_short_makes_its_facts_unknown():
    text = recorded("db_probe_migrated.txt")
    state = site_state.SiteState()
    site_state.apply_db_probe(state, text[: text.index("@@app")] + "@@app\next|1\n")  # died inside the app part
    assert state.db_answers and state.extension["netmon"] is None and "app" in state.unknown
    state = site_state.SiteState()
    site_state.apply_db_probe(state, "@@ready 2\n")
    assert not state.db_answers and "no response" in state.db_error
    state = site_state.SiteState()
    site_state.apply_db_probe(state, text.replace("@@rc tsdb 0", "@@rc tsdb 3"))
    assert state.hypertables == [] and "tsdb" in state.unknown and not state.rolled_back
    state = site_state.SiteState()
    site_state.apply_db_probe(state, text.replace("@@rc cluster 0", "@@rc cluster 2"))
    assert set(state.unknown) == {"databases", "preload", "ext:postgres", "ext:template1", "app", "tsdb"}


def test_failed_compose_ps_and_image_inspect_are_unknown():
    state = site_state.SiteState()
    site_state.apply_host_lines(state, "app=yes\nps=permission denied while trying to connect\nps=ps_rc=1\n"
                                  "plain_image=unknown Cannot connect to the Docker daemon\n")
    assert "ps" in state.unknown and state.plain_image is None and "Docker daemon" in state.unknown["plain_image"]
    reported = ["clock", "backups", "files", "git", "lock", "journal"]  # facts that report their own status
    assert list(state.unknown) == [*reported, "plain_image", "ps"]  # these printed nothing: the script stopped
    assert state.unknown["git"] == "git in the app directory: no answer (the host script stopped before it)"
    state = site_state.SiteState()
    site_state.apply_host_lines(state, "plain_image=no\nlock=free\n" + "".join(f"{fact}.rc=0\n" for fact in reported))
    assert state.plain_image is False and state.unknown == {}


def test_a_docker_exec_that_fails_makes_every_database_fact_unknown():
    c = FakeContext([(r"^sh -c .*docker compose version", recorded("host_probe_migrated.txt"), 0),
                     (r"^docker exec netmon-db sh -c", "", 1,
                      "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n")])
    state = site_state.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert "Cannot connect to the Docker daemon" in state.unknown["db"] and not state.db_answers and not state.rolled_back


def test_a_daemon_that_does_not_answer_makes_the_containers_and_the_database_unknown_not_missing():
    """`docker compose version` works without the daemon; inspect then fails: no container may read
    as missing (a plan would start one), and no database probe is sent."""
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    host = "\n".join(ln for ln in recorded("host_probe_migrated.txt").splitlines()
                     if not ln.startswith(("inspect=", "ps=")))
    host += f"\ninspect={down}\nps={down}\nps=ps_rc=1\n"
    c = FakeContext([(r"^sh -c .*docker compose version", host, 0)])
    state = site_state.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert len(c.calls) == 1 and {"containers", "db", "ps"} <= set(state.unknown)
    assert state.container("netmon-db").status == "unknown" and "Cannot connect" in state.unknown["db"]
    with pytest.raises(PreflightError, match="containers: docker inspect failed: Cannot connect"):
        site_state.require_known(state, "s1", "containers")


@pytest.mark.parametrize("refusal, state_word", [
    ("Error response from daemon: Container 4f1d9c is restarting, wait until the container is running", "restarting"),
    ("Error response from daemon: Container 4f1d9c is not running", "not running"),
    ("Error response from daemon: container 4f1d9c is not running", "not running"),
    ("Error response from daemon: Container 4f1d9c is paused, unpause the container before exec", "paused"),
])
def test_a_container_that_stopped_between_inspect_and_exec_does_not_answer_which_is_known(refusal, state_word):
    """A restart-looping database reads "running" between its crashes: the exec that follows is
    refused by docker, which says what the container is — a fact, so the plan can go on (the fallback)."""
    c = FakeContext([(r"^sh -c .*docker compose version", recorded("host_probe_migrated.txt"), 0),
                     (r"^docker exec netmon-db sh -c", "", 1, refusal + "\n")])
    state = site_state.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert "db" not in state.unknown and not state.db_answers
    assert state.db_error == f"container netmon-db is {state_word}"


def test_status_facts_ride_on_the_two_probe_commands():
    """deep (status): the backend log and scripts/qa_check.sh are parts of the host script, the
    newest flow's age a part of the database script (recorded on a migrated lab site)."""
    c = FakeContext(probe_answers("host_probe_status_migrated.txt", "db_probe_status_migrated.txt"))
    state = site_state.probe_site(Runner(c, "s1"), SiteSettings(name="s1"), deep=True)
    assert len(c.calls) == 2 and state.unknown == {}
    assert state.flow_age == 1 and not state.flow_query_error
    assert len(state.backend_log.splitlines()) == 11 and "rollup" in state.backend_log
    assert state.qa_check and state.qa_failed is None  # scripts/qa_check.sh ran in the host script, and passed
    assert "--tail=200" in c.calls[0]["cmd"] and "\\gexec" in c.calls[1]["cmd"]
    failed = recorded("db_probe_status_migrated.txt").replace("age|1\n@@rc age 0",
                                                              'ERROR:  column "timestamp" does not exist\n@@rc age 1')
    state = site_state.SiteState(db_answers=True)
    site_state.apply_age(state, split_parts(failed)["age"])
    assert state.flow_age is None and "does not exist" in state.flow_query_error


def test_the_two_probe_commands_are_exactly_the_recorded_ones():
    """The split into facts/ sends what the probe sent before it, byte for byte (recorded from the
    single-module probe): same facts, same order, same two round trips."""
    host_cmd, db_cmd = recorded("probe_commands_default_site.txt").split("\n", 1)[1].rstrip("\n").split("\n@@@@\n")
    assert site_state.host_probe(SiteSettings()).cmd == host_cmd
    assert db_probe(SiteSettings()).cmd == db_cmd


def test_git_and_journal_that_fail_are_unknown_in_status_and_a_plan_refuses():
    """Recorded on a migrated lab site with .git/HEAD moved aside and the journal's path a directory:
    each fact reports its own exit status, so neither reads as "no repository" or "no journal"."""
    c = FakeContext(probe_answers("host_probe_git_journal_unreadable.txt", "db_probe_migrated.txt"))
    runner = Runner(c, "s1")
    state = site_state.probe_site(runner, SiteSettings(name="s1"))
    assert set(state.unknown) == {"git", "journal"}
    assert state.unknown["git"].startswith("git in the app directory failed (exit 128: fatal: not a git repository")
    assert "Is a directory" in state.unknown["journal"] and not state.rolled_back
    text = status_report(runner, SiteSettings(name="s1"), state)[0]
    assert "git: unknown (git in the app directory failed (exit 128" in text
    assert "journal: unknown (reading the journal failed (exit 1: tail: error reading" in text
    assert "verdict: state partly unknown" in text and "is not a git repository" not in text
    with pytest.raises(PreflightError, match=r"cannot read the state of s1: journal: .*Is a directory.*; git: "):
        preflight(Runner(FakeContext(probe_answers("host_probe_git_journal_unreadable.txt")), "s1"),
                  SiteSettings(name="s1"), RollbackOptions(mode="clean", yes=True))
