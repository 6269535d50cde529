-- TimescaleDB 2.17.2 stand-in for the NetMon lab (tests/lab/README.md), in SQL and PL/pgSQL only.
--
-- It reproduces what decides whether a rollback from TimescaleDB works (DESIGN.md §1):
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
--     DDL fails on the plain image until they are disabled; on the TimescaleDB image the sql_drop
--     one forgets dropped hypertables, chunks and continuous aggregates.
--   * create_hypertable(): chunks _timescaledb_internal._hyper_<id>_<n>_chunk that INHERIT the root
--     (CHECK on their time range), rows moved with migrate_data, the ts_insert_blocker trigger that
--     routes new rows into chunks (and fails on the plain image, like the real insert blocker).
--   * add_compression_policy / add_retention_policy (+ remove_*) recording jobs, time_bucket,
--     timescaledb_information views, and DROP EXTENSION ... CASCADE dropping the chunks and leaving
--     empty, plain root tables.
--   * Lab-only helpers, called where a real migration runs SQL this server cannot parse:
--       _timescaledb_functions.stand_in_enable_compression(relation, segmentby)
--           for ALTER TABLE x SET (timescaledb.compress, timescaledb.compress_segmentby = '...');
--       _timescaledb_functions.stand_in_create_cagg(view_name, query)
--           for CREATE MATERIALIZED VIEW x WITH (timescaledb.continuous) AS query.
--
-- Not stood in, or different:
--   * compression of chunk rows: compressed rows, which the plain image cannot read, never exist here;
--   * background jobs: policies are recorded, never run;
--   * space partitioning, integer time, time columns other than timestamptz, chunk indexes;
--   * the planner: INSERT ... RETURNING on a hypertable returns no rows and reports 0 rows;
--   * DROP TABLE of a hypertable without CASCADE: real TimescaleDB drops the chunks itself; here they
--     block it as any inheritance children would (with CASCADE both drop them);
--   * a continuous aggregate is really a view (relkind v) over a materialization hypertable: on the
--     plain image it takes DROP VIEW, where this materialized view takes DROP MATERIALIZED VIEW;
--     here it is refreshed only by REFRESH MATERIALIZED VIEW;
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

-- CREATE EXTENSION loads the library first: without the preload it stops here.
SELECT _timescaledb_functions.stand_in_library_check();

-- Catalog -------------------------------------------------------------------------------------

