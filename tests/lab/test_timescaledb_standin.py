"""The TimescaleDB stand-in and image, proven on a throwaway PostgreSQL server.

Each behaviour DESIGN.md §1 says decides a rollback is checked against the server itself: the
image's postgres with the preload, then the plain host binary on the same data directory.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.lab.images import BIN, HOST_BIN, build_timescaledb_image
from tests.lab.pgcluster import Cluster, running_cluster

LIBRARY_MISSING = 'could not access file "$libdir/timescaledb-2.17.2": No such file or directory'
PRELOAD_FATAL = 'FATAL:  could not access file "timescaledb": No such file or directory'


@pytest.fixture(scope="module")
def server(workdir, image):
    """A cluster made by the TimescaleDB image (so its postgresql.conf preloads timescaledb), running."""
    with running_cluster(workdir / "cluster", image / BIN) as cluster:
        yield cluster


def migrated_database(server: Cluster, db: str, rows: int = 500) -> None:
    """A database as the NetMon migration leaves it: flow_records a hypertable holding `rows` rows."""
    server.psql(f"CREATE DATABASE {db}", db="postgres")
    server.psql(f"""
CREATE EXTENSION timescaledb;
CREATE TABLE flow_records (id bigserial, "timestamp" timestamptz NOT NULL DEFAULT now(), device_id integer,
  bytes bigint, PRIMARY KEY (id, "timestamp"));
INSERT INTO flow_records ("timestamp", device_id, bytes)
  SELECT now() - g * interval '15 minutes', g % 5, g FROM generate_series(1, {rows}) g;
SELECT create_hypertable('flow_records', 'timestamp', chunk_time_interval => interval '1 day', migrate_data => true);
""", db=db)


def test_image_tree_resolves_into_itself(image):
    for name in ("postgres", "initdb", "pg_ctl"):
        path = image / BIN / name
        assert path.is_file() and not path.is_symlink()
    assert (image / "usr/lib/postgresql/15/lib/timescaledb.so").read_bytes() == \
        (HOST_BIN.parent / "lib/auth_delay.so").read_bytes()
    assert not (HOST_BIN.parent / "lib/timescaledb.so").exists()
    build_timescaledb_image(image)  # again: a no-op that keeps the tree


def test_image_initdb_preloads_timescaledb(server):
    assert "\nshared_preload_libraries = 'timescaledb'" in (server.data / "postgresql.conf").read_text()
    assert server.value("SHOW shared_preload_libraries") == "timescaledb"
    assert server.value("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'") == "2.17.2"


def test_create_extension_refuses_without_the_preload(server):
    server.stop()
    server.start(None, "shared_preload_libraries=")
    try:
        refused = server.psql("CREATE EXTENSION timescaledb", check=False)
        assert 'extension "timescaledb" must be preloaded' in refused.stderr
        assert "Please preload the timescaledb library via shared_preload_libraries." in refused.stderr
        assert server.value("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == "0"
    finally:
        server.stop()
        server.start()


def test_restoring_is_off_in_a_fresh_session_and_follows_pre_and_post_restore(server):
    """SHOW timescaledb.restoring as test/sql/pg_dump.sql of 2.17.2 reads it, each time in a new session."""
    server.psql("CREATE DATABASE restoring", db="postgres")
    server.psql("CREATE EXTENSION timescaledb", db="restoring")
    assert server.value("SHOW timescaledb.restoring", db="restoring") == "off"
    assert server.value("SELECT timescaledb_pre_restore()", db="restoring") == "t"
    assert server.value("SHOW timescaledb.restoring", db="restoring") == "on"
    assert server.value("SHOW timescaledb.restoring", db="postgres") == "off"  # only the restoring database
    assert server.value("SELECT timescaledb_post_restore()", db="restoring") == "t"
    assert server.value("SHOW timescaledb.restoring", db="restoring") == "off"


def test_create_hypertable_moves_rows_into_chunks(server):
    server.psql("CREATE DATABASE hyper", db="postgres")
    server.psql("""
