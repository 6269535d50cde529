-- TimescaleDB 2.17.2 stand-in for the NetMon lab (tests/lab/README.md), in SQL and PL/pgSQL only.
-- Held against TimescaleDB 2.17.2's own regression outputs by tests/lab/test_timescaledb_conformance.py.
--
-- It reproduces what decides whether a rollback from TimescaleDB works (DESIGN.md §1, §6):
--   * CREATE EXTENSION refuses unless timescaledb is in shared_preload_libraries.
--   * The library check. Every function standing for one of TimescaleDB's C functions first calls
--     _timescaledb_functions.stand_in_library_check(). Where the server has no timescaledb.control
--     in its share dir (the plain image) it raises what PostgreSQL raises when a C function's
--     library is missing: could not access file "$libdir/timescaledb-2.17.2": No such file or
--     directory (SQLSTATE 58P01). Where the file is there but the library is not preloaded, it
--     raises TimescaleDB's "must be preloaded". Pure-SQL views work on both images, as for real.
--   * Schemas _timescaledb_catalog/_functions/_internal/_config/_cache, timescaledb_information,
--     timescaledb_experimental; catalog tables marked with pg_extension_config_dump as the real
--     ones are (bgw_job only WHERE id >= 1000; bgw_job_stat not at all), so pg_dump carries them.
--   * Event triggers timescaledb_ddl_command_end (same WHEN TAG list) and timescaledb_ddl_sql_drop:
--     DDL fails on the plain image until they are disabled. On the TimescaleDB image they forget
--     dropped hypertables, chunks and continuous aggregates, refuse DROP VIEW of a continuous
--     aggregate (0A000), follow a hypertable's ALTER TABLE ... RENAME / SET SCHEMA in the catalog,
--     and send a hypertable's new constraints, indexes and row triggers to its chunks (DROP TRIGGER too).
--   * TimescaleDB's utility hook acts before PostgreSQL sees a statement, which no event trigger
--     can; a third, lab-only trigger (timescaledb_stand_in_ddl_start, ddl_command_start, silent on
--     the plain image) does its part for DROP MATERIALIZED VIEW of a continuous aggregate (dropped,
--     where PostgreSQL alone says 42809 "is not a materialized view"), DROP TABLE of a hypertable
--     (its chunks dropped first, so no CASCADE is needed; not with other objects) and ALTER TABLE
--     (on a chunk only what TimescaleDB allows, else "operation not supported on chunk tables";
--     INHERIT/NO INHERIT on a hypertable: "hypertables do not support inheritance"). It reads the
--     objects from the query text (current_query()).
--   * create_hypertable(): chunks _timescaledb_internal._hyper_<id>_<n>_chunk that INHERIT the root
--     (CHECK on their time range) and carry its primary key, unique and foreign key constraints
--     (<chunk id>_<n>_<name>) and indexes (<chunk>_<index>); rows moved with migrate_data; the
--     ts_insert_blocker trigger that routes new rows into chunks (and fails on the plain image,
--     like the real insert blocker), honouring the INSERT's ON CONFLICT clause on the chunk.
--   * A continuous aggregate is a view (relkind v) over a materialization hypertable, with
--     _partial_view_<id> and _direct_view_<id>; refresh_continuous_aggregate fills it.
--   * Compression: compress_chunk / decompress_chunk and the compression policy move a chunk's rows
--     into _timescaledb_internal.compress_hyper_<c>_<n>_chunk; SELECT FROM ONLY the chunk is then
--     empty while the hypertable (and the chunk without ONLY) still returns every row.
--   * Jobs: add_compression_policy / add_retention_policy (schedule_interval, initial_start,
--     fixed_schedule false unless initial_start), remove_*, alter_job, run_job, the policies'
--     procedures, drop_chunks, and stand_in_run_due_jobs() for the lab's scheduler (the backend
--     stand-in calls it every second; a job then runs every few seconds unless paused).
--   * timescaledb_pre_restore() / timescaledb_post_restore() and timescaledb.restoring as 2.17.2's
--     test/sql/pg_dump.sql expects: while restoring, no hooks or jobs, INSERT into a hypertable refused;
--     the metadata table dumped WHERE key <> 'uuid' with its insert trigger, so a restore into a
--     database that already has the extension (and an exported_uuid) has no duplicate-key error.
--   * time_bucket, the timescaledb_information views, and DROP EXTENSION ... CASCADE dropping the
--     chunks and leaving empty, plain root tables; errors for a non-hypertable as TimescaleDB's
--     (TS001 for add_*, 42704 for remove_*).
--   * Lab-only helpers, called where a real migration runs SQL this server cannot parse:
--       _timescaledb_functions.stand_in_enable_compression(relation, segmentby)
--           for ALTER TABLE x SET (timescaledb.compress, timescaledb.compress_segmentby = '...');
--       _timescaledb_functions.stand_in_create_cagg(view_name, query)
--           for CREATE MATERIALIZED VIEW x WITH (timescaledb.continuous) AS query WITH NO DATA.
--
-- Known lab differences (still different from TimescaleDB 2.17.2):
--   * compressed rows stay plain rows in a table that inherits the chunk: on the plain image a
--     hypertable read still returns them (for real it silently skips them, the compressed chunk
--     being readable only through the library) and reading them does not fail with 58P01 — a
--     stand-in for that needs a real C library named timescaledb-2.17.2 in the lab's image;
--     pg_dump writes them as plain rows; a duplicate key is not checked against compressed rows;
--   * TRUNCATE of a hypertable empties its chunks and keeps them (for real they are dropped), and
--     TRUNCATE ONLY a hypertable is allowed (no event trigger fires for TRUNCATE);
--   * the planner: INSERT ... RETURNING on a hypertable returns no rows and reports 0 rows;
--     ON CONFLICT ON CONSTRAINT is not translated to the chunk's constraint;
--   * the hooks read the objects of DROP/ALTER from the query text: a DROP MATERIALIZED VIEW, DROP
--     TABLE or ALTER TABLE built dynamically (EXECUTE format(...)) is not seen, and every such
--     statement in a multi-statement query string is handled at the first one;
--   * renaming a continuous aggregate, or a hypertable's time column, is not followed in the catalog;
--   * jobs run only while a backend stand-in runs (for real: whenever the server runs the
--     TimescaleDB image), every few seconds whatever their schedule; job_stats' history is not kept;
--   * refresh_continuous_aggregate recomputes the whole window (same result); inside a
--     transaction block it fails with 2D000 "invalid transaction termination" (for real 25001);
--   * space partitioning, integer time, time columns other than timestamptz;
--   * "must be preloaded" is FATAL for real (the session ends); here an ERROR;
--   * time_bucket is parallel unsafe here (the library check remembers its result in a setting).

\echo Use "CREATE EXTENSION timescaledb" to load this file. \quit

CREATE SCHEMA _timescaledb_catalog;
CREATE SCHEMA _timescaledb_functions;
CREATE SCHEMA _timescaledb_internal;
CREATE SCHEMA _timescaledb_config;
CREATE SCHEMA _timescaledb_cache;
CREATE SCHEMA timescaledb_experimental;
CREATE SCHEMA timescaledb_information;

-- The library check; see the header. Not one of TimescaleDB's functions. A session remembers a
-- passed check (a server never changes its binary or preload list while running), because reading
-- pg_available_extensions costs a directory scan, too slow for once per row.
CREATE FUNCTION _timescaledb_functions.stand_in_library_check() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF pg_catalog.current_setting('timescaledb_stand_in.library_loaded', true) = 'on' THEN
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'timescaledb') THEN
    RAISE EXCEPTION USING ERRCODE = '58P01',
      MESSAGE = 'could not access file "$libdir/timescaledb-2.17.2": No such file or directory';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(pg_catalog.string_to_array(
                   pg_catalog.current_setting('shared_preload_libraries'), ',')) AS lib
                 WHERE pg_catalog.btrim(lib, ' "') IN ('timescaledb', '$libdir/timescaledb')) THEN
    RAISE EXCEPTION USING ERRCODE = 'XX000',
      MESSAGE = 'extension "timescaledb" must be preloaded',
      HINT = pg_catalog.format(E'Please preload the timescaledb library via shared_preload_libraries.\n\n'
        || E'This can be done by editing the config file at: %1$s\n'
        || E'and adding ''timescaledb'' to the list in the shared_preload_libraries config.\n'
        || E'\t# Modify postgresql.conf:\n\tshared_preload_libraries = ''timescaledb''\n\n'
        || E'Another way to do this, if not preloading other libraries, is with the command:\n'
        || E'\techo "shared_preload_libraries = ''timescaledb''" >> %1$s \n\n'
        || E'(Will require a database restart.)\n\n'
        || E'If you REALLY know what you are doing and would like to load the library without preloading, '
        || E'you can disable this check with: \n\tSET timescaledb.allow_install_without_preload = ''on'';',
        pg_catalog.current_setting('config_file'));
  END IF;
  PERFORM pg_catalog.set_config('timescaledb_stand_in.library_loaded', 'on', false);
END $$;

-- The library check as a boolean, for the stand-in's own hooks, which real TimescaleDB does not have
-- and which must stay silent where its library is absent (so PostgreSQL answers as it would).
CREATE FUNCTION _timescaledb_functions.stand_in_library_loaded() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  RETURN true;
EXCEPTION WHEN OTHERS THEN
  RETURN false;
END $$;

-- Set while the stand-in runs DDL of its own, so its hooks leave that DDL alone.
CREATE FUNCTION _timescaledb_functions.stand_in_internal(on_off boolean) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_catalog.set_config('timescaledb_stand_in.internal', CASE WHEN on_off THEN 'on' ELSE '' END, true)
$$;

CREATE FUNCTION _timescaledb_functions.stand_in_is_internal() RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT coalesce(pg_catalog.current_setting('timescaledb_stand_in.internal', true), '') = 'on'
$$;

