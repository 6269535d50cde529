# ruff: noqa: E501  (expected outputs are psql's wide tables, as the .out files have them)
"""The TimescaleDB stand-in held against TimescaleDB 2.17.2's own regression tests.

Each case runs statements of one regression test of timescale/timescaledb at tag 2.17.2 (the file
is named in the case) the way its runner does (test/runner.sh: psql with VERBOSITY=terse and
ECHO=all, pg_regress's date, time zone and interval styles) and compares the transcript with that
file's expected output (test/expected/*.out, tsl/test/expected/*.out), for what a rollback or a
convert touches: renames, drops, chunk DDL guards, constraints on chunks, upserts, policies, jobs,
compression, continuous aggregates.

Adapted where the stand-in cannot follow, and each case says how: time columns are timestamptz
(the stand-in partitions nothing else; the expected values are the same rows in that type), space
partitions are left out (so num_dimensions is 1), `ALTER TABLE ... SET (timescaledb.compress ...)`
and `CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous)` become the stand-in's helpers,
and object owners are this cluster's user. Differences that remain are strict xfails, so fixing
one shows.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import pytest

from tests.lab.images import BIN, HOST_BIN
from tests.lab.pgcluster import Cluster, running_cluster

# pg_regress's session settings, which the expected outputs were made with.
REGRESS_OPTIONS = "-c datestyle=Postgres,MDY -c timezone=PST8PDT -c intervalstyle=postgres_verbose"


@dataclass
class Case:
    """`transcript` is the test file's expected output (ECHO=all: each statement, then what it
    printed) with the statements' lines marked "> "; they are what runs."""

    source: str  # the regression test the statements and the expected output come from
    setup: str  # run first, quietly, stopping at an error
    transcript: str
    adapted: str = ""

    @property
    def statements(self) -> str:
        return "".join(line[2:] + "\n" for line in self.transcript.splitlines() if line.startswith(">"))

    @property
    def expected(self) -> str:
        return "".join((line[2:] if line.startswith(">") else line) + "\n" for line in self.transcript.splitlines())


