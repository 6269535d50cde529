"""fabfile/convert.py: the convert toolkit's SQL, run on a throwaway server of the lab's TimescaleDB
image (the stand-in of tests/lab), and the commands the plan gets from it.

The end-to-end proof (fab over SSH on lab sites under ingestion) is tests/e2e/test_convert.py.
"""

from __future__ import annotations

import shlex

import pytest

from fabfile import convert
from fabfile.inventory import SiteSettings
from tests.lab.conftest import image, workdir  # noqa: F401 - the throwaway servers' fixtures
from tests.lab.images import BIN
from tests.lab.pgcluster import running_cluster


@pytest.fixture(scope="module")
def server(workdir, image):  # noqa: F811 - the fixtures imported above
    with running_cluster(workdir / "cluster", image / BIN) as cluster:
        yield cluster


def migrated(server, db: str) -> None:
    """flow_records a compressed-in-part hypertable with jobs, flow_summary_5m a continuous aggregate."""
    server.psql(f"CREATE DATABASE {db}", db="postgres")
    server.psql("""
CREATE EXTENSION timescaledb;
DO $$BEGIN CREATE ROLE reader_c; EXCEPTION WHEN duplicate_object THEN NULL; END$$;
CREATE TABLE flow_records (id bigserial, "timestamp" timestamptz NOT NULL DEFAULT now(), device_id integer,
  src_ip inet, dst_ip inet, protocol smallint, bytes bigint, packets bigint, PRIMARY KEY (id, "timestamp"));
CREATE INDEX idx_flow_records_device_time ON flow_records (device_id, "timestamp");
GRANT SELECT ON flow_records TO reader_c;
INSERT INTO flow_records ("timestamp", device_id, src_ip, dst_ip, protocol, bytes, packets)
  SELECT now() - g * interval '17 minutes', g % 5, '10.0.0.1', '10.0.0.2', 6, g, 1 FROM generate_series(1, 2000) g;
SELECT create_hypertable('flow_records', 'timestamp', chunk_time_interval => interval '1 day', migrate_data => true);
SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id');
SELECT add_compression_policy('flow_records', interval '7 days');
SELECT add_retention_policy('flow_records', interval '90 days');
SELECT compress_chunk(c) FROM show_chunks('flow_records', older_than => interval '10 days') c;
SELECT _timescaledb_functions.stand_in_create_cagg('flow_summary_5m', $q$
  SELECT time_bucket('5 minutes', "timestamp") AS bucket, device_id, src_ip, dst_ip, protocol,
         sum(bytes) AS bytes, sum(packets) AS packets, count(*) AS flow_count
  FROM flow_records GROUP BY 1, 2, 3, 4, 5 $q$);
CALL refresh_continuous_aggregate('flow_summary_5m', NULL, NULL);
""", db=db)


SRCS = convert.sources(["flow_records"], ["flow_summary_5m"])


def sql_of(command) -> list[str]:
    """The statements a psql command line carries (its -c arguments), or its stdin."""
    if command.stdin is not None:
        return [command.stdin]
    args = shlex.split(command.cmd.split(" 2>&1")[0])
    return [args[i + 1] for i, a in enumerate(args) if a == "-c"]


def run(server, db: str, commands) -> str:
    """Each command's statements in one session, as its psql runs them."""
    return "\n".join(server.psql(";\n".join(sql_of(command)) + ";", db=db).stdout.strip() for command in commands)


