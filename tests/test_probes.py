from pathlib import Path

import pytest

from fabfile import probes
from fabfile.errors import PreflightError
from fabfile.inventory import SiteSettings
from fabfile.runner import Runner
from tests.fakes import FakeContext

NDJSON = (
    '{"Command":"docker-entrypoint.sh postgres","ExitCode":0,"Health":"","Image":"timescale/timescaledb:latest-pg16",'
    '"Name":"netmon-db","Service":"db","State":"running","Status":"Up 5 minutes"}\n'
    '{"ExitCode":1,"Image":"netmon-backend","Name":"netmon-backend","Service":"backend","State":"restarting",'
    '"Status":"Restarting (1) 3 seconds ago"}\n'
)
COMPOSE_TSDB = ("services:\n  db:\n    image: timescale/timescaledb:latest-pg16\n"
                "    command: postgres -c shared_preload_libraries=timescaledb\n")
ARRAY = ('[{"Name":"netmon-db","Service":"db","State":"running"},'
         '{"Name":"netmon-nginx","Service":"nginx","State":"exited","ExitCode":0}]')


def test_compose_ps_ndjson():
    ps = probes.parse_compose_ps(NDJSON)
    assert [(p["Service"], p["State"]) for p in ps] == [("db", "running"), ("backend", "restarting")]


def test_compose_ps_array_and_null():
    assert [p["Name"] for p in probes.parse_compose_ps(ARRAY)] == ["netmon-db", "netmon-nginx"]
    assert probes.parse_compose_ps("null\n") == []
    assert probes.parse_compose_ps("") == []


def test_inspect_states_with_and_without_health():
    text = ("/netmon-db|running|healthy|0|timescale/timescaledb:latest-pg16\n"
            "/netmon-backend|restarting||7|netmon-backend\n"
            "/netmon-redis|exited|<no value>|0|redis:7-alpine\n")
    got = probes.parse_inspect(text)
    assert got["netmon-db"].status == "running" and got["netmon-db"].health == "healthy"
    assert got["netmon-backend"].restarts == 7 and got["netmon-backend"].status == "restarting"
    assert got["netmon-redis"].health == ""


def test_inspect_started_at_as_docker_prints_it():
    got = probes.parse_inspect("/netmon-backend|running||3|netmon-backend|2026-12-01T09:42:15.123456789Z\n"
                               "/netmon-nginx|created||0|nginx:alpine|0001-01-01T00:00:00Z\n")
    assert got["netmon-backend"].started == pytest.approx(1796118135.123, abs=0.01)
    assert got["netmon-nginx"].started is None


TOC = """;
; Archive created at 2025-01-01 00:00:00 UTC
;     dbname: netmon
;     Format: CUSTOM
;
; Selected TOC Entries:
;
2; 3079 16385 EXTENSION - uuid-ossp
4025; 0 0 COMMENT - EXTENSION "uuid-ossp"
216; 1259 16396 TABLE public alerts netmon
230; 1259 16500 TABLE public flow_records netmon
231; 1259 16510 MATERIALIZED VIEW public flow_summary_5m netmon
3876; 0 16396 TABLE DATA public alerts netmon
3877; 0 16500 TABLE DATA public flow_records netmon
3880; 2606 16600 FK CONSTRAINT public interfaces interfaces_device_id_fkey netmon
"""


def test_toc_parse_and_clean_dump_has_no_problems():
    entries = probes.parse_toc(TOC)
    kinds = {(e.kind, e.name) for e in entries}
    assert ("TABLE DATA", "flow_records") in kinds
    assert ("MATERIALIZED VIEW", "flow_summary_5m") in kinds
    assert ("FK CONSTRAINT", "interfaces") in kinds
    assert probes.toc_problems(entries) == []


def test_toc_with_timescaledb_objects_is_refused():
    text = TOC + "5; 3079 17000 EXTENSION - timescaledb\n300; 1259 17100 TABLE _timescaledb_internal _hyper_1_1_chunk netmon\n"
    problems = probes.toc_problems(probes.parse_toc(text))
    assert problems and "TimescaleDB objects" in problems[0]


def test_toc_without_flow_records_is_refused():
    text = "216; 1259 16396 TABLE public alerts netmon\n"
    assert probes.toc_problems(probes.parse_toc(text)) == ["it holds no flow_records table"]


def test_readback_whole_vs_truncated():
    good = probes.parse_readback("rows public.a 3\nrows public.flow_records 10\nend 0\n", "pg_restore_exit=0\n")
    assert good.ok and good.counts == {"public.a": 3, "public.flow_records": 10}
    cut = probes.parse_readback("rows public.a 3\nend 1\n",
                                "pg_restore: error: could not read from input file: end of file\npg_restore_exit=1\n")
    assert not cut.ok and "end of file" in cut.errors[0]
    silent = probes.parse_readback("end 0\n", "pg_restore_exit=1\n")
    assert not silent.ok


def test_restore_errors_reads_output_not_only_exit():
    out = ("pg_restore: error: could not execute query: ERROR:  relation exists\n"
           "pg_restore: warning: errors ignored on restore: 1\n")
    assert probes.restore_errors(out, "", 0)[0] == "pg_restore: errors ignored on restore: 1"
    assert probes.restore_errors("", "", 0) == []
    assert probes.restore_errors("", "", 1) == ["pg_restore exited 1"]


@pytest.mark.parametrize(("setting", "rest"), [
    ("timescaledb", ""), ("timescaledb,pg_stat_statements", "pg_stat_statements"),
    ("'pg_stat_statements, timescaledb'", "pg_stat_statements"), ("pg_stat_statements", "pg_stat_statements"),
])
def test_remove_timescaledb(setting, rest):
    assert probes.remove_timescaledb(setting) == rest