CASES = {
    "rename-and-set-schema-follow": Case(
        "test/sql/drop_rename_hypertable.sql",
        """CREATE TABLE PUBLIC."two_Partitions" ("timeCustom" timestamptz NOT NULL, device_id TEXT NOT NULL,
             series_0 DOUBLE PRECISION NULL);
           SELECT create_hypertable('"public"."two_Partitions"', 'timeCustom');
           INSERT INTO "two_Partitions" VALUES ('2009-11-10 23:00:00+00', 'dev1', 1.5);""",
        """> ALTER TABLE "two_Partitions" RENAME TO "newname";
> SELECT * FROM _timescaledb_catalog.hypertable;
 id | schema_name | table_name | associated_schema_name | associated_table_prefix | num_dimensions | chunk_sizing_func_schema |  chunk_sizing_func_name  | chunk_target_size | compression_state | compressed_hypertable_id | status
----+-------------+------------+------------------------+-------------------------+----------------+--------------------------+--------------------------+-------------------+-------------------+--------------------------+--------
  1 | public      | newname    | _timescaledb_internal  | _hyper_1                |              1 | _timescaledb_functions   | calculate_chunk_interval |                 0 |                 0 |                          |      0
(1 row)

> CREATE SCHEMA "newschema";
> ALTER TABLE "newname" SET SCHEMA "newschema";
> SELECT * FROM _timescaledb_catalog.hypertable;
 id | schema_name | table_name | associated_schema_name | associated_table_prefix | num_dimensions | chunk_sizing_func_schema |  chunk_sizing_func_name  | chunk_target_size | compression_state | compressed_hypertable_id | status
----+-------------+------------+------------------------+-------------------------+----------------+--------------------------+--------------------------+-------------------+-------------------+--------------------------+--------
  1 | newschema   | newname    | _timescaledb_internal  | _hyper_1                |              1 | _timescaledb_functions   | calculate_chunk_interval |                 0 |                 0 |                          |      0
(1 row)

> DROP TABLE "newschema"."newname";
> SELECT * FROM _timescaledb_catalog.hypertable;
 id | schema_name | table_name | associated_schema_name | associated_table_prefix | num_dimensions | chunk_sizing_func_schema | chunk_sizing_func_name | chunk_target_size | compression_state | compressed_hypertable_id | status
----+-------------+------------+------------------------+-------------------------+----------------+--------------------------+------------------------+-------------------+-------------------+--------------------------+--------
(0 rows)

> CREATE TABLE renametable (foo int);
> ALTER TABLE "renametable" RENAME TO "newname_none_ht";
> SELECT * FROM "newname_none_ht";
 foo
-----
(0 rows)

""",
        "timestamptz time column, no space partition (num_dimensions 1), one row",
    ),
    "chunk-ddl-and-inheritance-refused": Case(
        "test/sql/ddl_errors.sql",
        """CREATE TABLE PUBLIC."Hypertable_1" (time timestamptz NOT NULL, "Device_id" TEXT NOT NULL,
             temp_c int NOT NULL DEFAULT -1);
           CREATE INDEX ON PUBLIC."Hypertable_1" (time, "Device_id");
           SELECT * FROM create_hypertable('"public"."Hypertable_1"', 'time');
           INSERT INTO "Hypertable_1" VALUES ('2000-01-01', 1, 0);""",
        """> \\set ON_ERROR_STOP 0
> SELECT * FROM create_hypertable('"public"."Hypertable_1"', 'time');
ERROR:  table "Hypertable_1" is already a hypertable
> ALTER TABLE _timescaledb_internal._hyper_1_1_chunk ALTER COLUMN temp_c DROP NOT NULL;
ERROR:  operation not supported on chunk tables
> \\set ON_ERROR_STOP 1
> CREATE TABLE PUBLIC."Parent" (
>   time timestamptz NOT NULL,
>   "Device_id" TEXT NOT NULL,
>   temp_c int NOT NULL DEFAULT -1
> );
> \\set ON_ERROR_STOP 0
> ALTER TABLE "Hypertable_1" INHERIT "Parent";
ERROR:  hypertables do not support inheritance
> ALTER TABLE _timescaledb_internal._hyper_1_1_chunk INHERIT "Parent";
ERROR:  operation not supported on chunk tables
> ALTER TABLE _timescaledb_internal._hyper_1_1_chunk NO INHERIT "Parent";
ERROR:  operation not supported on chunk tables
> \\set ON_ERROR_STOP 1
> CREATE TABLE PUBLIC."Child" () INHERITS ("Parent");
> \\set ON_ERROR_STOP 0
> SELECT * FROM create_hypertable('"public"."Parent"', 'time');
ERROR:  table "Parent" is already partitioned
> SELECT * FROM create_hypertable('"public"."Child"', 'time');
ERROR:  table "Child" is already partitioned
> \\set ON_ERROR_STOP 1
""",
        "timestamptz time column, no space partition or chunk interval arguments",
    ),
    "drop-hypertable-with-dependencies": Case(
        "test/sql/drop_hypertable.sql",
        """""",
        """> CREATE TABLE hyper_with_dependencies (time timestamptz, temp float8);
> SELECT create_hypertable('hyper_with_dependencies', 'time');
NOTICE:  adding not-null constraint to column "time"
          create_hypertable
--------------------------------------
 (1,public,hyper_with_dependencies,t)
(1 row)

> CREATE VIEW dependent_view AS SELECT * FROM hyper_with_dependencies;
> INSERT INTO hyper_with_dependencies VALUES (now(), 1.0);
> \\set ON_ERROR_STOP 0
> DROP TABLE hyper_with_dependencies;
ERROR:  cannot drop table hyper_with_dependencies because other objects depend on it
> \\set ON_ERROR_STOP 1
> DROP TABLE hyper_with_dependencies CASCADE;
NOTICE:  drop cascades to view dependent_view
> CREATE TABLE chunk_with_dependencies (time timestamptz, temp float8);
> SELECT create_hypertable('chunk_with_dependencies', 'time');
NOTICE:  adding not-null constraint to column "time"
          create_hypertable
--------------------------------------
 (2,public,chunk_with_dependencies,t)
(1 row)

> INSERT INTO chunk_with_dependencies VALUES (now(), 1.0);
> CREATE VIEW dependent_view_chunk AS SELECT * FROM _timescaledb_internal._hyper_2_2_chunk;
> \\set ON_ERROR_STOP 0
> DROP TABLE chunk_with_dependencies;
ERROR:  cannot drop table _timescaledb_internal._hyper_2_2_chunk because other objects depend on it
> \\set ON_ERROR_STOP 1
> DROP TABLE chunk_with_dependencies CASCADE;
NOTICE:  drop cascades to view dependent_view_chunk
""",
        "timestamptz (no best-practice WARNING), hypertable ids from 1 (the file's should_drop is left out)",
    ),
    "drop-extension-empties-the-root": Case(
        "test/sql/drop_extension.sql",
        """CREATE TABLE drop_test(time timestamptz, temp float8, device text);
           SELECT create_hypertable('drop_test', 'time');
           INSERT INTO drop_test VALUES('Mon Mar 20 09:17:00.936242 2017 PDT', 23.4, 'dev1');""",
        """> SELECT * FROM drop_test;
                time                 | temp | device
-------------------------------------+------+--------
 Mon Mar 20 09:17:00.936242 2017 PDT | 23.4 | dev1
(1 row)

> SET client_min_messages = warning;
> DROP EXTENSION timescaledb CASCADE;
> SELECT * FROM drop_test;
 time | temp | device
------+------+--------
(0 rows)

""",
        "timestamptz, no space partition; the NOTICE counting cascaded objects is silenced (the count differs)",
    ),
    "upsert-on-a-hypertable": Case(
        "test/sql/upsert.sql",
        """CREATE TABLE upsert_test(time timestamptz PRIMARY KEY, temp float, color text);
           SELECT create_hypertable('upsert_test', 'time');
           INSERT INTO upsert_test VALUES ('2017-01-20T09:00:01', 22.5, 'yellow');""",
        """> INSERT INTO upsert_test VALUES ('2017-01-20T09:00:01', 23.8, 'yellow') ON CONFLICT (time)
> DO UPDATE SET temp = 23.8;
> INSERT INTO upsert_test VALUES ('2017-01-20T09:00:01', 78.4, 'yellow') ON CONFLICT DO NOTHING;
> SELECT * FROM upsert_test;
             time             | temp | color
------------------------------+------+--------
 Fri Jan 20 09:00:01 2017 PST | 23.8 | yellow
(1 row)

> \\set ON_ERROR_STOP 0
> INSERT INTO upsert_test VALUES ('2017-01-20T09:00:01', 12.3, 'yellow');
ERROR:  duplicate key value violates unique constraint "1_1_upsert_test_pkey"
> \\set ON_ERROR_STOP 1
""",
        "timestamptz; RETURNING left out (see the xfail below); the duplicate is the file's later 'update generates error on conflicts' check, reached by a plain INSERT",
    ),
    "chunk-constraints-named-as-timescaledb-does": Case(
        "test/sql/pg_dump.sql",
        """CREATE TABLE PUBLIC."two_Partitions" ("timeCustom" timestamptz NOT NULL, device_id TEXT NOT NULL,
             series_2 DOUBLE PRECISION NULL);
           SELECT create_hypertable('"public"."two_Partitions"', 'timeCustom', chunk_time_interval => interval '1 month');
           INSERT INTO "two_Partitions" VALUES ('2009-11-10 23:00:00+00', 'dev1', 1), ('2009-12-10 23:00:00+00', 'dev1', 1),
             ('2010-01-10 23:00:00+00', 'dev2', 2), ('2010-02-10 23:00:00+00', 'dev2', 2);""",
        """> ALTER TABLE "two_Partitions"
> ADD CONSTRAINT timeCustom_device_id_series_2_key
> UNIQUE ("timeCustom", device_id, series_2);
> SELECT * FROM _timescaledb_catalog.chunk_constraint WHERE dimension_slice_id IS NULL;
 chunk_id | dimension_slice_id |            constraint_name            |    hypertable_constraint_name
----------+--------------------+---------------------------------------+-----------------------------------
        1 |                    | 1_1_timecustom_device_id_series_2_key | timecustom_device_id_series_2_key
        2 |                    | 2_2_timecustom_device_id_series_2_key | timecustom_device_id_series_2_key
        3 |                    | 3_3_timecustom_device_id_series_2_key | timecustom_device_id_series_2_key
        4 |                    | 4_4_timecustom_device_id_series_2_key | timecustom_device_id_series_2_key
(4 rows)

""",
        "timestamptz; the dimension constraints' rows (space partitions) are filtered out",
    ),
    "compression-policy-jobs": Case(
        "tsl/test/sql/compression_bgw.sql",
        """SET timezone TO 'America/Los_Angeles';
           CREATE TABLE conditions (time TIMESTAMPTZ NOT NULL, location TEXT NOT NULL, location2 char(10) NOT NULL,
             temperature DOUBLE PRECISION NULL, humidity DOUBLE PRECISION NULL);
           SELECT create_hypertable('conditions', 'time', chunk_time_interval => '31days'::interval);""",
        """> \\set ON_ERROR_STOP 0
> select add_compression_policy('conditions', '60d'::interval);
ERROR:  compression not enabled on hypertable "conditions"
> \\set ON_ERROR_STOP 1
> SELECT _timescaledb_functions.stand_in_enable_compression('conditions', 'location');
 stand_in_enable_compression
-----------------------------

(1 row)

> insert into conditions
> select generate_series('2018-12-01 00:00'::timestamp, '2018-12-31 00:00'::timestamp, '1 day'), 'POR', 'klick', 55, 75;
> select add_compression_policy('conditions', '60d'::interval) AS compressjob_id
> \\gset
> select * from _timescaledb_config.bgw_job where id = :compressjob_id;
  id  |     application_name      | schedule_interval | max_runtime | max_retries | retry_period |      proc_schema       |     proc_name      | owner  | scheduled | fixed_schedule | initial_start | hypertable_id |                       config                        |      check_schema      |        check_name        | timezone
------+---------------------------+-------------------+-------------+-------------+--------------+------------------------+--------------------+--------+-----------+----------------+---------------+---------------+-----------------------------------------------------+------------------------+--------------------------+----------
 1000 | Compression Policy [1000] | @ 12 hours        | @ 0         |          -1 | @ 1 hour     | _timescaledb_functions | policy_compression | netmon | t         | f              |               |             1 | {"hypertable_id": 1, "compress_after": "@ 60 days"} | _timescaledb_functions | policy_compression_check |
(1 row)

> select * from alter_job(:compressjob_id, schedule_interval=>'1s');
 job_id | schedule_interval | max_runtime | max_retries | retry_period | scheduled |                       config                        | next_start |                  check_config                   | fixed_schedule | initial_start | timezone
--------+-------------------+-------------+-------------+--------------+-----------+-----------------------------------------------------+------------+-------------------------------------------------+----------------+---------------+----------
   1000 | @ 1 sec           | @ 0         |          -1 | @ 1 hour     | t         | {"hypertable_id": 1, "compress_after": "@ 60 days"} | -infinity  | _timescaledb_functions.policy_compression_check | f              |               |
(1 row)

> SELECT alter_job(id,config:=jsonb_set(config,'{maxchunks_to_compress}', '1'))
>  FROM _timescaledb_config.bgw_job WHERE id = :compressjob_id;
                                                                                           alter_job
------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------
 (1000,"@ 1 sec","@ 0",-1,"@ 1 hour",t,"{""hypertable_id"": 1, ""compress_after"": ""@ 60 days"", ""maxchunks_to_compress"": 1}",-infinity,_timescaledb_functions.policy_compression_check,f,,)
(1 row)

> insert into conditions
> select now()::timestamp, 'TOK', 'sony', 55, 75;
> CALL run_job(:compressjob_id);
> SELECT id, hypertable_id, schema_name, table_name, compressed_chunk_id, dropped, status, osm_chunk FROM _timescaledb_catalog.chunk ORDER BY id;
 id | hypertable_id |      schema_name      |        table_name        | compressed_chunk_id | dropped | status | osm_chunk
----+---------------+-----------------------+--------------------------+---------------------+---------+--------+-----------
  1 |             1 | _timescaledb_internal | _hyper_1_1_chunk         |                   4 | f       |      1 | f
  2 |             1 | _timescaledb_internal | _hyper_1_2_chunk         |                     | f       |      0 | f
  3 |             1 | _timescaledb_internal | _hyper_1_3_chunk         |                     | f       |      0 | f
  4 |             2 | _timescaledb_internal | compress_hyper_2_4_chunk |                     | f       |      0 | f
(4 rows)

> \\set ON_ERROR_STOP 0
> select add_compression_policy('conditions', '60d'::interval, if_not_exists=>true);
NOTICE:  compression policy already exists for hypertable "conditions", skipping
 add_compression_policy
------------------------
                     -1
(1 row)

> select add_compression_policy('conditions', '60d'::interval);
ERROR:  compression policy already exists for hypertable or continuous aggregate "conditions"
> select add_compression_policy('conditions', '30d'::interval, if_not_exists=>true);
WARNING:  compression policy already exists for hypertable "conditions"
 add_compression_policy
------------------------
                     -1
(1 row)

> \\set ON_ERROR_STOP 1
> select remove_compression_policy('conditions');
 remove_compression_policy
---------------------------
 t
(1 row)

> select count(*) from _timescaledb_config.bgw_job WHERE id>=1000;
 count
-------
     0
(1 row)

> \\set ON_ERROR_STOP 0
> CALL run_job(:compressjob_id);
ERROR:  job 1000 not found
> create view dummyv1 as select * from conditions limit 1;
> select add_compression_policy( 100 , compress_after=> '1 day'::interval);
ERROR:  object with id "100" not found
> select add_compression_policy( 'dummyv1', compress_after=> '1 day'::interval );
ERROR:  "dummyv1" is not a hypertable or a continuous aggregate
> select remove_compression_policy( 100 );
ERROR:  relation is not a hypertable or continuous aggregate
> \\set ON_ERROR_STOP 1
""",
        "ALTER TABLE ... SET (timescaledb.compress ...) is the stand-in's helper; owner is this cluster's user",
    ),
    "hypertables-view": Case(
        "test/sql/information_views.sql",
        """""",
        """> CREATE TABLE ht1(time TIMESTAMPTZ NOT NULL);
> SELECT create_hypertable('ht1','time');
 create_hypertable
-------------------
 (1,public,ht1,t)
(1 row)

> INSERT INTO ht1 SELECT '2000-01-01'::TIMESTAMPTZ;
> CREATE TABLE ht2(time TIMESTAMPTZ NOT NULL, data TEXT);
> SELECT create_hypertable('ht2','time');
 create_hypertable
-------------------
 (2,public,ht2,t)
(1 row)

> INSERT INTO ht2 SELECT '2000-01-01'::TIMESTAMPTZ, repeat('8k',4096);
> SELECT * FROM timescaledb_information.hypertables
> ORDER BY hypertable_schema, hypertable_name;
 hypertable_schema | hypertable_name | owner  | num_dimensions | num_chunks | compression_enabled | tablespaces
-------------------+-----------------+--------+----------------+------------+---------------------+-------------
 public            | ht1             | netmon |              1 |          1 | f                   |
 public            | ht2             | netmon |              1 |          1 | f                   |
(2 rows)

""",
        "owner is this cluster's user",
    ),
    "drop-continuous-aggregate": Case(
        "tsl/test/sql/cagg_usage.sql.in",
        """CREATE TABLE device_readings (observation_time TIMESTAMPTZ NOT NULL, device_id TEXT NOT NULL,
             metric DOUBLE PRECISION NOT NULL, PRIMARY KEY(observation_time, device_id));
           SELECT create_hypertable('device_readings', 'observation_time');
           INSERT INTO device_readings SELECT ts, 'device_1', extract(EPOCH FROM ts)
             FROM generate_series('2018-12-01 00:00'::timestamp, '2018-12-31 00:00'::timestamp, '30 minutes') ts;
           SELECT _timescaledb_functions.stand_in_create_cagg('device_summary', $q$
             SELECT time_bucket('1 hour', observation_time) AS bucket, min(observation_time) AS min_time, device_id,
                    avg(metric) AS metric_avg, max(metric) - min(metric) AS metric_spread
             FROM device_readings GROUP BY bucket, device_id $q$);
           CALL refresh_continuous_aggregate('device_summary', NULL, NULL);""",
        """> DROP MATERIALIZED VIEW device_summary;
NOTICE:  drop cascades to table _timescaledb_internal._hyper_2_6_chunk
> DROP MATERIALIZED VIEW device_summary;
ERROR:  materialized view "device_summary" does not exist
""",
        "CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous) is the stand-in's helper, refreshed once",
    ),
    "dump-and-restore-with-pre-and-post-restore": Case(
        "test/sql/pg_dump.sql",
        """CREATE SCHEMA test_schema;
           CREATE TABLE test_schema."two_Partitions" ("timeCustom" timestamptz NOT NULL, device_id TEXT NOT NULL,
             series_0 DOUBLE PRECISION NULL, series_1 DOUBLE PRECISION NULL, series_2 DOUBLE PRECISION NULL,
             series_bool BOOLEAN NULL);
           SELECT create_hypertable('"test_schema"."two_Partitions"', 'timeCustom');
           INSERT INTO test_schema."two_Partitions" VALUES ('2009-11-10 23:00:00+00', 'dev1', 1.5, 1, 2, true),
             ('2009-11-12 01:00:00+00', 'dev1', 2.5, 3, 2, false), ('2009-11-30 23:00:00+00', 'dev2', 1.5, 1, 2, true);
           ALTER TABLE "test_schema"."two_Partitions" ADD CONSTRAINT timeCustom_device_id_series_2_key
             UNIQUE ("timeCustom", device_id, series_2);
           CREATE FUNCTION test_trigger() RETURNS TRIGGER LANGUAGE PLPGSQL AS $BODY$ BEGIN RETURN NEW; END $BODY$;
           CREATE TRIGGER restore_trigger BEFORE INSERT ON "test_schema"."two_Partitions"
             FOR EACH ROW EXECUTE FUNCTION test_trigger();""",
        """> SELECT count(*) as num_dependent_objects
>   FROM pg_depend
>  WHERE refclassid = 'pg_extension'::regclass
>      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'timescaledb')
> \\gset
> INSERT INTO _timescaledb_catalog.metadata VALUES ('exported_uuid', 'original_uuid', true);
> INSERT INTO _timescaledb_catalog.metadata VALUES ('metadata_test', 'FOO', false);
> \\c postgres :ROLE_SUPERUSER
> \\! utils/pg_dump_aux_dump.sh dump/pg_dump.sql
> \\c :TEST_DBNAME
> SET client_min_messages = ERROR;
> CREATE EXTENSION timescaledb CASCADE;
> INSERT INTO _timescaledb_catalog.metadata VALUES ('exported_uuid', 'new_db_uuid', true);
> UPDATE _timescaledb_config.bgw_job SET scheduled = false;
> RESET client_min_messages;
> SELECT timescaledb_pre_restore();
 timescaledb_pre_restore
-------------------------
 t
(1 row)

> SHOW timescaledb.restoring;
 timescaledb.restoring
-----------------------
 on
(1 row)

> \\c
> SHOW timescaledb.restoring;
 timescaledb.restoring
-----------------------
 on
(1 row)

> \\! utils/pg_dump_aux_restore.sh dump/pg_dump.sql
> \\set ON_ERROR_STOP 0
> INSERT INTO "test_schema"."two_Partitions"("timeCustom", device_id, series_0, series_1)
> VALUES ('2013-01-11 07:06:40+00', 'dev5', 1.5, 2);
ERROR:  cannot INSERT into hypertable "two_Partitions" during restore
> \\set ON_ERROR_STOP 1
> SELECT timescaledb_post_restore();
 timescaledb_post_restore
--------------------------
 t
(1 row)

> SHOW timescaledb.restoring;
 timescaledb.restoring
-----------------------
 off
(1 row)

> SELECT _timescaledb_functions.stop_background_workers();
 stop_background_workers
-------------------------
 t
(1 row)

> SELECT count(*) = :num_dependent_objects as dependent_objects_match
>   FROM pg_depend
>  WHERE refclassid = 'pg_extension'::regclass
>      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'timescaledb');
 dependent_objects_match
-------------------------
 t
(1 row)

> SELECT value = 'original_uuid' FROM _timescaledb_catalog.metadata  WHERE key='exported_uuid';
 ?column?
----------
 t
(1 row)

> SELECT count(*) = 1 FROM _timescaledb_catalog.metadata WHERE key LIKE 'exported%';
 ?column?
----------
 t
(1 row)

> SELECT * FROM _timescaledb_catalog.metadata  WHERE key='metadata_test';
      key      | value | include_in_telemetry
---------------+-------+----------------------
 metadata_test | FOO   | f
(1 row)

> ALTER TABLE "test_schema"."two_Partitions" ADD COLUMN series_3 integer;
> INSERT INTO "test_schema"."two_Partitions"("timeCustom", device_id, series_0, series_1, series_3) VALUES
> ('2013-01-11 07:06:40+00', 'dev5', 1.5, 2, 4);
> SELECT * FROM ONLY "test_schema"."two_Partitions";
 timeCustom | device_id | series_0 | series_1 | series_2 | series_bool | series_3
------------+-----------+----------+----------+----------+-------------+----------
(0 rows)

""",
        "timestamptz time values, no space partition or chunk sizing function; the dump and restore scripts"
        " are test/sql/utils/pg_dump_aux_{dump,restore}.sh, the restore's stderr kept (see test_restore_reports_no_error)",
    ),
}

