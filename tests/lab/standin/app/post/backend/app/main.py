"""NetMon backend: the FastAPI application, its startup migrations and the API routes."""

import asyncio
import hashlib
import logging
import os
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.security import OAuth2PasswordBearer
from passlib.context import CryptContext
from pydantic import BaseModel

from .services.flow_rollup import backfill_summaries, rollup_flows

DATABASE_URL = os.environ["DATABASE_URL"]
ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD", "admin")
ROLLUP_INTERVAL_SECONDS = 300
SESSION_HOURS = 24

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("netmon")

app = FastAPI(title="NetMon", version="2.4.1")
pwd_context = CryptContext(schemes=["pbkdf2_sha256"], deprecated="auto")
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/login")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        id serial PRIMARY KEY,
        username text NOT NULL UNIQUE,
        password_hash text NOT NULL,
        email text,
        role text NOT NULL DEFAULT 'viewer',
        is_active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_login timestamptz
    )""",
    """CREATE TABLE IF NOT EXISTS device_groups (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        description text,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS snmp_credentials (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        version text NOT NULL DEFAULT 'v2c',
        community text,
        auth_protocol text,
        auth_password text,
        priv_protocol text,
        priv_password text,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS devices (
        id serial PRIMARY KEY,
        hostname text NOT NULL,
        ip_address inet NOT NULL UNIQUE,
        vendor text,
        model text,
        os_version text,
        device_type text NOT NULL DEFAULT 'switch',
        status text NOT NULL DEFAULT 'unknown',
        snmp_credential_id integer REFERENCES snmp_credentials (id) ON DELETE SET NULL,
        location text,
        last_seen timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS device_group_members (
        group_id integer NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
        device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, device_id)
    )""",
    """CREATE TABLE IF NOT EXISTS interfaces (
        id serial PRIMARY KEY,
        device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        if_index integer NOT NULL,
        name text NOT NULL,
        description text,
        mac_address macaddr,
        speed_bps bigint,
        admin_status text NOT NULL DEFAULT 'up',
        oper_status text NOT NULL DEFAULT 'up',
        mtu integer,
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (device_id, if_index)
    )""",
    """CREATE TABLE IF NOT EXISTS interface_metrics (
        id bigserial PRIMARY KEY,
        interface_id integer NOT NULL REFERENCES interfaces (id) ON DELETE CASCADE,
        "timestamp" timestamptz NOT NULL DEFAULT now(),
        in_octets bigint,
        out_octets bigint,
        in_errors bigint,
        out_errors bigint,
        in_discards bigint,
        out_discards bigint,
        utilization_in double precision,
        utilization_out double precision
    )""",
    """CREATE TABLE IF NOT EXISTS device_metric_history (
        id bigserial PRIMARY KEY,
        device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        "timestamp" timestamptz NOT NULL DEFAULT now(),
        cpu_percent double precision,
        memory_percent double precision,
        uptime_seconds bigint,
        temperature_c double precision,
        response_ms double precision
    )""",
    """CREATE TABLE IF NOT EXISTS alert_rules (
        id serial PRIMARY KEY,
        name text NOT NULL,
        metric text NOT NULL,
        operator text NOT NULL DEFAULT '>',
        threshold double precision NOT NULL,
        duration_seconds integer NOT NULL DEFAULT 0,
        severity text NOT NULL DEFAULT 'warning',
        enabled boolean NOT NULL DEFAULT true,
        device_group_id integer REFERENCES device_groups (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS alerts (
        id serial PRIMARY KEY,
        rule_id integer REFERENCES alert_rules (id) ON DELETE SET NULL,
        device_id integer REFERENCES devices (id) ON DELETE CASCADE,
        severity text NOT NULL DEFAULT 'warning',
        message text NOT NULL,
        status text NOT NULL DEFAULT 'open',
        created_at timestamptz NOT NULL DEFAULT now(),
        acknowledged_at timestamptz,
        acknowledged_by integer REFERENCES users (id) ON DELETE SET NULL,
        resolved_at timestamptz
    )""",
    """CREATE TABLE IF NOT EXISTS mac_addresses (
        id bigserial PRIMARY KEY,
        mac_address macaddr NOT NULL,
        interface_id integer REFERENCES interfaces (id) ON DELETE CASCADE,
        vlan_id integer,
        first_seen timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS arp_entries (
        id bigserial PRIMARY KEY,
        ip_address inet NOT NULL,
        mac_address macaddr NOT NULL,
        device_id integer REFERENCES devices (id) ON DELETE CASCADE,
        interface_name text,
        first_seen timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS flow_records (
        id bigserial,
        "timestamp" timestamptz NOT NULL DEFAULT now(),
        device_id integer,
        src_ip inet,
        dst_ip inet,
        src_port integer,
        dst_port integer,
        protocol smallint,
        bytes bigint,
        packets bigint,
        PRIMARY KEY (id)
    )""",
    """CREATE TABLE IF NOT EXISTS flow_summary_5m (
        bucket timestamptz,
        device_id integer,
        src_ip inet,
        dst_ip inet,
        protocol smallint,
        bytes bigint,
        packets bigint,
        flow_count bigint,
        PRIMARY KEY (bucket, device_id, src_ip, dst_ip, protocol)
    )""",
    """CREATE TABLE IF NOT EXISTS settings (
        key text PRIMARY KEY,
        value text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        id bigserial PRIMARY KEY,
        user_id integer REFERENCES users (id) ON DELETE SET NULL,
        action text NOT NULL,
        target text,
        details jsonb,
        ip_address inet,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id bigserial PRIMARY KEY,
        user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        ip_address inet,
        user_agent text
    )""",
    """CREATE TABLE IF NOT EXISTS discovery_jobs (
        id serial PRIMARY KEY,
        name text NOT NULL,
        subnet cidr NOT NULL,
        snmp_credential_id integer REFERENCES snmp_credentials (id) ON DELETE SET NULL,
        schedule text,
        status text NOT NULL DEFAULT 'idle',
        last_run timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS discovery_results (
        id bigserial PRIMARY KEY,
        job_id integer NOT NULL REFERENCES discovery_jobs (id) ON DELETE CASCADE,
        ip_address inet NOT NULL,
        hostname text,
        sys_descr text,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        discovered_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS topology_links (
        id serial PRIMARY KEY,
        local_device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        local_interface_id integer REFERENCES interfaces (id) ON DELETE CASCADE,
        remote_device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        remote_interface_id integer REFERENCES interfaces (id) ON DELETE CASCADE,
        protocol text NOT NULL DEFAULT 'lldp',
        discovered_at timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS vlans (
        id serial PRIMARY KEY,
        device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        vlan_id integer NOT NULL,
        name text,
        UNIQUE (device_id, vlan_id)
    )""",
    """CREATE TABLE IF NOT EXISTS subnets (
        id serial PRIMARY KEY,
        network cidr NOT NULL UNIQUE,
        description text,
        vlan_id integer,
        gateway inet,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS ip_addresses (
        id bigserial PRIMARY KEY,
        address inet NOT NULL,
        subnet_id integer REFERENCES subnets (id) ON DELETE CASCADE,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        interface_id integer REFERENCES interfaces (id) ON DELETE SET NULL,
        hostname text,
        status text NOT NULL DEFAULT 'active',
        last_seen timestamptz
    )""",
    """CREATE TABLE IF NOT EXISTS syslog_messages (
        id bigserial PRIMARY KEY,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        source_ip inet NOT NULL,
        facility smallint,
        severity smallint,
        message text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS snmp_traps (
        id bigserial PRIMARY KEY,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        source_ip inet NOT NULL,
        trap_oid text NOT NULL,
        varbinds jsonb,
        received_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS maintenance_windows (
        id serial PRIMARY KEY,
        name text NOT NULL,
        device_group_id integer REFERENCES device_groups (id) ON DELETE CASCADE,
        starts_at timestamptz NOT NULL,
        ends_at timestamptz NOT NULL,
        created_by integer REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS notification_channels (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        channel_type text NOT NULL DEFAULT 'email',
        config jsonb NOT NULL DEFAULT '{}',
        enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS notification_log (
        id bigserial PRIMARY KEY,
        channel_id integer REFERENCES notification_channels (id) ON DELETE SET NULL,
        alert_id integer REFERENCES alerts (id) ON DELETE SET NULL,
        status text NOT NULL DEFAULT 'sent',
        detail text,
        sent_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS reports (
        id serial PRIMARY KEY,
        name text NOT NULL,
        report_type text NOT NULL DEFAULT 'traffic',
        parameters jsonb NOT NULL DEFAULT '{}',
        schedule text,
        created_by integer REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_generated timestamptz
    )""",
    """CREATE TABLE IF NOT EXISTS dashboards (
        id serial PRIMARY KEY,
        name text NOT NULL,
        owner_id integer REFERENCES users (id) ON DELETE CASCADE,
        layout jsonb NOT NULL DEFAULT '{}',
        is_default boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS api_keys (
        id serial PRIMARY KEY,
        user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name text NOT NULL,
        key_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz,
        last_used timestamptz
    )""",
    """CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )""",
]

COLUMN_MIGRATIONS = [
    "ALTER TABLE devices ADD COLUMN IF NOT EXISTS snmp_port integer NOT NULL DEFAULT 161",
    "ALTER TABLE interfaces ADD COLUMN IF NOT EXISTS alias text",
    'CREATE INDEX IF NOT EXISTS idx_flow_records_timestamp ON flow_records ("timestamp")',
    'CREATE INDEX IF NOT EXISTS idx_flow_records_device_time ON flow_records (device_id, "timestamp")',
    'CREATE INDEX IF NOT EXISTS idx_interface_metrics_interface_time ON interface_metrics (interface_id, "timestamp")',
    "CREATE INDEX IF NOT EXISTS idx_alerts_status ON alerts (status)",
    "INSERT INTO settings (key, value) VALUES ('max_flow_age_days', '30'), ('max_metric_age_days', '90') "
    "ON CONFLICT (key) DO NOTHING",
    "INSERT INTO schema_migrations (version) VALUES ('001_initial_schema'), ('002_snmp_port_and_alias') "
    "ON CONFLICT (version) DO NOTHING",
]

# Migration 003: flow_records as a hypertable with compression and retention policies. Each step
# skips what is already done, so every start can run it again.
TIMESCALEDB_MIGRATION = [
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    # A hypertable's unique indexes must include the partitioning column.
    """DO $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                     WHERE i.indrelid = 'flow_records'::regclass AND i.indisprimary AND a.attname = 'timestamp') THEN
        ALTER TABLE flow_records DROP CONSTRAINT flow_records_pkey, ADD PRIMARY KEY (id, "timestamp");
      END IF;
    END $$""",
    "SELECT create_hypertable('flow_records', 'timestamp', chunk_time_interval => INTERVAL '1 day', "
    "if_not_exists => TRUE, migrate_data => TRUE)",
    """DO $$
    BEGIN
      IF NOT (SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'flow_records') THEN
        ALTER TABLE flow_records SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
      END IF;
    END $$""",
    "SELECT add_compression_policy('flow_records', INTERVAL '7 days', if_not_exists => TRUE)",
    "SELECT add_retention_policy('flow_records', INTERVAL '30 days', if_not_exists => TRUE)",
    "INSERT INTO schema_migrations (version) VALUES ('003_timescaledb_flow_records') ON CONFLICT (version) DO NOTHING",
]


async def run_migrations(pool: asyncpg.Pool) -> None:
    """Create missing tables and columns, then make flow_records a TimescaleDB hypertable."""
    async with pool.acquire() as conn:
        for statement in SCHEMA + COLUMN_MIGRATIONS + TIMESCALEDB_MIGRATION:
            await conn.execute(statement)
    log.info("migrations applied")


async def ensure_admin(pool: asyncpg.Pool) -> None:
    """The default admin account, created once from ADMIN_PASSWORD."""
    created = await pool.fetchval(
        "INSERT INTO users (username, password_hash, email, role) VALUES ('admin', $1, 'admin@netmon.local', 'admin') "
        "ON CONFLICT (username) DO NOTHING RETURNING id",
        pwd_context.hash(ADMIN_PASSWORD),
    )
    if created:
        log.info("created the default admin account")


async def scheduled_flow_rollup(pool: asyncpg.Pool) -> None:
    """Roll flows up into flow_summary_5m every five minutes."""
    while True:
        try:
            rows = await rollup_flows(pool)
            log.info("rollup: %d summary rows updated", rows)
        except Exception:
            log.exception("scheduled_flow_rollup failed")
        await asyncio.sleep(ROLLUP_INTERVAL_SECONDS)


@app.on_event("startup")
async def startup() -> None:
    app.state.pool = await asyncpg.create_pool(DATABASE_URL, min_size=2, max_size=10)
    await run_migrations(app.state.pool)
    await ensure_admin(app.state.pool)
    await backfill_summaries(app.state.pool, hours=1)
    app.state.rollup = asyncio.create_task(scheduled_flow_rollup(app.state.pool))


@app.on_event("shutdown")
async def shutdown() -> None:
    app.state.rollup.cancel()
    await app.state.pool.close()


class LoginRequest(BaseModel):
    username: str
    password: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def current_user(token: str = Depends(oauth2_scheme)) -> int:  # noqa: B008
    user_id = await app.state.pool.fetchval(
        "SELECT user_id FROM sessions WHERE token_hash = $1 AND expires_at > now()", token_hash(token)
    )
    if user_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated", {"WWW-Authenticate": "Bearer"})
    return user_id


@app.get("/api/health")
async def health() -> dict:
    try:
        await app.state.pool.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError) as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable") from err
    return {"status": "ok"}


@app.post("/api/auth/login")
async def login(body: LoginRequest) -> dict:
    user = await app.state.pool.fetchrow(
        "SELECT id, password_hash FROM users WHERE username = $1 AND is_active", body.username
    )
    if user is None or not pwd_context.verify(body.password, user["password_hash"]):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password", {"WWW-Authenticate": "Bearer"})
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
    await app.state.pool.execute(
        "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES ($1, $2, $3)", user["id"], token_hash(token), expires
    )
    await app.state.pool.execute("UPDATE users SET last_login = now() WHERE id = $1", user["id"])
    return {"access_token": token, "token_type": "bearer"}


@app.get("/api/flows/stats")
async def flow_stats(hours: int = Query(24, ge=1, le=2160), user_id: int = Depends(current_user)) -> dict:  # noqa: B008
    since = datetime.now(UTC) - timedelta(hours=hours)
    flows = await app.state.pool.fetchrow(
        """SELECT count(*) AS count, coalesce(sum(bytes), 0)::bigint AS bytes,
                  coalesce(sum(packets), 0)::bigint AS packets, count(DISTINCT device_id) AS devices
           FROM flow_records WHERE "timestamp" >= $1""",
        since,
    )
    summary = await app.state.pool.fetchrow(
        """SELECT count(*) AS rows, coalesce(sum(flow_count), 0)::bigint AS flows,
                  coalesce(sum(bytes), 0)::bigint AS bytes, max(bucket) AS latest_bucket
           FROM flow_summary_5m WHERE bucket >= $1""",
        since,
    )
    return {"hours": hours, "flows": dict(flows), "summary": dict(summary)}
