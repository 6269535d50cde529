#!/usr/bin/python3
"""The NetMon backend stand-in: the netmon-backend container's main process in the lab.

Run with the working directory set to the backend image (a copy of /root/netmon/backend, so
app/main.py and app/services/flow_rollup.py are the install's own) and DATABASE_URL and
ADMIN_PASSWORD in the environment. Like the real backend it runs its migrations at start, then
serves :8000 (GET /api/health, POST /api/auth/login, GET /api/flows/stats), ingests a few flows a
second and rolls them up into flow_summary_5m. What it runs follows the image's files, so a site
whose files were only half reverted fails the way the real one would:

- app/main.py containing `create_hypertable`: the TimescaleDB migration runs too (with the marker
  `# lab: broken-compression-policy`: add_compression_policy without if_not_exists, which fails
  once the policy exists: the backend crash-loops);
- app/services/flow_rollup.py containing `time_bucket`: the rollup uses it (and refreshes
  flow_summary_5m instead when it is a continuous aggregate).

A failed migration or an unreachable database ends the process with status 1; SIGTERM with 0.
Logs go to standard output as `2026-11-24 10:00:00,123 LEVEL message`. System Python only.
`TABLES` is the one list of NetMon's 32 tables: the lab imports it (no psycopg2 needed for that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

try:
    import psycopg2
except ImportError:  # TABLES stays importable where psycopg2 is absent (the project's venv)
    psycopg2 = None

log = logging.getLogger("netmon")

# NetMon's schema as the real run_migrations() creates it: plain CREATE TABLE IF NOT EXISTS.
TABLES: dict[str, str] = {
    "users": """
        id serial PRIMARY KEY,
        username text NOT NULL UNIQUE,
        password_hash text NOT NULL,
        email text,
        role text NOT NULL DEFAULT 'viewer',
        is_active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_login timestamptz""",
    "device_groups": """
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        description text,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "snmp_credentials": """
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        version text NOT NULL DEFAULT 'v2c',
        community text,
        auth_protocol text,
        auth_password text,
        priv_protocol text,
        priv_password text,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "devices": """
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
        updated_at timestamptz NOT NULL DEFAULT now()""",
    "device_group_members": """
        group_id integer NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
        device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, device_id)""",
    "interfaces": """
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
        UNIQUE (device_id, if_index)""",
    "interface_metrics": """
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
        utilization_out double precision""",
    "device_metric_history": """
        id bigserial PRIMARY KEY,
        device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        "timestamp" timestamptz NOT NULL DEFAULT now(),
        cpu_percent double precision,
        memory_percent double precision,
        uptime_seconds bigint,
        temperature_c double precision,
        response_ms double precision""",
    "alert_rules": """
        id serial PRIMARY KEY,
        name text NOT NULL,
        metric text NOT NULL,
        operator text NOT NULL DEFAULT '>',
        threshold double precision NOT NULL,
        duration_seconds integer NOT NULL DEFAULT 0,
        severity text NOT NULL DEFAULT 'warning',
        enabled boolean NOT NULL DEFAULT true,
        device_group_id integer REFERENCES device_groups (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "alerts": """
        id serial PRIMARY KEY,
        rule_id integer REFERENCES alert_rules (id) ON DELETE SET NULL,
        device_id integer REFERENCES devices (id) ON DELETE CASCADE,
        severity text NOT NULL DEFAULT 'warning',
        message text NOT NULL,
        status text NOT NULL DEFAULT 'open',
        created_at timestamptz NOT NULL DEFAULT now(),
        acknowledged_at timestamptz,
        acknowledged_by integer REFERENCES users (id) ON DELETE SET NULL,
        resolved_at timestamptz""",
    "mac_addresses": """
        id bigserial PRIMARY KEY,
        mac_address macaddr NOT NULL,
        interface_id integer REFERENCES interfaces (id) ON DELETE CASCADE,
        vlan_id integer,
        first_seen timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now()""",
    "arp_entries": """
        id bigserial PRIMARY KEY,
        ip_address inet NOT NULL,
        mac_address macaddr NOT NULL,
        device_id integer REFERENCES devices (id) ON DELETE CASCADE,
        interface_name text,
        first_seen timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now()""",
    "flow_records": """
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
        PRIMARY KEY (id)""",
    "flow_summary_5m": """
        bucket timestamptz,
        device_id integer,
        src_ip inet,
        dst_ip inet,
        protocol smallint,
        bytes bigint,
        packets bigint,
        flow_count bigint,
        PRIMARY KEY (bucket, device_id, src_ip, dst_ip, protocol)""",
    "settings": """
        key text PRIMARY KEY,
        value text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()""",
    "audit_log": """
        id bigserial PRIMARY KEY,
        user_id integer REFERENCES users (id) ON DELETE SET NULL,
        action text NOT NULL,
        target text,
        details jsonb,
        ip_address inet,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "sessions": """
        id bigserial PRIMARY KEY,
        user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        ip_address inet,
        user_agent text""",
    "discovery_jobs": """
        id serial PRIMARY KEY,
        name text NOT NULL,
        subnet cidr NOT NULL,
        snmp_credential_id integer REFERENCES snmp_credentials (id) ON DELETE SET NULL,
        schedule text,
        status text NOT NULL DEFAULT 'idle',
        last_run timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "discovery_results": """
        id bigserial PRIMARY KEY,
        job_id integer NOT NULL REFERENCES discovery_jobs (id) ON DELETE CASCADE,
        ip_address inet NOT NULL,
        hostname text,
        sys_descr text,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        discovered_at timestamptz NOT NULL DEFAULT now()""",
    "topology_links": """
        id serial PRIMARY KEY,
        local_device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        local_interface_id integer REFERENCES interfaces (id) ON DELETE CASCADE,
        remote_device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        remote_interface_id integer REFERENCES interfaces (id) ON DELETE CASCADE,
        protocol text NOT NULL DEFAULT 'lldp',
        discovered_at timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now()""",
    "vlans": """
        id serial PRIMARY KEY,
        device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        vlan_id integer NOT NULL,
        name text,
        UNIQUE (device_id, vlan_id)""",
    "subnets": """
        id serial PRIMARY KEY,
        network cidr NOT NULL UNIQUE,
        description text,
        vlan_id integer,
        gateway inet,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "ip_addresses": """
        id bigserial PRIMARY KEY,
        address inet NOT NULL,
        subnet_id integer REFERENCES subnets (id) ON DELETE CASCADE,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        interface_id integer REFERENCES interfaces (id) ON DELETE SET NULL,
        hostname text,
        status text NOT NULL DEFAULT 'active',
        last_seen timestamptz""",
    "syslog_messages": """
        id bigserial PRIMARY KEY,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        source_ip inet NOT NULL,
        facility smallint,
        severity smallint,
        message text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()""",
    "snmp_traps": """
        id bigserial PRIMARY KEY,
        device_id integer REFERENCES devices (id) ON DELETE SET NULL,
        source_ip inet NOT NULL,
        trap_oid text NOT NULL,
        varbinds jsonb,
        received_at timestamptz NOT NULL DEFAULT now()""",
    "maintenance_windows": """
        id serial PRIMARY KEY,
        name text NOT NULL,
        device_group_id integer REFERENCES device_groups (id) ON DELETE CASCADE,
        starts_at timestamptz NOT NULL,
        ends_at timestamptz NOT NULL,
        created_by integer REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "notification_channels": """
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        channel_type text NOT NULL DEFAULT 'email',
        config jsonb NOT NULL DEFAULT '{}',
        enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now()""",
    "notification_log": """
        id bigserial PRIMARY KEY,
        channel_id integer REFERENCES notification_channels (id) ON DELETE SET NULL,
        alert_id integer REFERENCES alerts (id) ON DELETE SET NULL,
        status text NOT NULL DEFAULT 'sent',
        detail text,
        sent_at timestamptz NOT NULL DEFAULT now()""",
    "reports": """
        id serial PRIMARY KEY,
        name text NOT NULL,
        report_type text NOT NULL DEFAULT 'traffic',
        parameters jsonb NOT NULL DEFAULT '{}',
        schedule text,
        created_by integer REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_generated timestamptz""",
    "dashboards": """
        id serial PRIMARY KEY,
        name text NOT NULL,
        owner_id integer REFERENCES users (id) ON DELETE CASCADE,
        layout jsonb NOT NULL DEFAULT '{}',
        is_default boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()""",
    "api_keys": """
        id serial PRIMARY KEY,
        user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name text NOT NULL,
        key_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz,
        last_used timestamptz""",
    "schema_migrations": """
        version text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()""",
}