CREATE TABLE _timescaledb_catalog.metadata (
  key name PRIMARY KEY,
  value text NOT NULL,
  include_in_telemetry boolean NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.metadata', $$WHERE key = 'exported_uuid'$$);
-- uuid and exported_uuid are made later, by telemetry, so a restored exported_uuid does not collide.
INSERT INTO _timescaledb_catalog.metadata VALUES ('install_timestamp', now()::text, true);

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
BEGIN
  SELECT * INTO STRICT ht FROM _timescaledb_catalog.hypertable WHERE id = ht_id;
  SELECT * INTO STRICT dim FROM _timescaledb_catalog.dimension WHERE hypertable_id = ht_id;
  slice_start := floor(extract(epoch FROM ts) * 1000000 / dim.interval_length)::bigint * dim.interval_length;
  -- One creator at a time per hypertable; a waiter then finds the chunk the first one made.
  PERFORM pg_advisory_xact_lock(hashtext('timescaledb stand-in chunk'), ht_id);
  SELECT format('%I.%I', c.schema_name, c.table_name)::regclass INTO found_chunk
  FROM _timescaledb_catalog.chunk c
  JOIN _timescaledb_catalog.chunk_constraint cc ON cc.chunk_id = c.id
  JOIN _timescaledb_catalog.dimension_slice s ON s.id = cc.dimension_slice_id
  WHERE c.hypertable_id = ht_id AND NOT c.dropped AND s.dimension_id = dim.id AND s.range_start = slice_start;
  IF found_chunk IS NOT NULL THEN
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
  RETURN format('%I.%I', ht.associated_schema_name, chunk_table)::regclass;
END $$;

-- ts_insert_blocker's function. Real TimescaleDB routes rows in its planner and this trigger only
-- fires when the library is not loaded; here it does the routing and returns NULL.
CREATE FUNCTION _timescaledb_functions.insert_blocker() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht_id integer;
  time_column name;
  ts timestamptz;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
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
  EXECUTE format('INSERT INTO %s SELECT ($1).*', _timescaledb_functions.stand_in_chunk_for(ht_id, ts)) USING NEW;
  RETURN NULL;
END $$;

-- After a DROP: forget catalog rows whose tables are gone, as TimescaleDB's sql_drop handler does.
CREATE FUNCTION _timescaledb_functions.stand_in_forget_dropped() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  companion text;
BEGIN
  -- A continuous aggregate whose view is gone takes its materialization hypertable with it.
  FOR companion IN
    DELETE FROM _timescaledb_catalog.continuous_agg ca
    WHERE to_regclass(format('%I.%I', ca.user_view_schema, ca.user_view_name)) IS NULL
    RETURNING (SELECT format('%I.%I', h.schema_name, h.table_name)
               FROM _timescaledb_catalog.hypertable h WHERE h.id = ca.mat_hypertable_id)
  LOOP
    EXECUTE format('DROP TABLE IF EXISTS %s CASCADE', companion);
  END LOOP;
  DELETE FROM _timescaledb_catalog.chunk_constraint cc USING _timescaledb_catalog.chunk c
  WHERE cc.chunk_id = c.id AND to_regclass(format('%I.%I', c.schema_name, c.table_name)) IS NULL;
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
      EXECUTE format('DROP TABLE IF EXISTS %s', companion);
    END IF;
  END LOOP;
  DELETE FROM _timescaledb_catalog.dimension_slice s
  WHERE NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.chunk_constraint cc WHERE cc.dimension_slice_id = s.id);
END $$;

-- Both event triggers' function (C in TimescaleDB: on the plain image every DDL it sees fails).
CREATE FUNCTION _timescaledb_functions.process_ddl_event() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  IF TG_EVENT = 'sql_drop' THEN
    PERFORM _timescaledb_functions.stand_in_forget_dropped();
  END IF;
END $$;

-- A job row and its statistics row; returns the job id.
CREATE FUNCTION _timescaledb_functions.stand_in_add_job(ht_id integer, application_name text, schedule_interval interval,
  max_runtime interval, retry_period interval, proc_name name, config jsonb) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  job_id integer := nextval('_timescaledb_config.bgw_job_id_seq');
BEGIN
  INSERT INTO _timescaledb_config.bgw_job (id, application_name, schedule_interval, max_runtime, max_retries,
    retry_period, proc_schema, proc_name, hypertable_id, config, check_schema, check_name)
  VALUES (job_id, format('%s [%s]', application_name, job_id), schedule_interval, max_runtime, -1, retry_period,
    '_timescaledb_functions', proc_name, ht_id, config, '_timescaledb_functions', proc_name || '_check');
  INSERT INTO _timescaledb_internal.bgw_job_stat (job_id, last_finish, next_start, last_successful_finish,
    last_run_success, total_runs, total_duration, total_duration_failures, total_successes, total_failures,
    total_crashes, consecutive_failures, consecutive_crashes)
  VALUES (job_id, '-infinity', now() + schedule_interval, '-infinity', true, 0, '0', '0', 0, 0, 0, 0, 0);
  RETURN job_id;
END $$;

-- The hypertable behind a policy's relation argument, or TimescaleDB's error.
CREATE FUNCTION _timescaledb_functions.stand_in_policy_hypertable(relation regclass)
RETURNS _timescaledb_catalog.hypertable
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ht _timescaledb_catalog.hypertable := _timescaledb_functions.stand_in_hypertable(relation);
BEGIN
  IF ht.id IS NULL THEN
    RAISE EXCEPTION '"%" is not a hypertable or a continuous aggregate', (SELECT relname FROM pg_class WHERE oid = relation)
      USING ERRCODE = 'invalid_parameter_value';
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
  EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', relation, time_column_name);
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
  compress_after interval,
  if_not_exists boolean DEFAULT false
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
  RETURN _timescaledb_functions.stand_in_add_job(ht.id, 'Compression Policy', '12 hours', '0', '1 hour',
    'policy_compression', jsonb_build_object('hypertable_id', ht.id, 'compress_after', compress_after::text));
