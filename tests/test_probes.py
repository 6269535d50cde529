import pytest

from fabfile import probes
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


def _migrated_answers():
    return [
        (r"^sh -c .*docker compose version", "docker=yes\napp=yes\ncompose_file=yes\nnow=1000000\nbackup_free_kb=900000\n"
         "backup=2048|999000|sha|/root/netmon_pre_tsdb_20250101_000000.dump\nfile=docker-compose.yml\ngit=yes\n", 0),
        (r"^cat /root/netmon/docker-compose.yml",
         COMPOSE_TSDB, 0),
        (r"git log", "head=bbb\nrev=bbb tsdb\nrev=aaa plain\n", 0),
        (r"compose ps", NDJSON, 0),
        (r"^docker inspect", "/netmon-db|running||0|timescale/timescaledb:latest-pg16\n/netmon-backend|running||0|b\n", 0),
        (r"-d postgres .*pg_database", "db|netmon|t|f\ndb|postgres|t|f\ndb|template1|t|t\ndb|template0|f|t\n"
         "preload|timescaledb|command line|\nnow|1000000\n", 0),
        (r"-d template1", "", 0),
        (r"-d netmon .*pg_class", "ext|timescaledb\nrel|flow_records|r|3\nrel|flow_summary_5m|r|0\ntables|32\ntables_all|34\n"
         "size|50000000\ntscol|timestamp\n", 0),
        (r"timescaledb_information", "hyper|flow_records|true\n", 0),
        (r" df ", "800000\n", 0),
    ]


def test_probe_site_builds_state_from_recorded_output():
    c = FakeContext(_migrated_answers())
    state = probes.probe_site(Runner(c, "s1"), SiteSettings(name="s1"))
    assert state.docker and state.app_dir and state.git
    assert state.compose_timescale and state.db_answers
    assert state.extension == {"postgres": False, "template1": False, "netmon": True}
    assert state.hypertables == ["flow_records"] and state.compressed == ["flow_records"]
    assert state.relations["flow_records"] == ("r", 3) and not state.flow_plain("flow_records")
    assert state.pre_migration_rev() == "aaa"
    assert state.backups[0].age == 1000 and state.backups[0].has_sha
    assert not state.rolled_back and state.timescale_anywhere
    # probes never change anything: every command is read-only
    assert all(not any(w in cmd for w in ("DROP", "ALTER", "rm ", "mv ", "down", "up -d")) for cmd in c.commands)