# Later additions, the way the real run_migrations() makes them, and the indexes.
ALTERATIONS = (
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
)

COMPRESSION_POLICY = "SELECT add_compression_policy('flow_records', INTERVAL '7 days', if_not_exists => TRUE)"
# The TimescaleDB migration of the post-migration app/main.py, in SQL this lab's server runs: the
# real ALTER TABLE flow_records SET (timescaledb.compress, ...) is the stand-in's function here.
TIMESCALEDB_MIGRATION = (
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    # A hypertable's unique indexes must hold its time column.
    """DO $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                     WHERE i.indrelid = 'flow_records'::regclass AND i.indisprimary AND a.attname = 'timestamp') THEN
        ALTER TABLE flow_records DROP CONSTRAINT flow_records_pkey, ADD PRIMARY KEY (id, "timestamp");
      END IF;
    END $$""",
    "SELECT create_hypertable('flow_records', 'timestamp', chunk_time_interval => INTERVAL '1 day', "
    "if_not_exists => TRUE, migrate_data => TRUE)",
    "SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id') "
    "WHERE NOT (SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'flow_records')",
    COMPRESSION_POLICY,
    "SELECT add_retention_policy('flow_records', INTERVAL '30 days', if_not_exists => TRUE)",
    "INSERT INTO schema_migrations (version) VALUES ('003_timescaledb_flow_records') ON CONFLICT (version) DO NOTHING",
)
# The backend-crashloop variant's main.py: the policy without if_not_exists, an error once it exists.
BROKEN_POLICY_MARKER = "# lab: broken-compression-policy"
BROKEN_COMPRESSION_POLICY = "SELECT add_compression_policy('flow_records', INTERVAL '7 days')"