XFAIL = {
    "truncate-drops-the-chunks": (Case(
        "test/sql/truncate.sql",
        """CREATE TABLE PUBLIC."two_Partitions" ("timeCustom" timestamptz NOT NULL, device_id TEXT NOT NULL);
           SELECT create_hypertable('"public"."two_Partitions"', 'timeCustom');
           INSERT INTO "two_Partitions" VALUES ('2009-11-10 23:00:00+00', 'dev1');""",
        """> SET client_min_messages = WARNING;
> TRUNCATE "two_Partitions";
> SELECT id, hypertable_id, schema_name, table_name, compressed_chunk_id, dropped, status, osm_chunk FROM _timescaledb_catalog.chunk;
 id | hypertable_id | schema_name | table_name | compressed_chunk_id | dropped | status | osm_chunk
----+---------------+-------------+------------+---------------------+---------+--------+-----------
(0 rows)

> \\set ON_ERROR_STOP 0
> TRUNCATE ONLY "two_Partitions" CASCADE;
ERROR:  cannot truncate only a hypertable
> \\set ON_ERROR_STOP 1
""",
        "timestamptz, no space partition",
    ),
        "TRUNCATE fires no event trigger, and a TRUNCATE trigger cannot drop the tables being truncated: the stand-in empties the chunks and keeps them, and allows TRUNCATE ONLY"),
    "upsert-returning": (Case(
        "test/sql/upsert.sql",
        """CREATE TABLE upsert_test(time timestamptz PRIMARY KEY, temp float, color text);
           SELECT create_hypertable('upsert_test', 'time');""",
        """> INSERT INTO upsert_test VALUES ('2017-01-20T09:00:01', 22.5, 'yellow') RETURNING *;
             time             | temp | color
------------------------------+------+--------
 Fri Jan 20 09:00:01 2017 PST | 22.5 | yellow
(1 row)

""",
        "timestamptz",
    ),
        "rows reach the chunks through a BEFORE trigger that returns NULL: INSERT ... RETURNING on a hypertable returns nothing"),
}