CREATE EXTENSION timescaledb;
CREATE TABLE flow_records (id bigserial PRIMARY KEY, "timestamp" timestamptz NOT NULL DEFAULT now(), bytes bigint);
INSERT INTO flow_records ("timestamp", bytes) SELECT now() - g * interval '10 minutes', g FROM generate_series(1, 1000) g;
""", db="hyper")
    not_empty = server.psql("SELECT create_hypertable('flow_records', 'timestamp')", db="hyper", check=False)
    assert 'table "flow_records" is not empty' in not_empty.stderr and "migrate_data => true" in not_empty.stderr
    pk = server.psql("SELECT create_hypertable('flow_records', 'timestamp', migrate_data => true)", db="hyper", check=False)
    assert 'TS103: cannot create a unique index without the column "timestamp" (used in partitioning)' in pk.stderr

    server.psql('ALTER TABLE flow_records DROP CONSTRAINT flow_records_pkey, ADD PRIMARY KEY (id, "timestamp")', db="hyper")
    made = server.value("SELECT * FROM create_hypertable('flow_records', 'timestamp', "
                        "chunk_time_interval => interval '1 day', migrate_data => true)", db="hyper")
    assert made == "1|public|flow_records|t"
    assert server.value("SELECT indexdef FROM pg_indexes WHERE indexname = 'flow_records_timestamp_idx'", db="hyper") \
        .endswith('USING btree ("timestamp" DESC)')
    assert server.value("SELECT count(*) FROM ONLY flow_records", db="hyper") == "0"
    assert server.value("SELECT count(*) FROM flow_records", db="hyper") == "1000"
    children = int(server.value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'flow_records'::regclass", db="hyper"))
    assert children >= 7
    assert server.value("SELECT hypertable_name || ':' || num_chunks FROM timescaledb_information.hypertables",
                        db="hyper") == f"flow_records:{children}"
    assert server.value("SELECT DISTINCT chunk_schema FROM timescaledb_information.chunks", db="hyper") == \
        "_timescaledb_internal"

    # New rows go through ts_insert_blocker into their chunk, a new one when none covers them.
    server.psql("INSERT INTO flow_records (\"timestamp\", bytes) VALUES (now(), 1), (now() + interval '30 days', 2)",
                db="hyper")
    assert server.value("SELECT count(*) FROM ONLY flow_records", db="hyper") == "0"
    assert server.value("SELECT count(*) FROM flow_records", db="hyper") == "1002"
    assert server.value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'flow_records'::regclass",
                        db="hyper") == str(children + 1)
    assert server.value("SELECT tableoid::regclass FROM flow_records WHERE bytes = 2", db="hyper") \
        .startswith("_timescaledb_internal._hyper_1_")

    again = server.psql("SELECT create_hypertable('flow_records', 'timestamp')", db="hyper", check=False)
    assert 'TS110: table "flow_records" is already a hypertable' in again.stderr
    skip = server.psql("SELECT created FROM create_hypertable('flow_records', 'timestamp', if_not_exists => true)",
                       db="hyper")
    assert skip.stdout.strip() == "f" and "already a hypertable, skipping" in skip.stderr


def test_policies_jobs_and_time_bucket(server):
    migrated_database(server, "policies")
    q = server.value
    off = server.psql("SELECT add_compression_policy('flow_records', interval '7 days')", db="policies", check=False)
    assert 'compression not enabled on hypertable "flow_records"' in off.stderr
    server.psql("SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id')", db="policies")
    assert q("SELECT compression_enabled FROM timescaledb_information.hypertables", db="policies") == "t"
    assert q("SELECT attname || ':' || segmentby_column_index FROM timescaledb_information.compression_settings "
             "WHERE segmentby_column_index IS NOT NULL", db="policies") == "device_id:1"
    job = int(q("SELECT add_compression_policy('flow_records', interval '7 days')", db="policies"))
    assert job >= 1000
    dup = server.psql("SELECT add_compression_policy('flow_records', interval '7 days')", db="policies", check=False)
    assert dup.returncode != 0
    assert 'compression policy already exists for hypertable or continuous aggregate "flow_records"' in dup.stderr
    assert q("SELECT add_compression_policy('flow_records', interval '7 days', if_not_exists => true)",
             db="policies") == "-1"
    q("SELECT add_retention_policy('flow_records', interval '30 days')", db="policies")
    assert q("SELECT string_agg(proc_name || ':' || hypertable_name, ',' ORDER BY job_id) "
             "FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL", db="policies") == \
        "policy_compression:flow_records,policy_retention:flow_records"
    assert q(f"SELECT config ->> 'compress_after' FROM timescaledb_information.jobs WHERE job_id = {job}",
             db="policies") == "7 days"
    assert q("SELECT count(*) FROM timescaledb_information.job_stats WHERE job_status = 'Scheduled'", db="policies") == "2"
    assert q("SELECT time_bucket('5 minutes', timestamptz '2026-11-24 10:07:31+00')", db="policies") == \
        "2026-11-24 10:05:00+00"
    assert q("SELECT remove_compression_policy('flow_records')", db="policies") == "t"
    gone = server.psql("SELECT remove_compression_policy('flow_records')", db="policies", check=False)
    assert 'compression policy not found for hypertable "flow_records"' in gone.stderr
    assert q("SELECT remove_compression_policy('flow_records', if_exists => true)", db="policies") == "f"
    q("SELECT remove_retention_policy('flow_records')", db="policies")
    assert q("SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL", db="policies") == "0"


CAGG_QUERY = """SELECT _timescaledb_functions.stand_in_create_cagg('flow_summary_5m', $q$
  SELECT time_bucket('5 minutes', "timestamp") AS bucket, device_id, sum(bytes)::bigint AS bytes, count(*) AS flow_count
  FROM flow_records GROUP BY 1, 2 $q$)"""


def test_continuous_aggregate_is_a_view_over_a_materialization_hypertable(server):
    migrated_database(server, "cagg")
    q = server.value
    server.psql(CAGG_QUERY, db="cagg")
    assert q("SELECT relkind FROM pg_class WHERE relname = 'flow_summary_5m'", db="cagg") == "v"
    assert q("SELECT view_name || ':' || hypertable_name || ':' || materialization_hypertable_name "
             "FROM timescaledb_information.continuous_aggregates", db="cagg") == \
        "flow_summary_5m:flow_records:_materialized_hypertable_2"
    assert q("SELECT count(*) FROM flow_summary_5m", db="cagg") == "0"  # WITH NO DATA until refreshed
    server.psql("CALL refresh_continuous_aggregate('flow_summary_5m', NULL, NULL)", db="cagg")
    assert q("SELECT sum(flow_count) FROM flow_summary_5m", db="cagg") == "500"
    assert q("SELECT count(*) FROM ONLY _timescaledb_internal._materialized_hypertable_2", db="cagg") == "0"
    in_block = server.psql("BEGIN; CALL refresh_continuous_aggregate('flow_summary_5m', NULL, NULL); COMMIT",
                           db="cagg", check=False)
    assert in_block.returncode != 0

    refused = server.psql("DROP TABLE flow_summary_5m", db="cagg", check=False)
    assert '42809: "flow_summary_5m" is not a table' in refused.stderr
    as_view = server.psql("DROP VIEW flow_summary_5m", db="cagg", check=False)
    assert "ERROR:  0A000: cannot drop continuous aggregate using DROP VIEW" in as_view.stderr
    assert "HINT:  Use DROP MATERIALIZED VIEW to drop a continuous aggregate." in as_view.stderr
    dropped = server.psql("DROP MATERIALIZED VIEW flow_summary_5m", db="cagg")
    assert "drop cascades to table _timescaledb_internal._hyper_2_" in dropped.stderr
    assert q("SELECT count(*) FROM _timescaledb_catalog.continuous_agg", db="cagg") == "0"
    assert q("SELECT count(*) FROM pg_class WHERE relname ~ '^(_materialized_hypertable|_partial_view|_direct_view)_2$' "
             "OR relname = 'flow_summary_5m'", db="cagg") == "0"
    assert q("SELECT string_agg(table_name, ',') FROM _timescaledb_catalog.hypertable", db="cagg") == "flow_records"


def test_continuous_aggregate_on_the_plain_image_takes_drop_view(server):
    """On the plain image the cagg is what PostgreSQL sees: a view (DROP MATERIALIZED VIEW is 42809)."""
    migrated_database(server, "caggplain")
    server.psql(CAGG_QUERY, db="caggplain")
    server.stop()
    try:
        server.start(HOST_BIN, "shared_preload_libraries=")
        as_matview = server.psql("DROP MATERIALIZED VIEW IF EXISTS flow_summary_5m CASCADE", db="caggplain", check=False)
        assert 'ERROR:  42809: "flow_summary_5m" is not a materialized view' in as_matview.stderr
        assert "HINT:  Use DROP VIEW to remove a view." in as_matview.stderr
        as_view = server.psql("DROP VIEW flow_summary_5m", db="caggplain", check=False)
        assert f"58P01: {LIBRARY_MISSING}" in as_view.stderr  # the extension's sql_drop trigger
        server.psql("ALTER EVENT TRIGGER timescaledb_ddl_command_end DISABLE; "
                    "ALTER EVENT TRIGGER timescaledb_ddl_sql_drop DISABLE; DROP VIEW flow_summary_5m", db="caggplain")
        assert server.value("SELECT count(*) FROM pg_class WHERE relname = 'flow_summary_5m'", db="caggplain") == "0"
    finally:
        server.stop()
        server.start()


def test_pg_dump_carries_the_catalog_and_the_chunks(server):
    migrated_database(server, "dumped")
    server.psql("SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id'); "
                "SELECT add_compression_policy('flow_records', interval '7 days');", db="dumped")
    dump = subprocess.run([HOST_BIN / "pg_dump", "-h", server.sockets, "-p", str(server.port), "-U", "netmon", "dumped"],
                          capture_output=True, text=True, check=True).stdout
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public;" in dump
    for table in ("_timescaledb_catalog.hypertable", "_timescaledb_catalog.chunk", "_timescaledb_config.bgw_job"):
        rows = dump.split(f"COPY {table} ", 1)[1].split("\\.", 1)[0].splitlines()[1:]
        assert rows, f"{table} has no rows in the dump"
    assert "CREATE TABLE _timescaledb_internal._hyper_1_1_chunk" in dump
    assert "Telemetry Reporter" not in dump  # default jobs (id < 1000) are the extension's own


def test_drop_table_cascade_forgets_the_hypertable(server):
    migrated_database(server, "droptable")
    server.psql("SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id'); "
                "SELECT add_compression_policy('flow_records', interval '7 days');", db="droptable")
    server.psql("DROP TABLE flow_records CASCADE", db="droptable")
    for table in ("hypertable", "dimension", "chunk", "chunk_constraint", "dimension_slice", "compression_settings"):
        assert server.value(f"SELECT count(*) FROM _timescaledb_catalog.{table}", db="droptable") == "0"
    assert server.value("SELECT count(*) FROM _timescaledb_config.bgw_job WHERE id >= 1000", db="droptable") == "0"
    assert server.value("SELECT count(*) FROM pg_tables WHERE schemaname = '_timescaledb_internal' "
                        "AND tablename <> 'bgw_job_stat'", db="droptable") == "0"


def test_drop_extension_cascade_leaves_empty_plain_roots(server):
    migrated_database(server, "dropext")
    server.psql("DROP EXTENSION timescaledb CASCADE", db="dropext")
    q = server.value
    assert q("SELECT count(*) FROM flow_records", db="dropext") == "0"
    assert q("SELECT count(*) FROM pg_inherits", db="dropext") == "0"
    assert q("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'flow_records'::regclass", db="dropext") == "0"
    assert q("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%timescaledb%'", db="dropext") == "0"
    assert q("SELECT count(*) FROM pg_event_trigger", db="dropext") == "0"
    server.psql("INSERT INTO flow_records (bytes) VALUES (1)", db="dropext")
    assert q("SELECT count(*) FROM ONLY flow_records", db="dropext") == "1"


def test_row_triggers_reach_every_chunk_old_and_new(server):
    """A row trigger made on a hypertable fires for rows in its chunks, including chunks made after it
    (TimescaleDB clones it onto each chunk); DROP TRIGGER takes the clones away (test/sql/triggers.sql)."""
    migrated_database(server, "triggers")
    q = server.value
    server.psql("""