END $$;

CREATE FUNCTION @extschema@.add_retention_policy(
  relation regclass,
  drop_after interval,
  if_not_exists boolean DEFAULT false
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
  RETURN _timescaledb_functions.stand_in_add_job(ht.id, 'Retention Policy', '1 day', '5 minutes', '5 minutes',
    'policy_retention', jsonb_build_object('drop_after', drop_after::text, 'hypertable_id', ht.id));
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
  ht := _timescaledb_functions.stand_in_policy_hypertable(relation);
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
-- hypertable. Stands for CREATE MATERIALIZED VIEW x WITH (timescaledb.continuous) AS query: a real
-- materialized view (so DROP TABLE refuses it and DROP MATERIALIZED VIEW drops it), registered in
-- the catalog with an (empty) materialization hypertable.
-- No SET search_path: `query` is resolved with the caller's.
CREATE FUNCTION _timescaledb_functions.stand_in_create_cagg(view_name name, query text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  view_oid regclass;
  raw _timescaledb_catalog.hypertable;
  mat_id integer;
  mat_table name;
  bucket_column name;
BEGIN
  PERFORM _timescaledb_functions.stand_in_library_check();
  EXECUTE format('CREATE MATERIALIZED VIEW public.%I AS %s', view_name, query);
  view_oid := format('public.%I', view_name)::regclass;
  SELECT h.* INTO raw
  FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                     AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class c ON c.oid = d.refobjid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN _timescaledb_catalog.hypertable h ON h.schema_name = n.nspname AND h.table_name = c.relname
  WHERE r.ev_class = view_oid LIMIT 1;
  IF raw.id IS NULL THEN
    RAISE EXCEPTION 'invalid continuous aggregate query' USING ERRCODE = 'feature_not_supported',
      HINT = 'Include at least one hypertable in the FROM clause.';
  END IF;
  SELECT a.attname INTO bucket_column FROM pg_attribute a
  WHERE a.attrelid = view_oid AND a.attnum > 0 AND a.atttypid = 'timestamptz'::regtype ORDER BY a.attnum LIMIT 1;
  IF bucket_column IS NULL THEN
    RAISE EXCEPTION 'continuous aggregate view must include a valid time bucket function'
      USING ERRCODE = 'feature_not_supported';
  END IF;

  mat_id := nextval('_timescaledb_catalog.hypertable_id_seq');
  mat_table := '_materialized_hypertable_' || mat_id;
  EXECUTE format('CREATE TABLE _timescaledb_internal.%I AS SELECT * FROM %s WITH NO DATA', mat_table, view_oid);
  INSERT INTO _timescaledb_catalog.hypertable (id, schema_name, table_name, associated_schema_name,
    associated_table_prefix, num_dimensions, chunk_sizing_func_schema, chunk_sizing_func_name, chunk_target_size)
  VALUES (mat_id, '_timescaledb_internal', mat_table, '_timescaledb_internal', '_hyper_' || mat_id, 1,
    '_timescaledb_functions', 'calculate_chunk_interval', 0);
  INSERT INTO _timescaledb_catalog.dimension (hypertable_id, column_name, column_type, aligned, interval_length)
  SELECT mat_id, bucket_column, 'timestamptz', true, d.interval_length * 10
  FROM _timescaledb_catalog.dimension d WHERE d.hypertable_id = raw.id;
  INSERT INTO _timescaledb_catalog.continuous_agg (mat_hypertable_id, raw_hypertable_id, user_view_schema,
    user_view_name, partial_view_schema, partial_view_name, direct_view_schema, direct_view_name,
    materialized_only, finalized)
  VALUES (mat_id, raw.id, 'public', view_name, '_timescaledb_internal', '_partial_view_' || mat_id,
    '_timescaledb_internal', '_direct_view_' || mat_id, true, true);
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