# test/sql/utils/pg_dump_aux_dump.sh and pg_dump_aux_restore.sh of 2.17.2; the restore keeps its stderr.
AUX_SCRIPTS = {
    "pg_dump_aux_dump.sh": """DUMPFILE=${DUMPFILE:-$1}
PGOPTIONS='--client-min-messages=warning'
export PGOPTIONS
${PG_BINDIR}/pg_dump -h ${PGHOST} -U ${TEST_ROLE_SUPERUSER} -Fc ${TEST_DBNAME} > /dev/null 2>&1 -f ${DUMPFILE}
${PG_BINDIR}/dropdb -h ${PGHOST} -U ${TEST_ROLE_SUPERUSER} ${TEST_DBNAME}
${PG_BINDIR}/createdb -h ${PGHOST} -U ${TEST_ROLE_SUPERUSER} ${TEST_DBNAME}
""",
    "pg_dump_aux_restore.sh": """DUMPFILE=${DUMPFILE:-$1}
PGOPTIONS='--client-min-messages=warning'
export PGOPTIONS
${PG_BINDIR}/pg_restore -h ${PGHOST} -U ${TEST_ROLE_SUPERUSER} -d ${TEST_DBNAME} ${DUMPFILE} > /dev/null 2> ${DUMPFILE}.err
""",
}


