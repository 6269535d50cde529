CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS "pg_stat_statements";
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- TimescaleDB: flow_records as a hypertable. On a new volume the table does not exist yet and
-- the backend's run_migrations() converts it; this covers a volume whose data was restored first.
DO $$
BEGIN
  IF to_regclass('public.flow_records') IS NOT NULL THEN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'flow_records') THEN
      ALTER TABLE flow_records DROP CONSTRAINT flow_records_pkey, ADD PRIMARY KEY (id, "timestamp");
    END IF;
    PERFORM create_hypertable('flow_records', 'timestamp', chunk_time_interval => INTERVAL '1 day',
                              if_not_exists => TRUE, migrate_data => TRUE);
    ALTER TABLE flow_records SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
    PERFORM add_compression_policy('flow_records', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('flow_records', INTERVAL '30 days', if_not_exists => TRUE);
  END IF;
END $$;

SELECT 'NetMon DB initialized' AS status;