-- timescaledb.restoring (TimescaleDB's PGC_SUSET boolean, src/guc.c): on, the extension switches
-- itself off (src/extension.c): no DDL hooks, no jobs, and the insert blocker refuses rows. The
-- stand-in's library defines no setting: the lab starts the image's server with the boot value
-- (-c timescaledb.restoring=off, tests/lab/images.py library_settings), so a fresh session shows off.
CREATE FUNCTION _timescaledb_functions.stand_in_restoring() RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT lower(coalesce(pg_catalog.current_setting('timescaledb.restoring', true), 'off')) IN ('on', 'true', 'yes', '1')
$$;

-- CREATE EXTENSION loads the library first: without the preload it stops here.
SELECT _timescaledb_functions.stand_in_library_check();

-- Catalog -------------------------------------------------------------------------------------

CREATE TABLE _timescaledb_catalog.metadata (
  key name NOT NULL,
  value text NOT NULL,
  include_in_telemetry boolean NOT NULL,
  CONSTRAINT metadata_pkey PRIMARY KEY (key)
);
-- As sql/pre_install/tables.sql and sql/metadata.sql of 2.17.2: every key but uuid is dumped, and a
-- restored key that exists already (install_timestamp, timescaledb_version, an exported_uuid made by
-- telemetry before the restore) turns from INSERT into UPDATE instead of a duplicate-key error.
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.metadata', $$ WHERE key <> 'uuid' $$);
CREATE FUNCTION _timescaledb_functions.metadata_insert_trigger() RETURNS TRIGGER LANGUAGE PLPGSQL
AS $$
BEGIN
  IF EXISTS (SELECT FROM _timescaledb_catalog.metadata WHERE key = NEW.key) THEN
    UPDATE _timescaledb_catalog.metadata SET value = NEW.value WHERE key = NEW.key;
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$ SET search_path TO pg_catalog, pg_temp;
CREATE TRIGGER metadata_insert_trigger BEFORE INSERT ON _timescaledb_catalog.metadata FOR EACH ROW
  EXECUTE PROCEDURE _timescaledb_functions.metadata_insert_trigger();
INSERT INTO _timescaledb_catalog.metadata VALUES ('uuid', pg_catalog.gen_random_uuid()::text, true);
INSERT INTO _timescaledb_catalog.metadata VALUES ('install_timestamp', now()::text, true);
INSERT INTO _timescaledb_catalog.metadata VALUES ('timescaledb_version', '2.17.2', false);

CREATE SEQUENCE _timescaledb_catalog.hypertable_id_seq MINVALUE 1;
CREATE TABLE _timescaledb_catalog.hypertable (
  id integer NOT NULL DEFAULT nextval('_timescaledb_catalog.hypertable_id_seq') PRIMARY KEY,
  schema_name name NOT NULL,
  table_name name NOT NULL,
  associated_schema_name name NOT NULL,
  associated_table_prefix name NOT NULL,
  num_dimensions smallint NOT NULL,
  chunk_sizing_func_schema name NOT NULL,
  chunk_sizing_func_name name NOT NULL,
  chunk_target_size bigint NOT NULL CHECK (chunk_target_size >= 0),
  compression_state smallint NOT NULL DEFAULT 0,
  compressed_hypertable_id integer REFERENCES _timescaledb_catalog.hypertable (id),
  status integer NOT NULL DEFAULT 0,
  UNIQUE (associated_schema_name, associated_table_prefix),
  UNIQUE (table_name, schema_name),
  CHECK (num_dimensions > 0 OR compression_state = 2)
);
ALTER SEQUENCE _timescaledb_catalog.hypertable_id_seq OWNED BY _timescaledb_catalog.hypertable.id;
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.hypertable_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.hypertable', '');

CREATE TABLE _timescaledb_catalog.dimension (
  id serial PRIMARY KEY,
  hypertable_id integer NOT NULL REFERENCES _timescaledb_catalog.hypertable (id) ON DELETE CASCADE,
  column_name name NOT NULL,
  column_type regtype NOT NULL,
  aligned boolean NOT NULL,
  num_slices smallint,
  partitioning_func_schema name,
  partitioning_func name,
  interval_length bigint CHECK (interval_length IS NULL OR interval_length > 0),
  compress_interval_length bigint,
  integer_now_func_schema name,
  integer_now_func name,
  UNIQUE (hypertable_id, column_name)
);
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.dimension', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('_timescaledb_catalog.dimension', 'id'), '');

CREATE TABLE _timescaledb_catalog.dimension_slice (
  id serial PRIMARY KEY,
  dimension_id integer NOT NULL REFERENCES _timescaledb_catalog.dimension (id) ON DELETE CASCADE,
  range_start bigint NOT NULL,
  range_end bigint NOT NULL,
  CHECK (range_start <= range_end),
  UNIQUE (dimension_id, range_start, range_end)
);
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.dimension_slice', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('_timescaledb_catalog.dimension_slice', 'id'), '');

CREATE SEQUENCE _timescaledb_catalog.chunk_id_seq MINVALUE 1;
CREATE TABLE _timescaledb_catalog.chunk (
  id integer NOT NULL DEFAULT nextval('_timescaledb_catalog.chunk_id_seq') PRIMARY KEY,
  hypertable_id integer NOT NULL REFERENCES _timescaledb_catalog.hypertable (id),
  schema_name name NOT NULL,
  table_name name NOT NULL,
  compressed_chunk_id integer REFERENCES _timescaledb_catalog.chunk (id),
  dropped boolean NOT NULL DEFAULT false,
  status integer NOT NULL DEFAULT 0,
  osm_chunk boolean NOT NULL DEFAULT false,
  creation_time timestamptz NOT NULL DEFAULT now(),
  UNIQUE (schema_name, table_name)
);
ALTER SEQUENCE _timescaledb_catalog.chunk_id_seq OWNED BY _timescaledb_catalog.chunk.id;
CREATE INDEX chunk_hypertable_id_idx ON _timescaledb_catalog.chunk (hypertable_id);
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.chunk', '');
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.chunk_id_seq', '');

CREATE TABLE _timescaledb_catalog.chunk_constraint (
  chunk_id integer NOT NULL REFERENCES _timescaledb_catalog.chunk (id),
  dimension_slice_id integer REFERENCES _timescaledb_catalog.dimension_slice (id),
  constraint_name name NOT NULL,
  hypertable_constraint_name name,
  UNIQUE (chunk_id, constraint_name)
);
CREATE SEQUENCE _timescaledb_catalog.chunk_constraint_name;
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.chunk_constraint_name', '');
CREATE INDEX chunk_constraint_dimension_slice_id_idx ON _timescaledb_catalog.chunk_constraint (dimension_slice_id);
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.chunk_constraint', '');

CREATE TABLE _timescaledb_catalog.continuous_agg (
  mat_hypertable_id integer PRIMARY KEY REFERENCES _timescaledb_catalog.hypertable (id) ON DELETE CASCADE,
  raw_hypertable_id integer NOT NULL REFERENCES _timescaledb_catalog.hypertable (id) ON DELETE CASCADE,
  parent_mat_hypertable_id integer REFERENCES _timescaledb_catalog.hypertable (id) ON DELETE CASCADE,
  user_view_schema name NOT NULL,
  user_view_name name NOT NULL,
  partial_view_schema name NOT NULL,
  partial_view_name name NOT NULL,
  direct_view_schema name NOT NULL,
  direct_view_name name NOT NULL,
  materialized_only boolean NOT NULL DEFAULT false,
  finalized boolean NOT NULL DEFAULT true,
  UNIQUE (user_view_schema, user_view_name),
  UNIQUE (partial_view_schema, partial_view_name)
);
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.continuous_agg', '');

CREATE TABLE _timescaledb_catalog.compression_settings (
  relid regclass PRIMARY KEY,
  segmentby text[],
  orderby text[],
  orderby_desc boolean[],
  orderby_nullsfirst boolean[]
);
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.compression_settings', '');

-- Jobs 1..999 are installed by this script; pg_dump carries only user jobs (id >= 1000).
CREATE SEQUENCE _timescaledb_config.bgw_job_id_seq MINVALUE 1000;
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_config.bgw_job_id_seq', '');
CREATE TABLE _timescaledb_config.bgw_job (
  id integer NOT NULL DEFAULT nextval('_timescaledb_config.bgw_job_id_seq') PRIMARY KEY,
  application_name name NOT NULL,
  schedule_interval interval NOT NULL,
  max_runtime interval NOT NULL,
  max_retries integer NOT NULL,
  retry_period interval NOT NULL,
  proc_schema name NOT NULL,
  proc_name name NOT NULL,
  owner regrole NOT NULL DEFAULT pg_catalog.quote_ident(current_role)::regrole,
  scheduled boolean NOT NULL DEFAULT true,
  fixed_schedule boolean NOT NULL DEFAULT true,
  initial_start timestamptz,
  hypertable_id integer REFERENCES _timescaledb_catalog.hypertable (id) ON DELETE CASCADE,
  config jsonb,
  check_schema name,
  check_name name,
  timezone text
);
ALTER SEQUENCE _timescaledb_config.bgw_job_id_seq OWNED BY _timescaledb_config.bgw_job.id;
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_config.bgw_job', 'WHERE id >= 1000');
INSERT INTO _timescaledb_config.bgw_job (id, application_name, schedule_interval, max_runtime, max_retries,
  retry_period, proc_schema, proc_name, owner, scheduled, fixed_schedule, config) VALUES
  (1, 'Telemetry Reporter [1]', '24 hours', '100 seconds', -1, '1 hour', '_timescaledb_functions',
   'policy_telemetry', 'pg_database_owner', true, false, NULL),
  (3, 'Job History Log Retention Policy [3]', '1 month', '1 hour', -1, '1 hour', '_timescaledb_functions',
   'policy_job_stat_history_retention', 'pg_database_owner', true, true, '{"drop_after": "1 month"}');

-- Statistics are per server: like the real table, not dumped.
CREATE TABLE _timescaledb_internal.bgw_job_stat (
  job_id integer PRIMARY KEY REFERENCES _timescaledb_config.bgw_job (id) ON DELETE CASCADE,
  last_start timestamptz NOT NULL DEFAULT now(),
  last_finish timestamptz NOT NULL,
  next_start timestamptz NOT NULL,
  last_successful_finish timestamptz NOT NULL,
  last_run_success boolean NOT NULL,
  total_runs bigint NOT NULL,
  total_duration interval NOT NULL,
  total_duration_failures interval NOT NULL,
  total_successes bigint NOT NULL,
  total_failures bigint NOT NULL,
  total_crashes bigint NOT NULL,
  consecutive_failures integer NOT NULL,
  consecutive_crashes integer NOT NULL,
  flags integer NOT NULL DEFAULT 0
);

-- Internal functions --------------------------------------------------------------------------

-- The catalog row of a hypertable (NULL when `relation` is none).
CREATE FUNCTION _timescaledb_functions.stand_in_hypertable(relation regclass)
RETURNS _timescaledb_catalog.hypertable
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT h.* FROM _timescaledb_catalog.hypertable h
  JOIN pg_class c ON c.relname = h.table_name
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = h.schema_name
  WHERE c.oid = relation
$$;

-- _timescaledb_functions.to_timestamp is C in TimescaleDB (the chunks view calls it).
CREATE FUNCTION _timescaledb_functions.to_timestamp(unixtime_us bigint) RETURNS timestamptz
LANGUAGE plpgsql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  RETURN to_timestamp(unixtime_us / 1000000.0);
END $$;

-- The chunk of hypertable `ht_id` that holds time `ts`, created (with its catalog rows) when missing.
CREATE FUNCTION _timescaledb_functions.stand_in_chunk_for(ht_id integer, ts timestamptz) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable;
  dim _timescaledb_catalog.dimension;
  slice_start bigint;
  slice_id integer;
  new_chunk_id integer;
  chunk_table name;
  found_chunk regclass;
  found_id integer;
  found_status integer;
BEGIN
  SELECT * INTO STRICT ht FROM _timescaledb_catalog.hypertable WHERE id = ht_id;
  SELECT * INTO STRICT dim FROM _timescaledb_catalog.dimension WHERE hypertable_id = ht_id;
  slice_start := floor(extract(epoch FROM ts) * 1000000 / dim.interval_length)::bigint * dim.interval_length;
  -- One creator at a time per hypertable; a waiter then finds the chunk the first one made.
  PERFORM pg_advisory_xact_lock(hashtext('timescaledb stand-in chunk'), ht_id);
  SELECT format('%I.%I', c.schema_name, c.table_name)::regclass, c.id, c.status INTO found_chunk, found_id, found_status
  FROM _timescaledb_catalog.chunk c
  JOIN _timescaledb_catalog.chunk_constraint cc ON cc.chunk_id = c.id
  JOIN _timescaledb_catalog.dimension_slice s ON s.id = cc.dimension_slice_id
  WHERE c.hypertable_id = ht_id AND NOT c.dropped AND s.dimension_id = dim.id AND s.range_start = slice_start;
  IF found_chunk IS NOT NULL THEN
    IF found_status = 1 THEN  -- compressed: a new row makes it partially compressed
      UPDATE _timescaledb_catalog.chunk SET status = 9 WHERE id = found_id;
    END IF;
    RETURN found_chunk;
  END IF;

  INSERT INTO _timescaledb_catalog.dimension_slice (dimension_id, range_start, range_end)
  VALUES (dim.id, slice_start, slice_start + dim.interval_length)
  ON CONFLICT (dimension_id, range_start, range_end) DO UPDATE SET range_start = EXCLUDED.range_start
  RETURNING id INTO slice_id;
  new_chunk_id := nextval('_timescaledb_catalog.chunk_id_seq');
  chunk_table := format('%s_%s_chunk', ht.associated_table_prefix, new_chunk_id);
  EXECUTE format('CREATE TABLE %I.%I (CONSTRAINT %I CHECK (%I >= %L::timestamptz AND %I < %L::timestamptz)) INHERITS (%I.%I)',
                 ht.associated_schema_name, chunk_table, 'constraint_' || slice_id,
                 dim.column_name, to_timestamp(slice_start / 1000000.0),
                 dim.column_name, to_timestamp((slice_start + dim.interval_length) / 1000000.0),
                 ht.schema_name, ht.table_name);
  INSERT INTO _timescaledb_catalog.chunk (id, hypertable_id, schema_name, table_name)
  VALUES (new_chunk_id, ht_id, ht.associated_schema_name, chunk_table);
  INSERT INTO _timescaledb_catalog.chunk_constraint (chunk_id, dimension_slice_id, constraint_name)
  VALUES (new_chunk_id, slice_id, 'constraint_' || slice_id);
  PERFORM _timescaledb_functions.stand_in_copy_constraints(ht_id, new_chunk_id);
  RETURN format('%I.%I', ht.associated_schema_name, chunk_table)::regclass;
END $$;

-- The hypertable's primary key, unique and foreign key constraints and its other indexes, made on a
-- chunk under TimescaleDB's names (<chunk id>_<n>_<constraint>, <chunk>_<index>), so every chunk
-- holds them as for real; those the chunk has already are skipped (it runs again after DDL on the
-- hypertable adds one).
CREATE FUNCTION _timescaledb_functions.stand_in_copy_constraints(ht_id integer, chunk_id integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  root regclass;
  ch _timescaledb_catalog.chunk;
  con record;
  idx record;
  trg record;
  constraint_name name;
  was_internal boolean := _timescaledb_functions.stand_in_is_internal();
BEGIN
  SELECT format('%I.%I', h.schema_name, h.table_name)::regclass INTO STRICT root
  FROM _timescaledb_catalog.hypertable h WHERE h.id = ht_id;
  SELECT * INTO STRICT ch FROM _timescaledb_catalog.chunk c WHERE c.id = chunk_id;
  PERFORM _timescaledb_functions.stand_in_internal(true);
  FOR con IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
             WHERE c.conrelid = root AND c.contype IN ('p', 'u', 'f')
               AND NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.chunk_constraint cc
                               WHERE cc.chunk_id = ch.id AND cc.hypertable_constraint_name = c.conname)
             ORDER BY c.contype DESC, c.oid LOOP
    constraint_name := format('%s_%s_%s', ch.id, nextval('_timescaledb_catalog.chunk_constraint_name'), con.conname);
    EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', ch.schema_name, ch.table_name, constraint_name, con.def);
    INSERT INTO _timescaledb_catalog.chunk_constraint (chunk_id, dimension_slice_id, constraint_name,
      hypertable_constraint_name) VALUES (ch.id, NULL, constraint_name, con.conname);
  END LOOP;
  -- Row triggers (not the insert blocker) are cloned onto every chunk, as ts_trigger_create_all_on_chunk does.
  FOR trg IN SELECT t.tgname, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
             WHERE t.tgrelid = root AND NOT t.tgisinternal AND t.tgname <> 'ts_insert_blocker'
               AND (t.tgtype & 1) = 1
               AND NOT EXISTS (SELECT 1 FROM pg_trigger c WHERE c.tgname = t.tgname
                               AND c.tgrelid = format('%I.%I', ch.schema_name, ch.table_name)::regclass)
             ORDER BY t.oid LOOP
    EXECUTE regexp_replace(trg.def, ' ON \S+ ', format(' ON %I.%I ', ch.schema_name, ch.table_name));
  END LOOP;
  FOR idx IN SELECT c.relname, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = root AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
               AND to_regclass(format('%I.%I', ch.schema_name, ch.table_name || '_' || c.relname)) IS NULL
             ORDER BY i.indexrelid LOOP
    EXECUTE regexp_replace(idx.def, '^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+',
      format('CREATE \1INDEX %I ON %I.%I', ch.table_name || '_' || idx.relname, ch.schema_name, ch.table_name));
  END LOOP;
  PERFORM _timescaledb_functions.stand_in_internal(was_internal);
END $$;

-- ts_insert_blocker's function. Real TimescaleDB routes rows in its planner and this trigger only
-- fires when the library is not loaded; here it does the routing and returns NULL. No SET search_path:
-- the chunk's own triggers (cloned from the hypertable's) run with the inserting session's, as for real.
CREATE FUNCTION _timescaledb_functions.insert_blocker() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  ht_id integer;
  time_column name;
  ts timestamptz;
  conflict text[];
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  IF _timescaledb_functions.stand_in_restoring() THEN  -- src/hypertable.c, ts_hypertable_insert_blocker
    RAISE EXCEPTION 'cannot INSERT into hypertable "%" during restore', TG_TABLE_NAME USING ERRCODE = 'feature_not_supported',
      HINT = 'Set ''timescaledb.restoring'' to ''off'' after the restore process has finished.';
  END IF;
  SELECT h.id, d.column_name INTO ht_id, time_column
  FROM _timescaledb_catalog.hypertable h JOIN _timescaledb_catalog.dimension d ON d.hypertable_id = h.id
  WHERE h.schema_name = TG_TABLE_SCHEMA AND h.table_name = TG_TABLE_NAME;
  IF ht_id IS NULL THEN
    RAISE EXCEPTION 'invalid INSERT on the root table of hypertable "%"', TG_TABLE_NAME
      USING HINT = 'Make sure the TimescaleDB extension has been preloaded.';
  END IF;
  EXECUTE format('SELECT ($1).%I', time_column) INTO ts USING NEW;
  IF ts IS NULL THEN
    RAISE EXCEPTION 'NULL value in column "%" violates not-null constraint', time_column
      USING ERRCODE = 'not_null_violation', HINT = 'Columns used for time partitioning cannot be NULL.';
  END IF;
  conflict := _timescaledb_functions.stand_in_on_conflict(TG_RELID);
  EXECUTE format('INSERT INTO %s AS %s SELECT ($1).* %s', _timescaledb_functions.stand_in_chunk_for(ht_id, ts),
                 coalesce(conflict[1], quote_ident(TG_TABLE_NAME)), coalesce(conflict[2], '')) USING NEW;
  RETURN NULL;