CREATE TABLE changes (slice timestamptz);
CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO changes VALUES (date_trunc('day', COALESCE(NEW."timestamp", OLD."timestamp"))); RETURN NULL; END $$;
CREATE TRIGGER capture AFTER INSERT OR UPDATE OR DELETE ON flow_records FOR EACH ROW EXECUTE FUNCTION log_change();
INSERT INTO flow_records ("timestamp", bytes) VALUES (now() - interval '1 day', 1), (now() + interval '30 days', 2);
UPDATE flow_records SET bytes = 3 WHERE bytes = 10;
DELETE FROM flow_records WHERE bytes = 11;
""", db="triggers")
    assert q("SELECT count(*) FROM changes", db="triggers") == "4"
    chunks = int(q("SELECT count(*) FROM show_chunks('flow_records')", db="triggers"))
    assert q("SELECT count(*) FROM pg_trigger WHERE tgname = 'capture'", db="triggers") == str(chunks + 1)
    server.psql("DROP TRIGGER capture ON flow_records", db="triggers")
    assert q("SELECT count(*) FROM pg_trigger WHERE tgname = 'capture'", db="triggers") == "0"
    server.psql("INSERT INTO flow_records (bytes) VALUES (4)", db="triggers")
    assert q("SELECT count(*) FROM changes", db="triggers") == "4"


def test_plain_image_refuses_the_preload_and_the_extensions_ddl(server):
    migrated_database(server, "plain")
    server.stop()
    try:
        fatal = subprocess.run(["runuser", "-u", "postgres", "--", HOST_BIN / "postgres", "-D", server.data,
                                *server.options("shared_preload_libraries=timescaledb")],
                               capture_output=True, text=True, timeout=30)
        assert fatal.returncode != 0 and PRELOAD_FATAL in fatal.stderr

        server.start(HOST_BIN, "shared_preload_libraries=")
        unknown = server.psql("SHOW timescaledb.restoring", db="plain", check=False)  # no library: no such setting
        assert 'unrecognized configuration parameter "timescaledb.restoring"' in unknown.stderr
        dropped = server.psql("DROP TABLE IF EXISTS flow_records CASCADE", db="plain", check=False)
        assert f"ERROR:  58P01: {LIBRARY_MISSING}" in dropped.stderr
        created = server.psql("CREATE TABLE devices (id integer)", db="plain", check=False)
        assert f"ERROR:  58P01: {LIBRARY_MISSING}" in created.stderr
        inserted = server.psql("INSERT INTO flow_records (bytes) VALUES (1)", db="plain", check=False)
        assert f"58P01: {LIBRARY_MISSING}" in inserted.stderr
        assert server.value("SELECT count(*) FROM flow_records", db="plain") == "500"  # reads need no library
        assert server.value("SELECT hypertable_name FROM timescaledb_information.hypertables", db="plain") == "flow_records"

        server.psql("ALTER EVENT TRIGGER timescaledb_ddl_command_end DISABLE; "
                    "ALTER EVENT TRIGGER timescaledb_ddl_sql_drop DISABLE;", db="plain")
        server.psql("DROP TABLE flow_records CASCADE", db="plain")
        assert server.value("SELECT count(*) FROM pg_inherits", db="plain") == "0"
    finally:
        server.stop()
        server.start()


def oldest_chunk(server: Cluster, db: str) -> str:
    return server.value("SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
                        "WHERE hypertable_name = 'flow_records' ORDER BY range_start LIMIT 1", db=db)


def test_compressed_chunk_rows_are_read_only_through_the_hypertable(server):
    migrated_database(server, "compressed")
    q = server.value
    server.psql("SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id')", db="compressed")
    chunk = oldest_chunk(server, "compressed")
    in_chunk = q(f"SELECT count(*) FROM ONLY {chunk}", db="compressed")
    assert int(in_chunk) > 0
    assert q(f"SELECT compress_chunk('{chunk}')", db="compressed") == chunk
    assert q(f"SELECT count(*) FROM ONLY {chunk}", db="compressed") == "0"
    assert q(f"SELECT count(*) FROM {chunk}", db="compressed") == in_chunk  # TimescaleDB decompresses a chunk read too
    assert q("SELECT count(*) FROM flow_records", db="compressed") == "500"
    assert q("SELECT string_agg(chunk_name, ',') FROM timescaledb_information.chunks WHERE is_compressed",
             db="compressed") == chunk.split(".")[1]
    assert q(f"SELECT z.table_name FROM _timescaledb_catalog.chunk c JOIN _timescaledb_catalog.chunk z "
             f"ON z.id = c.compressed_chunk_id WHERE format('%I.%I', c.schema_name, c.table_name) = '{chunk}'",
             db="compressed").startswith("compress_hyper_2_")
    again = server.psql(f"SELECT compress_chunk('{chunk}')", db="compressed")
    assert "already compressed" in again.stderr
    refused = server.psql(f"SELECT compress_chunk('{chunk}', if_not_compressed => false)", db="compressed", check=False)
    assert "is already compressed" in refused.stderr

    # A row written into a compressed chunk's range stays uncompressed (status 9) until compressed again.
    server.psql(f"INSERT INTO flow_records (\"timestamp\", bytes) SELECT min(\"timestamp\"), -1 FROM {chunk}", db="compressed")
    assert q(f"SELECT count(*) FROM ONLY {chunk}", db="compressed") == "1"
    assert q(f"SELECT status FROM _timescaledb_catalog.chunk WHERE format('%I.%I', schema_name, table_name) = '{chunk}'",
             db="compressed") == "9"
    server.psql(f"SELECT compress_chunk('{chunk}')", db="compressed")
    assert q(f"SELECT count(*) FROM ONLY {chunk}", db="compressed") == "0"

    assert q(f"SELECT decompress_chunk('{chunk}')", db="compressed") == chunk
    assert q(f"SELECT count(*) FROM ONLY {chunk}", db="compressed") == str(int(in_chunk) + 1)
    assert q("SELECT count(*) FROM _timescaledb_catalog.chunk WHERE hypertable_id = 2", db="compressed") == "0"
    assert q("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'compress\\_hyper\\_%'", db="compressed") == "0"


def test_due_jobs_run_and_a_paused_job_does_not(server):
    """The lab's scheduler entry point: policies compress and drop old chunks; alter_job pauses one."""
    migrated_database(server, "jobs")
    q = server.value
    server.psql("SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id')", db="jobs")
    compress = q("SELECT add_compression_policy('flow_records', interval '2 days')", db="jobs")
    retain = q("SELECT add_retention_policy('flow_records', interval '4 days', schedule_interval => interval '1 hour')",
               db="jobs")
    assert q(f"SELECT schedule_interval || ' ' || fixed_schedule FROM timescaledb_information.jobs WHERE job_id = {retain}",
             db="jobs") == "01:00:00 false"
    server.psql(f"SELECT alter_job({retain}, scheduled => false)", db="jobs")
    assert q("SELECT _timescaledb_functions.stand_in_run_due_jobs('0 seconds')", db="jobs") == "1"
    assert q("SELECT _timescaledb_functions.stand_in_run_due_jobs('0 seconds')", db="jobs") == "1"
    stats = q("SELECT string_agg(job_id || ':' || job_status || ':' || total_runs, ',' ORDER BY job_id) "
              "FROM timescaledb_information.job_stats", db="jobs")
    assert stats == f"{compress}:Scheduled:2,{retain}:Paused:0"
    compressed = q("SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed", db="jobs")
    assert int(compressed) >= 2
    assert q("SELECT count(*) FROM timescaledb_information.chunks "
             "WHERE NOT is_compressed AND range_end <= now() - interval '2 days'", db="jobs") == "0"
    assert q("SELECT count(*) FROM flow_records", db="jobs") == "500"
    chunks = int(q("SELECT count(*) FROM timescaledb_information.chunks", db="jobs"))

    server.psql(f"SELECT alter_job({retain}, scheduled => true)", db="jobs")
    assert q("SELECT _timescaledb_functions.stand_in_run_due_jobs('0 seconds')", db="jobs") == "2"
    assert q("SELECT count(*) FROM timescaledb_information.chunks WHERE range_end <= now() - interval '4 days'",
             db="jobs") == "0"
    assert int(q("SELECT count(*) FROM timescaledb_information.chunks", db="jobs")) < chunks
    assert int(q("SELECT count(*) FROM flow_records", db="jobs")) < 500
    assert q("SELECT _timescaledb_functions.stand_in_run_due_jobs('1 hour')", db="jobs") == "0"  # not due again yet