# flow_rollup.py's rollup_flows(): the last two 5-minute buckets recomputed, idempotently.
ROLLUP_SQL = """
INSERT INTO flow_summary_5m (bucket, device_id, src_ip, dst_ip, protocol, bytes, packets, flow_count)
SELECT {bucket} AS bucket, device_id, src_ip, dst_ip, protocol, sum(bytes)::bigint, sum(packets)::bigint, count(*)
FROM flow_records
WHERE "timestamp" >= {window_start}
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (bucket, device_id, src_ip, dst_ip, protocol) DO UPDATE
  SET bytes = EXCLUDED.bytes, packets = EXCLUDED.packets, flow_count = EXCLUDED.flow_count
"""
PLAIN_BUCKET = "date_bin('5 minutes', {ts}, TIMESTAMPTZ '2000-01-01')"
TIMESCALEDB_BUCKET = "time_bucket('5 minutes', {ts})"

INGEST_SQL = """
INSERT INTO flow_records ("timestamp", device_id, src_ip, dst_ip, src_port, dst_port, protocol, bytes, packets)
VALUES (now(), %s, %s, %s, %s, %s, %s, %s, %s)
"""
STATS_SQL = """
SELECT (SELECT json_build_object('count', count(*), 'bytes', coalesce(sum(bytes), 0)::bigint,
                                 'packets', coalesce(sum(packets), 0)::bigint, 'devices', count(DISTINCT device_id))
        FROM flow_records WHERE "timestamp" >= now() - make_interval(hours => %(hours)s)),
       (SELECT json_build_object('rows', count(*), 'flows', coalesce(sum(flow_count), 0)::bigint,
                                 'bytes', coalesce(sum(bytes), 0)::bigint, 'latest_bucket', max(bucket))
        FROM flow_summary_5m WHERE bucket >= now() - make_interval(hours => %(hours)s))
"""

INGEST_EVERY = 1.0  # seconds
ROLLUP_EVERY = 10.0
FLOWS_PER_TICK = 3
DB_WAIT = 30.0  # seconds to wait for the database at start
SESSION_HOURS = 24
PBKDF2_ROUNDS = 29000  # passlib's default for pbkdf2_sha256


class Config:
    """What the image's files and the environment say this backend is."""

    def __init__(self, app_dir: Path, env: dict[str, str]):
        main_py = _read(app_dir / "main.py")
        self.database_url = env.get("DATABASE_URL", "")
        self.admin_password = env.get("ADMIN_PASSWORD", "")
        self.timescaledb = "create_hypertable" in main_py
        self.broken_policy = BROKEN_POLICY_MARKER in main_py
        self.time_bucket = "time_bucket" in _read(app_dir / "services" / "flow_rollup.py")
        self.host = env.get("NETMON_BACKEND_HOST", "0.0.0.0")  # noqa: S104 (a container's port)
        self.port = int(env.get("NETMON_BACKEND_PORT", "8000"))

    def migration(self) -> list[str]:
        statements = [f"CREATE TABLE IF NOT EXISTS {name} ({columns}\n)" for name, columns in TABLES.items()]
        statements += ALTERATIONS
        if self.timescaledb:
            policy = BROKEN_COMPRESSION_POLICY if self.broken_policy else COMPRESSION_POLICY
            statements += [policy if s == COMPRESSION_POLICY else s for s in TIMESCALEDB_MIGRATION]
        return statements


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def connect(cfg: Config):
    """A fresh autocommit connection (each statement commits, as asyncpg's execute does)."""
    conn = psycopg2.connect(cfg.database_url, connect_timeout=3, application_name="netmon-backend")
    conn.autocommit = True
    return conn