def test_convert_keeps_every_row_and_the_tables_shape(server):
    db = "conv"
    migrated(server, db)
    q = lambda sql: server.value(sql, db=db)  # noqa: E731
    compressed = int(q("SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed"))
    chunk = q("SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks WHERE is_compressed "
              "LIMIT 1")
    assert compressed > 0 and q(f"SELECT count(*) FROM ONLY {chunk}") == "0"  # noqa: S608
    site = SiteSettings(name="t")
    assert "paused 2 job(s)" in run(server, db, convert.prepare_commands(site, SRCS))
    assert q("SELECT count(*) FROM timescaledb_information.jobs WHERE scheduled AND job_id >= 1000") == "0"
    run(server, db, convert.copy_commands(site, SRCS))
    # written while the copy existed: an insert into an old and a new slice, an update, a delete
    server.psql("""INSERT INTO flow_records ("timestamp", device_id, bytes) VALUES (now() - interval '3 days', 1, 7),
                   (now() + interval '2 days', 2, 8);
                   UPDATE flow_records SET bytes = -1 WHERE id = 5; DELETE FROM flow_records WHERE id = 6;""", db=db)
    checked = run(server, db, convert.check_commands(site, SRCS))
    assert "flow_records: 2001 rows" in checked and "checksums of every slice" in checked
    server.psql("""INSERT INTO flow_records ("timestamp", device_id, bytes) VALUES (now(), 3, 9)""", db=db)
    before = {t: q(f"SELECT count(*) FROM {t}") for t in ("flow_records", "flow_summary_5m")}  # noqa: S608
    sums = q("SELECT sum(bytes) || '|' || max(id) FROM flow_records")
    switched = run(server, db, convert.switch_commands(site, SRCS))
    assert "flow_records: 2002 rows; counts and checksums of the" in switched
    assert "every other slice unchanged since the online check" in switched
    assert "flow_summary_5m" in switched and "checked whole: an aggregate has no change log" in switched

    assert {t: q(f"SELECT count(*) FROM {t}") for t in before} == before  # noqa: S608
    assert q("SELECT sum(bytes) || '|' || max(id) FROM flow_records") == sums
    assert q("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == "0"
    assert q("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%timescaledb%' OR nspname = 'netmon_rollback'") == "0"
    assert q("SELECT relkind || (SELECT count(*) FROM pg_inherits WHERE inhparent = 'flow_records'::regclass) "
             "FROM pg_class WHERE oid = 'flow_records'::regclass") == "r0"
    assert q("SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index "
             "WHERE indrelid = 'flow_records'::regclass") == \
        "flow_records_pkey,idx_flow_records_device_time,flow_records_timestamp_idx"
    assert q("SELECT has_table_privilege('reader_c', 'flow_records', 'SELECT')") == "t"
    assert q("SELECT pg_get_serial_sequence('flow_records', 'id')") == "public.flow_records_id_seq"
    new_id = int(q("INSERT INTO flow_records (bytes) VALUES (1) RETURNING id"))
    assert new_id > int(sums.split("|")[1])
    # the app's own table for the rollups: its upsert works
    assert q("SELECT relkind FROM pg_class WHERE oid = 'flow_summary_5m'::regclass") == "r"
    server.psql("""INSERT INTO flow_summary_5m SELECT bucket, device_id, src_ip, dst_ip, protocol, 1, 1, 1
                   FROM flow_summary_5m LIMIT 1 ON CONFLICT (bucket, device_id, src_ip, dst_ip, protocol)
                   DO UPDATE SET flow_count = 99""", db=db)
    assert q("SELECT count(*) FROM flow_summary_5m WHERE flow_count = 99") == "1"


def test_check_stops_the_switch_when_a_slice_differs(server):
    db = "convbad"
    migrated(server, db)
    site = SiteSettings(name="t")
    run(server, db, convert.prepare_commands(site, SRCS))
    run(server, db, convert.copy_commands(site, SRCS))
    # rows that bypass the capture trigger (as a chunk dropped by hand would): the check must see them
    server.psql("ALTER TABLE netmon_rollback.flow_records DISABLE TRIGGER ALL; "
                "DELETE FROM netmon_rollback.flow_records WHERE id < 10", db=db)
    server.psql("SELECT netmon_rollback.check('flow_records', true)", db=db)  # re-copies the slice
    assert server.value("SELECT count(*) FROM netmon_rollback.flow_records", db=db) == "2000"
    server.psql("CREATE OR REPLACE FUNCTION netmon_rollback.copy_range(nm name, lo timestamptz, hi timestamptz) "
                "RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'", db=db)  # a copy that cannot repair
    server.psql("DELETE FROM netmon_rollback.flow_records WHERE id < 10", db=db)
    failed = server.psql("BEGIN; SELECT netmon_rollback.check('flow_records', false); COMMIT;", db=db, check=False)
    assert failed.returncode != 0 and "convert check failed for flow_records" in failed.stderr
    assert "rows in the old table" in failed.stderr
    assert server.value("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'", db=db) == "1"
    assert server.value("SELECT count(*) FROM flow_records", db=db) == "2000"


@pytest.mark.parametrize("bypass, why", [
    ("DELETE FROM netmon_rollback.flow_records WHERE id < 10", "a write to the copy that was not the toolkit's"),
    ("SELECT drop_chunks('flow_records', older_than => interval '20 days')", "a chunk was dropped"),
    ("ALTER TABLE flow_records DISABLE TRIGGER netmon_rollback_capture", "the capture trigger is missing or disabled"),
    ("TRUNCATE flow_records", "a TRUNCATE"),
])
def test_the_last_check_reads_every_slice_where_the_change_log_may_have_missed_a_write(server, bypass, why):
    """After the online check only logged writes are re-read, unless something could change rows unlogged."""
    db = "convlog" + str(abs(hash(bypass)) % 1000)
    migrated(server, db)
    site = SiteSettings(name="t")
    for commands in (convert.prepare_commands, convert.copy_commands, convert.check_commands):
        run(server, db, commands(site, SRCS))
    server.psql(bypass, db=db)
    expected = server.value("SELECT count(*) FROM flow_records", db=db)
    switched = run(server, db, convert.switch_commands(site, SRCS))
    assert f"flow_records: {expected} rows; counts and checksums of every slice equal to the old table " \
           f"(checked whole: " in switched and why in switched
    assert server.value("SELECT count(*) FROM flow_records", db=db) == expected
    assert server.value("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'", db=db) == "0"


def test_undo_resumes_the_jobs_and_drops_the_toolkit(server):
    db = "convundo"
    migrated(server, db)
    site = SiteSettings(name="t")
    server.psql("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_retention'", db=db)  # an operator's own pause stays
    run(server, db, convert.prepare_commands(site, SRCS))
    run(server, db, convert.copy_commands(site, SRCS))
    script = convert.undo_commands(site)[0].cmd
    assert "DROP SCHEMA netmon_rollback CASCADE" in script and "alter_job" in script
    for stmt in (convert.RESUME_SQL, "DROP SCHEMA netmon_rollback CASCADE"):
        server.psql(stmt, db=db)
    q = lambda sql: server.value(sql, db=db)  # noqa: E731
    assert q("SELECT string_agg(proc_name || ':' || scheduled, ',' ORDER BY proc_name) FROM timescaledb_information.jobs "
             "WHERE job_id >= 1000") == "policy_compression:true,policy_retention:false"
    assert q("SELECT count(*) FROM pg_trigger WHERE tgname = 'netmon_rollback_capture'") == "0"
    server.psql("INSERT INTO flow_records (bytes) VALUES (1)", db=db)
    assert q("SELECT count(*) FROM flow_records") == "2001"


def test_sources_refuse_bad_names_and_order_aggregates_first():
    assert convert.sources(["flow_records", "interface_metrics"], ["flow_summary_5m"]) == [
        ("flow_summary_5m", "cagg"), ("flow_records", "hypertable"), ("interface_metrics", "hypertable")]
    with pytest.raises(Exception, match="SQL identifier"):
        convert.sources(['x"; DROP TABLE users; --'], [])
