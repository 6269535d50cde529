"""PostgreSQL facts (fabfile/facts/postgres.py): each part of the database script, recorded on lab
sites, through its parser."""

import pytest

from fabfile.facts import postgres
from fabfile.facts.parts import split_parts
from fabfile.inventory import SiteSettings
from tests.fakes import recorded


@pytest.mark.parametrize(("setting", "rest"), [
    ("timescaledb", ""), ("timescaledb,pg_stat_statements", "pg_stat_statements"),
    ("'pg_stat_statements, timescaledb'", "pg_stat_statements"), ("pg_stat_statements", "pg_stat_statements"),
])
def test_remove_timescaledb(setting, rest):
    assert postgres.remove_timescaledb(setting) == rest
    assert postgres.has_timescaledb(setting) is (setting != rest)


def test_recorded_parts_of_a_migrated_site():
    parts = split_parts(recorded("db_probe_migrated.txt"))
    assert postgres.ready_error(parts["ready"][0]) == ""
    cluster = postgres.parse_cluster(parts["cluster"][1])
    assert cluster["databases"] == {"postgres": True, "netmon": True, "template1": True, "template0": False}
    assert cluster["preload"] == ("timescaledb", "command line", "") and cluster["preload_files"] == []
    assert cluster["now"] == 1796118143
    assert postgres.ext_count(parts["ext:postgres"][1]) is False and postgres.ext_count(parts["app"][1]) is True
    assert postgres.parse_app(parts["app"][1]) == {
        "relations": {"flow_records": ("r", 8), "flow_summary_5m": ("r", 0)}, "table_count": 32, "db_size": 12213607,
        "ts_column": "timestamp"}
    assert postgres.parse_tsdb(parts["tsdb"][1]) == {"hypertables": ["flow_records"], "compressed": ["flow_records"],
                                                    "caggs": [], "failed_jobs": 0, "hypertable_bytes": 761856}
    assert postgres.parse_df(parts["df"][1]) == 80511212


def test_recorded_preload_in_postgresql_conf_and_a_database_that_refuses():
    parts = split_parts(recorded("db_probe_postgres_refuses.txt"))
    cluster = postgres.parse_cluster(parts["cluster"][1])
    assert cluster["databases"]["postgres"] is False
    assert cluster["preload_files"] == [("/var/lib/postgresql/data/postgresql.conf", 740, "timescaledb")]
    assert postgres.ext_count(parts["ext:postgres"][1]) is None  # not read: unknown, not "no extension"


def test_recorded_age_of_the_newest_flow_and_no_answer():
    parts = split_parts(recorded("db_probe_status_migrated.txt"))
    assert postgres.parse_age(parts["age"][1]) == 1
    assert postgres.parse_age([]) is None and postgres.parse_df([]) is None
    assert postgres.ready_error(2) == "no response from the server" and postgres.ready_error(None) == "pg_isready did not run"


def test_db_probe_is_one_read_only_docker_exec_with_every_value_quoted():
    site = SiteSettings(db_name="net mon", db_user="u'x")
    cmd = postgres.db_probe(site)
    assert not cmd.changes and cmd.cmd.startswith("docker exec netmon-db sh -c ")
    assert "'u'\"'\"'x'" in postgres.psql_args(site, site.db_name, []) and "'net mon'" in postgres.psql_args(site, "net mon", [])
    assert [ln.split(";")[0] for ln in postgres.age_part(site).splitlines()] == ["echo '@@age'"]