END $$;

-- {alias, ON CONFLICT clause} of the INSERT into `relation` the client sent, or NULLs. TimescaleDB's
-- planner applies it to the chunk; a row trigger cannot see it, so it is read from the query text
-- (one INSERT into the hypertable per query string; ON CONFLICT ON CONSTRAINT is not translated).
-- The INSERT's table is matched by name (its schema too when the query names one).
CREATE FUNCTION _timescaledb_functions.stand_in_on_conflict(relation regclass) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  q text := current_query();
  m text[];
  target text[];
  rel record;
BEGIN
  IF strpos(lower(q), 'conflict') = 0 THEN
    RETURN NULL;
  END IF;
  FOR m IN SELECT regexp_matches(q, $re$INSERT\s+INTO\s+((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)(?:\s+AS\s+("[^"]+"|[\w$]+))?[^;]*?\s(ON\s+CONFLICT\s(?:[^;]*?))(?:\s+RETURNING\s[^;]*)?\s*(?:;|$)$re$, 'gi') LOOP
    target := parse_ident(m[1]);
    SELECT c.relname, n.nspname INTO rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = relation;
    IF target[cardinality(target)] = rel.relname AND (cardinality(target) = 1 OR target[1] = rel.nspname) THEN
      RETURN ARRAY[m[2], m[3]];
    END IF;
  END LOOP;
  RETURN NULL;
END $$;

-- After a DROP TRIGGER of a hypertable's trigger: its clones on the chunks go too.
CREATE FUNCTION _timescaledb_functions.stand_in_drop_chunk_triggers() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t record;
BEGIN
  FOR t IN SELECT o.address_names[3] AS tgname, ch.schema_name, ch.table_name
           FROM pg_event_trigger_dropped_objects() o
           JOIN _timescaledb_catalog.hypertable h
             ON h.schema_name = o.address_names[1] AND h.table_name = o.address_names[2]
           JOIN _timescaledb_catalog.chunk ch ON ch.hypertable_id = h.id
           WHERE o.object_type = 'trigger' AND cardinality(o.address_names) = 3
             AND to_regclass(format('%I.%I', ch.schema_name, ch.table_name)) IS NOT NULL LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', t.tgname, t.schema_name, t.table_name);
  END LOOP;
END $$;

-- After a DROP: forget catalog rows whose tables are gone, as TimescaleDB's sql_drop handler does.
CREATE FUNCTION _timescaledb_functions.stand_in_forget_dropped() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  gone record;
  companion text;
  was_internal boolean := _timescaledb_functions.stand_in_is_internal();
BEGIN
  PERFORM _timescaledb_functions.stand_in_internal(true);
  -- A continuous aggregate whose view or raw hypertable is gone takes its views and its
  -- materialization hypertable with it.
  FOR gone IN
    DELETE FROM _timescaledb_catalog.continuous_agg ca
    WHERE to_regclass(format('%I.%I', ca.user_view_schema, ca.user_view_name)) IS NULL
       OR NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.hypertable h WHERE h.id = ca.raw_hypertable_id
                      AND to_regclass(format('%I.%I', h.schema_name, h.table_name)) IS NOT NULL)
    RETURNING ca.*, (SELECT format('%I.%I', h.schema_name, h.table_name)
                     FROM _timescaledb_catalog.hypertable h WHERE h.id = ca.mat_hypertable_id) AS mat
  LOOP
    FOR companion IN SELECT v FROM unnest(ARRAY[format('%I.%I', gone.user_view_schema, gone.user_view_name),
        format('%I.%I', gone.partial_view_schema, gone.partial_view_name),
        format('%I.%I', gone.direct_view_schema, gone.direct_view_name)]) AS v WHERE to_regclass(v) IS NOT NULL LOOP
      EXECUTE format('DROP VIEW %s CASCADE', companion);
    END LOOP;
    IF to_regclass(gone.mat) IS NOT NULL THEN
      EXECUTE format('DROP TABLE %s CASCADE', gone.mat);
    END IF;
  END LOOP;
  DELETE FROM _timescaledb_catalog.chunk_constraint cc USING _timescaledb_catalog.chunk c
  WHERE cc.chunk_id = c.id AND to_regclass(format('%I.%I', c.schema_name, c.table_name)) IS NULL;
  UPDATE _timescaledb_catalog.chunk c SET compressed_chunk_id = NULL, status = 0
  FROM _timescaledb_catalog.chunk z
  WHERE z.id = c.compressed_chunk_id AND to_regclass(format('%I.%I', z.schema_name, z.table_name)) IS NULL;
  DELETE FROM _timescaledb_catalog.chunk c
  WHERE to_regclass(format('%I.%I', c.schema_name, c.table_name)) IS NULL;
  DELETE FROM _timescaledb_catalog.compression_settings s
  WHERE NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = s.relid);
  -- A hypertable whose table is gone takes its compressed hypertable with it.
  FOR companion IN
    DELETE FROM _timescaledb_catalog.hypertable h
    WHERE to_regclass(format('%I.%I', h.schema_name, h.table_name)) IS NULL
    RETURNING (SELECT format('%I.%I', c.schema_name, c.table_name)
               FROM _timescaledb_catalog.hypertable c WHERE c.id = h.compressed_hypertable_id)
  LOOP
    IF companion IS NOT NULL THEN
      EXECUTE format('DROP TABLE IF EXISTS %s CASCADE', companion);
    END IF;
  END LOOP;
  DELETE FROM _timescaledb_catalog.dimension_slice s
  WHERE NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.chunk_constraint cc WHERE cc.dimension_slice_id = s.id);
  PERFORM _timescaledb_functions.stand_in_internal(was_internal);
END $$;

-- At the end of an ALTER TABLE: the catalog follows a hypertable's new name or schema (RENAME, SET SCHEMA).
CREATE FUNCTION _timescaledb_functions.stand_in_after_alter_table() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  obj record;
  ht_id integer;