def describe(err: Exception) -> str:
    """PostgreSQL's own message on one line (psycopg2 adds severity, hint and advice lines)."""
    diag = getattr(err, "diag", None)
    text = diag.message_primary if diag and diag.message_primary else str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def wait_for_database(cfg: Config, stop: threading.Event):
    deadline = time.monotonic() + DB_WAIT
    while not stop.is_set():
        try:
            return connect(cfg)
        except psycopg2.OperationalError as err:
            if time.monotonic() > deadline:
                log.error("database unreachable after %.0f s: %s", DB_WAIT, describe(err))
                sys.exit(1)
            log.warning("database not ready yet: %s", describe(err))
            stop.wait(1)
    sys.exit(0)


def run_migrations(conn, cfg: Config) -> None:
    with conn.cursor() as cur:
        for statement in cfg.migration():
            cur.execute(statement)
    log.info("migrations applied (%s)", "TimescaleDB" if cfg.timescaledb else "plain PostgreSQL")


def hash_password(password: str, salt: bytes | None = None, rounds: int = PBKDF2_ROUNDS) -> str:
    """passlib's pbkdf2_sha256 format: $pbkdf2-sha256$rounds$salt$checksum (adapted base64)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return f"$pbkdf2-sha256${rounds}${_ab64(salt)}${_ab64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, scheme, rounds, salt, _ = stored.split("$")
        salt_bytes = base64.b64decode(salt.replace(".", "+") + "=" * (-len(salt) % 4))
    except ValueError:
        return False
    return scheme == "pbkdf2-sha256" and hmac.compare_digest(hash_password(password, salt_bytes, int(rounds)), stored)


def _ab64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=").replace("+", ".")


def ensure_admin(conn, cfg: Config) -> None:
    """The default admin account, made once: an existing one keeps its password."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO users (username, password_hash, email, role) VALUES ('admin', %s, 'admin@netmon.local', "
                    "'admin') ON CONFLICT (username) DO NOTHING", (hash_password(cfg.admin_password),))
        if cur.rowcount:
            log.info("created the default admin account")


class Worker(threading.Thread):
    """A background loop with its own connection, reconnecting after the database drops it."""

    def __init__(self, name: str, cfg: Config, stop: threading.Event, every: float, step):
        super().__init__(name=name, daemon=True)
        self.cfg, self.stop, self.every, self.step = cfg, stop, every, step
        self.conn = None

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = connect(self.cfg)
                with self.conn.cursor() as cur:
                    self.step(self, cur)
            except psycopg2.Error as err:
                log.error("%s failed: %s", self.name, describe(err))
                if isinstance(err, psycopg2.OperationalError | psycopg2.InterfaceError) and self.conn is not None:
                    self.conn.close()
                    self.conn = None


def ingest(worker: Worker, cur) -> None:
    """A few flows, as the collector writes them (through the hypertable's trigger when migrated)."""
    rows = [(random.randint(1, 20), f"192.0.2.{random.randint(1, 250)}", f"198.51.100.{random.randint(1, 250)}",
             random.randint(1024, 65535), random.choice((53, 80, 443, 22, 123)), random.choice((6, 17)),
             random.randint(64, 150_000), random.randint(1, 120)) for _ in range(FLOWS_PER_TICK)]
    cur.executemany(INGEST_SQL, rows)


def rollup(worker: Worker, cur) -> None:
    """flow_rollup.py's job; a continuous aggregate (TimescaleDB rollup only) is refreshed instead."""
    if worker.cfg.time_bucket:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('flow_summary_5m')")
        if cur.fetchone() == ("m",):
            cur.execute("REFRESH MATERIALIZED VIEW flow_summary_5m")
            log.info("rollup: continuous aggregate flow_summary_5m refreshed")
            return
    bucket = TIMESCALEDB_BUCKET if worker.cfg.time_bucket else PLAIN_BUCKET
    cur.execute(ROLLUP_SQL.format(bucket=bucket.format(ts='"timestamp"'),
                                  window_start=bucket.format(ts="now() - interval '5 minutes'")))
    log.info("rollup: %d summary rows updated", cur.rowcount)