@pytest.fixture(scope="module")
def server(workdir, image):
    """One throwaway cluster of the TimescaleDB image for the module; a database per case."""
    with running_cluster(workdir / "conformance", image / BIN) as cluster:
        cluster.psql("SET client_min_messages = error; CREATE EXTENSION timescaledb;")  # copied by every case
        for name, text in AUX_SCRIPTS.items():
            (cluster.root / "utils").mkdir(exist_ok=True)
            (cluster.root / "utils" / name).write_text(text)
            (cluster.root / "utils" / name).chmod(0o755)
        (cluster.root / "dump").mkdir(exist_ok=True)
        yield cluster


def transcript(server: Cluster, name: str, case: Case) -> str:
    """The case's statements as test/runner.sh runs a test file, in a fresh database with the extension."""
    db = "c_" + name.replace("-", "_")
    server.psql(f"CREATE DATABASE {db} TEMPLATE netmon", db="postgres")
    if case.setup:
        server.psql(f"SET client_min_messages = error; SET timezone = 'PST8PDT'; {case.setup}", db=db)
    # what test/runner.sh gives a test: its variables, and the environment its \! scripts read
    env = {**os.environ, "PGOPTIONS": REGRESS_OPTIONS, "PGHOST": str(server.sockets), "PGPORT": str(server.port),
           "PG_BINDIR": str(HOST_BIN), "TEST_ROLE_SUPERUSER": "netmon", "TEST_DBNAME": db}
    with (server.root / f"{db}.out").open("w+") as out:  # one file for both streams, as pg_regress has
        subprocess.run([HOST_BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse", "-v", "ECHO=all",
                        "-v", f"TEST_DBNAME={db}", "-v", "ROLE_SUPERUSER=netmon",
                        "-h", server.sockets, "-p", str(server.port), "-U", "netmon", "-d", db],
                       input=case.statements.encode(), stdout=out, stderr=subprocess.STDOUT, env=env, timeout=60,
                       cwd=server.root)
        out.seek(0)
        return out.read()


def trimmed(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


@pytest.mark.parametrize("name", list(CASES))
def test_matches_timescaledb_expected_output(server, name):
    case = CASES[name]
    assert trimmed(transcript(server, name, case)) == trimmed(case.expected), f"{case.source} ({case.adapted})"


@pytest.mark.parametrize("name", list(XFAIL))
def test_known_difference(server, name):
    case, why = XFAIL[name]
    if trimmed(transcript(server, name, case)) != trimmed(case.expected):
        pytest.xfail(f"{case.source}: {why}")
    pytest.fail(f"{case.source} now matches: move {name!r} to CASES and drop it from the stand-in's header")



def test_restore_reports_no_error(server):
    """pg_dump.sql's restore into a database that already has an exported_uuid: pg_restore itself must
    report nothing (the case above only sees psql's side; before the metadata trigger it ended with
    "errors ignored on restore: 1")."""
    case = CASES["dump-and-restore-with-pre-and-post-restore"]
    assert trimmed(transcript(server, "restore-stderr", case)) == trimmed(case.expected)
    assert (server.root / "dump" / "pg_dump.sql.err").read_text() == ""