def test_compose_db_service():
    text = COMPOSE_TSDB
    db = probes.compose_db_service(text)
    assert probes.is_timescale_image(db["image"]) and probes.command_preloads(db["command"])
    assert probes.compose_db_service(": [") == {}


RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> str:
    """Output of the real probe commands on a lab site (tests/recorded/, made with ssh against it)."""
    return (RECORDED / name).read_text()


def _migrated_answers(host: str = "host_probe_migrated.txt", db: str = "db_probe_migrated.txt"):
    return [
        (r"^sh -c .*docker compose version", recorded(host), 0),
        (r"^docker exec netmon-db sh -c .*@@ready", recorded(db), 0),
    ]


def test_probe_site_builds_state_from_recorded_output():
    c = FakeContext(_migrated_answers())
    state = probes.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
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
    assert not state.rolled_back and state.timescale_anywhere
    # probes never change anything: every command is read-only
    assert all(not cmd.changes for cmd in (probes.host_probe(SiteSettings()), probes.db_probe(SiteSettings())))


def test_a_database_that_refuses_connections_is_unknown_not_absent():
    """Recorded on a fresh-volume lab site after ALTER DATABASE postgres WITH ALLOW_CONNECTIONS false."""
    c = FakeContext(_migrated_answers("host_probe_fresh_volume.txt", "db_probe_postgres_refuses.txt"))
    state = probes.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert state.db_answers and state.databases["postgres"] is False
    assert state.extension["postgres"] is None and "ALLOW_CONNECTIONS true" in state.unknown["ext:postgres"]
    assert state.extension["template1"] is True and state.extension["netmon"] is True  # read through template1
    assert not state.rolled_back
    with pytest.raises(PreflightError, match="cannot read database postgres"):
        probes.require_known(state, "s1", "ext:postgres")


def test_a_probe_cut_short_makes_its_facts_unknown():
    text = recorded("db_probe_migrated.txt")
    state = probes.SiteState()
    probes.apply_db_probe(state, text[: text.index("@@app")] + "@@app\next|1\n")  # died inside the app part
    assert state.db_answers and state.extension["netmon"] is None and "app" in state.unknown
    state = probes.SiteState()
    probes.apply_db_probe(state, "@@ready 2\n")
    assert not state.db_answers and "no response" in state.db_error
    state = probes.SiteState()
    probes.apply_db_probe(state, text.replace("@@rc tsdb 0", "@@rc tsdb 3"))
    assert state.hypertables == [] and "tsdb" in state.unknown and not state.rolled_back


def test_failed_compose_ps_and_image_inspect_are_unknown():
    state = probes.SiteState(app_dir=True)
    probes.apply_host_lines(state, "app=yes\nps=permission denied while trying to connect\nps=ps_rc=1\n"
                                   "plain_image=unknown Cannot connect to the Docker daemon\n")
    assert "ps" in state.unknown and state.plain_image is None and "Docker daemon" in state.unknown["plain_image"]
    state = probes.SiteState()
    probes.apply_host_lines(state, "plain_image=no\n")
    assert state.plain_image is False and state.unknown == {}


def test_status_facts_ride_on_the_two_probe_commands():
    """deep (status): the backend log is a part of the host script, the newest flow's age a part of
    the database script (recorded on a migrated lab site)."""
    c = FakeContext([(r"^sh -c .*docker compose version", recorded("host_probe_status_migrated.txt"), 0),
                     (r"^docker exec netmon-db sh -c .*@@ready", recorded("db_probe_status_migrated.txt"), 0)])
    state = probes.probe_site(Runner(c, "s1"), SiteSettings(name="s1"), deep=True)
    assert len(c.calls) == 2 and state.unknown == {}
    assert state.flow_age == 1 and not state.flow_query_error
    assert len(state.backend_log.splitlines()) == 156 and "rollup" in state.backend_log
    assert "--tail=200" in c.calls[0]["cmd"] and "\\gexec" in c.calls[1]["cmd"]
    failed = recorded("db_probe_status_migrated.txt").replace("age|1\n@@rc age 0",
                                                              'ERROR:  column "timestamp" does not exist\n@@rc age 1')
    state = probes.SiteState(db_answers=True)
    probes.apply_age(state, probes.split_parts(failed)["age"])
    assert state.flow_age is None and "does not exist" in state.flow_query_error


def test_parts_run_alongside_the_host_script_and_read_stdin_on_fd_3():
    extra = probes.Extra(host=["echo a", "echo b"], stdin="{}\n")
    script = probes.with_parts("first\nrest", extra)
    lines = script.splitlines()
    assert lines[0] == "exec 3<&0 </dev/null; first"  # nothing but the parts can read stdin
    assert lines.index("rest") > max(i for i, ln in enumerate(lines) if "echo b" in ln)  # started before the rest
    assert lines[-3:-1] == ["wait", '[ -n "$xd" ] && cat "$xd/0" "$xd/1" 2>/dev/null; [ -n "$xd" ] && rm -rf "$xd"']


def test_parts_script_in_a_real_shell_keeps_stdin_for_the_parts_and_their_order():
    import subprocess  # noqa: PLC0415

    extra = probes.Extra(host=["sleep 0.3; echo slow", "tr a-z A-Z <&3"], stdin="secret\n")
    script = probes.with_parts("cat; echo main", extra)  # the script's own cat must not eat the parts' stdin
    out = subprocess.run(["sh", "-c", script], input="secret\n", capture_output=True, text=True, timeout=10)
    assert out.stdout.splitlines() == ["main", "slow", "SECRET"]