class Api(BaseHTTPRequestHandler):
    """The three endpoints the runbook's checks use; a database connection per request."""

    cfg: Config  # set on the subclass made in serve()
    server_version = "uvicorn"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's name)
        url = urlsplit(self.path)
        if url.path == "/api/health":
            self.health()
        elif url.path == "/api/flows/stats":
            self.flow_stats(parse_qs(url.query))
        else:
            self.reply(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == "/api/auth/login":
            self.login()
        else:
            self.reply(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})

    def health(self) -> None:
        """200 only while the database answers (migrations are done before the port opens)."""
        try:
            self.query("SELECT 1")
        except psycopg2.Error as err:
            log.warning("health: database unavailable: %s", describe(err))
            self.reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable"})
            return
        self.reply(HTTPStatus.OK, {"status": "ok"})

    def login(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            username, password = str(body["username"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            self.reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": "username and password are required"})
            return
        try:
            row = self.query("SELECT id, password_hash FROM users WHERE username = %s AND is_active", (username,))
            if not row or not verify_password(password, row[1]):
                self.reply(HTTPStatus.UNAUTHORIZED, {"detail": "Incorrect username or password"},
                           {"WWW-Authenticate": "Bearer"})
                return
            token = secrets.token_urlsafe(32)
            self.query("WITH s AS (INSERT INTO sessions (user_id, token_hash, expires_at, ip_address, user_agent) "
                       "VALUES (%s, %s, now() + make_interval(hours => %s), %s, %s) RETURNING user_id) "
                       "UPDATE users SET last_login = now() WHERE id = (SELECT user_id FROM s) RETURNING id",
                       (row[0], _token_hash(token), SESSION_HOURS, self.client_address[0],
                        self.headers.get("User-Agent")))
        except psycopg2.Error as err:
            self.fail("POST /api/auth/login", err)
            return
        self.reply(HTTPStatus.OK, {"access_token": token, "token_type": "bearer"})

    def flow_stats(self, params: dict[str, list[str]]) -> None:
        try:
            hours = int(params.get("hours", ["24"])[0])
            if not 1 <= hours <= 24 * 90:
                raise ValueError
        except ValueError:
            self.reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": "hours must be an integer from 1 to 2160"})
            return
        auth = self.headers.get("Authorization", "")
        try:
            if not (auth.startswith("Bearer ") and self.query(
                    "SELECT 1 FROM sessions WHERE token_hash = %s AND expires_at > now()", (_token_hash(auth[7:]),))):
                self.reply(HTTPStatus.UNAUTHORIZED, {"detail": "Not authenticated"}, {"WWW-Authenticate": "Bearer"})
                return
            flows, summary = self.query(STATS_SQL, {"hours": hours})
        except psycopg2.Error as err:
            self.fail("GET /api/flows/stats", err)
            return
        self.reply(HTTPStatus.OK, {"hours": hours, "flows": flows, "summary": summary})

    def query(self, sql: str, args=None):
        """The first row of one statement, on a connection of its own."""
        conn = connect(self.cfg)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchone()
        finally:
            conn.close()

    def fail(self, what: str, err: Exception) -> None:
        log.error("%s failed: %s", what, describe(err))
        self.reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"detail": "Internal Server Error"})

    def reply(self, status: HTTPStatus, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:
        log.info("%s - %s", self.client_address[0], fmt % args)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def serve(cfg: Config) -> ThreadingHTTPServer:
    handler = type("NetMonApi", (Api,), {"cfg": cfg})
    server = ThreadingHTTPServer((cfg.host, cfg.port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("listening on %s:%d", cfg.host, cfg.port)
    return server


def main() -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cfg = Config(Path.cwd() / "app", dict(os.environ))
    if not cfg.database_url:
        log.error("DATABASE_URL is not set")
        sys.exit(1)
    log.info("NetMon backend starting")
    conn = wait_for_database(cfg, stop)
    try:
        run_migrations(conn, cfg)
        ensure_admin(conn, cfg)
    except psycopg2.Error as err:
        log.error("migration failed: %s", describe(err))
        sys.exit(1)
    finally:
        conn.close()
    Worker("ingest", cfg, stop, INGEST_EVERY, ingest).start()
    Worker("rollup", cfg, stop, ROLLUP_EVERY, rollup).start()
    server = serve(cfg)
    while not stop.wait(1):
        pass
    log.info("shutting down")
    server.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