BEGIN
  FOR obj IN SELECT DISTINCT d.objid, n.nspname, c.relname
             FROM pg_event_trigger_ddl_commands() d
             JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE d.classid = 'pg_class'::regclass AND c.relkind = 'r' LOOP
    -- A hypertable root (it has the insert blocker) whose catalog row no longer names it: renamed or moved.
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = obj.objid AND t.tgname = 'ts_insert_blocker')
       AND NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.hypertable h
                       WHERE h.schema_name = obj.nspname AND h.table_name = obj.relname) THEN
      SELECT h.id INTO ht_id FROM _timescaledb_catalog.hypertable h
      WHERE to_regclass(format('%I.%I', h.schema_name, h.table_name)) IS NULL
      ORDER BY EXISTS (SELECT 1 FROM _timescaledb_catalog.chunk ch JOIN pg_inherits i
                       ON i.inhrelid = to_regclass(format('%I.%I', ch.schema_name, ch.table_name))
                       WHERE ch.hypertable_id = h.id AND i.inhparent = obj.objid) DESC,
               EXISTS (SELECT 1 FROM _timescaledb_catalog.compression_settings s WHERE s.relid = obj.objid) DESC
      LIMIT 1;
      UPDATE _timescaledb_catalog.hypertable SET schema_name = obj.nspname, table_name = obj.relname WHERE id = ht_id;
    END IF;
  END LOOP;
END $$;

-- Both event triggers' function (C in TimescaleDB: on the plain image every DDL it sees fails).
CREATE FUNCTION _timescaledb_functions.process_ddl_event() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  IF _timescaledb_functions.stand_in_restoring() THEN
    RETURN;
  END IF;
  IF TG_EVENT = 'sql_drop' THEN
    IF TG_TAG = 'DROP VIEW' AND NOT _timescaledb_functions.stand_in_is_internal() AND EXISTS (
         SELECT 1 FROM pg_event_trigger_dropped_objects() o JOIN _timescaledb_catalog.continuous_agg ca
         ON ca.user_view_schema = o.schema_name AND ca.user_view_name = o.object_name WHERE o.object_type = 'view') THEN
      RAISE EXCEPTION 'cannot drop continuous aggregate using DROP VIEW' USING ERRCODE = 'feature_not_supported',
        HINT = 'Use DROP MATERIALIZED VIEW to drop a continuous aggregate.';
    END IF;
    PERFORM _timescaledb_functions.stand_in_drop_chunk_triggers();
    PERFORM _timescaledb_functions.stand_in_forget_dropped();
  ELSE
    IF TG_TAG = 'ALTER TABLE' THEN
      PERFORM _timescaledb_functions.stand_in_after_alter_table();
    END IF;
    IF TG_TAG IN ('ALTER TABLE', 'CREATE INDEX', 'CREATE TRIGGER') AND NOT _timescaledb_functions.stand_in_is_internal() THEN
      -- New constraints and indexes of a hypertable reach its chunks, as TimescaleDB's hook sends them.
      PERFORM _timescaledb_functions.stand_in_copy_constraints(h.id, ch.id)
      FROM (SELECT DISTINCT CASE WHEN d.object_type = 'index'
                 THEN (SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = d.objid)
                 WHEN d.classid = 'pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = d.objid)
                 ELSE d.objid END AS relid
            FROM pg_event_trigger_ddl_commands() d WHERE d.classid IN ('pg_class'::regclass, 'pg_trigger'::regclass)) t
      JOIN pg_class c ON c.oid = t.relid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN _timescaledb_catalog.hypertable h ON h.schema_name = n.nspname AND h.table_name = c.relname
      JOIN _timescaledb_catalog.chunk ch ON ch.hypertable_id = h.id
      WHERE h.compression_state <> 2
      ORDER BY ch.id;
    END IF;
  END IF;
END $$;

-- TimescaleDB's refusals of ALTER TABLE on chunks (all but the subcommands its process_utility.c
-- allows) and of inheritance on hypertables, for each ALTER TABLE in the query text.
-- No SET search_path: the names in the query are resolved with the caller's.
CREATE FUNCTION _timescaledb_functions.stand_in_check_alter_table() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  stmt text[];
  actions text;
  action text;
  rel regclass;
BEGIN
  FOR stmt IN SELECT regexp_matches(current_query(),
      $re$ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)\s+([^;]*)$re$, 'gi') LOOP
    rel := to_regclass(stmt[1]);
    CONTINUE WHEN rel IS NULL OR stmt[2] ~* '^(RENAME|SET\s+SCHEMA)\s';
    actions := stmt[2];
    WHILE actions ~ '\([^()]*\)' LOOP
      actions := regexp_replace(actions, '\([^()]*\)', '', 'g');
    END LOOP;
    IF (_timescaledb_functions.stand_in_chunk(rel)).id IS NOT NULL THEN
      FOREACH action IN ARRAY string_to_array(actions, ',') LOOP
        IF btrim(action) !~* $re$^(SET\s*$|RESET\s*$|SET\s+(WITHOUT\s+CLUSTER|TABLESPACE)|CLUSTER\s+ON|(ENABLE|DISABLE)\s+ROW\s+LEVEL\s+SECURITY|ADD\s+(CONSTRAINT|PRIMARY|UNIQUE|CHECK|FOREIGN|EXCLUDE)|DROP\s+CONSTRAINT|ALTER\s+(COLUMN\s+)?("[^"]+"|[\w$]+)\s+(SET\s+(STATISTICS|STORAGE|COMPRESSION)|SET\s*$|RESET\s*$))$re$ THEN
          RAISE EXCEPTION 'operation not supported on chunk tables' USING ERRCODE = 'feature_not_supported';
        END IF;
      END LOOP;
    ELSIF (_timescaledb_functions.stand_in_hypertable(rel)).id IS NOT NULL AND actions ~* '(^|,)\s*(NO\s+)?INHERIT\s' THEN
      RAISE EXCEPTION 'hypertables do not support inheritance' USING ERRCODE = 'feature_not_supported';
    END IF;
  END LOOP;
END $$;

-- Lab-only, at the start of DROP MATERIALIZED VIEW, DROP TABLE and ALTER TABLE: what TimescaleDB's
-- utility hook does before PostgreSQL sees the statement, which an event trigger cannot change. The objects
-- are read from the query text (every such DROP in it). A continuous aggregate (a view) is dropped
-- here and a placeholder materialized view left for the statement to drop; a hypertable's chunks are
-- dropped first, so DROP TABLE needs no CASCADE. Silent where the library is absent, where
-- PostgreSQL and the real event triggers answer.
-- No SET search_path: the names in the query are resolved with the caller's.
CREATE FUNCTION _timescaledb_functions.stand_in_process_ddl_start() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  stmt text[];
  names text[];
  rel regclass;
  relname name;
  nspname name;
  behavior text;
  caggs integer;
  ht _timescaledb_catalog.hypertable;
  ch record;
BEGIN
  IF _timescaledb_functions.stand_in_is_internal() OR NOT _timescaledb_functions.stand_in_library_loaded()
     OR _timescaledb_functions.stand_in_restoring() THEN
    RETURN;
  END IF;
  IF TG_TAG = 'ALTER TABLE' THEN
    PERFORM _timescaledb_functions.stand_in_check_alter_table();
    RETURN;
  END IF;
  FOR stmt IN SELECT regexp_matches(current_query(),
      $re$DROP\s+(MATERIALIZED\s+VIEW|TABLE)\s+(?:IF\s+EXISTS\s+)?((?:(?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?\s*,\s*)*(?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)(\s+(?:CASCADE|RESTRICT))?$re$, 'gi') LOOP
    CONTINUE WHEN upper(regexp_replace(stmt[1], '\s+', ' ', 'g')) <> replace(TG_TAG, 'DROP ', '');
    behavior := upper(btrim(coalesce(stmt[3], '')));
    SELECT array_agg(m[1]) INTO names
    FROM regexp_matches(stmt[2], $re$((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)$re$, 'g') AS m;
    IF TG_TAG = 'DROP MATERIALIZED VIEW' THEN
      SELECT count(*) INTO caggs FROM unnest(names) AS n(name)
      JOIN pg_class c ON c.oid = to_regclass(n.name) JOIN pg_namespace s ON s.oid = c.relnamespace
      JOIN _timescaledb_catalog.continuous_agg ca ON ca.user_view_schema = s.nspname AND ca.user_view_name = c.relname;
      IF caggs > 0 AND caggs < cardinality(names) THEN
        RAISE EXCEPTION 'mixing continuous aggregates and other objects not allowed' USING ERRCODE = 'feature_not_supported',
          HINT = 'Drop continuous aggregates and other objects in separate statements.';
      END IF;
      CONTINUE WHEN caggs = 0;
      PERFORM _timescaledb_functions.stand_in_internal(true);
      FOR i IN 1 .. cardinality(names) LOOP
        rel := to_regclass(names[i]);
        SELECT c.relname, s.nspname INTO relname, nspname FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
        WHERE c.oid = rel;
        EXECUTE format('DROP VIEW %s %s', rel, behavior);
        PERFORM _timescaledb_functions.stand_in_forget_dropped();
        EXECUTE format('CREATE MATERIALIZED VIEW %I.%I AS SELECT WITH NO DATA', nspname, relname);
      END LOOP;
      PERFORM _timescaledb_functions.stand_in_internal(false);
    ELSE
      FOR i IN 1 .. cardinality(names) LOOP
        ht := _timescaledb_functions.stand_in_hypertable(to_regclass(names[i]));
        CONTINUE WHEN ht.id IS NULL;
        IF cardinality(names) > 1 THEN
          RAISE EXCEPTION 'cannot drop a hypertable along with other objects';
        END IF;
        IF ht.compression_state = 2 THEN
          RAISE EXCEPTION 'dropping compressed hypertables not supported' USING ERRCODE = 'feature_not_supported',
            HINT = 'Please drop the corresponding uncompressed hypertable instead.';
        END IF;
        -- The hypertable first, then its chunks: the order of every reader and writer (and PostgreSQL's
        -- own drop), so a concurrent insert or read waits instead of deadlocking.
        EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', ht.schema_name, ht.table_name);
        PERFORM _timescaledb_functions.stand_in_internal(true);
        FOR ch IN SELECT c.schema_name, c.table_name, z.schema_name AS z_schema, z.table_name AS z_table
                  FROM _timescaledb_catalog.chunk c LEFT JOIN _timescaledb_catalog.chunk z ON z.id = c.compressed_chunk_id
                  WHERE c.hypertable_id = ht.id ORDER BY c.id LOOP
          IF ch.z_table IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %I.%I %s', ch.z_schema, ch.z_table, behavior);
          END IF;
          EXECUTE format('DROP TABLE IF EXISTS %I.%I %s', ch.schema_name, ch.table_name, behavior);
        END LOOP;
        PERFORM _timescaledb_functions.stand_in_internal(false);
      END LOOP;
    END IF;
  END LOOP;
END $$;

-- A job row and its statistics row; returns the job id. Like TimescaleDB's: fixed_schedule only when
-- an initial_start is given, and a new job is due at once (next_start -infinity).
CREATE FUNCTION _timescaledb_functions.stand_in_add_job(ht_id integer, application_name text, schedule_interval interval,
  max_runtime interval, retry_period interval, proc_name name, config jsonb, initial_start timestamptz DEFAULT NULL,
  timezone text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  job_id integer := nextval('_timescaledb_config.bgw_job_id_seq');
BEGIN
  INSERT INTO _timescaledb_config.bgw_job (id, application_name, schedule_interval, max_runtime, max_retries,
    retry_period, proc_schema, proc_name, hypertable_id, config, check_schema, check_name, fixed_schedule,
    initial_start, timezone)
  VALUES (job_id, format('%s [%s]', application_name, job_id), schedule_interval, max_runtime, -1, retry_period,
    '_timescaledb_functions', proc_name, ht_id, config, '_timescaledb_functions', proc_name || '_check',
    initial_start IS NOT NULL, initial_start, timezone);
  INSERT INTO _timescaledb_internal.bgw_job_stat (job_id, last_finish, next_start, last_successful_finish,
    last_run_success, total_runs, total_duration, total_duration_failures, total_successes, total_failures,
    total_crashes, consecutive_failures, consecutive_crashes)
  VALUES (job_id, '-infinity', coalesce(initial_start, '-infinity'), '-infinity', true, 0, '0', '0', 0, 0, 0, 0, 0);
  RETURN job_id;
END $$;

-- The hypertable behind an add_*_policy relation argument, or TimescaleDB's error.
CREATE FUNCTION _timescaledb_functions.stand_in_policy_hypertable(relation regclass)
RETURNS _timescaledb_catalog.hypertable
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable := _timescaledb_functions.stand_in_hypertable(relation);
  name text := (SELECT relname FROM pg_class WHERE oid = relation);
BEGIN
  IF ht.id IS NULL THEN
    IF name IS NULL THEN
      RAISE EXCEPTION 'object with id "%" not found', relation::oid USING ERRCODE = 'undefined_object';
    END IF;
    RAISE EXCEPTION '"%" is not a hypertable or a continuous aggregate', name USING ERRCODE = 'TS001';
  END IF;
  RETURN ht;
END $$;

-- Public API ----------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.create_hypertable(
  relation regclass,
  time_column_name name,
  chunk_time_interval interval DEFAULT interval '7 days',
  if_not_exists boolean DEFAULT false,
  migrate_data boolean DEFAULT false
) RETURNS TABLE (hypertable_id integer, schema_name name, table_name name, created boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  ht _timescaledb_catalog.hypertable := _timescaledb_functions.stand_in_hypertable(relation);
  rel record;
  time_attnum smallint;
  time_type regtype;
  new_id integer;
  interval_us bigint := (extract(epoch FROM chunk_time_interval) * 1000000)::bigint;
  has_rows boolean;
  slice_us bigint;
  chunk regclass;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  SELECT c.relname, n.nspname, c.relkind INTO rel
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
  IF ht.id IS NOT NULL THEN
    IF if_not_exists THEN
      RAISE NOTICE 'table "%" is already a hypertable, skipping', rel.relname USING ERRCODE = 'TS110';
      RETURN QUERY SELECT ht.id, ht.schema_name, ht.table_name, false;
      RETURN;
    END IF;
    RAISE EXCEPTION 'table "%" is already a hypertable', rel.relname USING ERRCODE = 'TS110';
  END IF;
  IF rel.relkind <> 'r' THEN
    RAISE EXCEPTION 'invalid relation type' USING ERRCODE = 'wrong_object_type';
  END IF;
  SELECT a.attnum, a.atttypid::regtype INTO time_attnum, time_type
  FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = time_column_name AND a.attnum > 0 AND NOT a.attisdropped;
  IF time_attnum IS NULL THEN
    RAISE EXCEPTION 'column "%" does not exist', time_column_name USING ERRCODE = 'undefined_column';
  END IF;
  IF time_type <> 'timestamptz'::regtype THEN
    RAISE EXCEPTION 'invalid type for dimension "%"', time_column_name USING ERRCODE = 'invalid_parameter_value',
      HINT = 'The lab''s TimescaleDB stand-in partitions timestamptz columns only.';
  END IF;
  IF interval_us <= 0 THEN
    RAISE EXCEPTION 'invalid interval: must be between 1 and 9223372036854775807' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', relation) INTO STRICT has_rows;
  IF has_rows AND NOT migrate_data THEN
    RAISE EXCEPTION 'table "%" is not empty', rel.relname USING ERRCODE = 'feature_not_supported',
      HINT = 'You can migrate data by specifying ''migrate_data => true'' when calling this function.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = relation OR inhrelid = relation) THEN
    RAISE EXCEPTION 'table "%" is already partitioned', rel.relname USING ERRCODE = 'feature_not_supported',
      DETAIL = 'It is not possible to turn tables that use inheritance into hypertables.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = relation AND i.indisunique AND NOT time_attnum = ANY (i.indkey)) THEN
    RAISE EXCEPTION 'cannot create a unique index without the column "%" (used in partitioning)', time_column_name
      USING ERRCODE = 'TS103',
      HINT = 'If you''re creating a hypertable on a table with a primary key, ensure the partitioning column is part of the primary or composite key.';
  END IF;

  new_id := nextval('_timescaledb_catalog.hypertable_id_seq');
  INSERT INTO _timescaledb_catalog.hypertable (id, schema_name, table_name, associated_schema_name,
    associated_table_prefix, num_dimensions, chunk_sizing_func_schema, chunk_sizing_func_name, chunk_target_size)
  VALUES (new_id, rel.nspname, rel.relname, '_timescaledb_internal', '_hyper_' || new_id, 1,
    '_timescaledb_functions', 'calculate_chunk_interval', 0);
  INSERT INTO _timescaledb_catalog.dimension (hypertable_id, column_name, column_type, aligned, interval_length)
  VALUES (new_id, time_column_name, time_type, true, interval_us);
  IF NOT (SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = relation AND a.attnum = time_attnum) THEN
    RAISE NOTICE 'adding not-null constraint to column "%"', time_column_name
      USING DETAIL = 'Dimensions cannot have NULL values.';
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', relation, time_column_name);
  END IF;
  -- create_default_indexes: a time index, unless an index already leads with the time column.
  IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = relation AND i.indkey[0] = time_attnum) THEN
    EXECUTE format('CREATE INDEX %I ON %s (%I DESC)', rel.relname || '_' || time_column_name || '_idx',
                   relation, time_column_name);
  END IF;
  EXECUTE format('CREATE TRIGGER ts_insert_blocker BEFORE INSERT ON %s FOR EACH ROW '
                 'EXECUTE FUNCTION _timescaledb_functions.insert_blocker()', relation);

  IF has_rows THEN
    RAISE NOTICE 'migrating data to chunks'
      USING DETAIL = 'Migration might take a while depending on the amount of data.';
    FOR slice_us IN EXECUTE format(
      'SELECT DISTINCT floor(extract(epoch FROM %I) * 1000000 / $1)::bigint * $1 FROM ONLY %s',
      time_column_name, relation) USING interval_us
    LOOP
      chunk := _timescaledb_functions.stand_in_chunk_for(new_id, to_timestamp(slice_us / 1000000.0));
      EXECUTE format('INSERT INTO %s SELECT * FROM ONLY %s WHERE %I >= $1 AND %I < $2',
                     chunk, relation, time_column_name, time_column_name)
        USING to_timestamp(slice_us / 1000000.0), to_timestamp((slice_us + interval_us) / 1000000.0);
    END LOOP;
    EXECUTE format('DELETE FROM ONLY %s', relation);
  END IF;
  RETURN QUERY SELECT new_id, rel.nspname::name, rel.relname::name, true;
END $$;

CREATE FUNCTION @extschema@.add_compression_policy(
  hypertable regclass,
  compress_after interval DEFAULT NULL,
  if_not_exists boolean DEFAULT false,
  schedule_interval interval DEFAULT NULL,
  initial_start timestamptz DEFAULT NULL,
  timezone text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable;
  existing _timescaledb_config.bgw_job;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  ht := _timescaledb_functions.stand_in_policy_hypertable(hypertable);
  IF ht.compression_state <> 1 THEN
    RAISE EXCEPTION 'compression not enabled on hypertable "%"', ht.table_name USING ERRCODE = 'feature_not_supported',
      HINT = 'Enable compression before adding a compression policy.';
  END IF;
  SELECT * INTO existing FROM _timescaledb_config.bgw_job j
  WHERE j.hypertable_id = ht.id AND j.proc_name = 'policy_compression';
  IF existing.id IS NOT NULL THEN
    IF NOT if_not_exists THEN
      RAISE EXCEPTION 'compression policy already exists for hypertable or continuous aggregate "%"', ht.table_name
        USING ERRCODE = 'duplicate_object', HINT = 'Set option "if_not_exists" to true to avoid error.';
    END IF;
    IF (existing.config ->> 'compress_after')::interval = compress_after THEN
      RAISE NOTICE 'compression policy already exists for hypertable "%", skipping', ht.table_name;
    ELSE
      RAISE WARNING 'compression policy already exists for hypertable "%"', ht.table_name
        USING DETAIL = 'A policy already exists with different arguments.',
              HINT = 'Remove the existing policy before adding a new one.';
    END IF;
    RETURN -1;
  END IF;
  -- Default schedule: half the chunk interval, at most 12 hours.
  RETURN _timescaledb_functions.stand_in_add_job(ht.id, 'Compression Policy', coalesce(schedule_interval,
      (SELECT least(make_interval(secs => d.interval_length / 2000000.0), interval '12 hours')
       FROM _timescaledb_catalog.dimension d WHERE d.hypertable_id = ht.id LIMIT 1)), '0', '1 hour',
    'policy_compression', jsonb_build_object('hypertable_id', ht.id, 'compress_after', compress_after::text),
    initial_start, timezone);
END $$;

CREATE FUNCTION @extschema@.add_retention_policy(
  relation regclass,
  drop_after interval DEFAULT NULL,
  if_not_exists boolean DEFAULT false,
  schedule_interval interval DEFAULT NULL,
  initial_start timestamptz DEFAULT NULL,
  timezone text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable;
  existing _timescaledb_config.bgw_job;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  ht := _timescaledb_functions.stand_in_policy_hypertable(relation);
  SELECT * INTO existing FROM _timescaledb_config.bgw_job j
  WHERE j.hypertable_id = ht.id AND j.proc_name = 'policy_retention';
  IF existing.id IS NOT NULL THEN
    IF NOT if_not_exists THEN
      RAISE EXCEPTION 'retention policy already exists for hypertable "%"', ht.table_name
        USING ERRCODE = 'duplicate_object', HINT = 'Set option "if_not_exists" to true to avoid error.';
    END IF;
    IF (existing.config ->> 'drop_after')::interval = drop_after THEN
      RAISE NOTICE 'retention policy already exists for hypertable "%", skipping', ht.table_name;
    ELSE
      RAISE WARNING 'retention policy already exists for hypertable "%"', ht.table_name
        USING DETAIL = 'A policy already exists with different arguments.',
              HINT = 'Remove the existing policy before adding a new one.';
    END IF;
    RETURN -1;
  END IF;
  RETURN _timescaledb_functions.stand_in_add_job(ht.id, 'Retention Policy', coalesce(schedule_interval, '1 day'),
    '5 minutes', '5 minutes', 'policy_retention', jsonb_build_object('drop_after', drop_after::text, 'hypertable_id', ht.id),
    initial_start, timezone);
END $$;

-- Both remove_*_policy functions: drop the hypertable's job of that kind, with TimescaleDB's errors.
CREATE FUNCTION _timescaledb_functions.stand_in_remove_policy(relation regclass, proc name, kind text,
                                                             if_exists boolean)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  ht := _timescaledb_functions.stand_in_hypertable(relation);
  IF ht.id IS NULL THEN
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = relation) THEN
      RAISE EXCEPTION 'relation is not a hypertable or continuous aggregate' USING ERRCODE = 'undefined_object';
    END IF;
    RAISE EXCEPTION 'relation "%" is not a hypertable or continuous aggregate',
      (SELECT relname FROM pg_class WHERE oid = relation) USING ERRCODE = 'undefined_object';
  END IF;
  DELETE FROM _timescaledb_config.bgw_job WHERE hypertable_id = ht.id AND proc_name = proc;
  IF NOT FOUND THEN
    IF NOT if_exists THEN
      RAISE EXCEPTION '% policy not found for hypertable "%"', kind, ht.table_name
        USING ERRCODE = 'undefined_object';
    END IF;
    RAISE NOTICE '% policy not found for hypertable "%", skipping', kind, ht.table_name;
    RETURN false;
  END IF;
  RETURN true;
END $$;

CREATE FUNCTION @extschema@.remove_compression_policy(hypertable regclass, if_exists boolean DEFAULT false)
RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT _timescaledb_functions.stand_in_remove_policy(hypertable, 'policy_compression', 'compression', if_exists)
$$;

CREATE FUNCTION @extschema@.remove_retention_policy(relation regclass, if_exists boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_remove_policy(relation, 'policy_retention', 'retention', if_exists);
END $$;

-- Compression ---------------------------------------------------------------------------------
-- A compressed chunk's rows leave the chunk table for _timescaledb_internal.compress_hyper_<c>_<n>_chunk
-- (catalogued as a chunk of the compressed hypertable): SELECT FROM ONLY the chunk no longer sees
-- them. That table inherits the chunk, so the hypertable read (and the chunk's, without ONLY)
-- still returns every row, as TimescaleDB's decompression does. Rows inserted later land in the
-- chunk table (status 9, partial) until the chunk is compressed again.

-- The chunk catalog row of `chunk` (NULL when it is none).
CREATE FUNCTION _timescaledb_functions.stand_in_chunk(chunk regclass) RETURNS _timescaledb_catalog.chunk
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT ch.* FROM _timescaledb_catalog.chunk ch
  JOIN pg_class c ON c.relname = ch.table_name
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = ch.schema_name
  WHERE c.oid = chunk
$$;

CREATE FUNCTION @extschema@.compress_chunk(uncompressed_chunk regclass, if_not_compressed boolean DEFAULT true,
                                           recompress boolean DEFAULT false) RETURNS regclass
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ch _timescaledb_catalog.chunk;
  ht _timescaledb_catalog.hypertable;
  store_id integer;
  store name;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  ch := _timescaledb_functions.stand_in_chunk(uncompressed_chunk);
  IF ch.id IS NULL THEN
    RAISE EXCEPTION 'chunk not found' USING ERRCODE = 'TS501';
  END IF;
  SELECT * INTO STRICT ht FROM _timescaledb_catalog.hypertable WHERE id = ch.hypertable_id;
  IF ht.compression_state <> 1 THEN
    RAISE EXCEPTION 'compression not enabled on "%"', ht.table_name USING ERRCODE = 'feature_not_supported',
      DETAIL = 'It is not possible to compress chunks on a hypertable or continuous aggregate that does not have compression enabled.',
      HINT = 'Enable compression using ALTER TABLE/MATERIALIZED VIEW with the timescaledb.compress option.';
  END IF;
  EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', uncompressed_chunk);
  IF ch.compressed_chunk_id IS NOT NULL THEN
    IF ch.status & 8 = 0 THEN
      IF NOT if_not_compressed THEN
        RAISE EXCEPTION 'chunk "%" is already compressed', ch.table_name USING ERRCODE = 'duplicate_object';
      END IF;
      RAISE NOTICE 'chunk "%" is already compressed', ch.table_name;
      RETURN uncompressed_chunk;
    END IF;
    SELECT format('%I.%I', z.schema_name, z.table_name) INTO store FROM _timescaledb_catalog.chunk z
    WHERE z.id = ch.compressed_chunk_id;
  ELSE
    store_id := nextval('_timescaledb_catalog.chunk_id_seq');
    store := format('_timescaledb_internal.%I', format('compress_hyper_%s_%s_chunk', ht.compressed_hypertable_id, store_id));
    PERFORM _timescaledb_functions.stand_in_internal(true);
    EXECUTE format('CREATE TABLE %s () INHERITS (%s)', store, uncompressed_chunk);
    PERFORM _timescaledb_functions.stand_in_internal(false);
    INSERT INTO _timescaledb_catalog.chunk (id, hypertable_id, schema_name, table_name)
    VALUES (store_id, ht.compressed_hypertable_id, '_timescaledb_internal',
            format('compress_hyper_%s_%s_chunk', ht.compressed_hypertable_id, store_id));
    UPDATE _timescaledb_catalog.chunk SET compressed_chunk_id = store_id WHERE id = ch.id;
  END IF;
  EXECUTE format('WITH moved AS (DELETE FROM ONLY %s RETURNING *) INSERT INTO %s SELECT * FROM moved',
                 uncompressed_chunk, store);
  UPDATE _timescaledb_catalog.chunk SET status = 1 WHERE id = ch.id;
  RETURN uncompressed_chunk;
END $$;

CREATE FUNCTION @extschema@.decompress_chunk(uncompressed_chunk regclass, if_compressed boolean DEFAULT true)
RETURNS regclass
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ch _timescaledb_catalog.chunk;
  store text;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  ch := _timescaledb_functions.stand_in_chunk(uncompressed_chunk);
  IF ch.id IS NULL THEN
    RAISE EXCEPTION 'chunk not found' USING ERRCODE = 'TS501';
  END IF;
  IF ch.compressed_chunk_id IS NULL THEN
    IF NOT if_compressed THEN
      RAISE EXCEPTION 'chunk "%" is not compressed', ch.table_name USING ERRCODE = 'duplicate_object';
    END IF;
    RAISE NOTICE 'chunk "%" is not compressed', ch.table_name;
    RETURN NULL;
  END IF;
  SELECT format('%I.%I', z.schema_name, z.table_name) INTO STRICT store FROM _timescaledb_catalog.chunk z
  WHERE z.id = ch.compressed_chunk_id;
  EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', uncompressed_chunk);
  EXECUTE format('INSERT INTO %s SELECT * FROM %s', uncompressed_chunk, store);
  UPDATE _timescaledb_catalog.chunk SET compressed_chunk_id = NULL, status = 0 WHERE id = ch.id;
  PERFORM _timescaledb_functions.stand_in_internal(true);
  EXECUTE format('DROP TABLE %s', store);
  PERFORM _timescaledb_functions.stand_in_internal(false);
  RETURN uncompressed_chunk;
END $$;

-- Chunks of `relation` whose whole time range is older than now() - older_than (interval form only).
CREATE FUNCTION @extschema@.drop_chunks(relation regclass, older_than interval, newer_than interval DEFAULT NULL,
                                        verbose boolean DEFAULT false) RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable;
  ch record;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  ht := _timescaledb_functions.stand_in_hypertable(relation);
  IF ht.id IS NULL THEN
    RAISE EXCEPTION '"%" is not a hypertable or a continuous aggregate', (SELECT relname FROM pg_class WHERE oid = relation)
      USING ERRCODE = 'TS001', HINT = 'The operation is only possible on a hypertable or continuous aggregate.';
  END IF;
  FOR ch IN SELECT c.chunk_schema, c.chunk_name FROM timescaledb_information.chunks c
            WHERE c.hypertable_schema = ht.schema_name AND c.hypertable_name = ht.table_name
              AND c.range_end <= now() - older_than AND (newer_than IS NULL OR c.range_start >= now() - newer_than)
            ORDER BY c.range_start LOOP
    PERFORM _timescaledb_functions.stand_in_internal(true);
    EXECUTE (SELECT format('DROP TABLE IF EXISTS %I.%I', z.schema_name, z.table_name)
             FROM _timescaledb_catalog.chunk k JOIN _timescaledb_catalog.chunk z ON z.id = k.compressed_chunk_id
             WHERE k.schema_name = ch.chunk_schema AND k.table_name = ch.chunk_name
             UNION ALL SELECT 'SELECT' LIMIT 1);
    EXECUTE format('DROP TABLE %I.%I', ch.chunk_schema, ch.chunk_name);
    PERFORM _timescaledb_functions.stand_in_internal(false);
    PERFORM _timescaledb_functions.stand_in_forget_dropped();
    RETURN NEXT format('%I.%I', ch.chunk_schema, ch.chunk_name);
  END LOOP;
END $$;

-- show_chunks(relation, older_than, newer_than): the chunks in time order (intervals only here).
CREATE FUNCTION @extschema@.show_chunks(relation regclass, older_than interval DEFAULT NULL,
                                        newer_than interval DEFAULT NULL) RETURNS SETOF regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  ht := _timescaledb_functions.stand_in_hypertable(relation);
  IF ht.id IS NULL THEN
    RAISE EXCEPTION '"%" is not a hypertable or a continuous aggregate', (SELECT relname FROM pg_class WHERE oid = relation)
      USING ERRCODE = 'TS001', HINT = 'The operation is only possible on a hypertable or continuous aggregate.';
  END IF;
  RETURN QUERY SELECT format('%I.%I', c.chunk_schema, c.chunk_name)::regclass FROM timescaledb_information.chunks c
    WHERE c.hypertable_schema = ht.schema_name AND c.hypertable_name = ht.table_name
      AND (older_than IS NULL OR c.range_end <= now() - older_than)
      AND (newer_than IS NULL OR c.range_start >= now() - newer_than)
    ORDER BY c.range_start;
END $$;

-- Jobs --------------------------------------------------------------------------------------------
-- The policies' procedures, run_job and alter_job as TimescaleDB has them. TimescaleDB's scheduler
-- runs inside the server; the lab's runs in the backend stand-in, calling stand_in_run_due_jobs
-- every second (see its comment).

CREATE PROCEDURE _timescaledb_functions.policy_compression(job_id integer, config jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ch record;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  FOR ch IN SELECT format('%I.%I', c.chunk_schema, c.chunk_name) AS chunk
            FROM timescaledb_information.chunks c
            JOIN _timescaledb_catalog.hypertable h ON h.schema_name = c.hypertable_schema AND h.table_name = c.hypertable_name
            JOIN _timescaledb_catalog.chunk k ON k.schema_name = c.chunk_schema AND k.table_name = c.chunk_name
            WHERE h.id = (config ->> 'hypertable_id')::integer
              AND c.range_end <= now() - (config ->> 'compress_after')::interval
              AND (k.compressed_chunk_id IS NULL OR k.status & 8 = 8)
            ORDER BY c.range_start
            LIMIT coalesce((config ->> 'maxchunks_to_compress')::integer, 2147483647) LOOP
    PERFORM @extschema@.compress_chunk(ch.chunk::regclass);
  END LOOP;
END $$;

CREATE PROCEDURE _timescaledb_functions.policy_retention(job_id integer, config jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  PERFORM @extschema@.drop_chunks(format('%I.%I', h.schema_name, h.table_name)::regclass,
                                  (config ->> 'drop_after')::interval)
  FROM _timescaledb_catalog.hypertable h WHERE h.id = (config ->> 'hypertable_id')::integer;
END $$;

CREATE PROCEDURE @extschema@.run_job(job_id integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  job _timescaledb_config.bgw_job;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  SELECT * INTO job FROM _timescaledb_config.bgw_job j WHERE j.id = job_id;
  IF job.id IS NULL THEN
    RAISE EXCEPTION 'job % not found', job_id USING ERRCODE = 'undefined_object';
  END IF;
  EXECUTE format('CALL %I.%I($1, $2)', job.proc_schema, job.proc_name) USING job.id, job.config;
END $$;

-- Lab-only: run every scheduled job that is due, as TimescaleDB's scheduler would; returns how many
-- ran. A job is due at its next_start, and in the lab also `lab_interval` after its last run, so
-- policies with a 12-hour schedule run within seconds. A failing job is recorded as failed.
-- Returns 0 where the library is absent (no scheduler runs on the plain image).
CREATE FUNCTION _timescaledb_functions.stand_in_run_due_jobs(lab_interval interval DEFAULT '5 seconds')
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  job record;
  started timestamptz;
  ok boolean;
  ran integer := 0;
BEGIN
  IF NOT _timescaledb_functions.stand_in_library_loaded() OR _timescaledb_functions.stand_in_restoring() THEN
    RETURN 0;
  END IF;
  FOR job IN SELECT j.id, j.schedule_interval FROM _timescaledb_config.bgw_job j
             JOIN _timescaledb_internal.bgw_job_stat js ON js.job_id = j.id
             WHERE j.scheduled AND j.id >= 1000
               AND (js.next_start <= now() OR greatest(js.last_start, js.last_finish) + lab_interval <= now())
             ORDER BY j.id
             FOR UPDATE OF js SKIP LOCKED LOOP
    started := clock_timestamp();
    BEGIN
      CALL @extschema@.run_job(job.id);
      ok := true;
    EXCEPTION WHEN OTHERS THEN
      ok := false;
      RAISE WARNING 'job % failed: %', job.id, SQLERRM;
    END;
    UPDATE _timescaledb_internal.bgw_job_stat SET last_start = started, last_finish = clock_timestamp(),
      next_start = clock_timestamp() + job.schedule_interval,
      last_successful_finish = CASE WHEN ok THEN clock_timestamp() ELSE last_successful_finish END,
      last_run_success = ok, total_runs = total_runs + 1,
      total_duration = total_duration + (clock_timestamp() - started),
      total_duration_failures = total_duration_failures + CASE WHEN ok THEN interval '0' ELSE clock_timestamp() - started END,
      total_successes = total_successes + ok::integer, total_failures = total_failures + (NOT ok)::integer,
      consecutive_failures = CASE WHEN ok THEN 0 ELSE consecutive_failures + 1 END
    WHERE job_id = job.id;
    ran := ran + 1;
  END LOOP;
  RETURN ran;
END $$;

-- alter_job's result row (for real its RETURNS TABLE, whose column names PL/pgSQL cannot share with
-- the parameters).
CREATE TYPE _timescaledb_functions.stand_in_alter_job_result AS (job_id integer, schedule_interval interval,
  max_runtime interval, max_retries integer, retry_period interval, scheduled boolean, config jsonb,
  next_start timestamptz, check_config text, fixed_schedule boolean, initial_start timestamptz, timezone text);

CREATE FUNCTION @extschema@.alter_job(
  job_id integer,
  schedule_interval interval DEFAULT NULL,
  max_runtime interval DEFAULT NULL,
  max_retries integer DEFAULT NULL,
  retry_period interval DEFAULT NULL,
  scheduled boolean DEFAULT NULL,
  config jsonb DEFAULT NULL,
  next_start timestamptz DEFAULT NULL,
  if_exists boolean DEFAULT false,
  check_config regproc DEFAULT NULL,
  fixed_schedule boolean DEFAULT NULL,
  initial_start timestamptz DEFAULT NULL,
  timezone text DEFAULT NULL
) RETURNS SETOF _timescaledb_functions.stand_in_alter_job_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
  job _timescaledb_config.bgw_job;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  UPDATE _timescaledb_config.bgw_job j SET
    schedule_interval = coalesce(alter_job.schedule_interval, j.schedule_interval),
    max_runtime = coalesce(alter_job.max_runtime, j.max_runtime),
    max_retries = coalesce(alter_job.max_retries, j.max_retries),
    retry_period = coalesce(alter_job.retry_period, j.retry_period),
    scheduled = coalesce(alter_job.scheduled, j.scheduled),
    config = coalesce(alter_job.config, j.config),
    fixed_schedule = coalesce(alter_job.fixed_schedule, j.fixed_schedule),
    initial_start = coalesce(alter_job.initial_start, j.initial_start),
    timezone = coalesce(alter_job.timezone, j.timezone)
  WHERE j.id = alter_job.job_id RETURNING j.* INTO job;
  IF job.id IS NULL THEN
    IF if_exists THEN
      RAISE NOTICE 'job % not found, skipping', alter_job.job_id;
      RETURN;
    END IF;
    RAISE EXCEPTION 'job % not found', alter_job.job_id USING ERRCODE = 'undefined_object';
  END IF;
  IF alter_job.next_start IS NOT NULL THEN
    UPDATE _timescaledb_internal.bgw_job_stat s SET next_start = alter_job.next_start WHERE s.job_id = job.id;
  END IF;
  RETURN QUERY SELECT job.id, job.schedule_interval, job.max_runtime, job.max_retries, job.retry_period, job.scheduled,
    job.config, (SELECT s.next_start FROM _timescaledb_internal.bgw_job_stat s WHERE s.job_id = job.id),
    CASE WHEN job.check_name IS NOT NULL THEN format('%s.%s', job.check_schema, job.check_name) END,
    job.fixed_schedule, job.initial_start, job.timezone;
END $$;

-- Buckets aligned as TimescaleDB aligns them (origin Monday 2000-01-03); no month or year widths.
-- Parallel unsafe, unlike the real one: the library check remembers its result in a setting.
CREATE FUNCTION @extschema@.time_bucket(bucket_width interval, ts timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  RETURN date_bin(bucket_width, ts, timestamptz '2000-01-03 00:00:00+00');
END $$;

-- Lab-only: what ALTER TABLE x SET (timescaledb.compress, timescaledb.compress_segmentby = '...')
-- records; the lab calls it where a real migration runs that ALTER (plain PostgreSQL rejects the
-- timescaledb.* storage parameters).
CREATE FUNCTION _timescaledb_functions.stand_in_enable_compression(relation regclass, segmentby text DEFAULT '')
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable := _timescaledb_functions.stand_in_hypertable(relation);
  time_column name;
  segment_columns text[] := array_remove(string_to_array(replace(coalesce(segmentby, ''), ' ', ''), ','), '');
  compressed_id integer;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  IF ht.id IS NULL THEN
    RAISE EXCEPTION 'table "%" is not a hypertable', (SELECT relname FROM pg_class WHERE oid = relation)
      USING ERRCODE = 'TS001';
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(segment_columns) AS col
             WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = col
                               AND a.attnum > 0 AND NOT a.attisdropped)) THEN
    RAISE EXCEPTION 'column "%" does not exist', segmentby USING ERRCODE = 'undefined_column',
      HINT = 'The timescaledb.compress_segmentby option must reference a valid column.';
  END IF;
  SELECT column_name INTO STRICT time_column FROM _timescaledb_catalog.dimension WHERE hypertable_id = ht.id;
  compressed_id := ht.compressed_hypertable_id;
  IF compressed_id IS NULL THEN
    compressed_id := nextval('_timescaledb_catalog.hypertable_id_seq');
    EXECUTE format('CREATE TABLE _timescaledb_internal.%I ()', '_compressed_hypertable_' || compressed_id);
    INSERT INTO _timescaledb_catalog.hypertable (id, schema_name, table_name, associated_schema_name,
      associated_table_prefix, num_dimensions, chunk_sizing_func_schema, chunk_sizing_func_name,
      chunk_target_size, compression_state)
    VALUES (compressed_id, '_timescaledb_internal', '_compressed_hypertable_' || compressed_id,
      '_timescaledb_internal', '_hyper_' || compressed_id, 0, '_timescaledb_functions',
      'calculate_chunk_interval', 0, 2);
  END IF;
  UPDATE _timescaledb_catalog.hypertable SET compression_state = 1, compressed_hypertable_id = compressed_id
  WHERE id = ht.id;
  INSERT INTO _timescaledb_catalog.compression_settings (relid, segmentby, orderby, orderby_desc, orderby_nullsfirst)
  VALUES (relation, segment_columns, ARRAY[time_column::text], ARRAY[true], ARRAY[true])
  ON CONFLICT (relid) DO UPDATE SET segmentby = EXCLUDED.segmentby;
END $$;

-- Lab-only: a continuous aggregate `view_name` (in public) over `query`, which must read a
-- hypertable. Stands for CREATE MATERIALIZED VIEW x WITH (timescaledb.continuous) AS query ... WITH
-- NO DATA, as TimescaleDB makes it: the user's view (relkind v, materialized only) reads a
-- materialization hypertable _timescaledb_internal._materialized_hypertable_<id>; _partial_view_<id>
-- and _direct_view_<id> hold the query; refresh_continuous_aggregate fills the hypertable.
-- No SET search_path: `query` is resolved with the caller's.
CREATE FUNCTION _timescaledb_functions.stand_in_create_cagg(view_name name, query text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  raw _timescaledb_catalog.hypertable;
  raw_interval bigint;
  mat_id integer;
  bucket_column name;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  EXECUTE format('CREATE VIEW _timescaledb_internal.stand_in_new_cagg AS %s', query);
  SELECT h.* INTO raw
  FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                     AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class c ON c.oid = d.refobjid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN _timescaledb_catalog.hypertable h ON h.schema_name = n.nspname AND h.table_name = c.relname
  WHERE r.ev_class = '_timescaledb_internal.stand_in_new_cagg'::regclass LIMIT 1;
  IF raw.id IS NULL THEN
    RAISE EXCEPTION 'invalid continuous aggregate query' USING ERRCODE = 'feature_not_supported',
      HINT = 'Include at least one hypertable in the FROM clause.';
  END IF;
  SELECT a.attname INTO bucket_column FROM pg_attribute a
  WHERE a.attrelid = '_timescaledb_internal.stand_in_new_cagg'::regclass AND a.attnum > 0
    AND a.atttypid = 'timestamptz'::regtype ORDER BY a.attnum LIMIT 1;
  IF bucket_column IS NULL THEN
    RAISE EXCEPTION 'continuous aggregate view must include a valid time bucket function'
      USING ERRCODE = 'feature_not_supported';
  END IF;
  SELECT d.interval_length INTO raw_interval FROM _timescaledb_catalog.dimension d WHERE d.hypertable_id = raw.id;

  EXECUTE 'CREATE TABLE _timescaledb_internal.stand_in_new_mat AS SELECT * FROM _timescaledb_internal.stand_in_new_cagg WITH NO DATA';
  SELECT hypertable_id INTO mat_id FROM @extschema@.create_hypertable('_timescaledb_internal.stand_in_new_mat', bucket_column,
    chunk_time_interval => make_interval(secs => raw_interval * 10 / 1000000.0));
  EXECUTE format('ALTER TABLE _timescaledb_internal.stand_in_new_mat RENAME TO %I', '_materialized_hypertable_' || mat_id);
  EXECUTE format('ALTER INDEX _timescaledb_internal.%I RENAME TO %I', 'stand_in_new_mat_' || bucket_column || '_idx',
                 '_materialized_hypertable_' || mat_id || '_' || bucket_column || '_idx');
  EXECUTE format('ALTER VIEW _timescaledb_internal.stand_in_new_cagg RENAME TO %I', '_direct_view_' || mat_id);
  EXECUTE format('CREATE VIEW _timescaledb_internal.%I AS %s', '_partial_view_' || mat_id, query);
  EXECUTE format('CREATE VIEW public.%I AS SELECT * FROM _timescaledb_internal.%I', view_name,
                 '_materialized_hypertable_' || mat_id);
  INSERT INTO _timescaledb_catalog.continuous_agg (mat_hypertable_id, raw_hypertable_id, user_view_schema,
    user_view_name, partial_view_schema, partial_view_name, direct_view_schema, direct_view_name,
    materialized_only, finalized)
  VALUES (mat_id, raw.id, 'public', view_name, '_timescaledb_internal', '_partial_view_' || mat_id,
    '_timescaledb_internal', '_direct_view_' || mat_id, true, true);
END $$;

-- A continuous aggregate's buckets in [window_start, window_end) computed again from the raw
-- hypertable (NULL: unbounded). TimescaleDB refreshes only what changed; the result is the same.
-- It commits, so inside a transaction block it fails (for real: 25001 "cannot run inside a
-- transaction block"; here PostgreSQL's 2D000 "invalid transaction termination").
CREATE PROCEDURE @extschema@.refresh_continuous_aggregate(continuous_aggregate regclass, window_start timestamptz,
                                                          window_end timestamptz)
LANGUAGE plpgsql AS $$  -- no SET search_path: a procedure with one cannot COMMIT
DECLARE
  ca _timescaledb_catalog.continuous_agg;
  mat text;
  bucket_column name;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  COMMIT;
  SELECT c.* INTO ca FROM _timescaledb_catalog.continuous_agg c
  JOIN pg_class r ON r.relname = c.user_view_name JOIN pg_namespace n ON n.oid = r.relnamespace
  AND n.nspname = c.user_view_schema WHERE r.oid = continuous_aggregate;
  IF ca.mat_hypertable_id IS NULL THEN
    RAISE EXCEPTION 'relation "%" is not a continuous aggregate', continuous_aggregate
      USING ERRCODE = 'wrong_object_type';
  END IF;
  SELECT format('%I.%I', h.schema_name, h.table_name), d.column_name INTO mat, bucket_column
  FROM _timescaledb_catalog.hypertable h JOIN _timescaledb_catalog.dimension d ON d.hypertable_id = h.id
  WHERE h.id = ca.mat_hypertable_id;
  -- Locks in the order the stand-in's drops take them (raw hypertable, views, materialization), so a
  -- refresh and a drop wait for each other instead of deadlocking.
  EXECUTE (SELECT format('LOCK TABLE %I.%I IN ACCESS SHARE MODE', h.schema_name, h.table_name)
           FROM _timescaledb_catalog.hypertable h WHERE h.id = ca.raw_hypertable_id);
  EXECUTE format('SELECT FROM %I.%I LIMIT 0', ca.direct_view_schema, ca.direct_view_name);
  EXECUTE format('LOCK TABLE %s IN ROW EXCLUSIVE MODE', mat);
  EXECUTE format('DELETE FROM %s WHERE %I >= $1 AND %I < $2', mat, bucket_column, bucket_column)
    USING coalesce(window_start, '-infinity'), coalesce(window_end, 'infinity');
  EXECUTE format('INSERT INTO %s SELECT * FROM %I.%I WHERE %I >= $1 AND %I < $2', mat, ca.direct_view_schema,
                 ca.direct_view_name, bucket_column, bucket_column)
    USING coalesce(window_start, '-infinity'), coalesce(window_end, 'infinity');
END $$;

-- timescaledb_information: plain SQL views (they answer on the plain image too, except chunks,
-- which calls a C function in TimescaleDB) ---------------------------------------------------

CREATE VIEW timescaledb_information.hypertables AS
SELECT ht.schema_name AS hypertable_schema,
  ht.table_name AS hypertable_name,
  t.tableowner AS owner,
  ht.num_dimensions,
  (SELECT count(1) FROM _timescaledb_catalog.chunk ch WHERE ch.hypertable_id = ht.id) AS num_chunks,
  ht.compression_state = 1 AS compression_enabled,
  NULL::name[] AS tablespaces
FROM _timescaledb_catalog.hypertable ht
JOIN pg_catalog.pg_tables t ON ht.table_name = t.tablename AND ht.schema_name = t.schemaname
LEFT JOIN _timescaledb_catalog.continuous_agg ca ON ca.mat_hypertable_id = ht.id
WHERE ht.compression_state <> 2 AND ca.mat_hypertable_id IS NULL;

CREATE VIEW timescaledb_information.dimensions AS
SELECT ht.schema_name AS hypertable_schema,
  ht.table_name AS hypertable_name,
  rank() OVER (PARTITION BY dim.hypertable_id ORDER BY dim.id) AS dimension_number,
  dim.column_name,
  dim.column_type,
  CASE WHEN dim.interval_length IS NULL THEN 'Space' ELSE 'Time' END AS dimension_type,
  make_interval(secs => dim.interval_length / 1000000.0) AS time_interval,
  NULL::bigint AS integer_interval,
  dim.integer_now_func,
  dim.num_slices AS num_partitions
FROM _timescaledb_catalog.hypertable ht
JOIN _timescaledb_catalog.dimension dim ON dim.hypertable_id = ht.id;

CREATE VIEW timescaledb_information.chunks AS
SELECT ht.schema_name AS hypertable_schema,
  ht.table_name AS hypertable_name,
  ch.schema_name AS chunk_schema,
  ch.table_name AS chunk_name,
  dim.column_name AS primary_dimension,
  dim.column_type AS primary_dimension_type,
  _timescaledb_functions.to_timestamp(sl.range_start) AS range_start,
  _timescaledb_functions.to_timestamp(sl.range_end) AS range_end,
  NULL::bigint AS range_start_integer,
  NULL::bigint AS range_end_integer,
  ch.status & 1 = 1 AS is_compressed,
  NULL::name AS chunk_tablespace,
  ch.creation_time AS chunk_creation_time
FROM _timescaledb_catalog.chunk ch
JOIN _timescaledb_catalog.hypertable ht ON ht.id = ch.hypertable_id
JOIN _timescaledb_catalog.chunk_constraint cc ON cc.chunk_id = ch.id
JOIN _timescaledb_catalog.dimension_slice sl ON sl.id = cc.dimension_slice_id
JOIN _timescaledb_catalog.dimension dim ON dim.id = sl.dimension_id
WHERE NOT ch.dropped AND ht.compression_state <> 2;

CREATE VIEW timescaledb_information.continuous_aggregates AS
SELECT ht.schema_name AS hypertable_schema,
  ht.table_name AS hypertable_name,
  ca.user_view_schema AS view_schema,
  ca.user_view_name AS view_name,
  pg_catalog.pg_get_userbyid(c.relowner) AS view_owner,
  ca.materialized_only,
  mat.compressed_hypertable_id IS NOT NULL AS compression_enabled,
  mat.schema_name AS materialization_hypertable_schema,
  mat.table_name AS materialization_hypertable_name,
  pg_catalog.pg_get_viewdef(c.oid) AS view_definition,
  ca.finalized
FROM _timescaledb_catalog.continuous_agg ca
JOIN _timescaledb_catalog.hypertable ht ON ht.id = ca.raw_hypertable_id
JOIN _timescaledb_catalog.hypertable mat ON mat.id = ca.mat_hypertable_id
JOIN pg_catalog.pg_namespace n ON n.nspname = ca.user_view_schema
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = ca.user_view_name;

CREATE VIEW timescaledb_information.jobs AS
SELECT j.id AS job_id,
  j.application_name,
  j.schedule_interval,
  j.max_runtime,
  j.max_retries,
  j.retry_period,
  j.proc_schema,
  j.proc_name,
  j.owner,
  j.scheduled,
  j.fixed_schedule,
  j.config,
  js.next_start,
  j.initial_start,
  ht.schema_name AS hypertable_schema,
  ht.table_name AS hypertable_name,
  j.check_schema,
  j.check_name
FROM _timescaledb_config.bgw_job j
LEFT JOIN _timescaledb_catalog.hypertable ht ON ht.id = j.hypertable_id
LEFT JOIN _timescaledb_internal.bgw_job_stat js ON js.job_id = j.id;

CREATE VIEW timescaledb_information.job_stats AS
SELECT ht.schema_name AS hypertable_schema,
  ht.table_name AS hypertable_name,
  j.id AS job_id,
  js.last_start AS last_run_started_at,
  js.last_successful_finish,
  CASE WHEN js.last_finish = '-infinity' THEN NULL
       WHEN js.last_run_success THEN 'Success' ELSE 'Failed' END AS last_run_status,
  CASE WHEN NOT j.scheduled THEN 'Paused' ELSE 'Scheduled' END AS job_status,
  CASE WHEN js.last_finish > js.last_start THEN js.last_finish - js.last_start END AS last_run_duration,
  CASE WHEN j.scheduled THEN js.next_start END AS next_start,
  js.total_runs,
  js.total_successes,
  js.total_failures
FROM _timescaledb_config.bgw_job j
JOIN _timescaledb_internal.bgw_job_stat js ON js.job_id = j.id
LEFT JOIN _timescaledb_catalog.hypertable ht ON ht.id = j.hypertable_id;

CREATE VIEW timescaledb_information.compression_settings AS
SELECT ht.schema_name AS hypertable_schema,
  ht.table_name AS hypertable_name,
  a.attname,
  array_position(s.segmentby, a.attname::text) AS segmentby_column_index,
  array_position(s.orderby, a.attname::text) AS orderby_column_index,
  NOT s.orderby_desc[array_position(s.orderby, a.attname::text)] AS orderby_asc,
  s.orderby_nullsfirst[array_position(s.orderby, a.attname::text)] AS orderby_nullsfirst
FROM _timescaledb_catalog.compression_settings s
JOIN pg_catalog.pg_class c ON c.oid = s.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN _timescaledb_catalog.hypertable ht ON ht.schema_name = n.nspname AND ht.table_name = c.relname
JOIN pg_catalog.pg_attribute a ON a.attrelid = s.relid
WHERE a.attname::text = ANY (s.segmentby || s.orderby)
ORDER BY ht.table_name, segmentby_column_index, orderby_column_index;

-- Restoring a dump (sql/restoring.sql of 2.17.2, verbatim but for the version). The background
-- workers are C in TimescaleDB; the lab's scheduler (stand_in_run_due_jobs) skips a restoring database.
CREATE FUNCTION _timescaledb_functions.stop_background_workers() RETURNS BOOL
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  RETURN true;
END $$;

CREATE FUNCTION _timescaledb_functions.restart_background_workers() RETURNS BOOL
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  RETURN true;
END $$;

CREATE FUNCTION @extschema@.timescaledb_pre_restore() RETURNS BOOL AS
$BODY$
DECLARE
    db text;
BEGIN
    SELECT current_database() INTO db;
    EXECUTE format($$ALTER DATABASE %I SET timescaledb.restoring ='on'$$, db);
    SET SESSION timescaledb.restoring = 'on';
    PERFORM _timescaledb_functions.stop_background_workers();
    RETURN true;
END
$BODY$
LANGUAGE PLPGSQL SET search_path TO pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.timescaledb_post_restore() RETURNS BOOL AS
$BODY$
DECLARE
    db text;
    catalog_version text;
BEGIN
    SELECT m.value INTO catalog_version FROM pg_extension x
    JOIN _timescaledb_catalog.metadata m ON m.key='timescaledb_version'
    WHERE x.extname='timescaledb' AND x.extversion <> m.value;

    -- check that a loaded dump is compatible with the currently running code
    IF FOUND THEN
        RAISE EXCEPTION 'catalog version mismatch, expected "%" seen "%"', '2.17.2', catalog_version;
    END IF;

    SELECT current_database() INTO db;
    EXECUTE format($$ALTER DATABASE %I RESET timescaledb.restoring $$, db);
    -- we cannot use reset here because the reset_val might not be off
    SET timescaledb.restoring TO off;
    PERFORM _timescaledb_functions.restart_background_workers();

    RETURN true;
END
$BODY$
LANGUAGE PLPGSQL SET search_path TO pg_catalog, pg_temp;

GRANT USAGE ON SCHEMA _timescaledb_catalog, _timescaledb_functions, _timescaledb_internal, _timescaledb_config,
  _timescaledb_cache, timescaledb_experimental, timescaledb_information TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA _timescaledb_catalog, _timescaledb_config, timescaledb_information TO PUBLIC;

-- Last, so the script's own DDL does not fire them.
CREATE EVENT TRIGGER timescaledb_ddl_command_end ON ddl_command_end
WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'CREATE TABLE', 'CREATE INDEX', 'ALTER INDEX', 'DROP TABLE',
             'DROP INDEX', 'DROP SCHEMA')
EXECUTE FUNCTION _timescaledb_functions.process_ddl_event();

CREATE EVENT TRIGGER timescaledb_ddl_sql_drop ON sql_drop
EXECUTE FUNCTION _timescaledb_functions.process_ddl_event();

-- Lab-only (see stand_in_process_ddl_start); a member of the extension like the two above.
CREATE EVENT TRIGGER timescaledb_stand_in_ddl_start ON ddl_command_start
WHEN TAG IN ('DROP MATERIALIZED VIEW', 'DROP TABLE', 'ALTER TABLE')
EXECUTE FUNCTION _timescaledb_functions.stand_in_process_ddl_start();
