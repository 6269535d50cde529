#!/usr/bin/python3
"""The NetMon backend stand-in: the netmon-backend container's main process in the lab.

Run with the working directory set to the backend image (a copy of /root/netmon/backend, so
app/main.py and app/services/flow_rollup.py are the install's own) and DATABASE_URL and
ADMIN_PASSWORD in the environment. Like the real backend it runs its migrations at start, then
serves :8000 (GET /api/health, POST /api/auth/login, GET /api/flows/stats), ingests flows and rolls
them up into flow_summary_5m, and stands in for TimescaleDB's job scheduler. What it runs follows the image's files, so a site
whose files were only half reverted fails the way the real one would:

- app/main.py: its run_migrations() is what runs, statement for statement: the SQL lists it loops
  over (SCHEMA, COLUMN_MIGRATIONS, and after the migration TIMESCALEDB_MIGRATION), read with `ast`;
  TimescaleDB's ALTER TABLE ... SET (timescaledb.compress ...) becomes the stand-in's function;
- app/services/flow_rollup.py containing `time_bucket`: the rollup uses it (and refreshes
  flow_summary_5m with refresh_continuous_aggregate instead when it is a continuous aggregate).

The lab's own files live in NETMON_LAB_DIR (default /root/netmon-lab, on the site):
- `ingest_rate`: flow rows a second to ingest (read every tick; default 3);
- `committed_flow_ids`: append-only, one line per flow id whose INSERT committed.

TimescaleDB runs its policies' jobs in the database server; the lab's server cannot, so while this
process runs it calls the stand-in's _timescaledb_functions.stand_in_run_due_jobs() every 2 seconds
(jobs then run every few seconds; `alter_job(id, scheduled => false)` pauses one).

A main.py that cannot be read, a failed migration or an unreachable database ends the process with
status 1; SIGTERM with 0. Logs go to standard output as `2026-11-24 10:00:00,123 LEVEL message`.
System Python only.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import logging
import os
import random
import re
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
    import psycopg2.extras
except ImportError:  # migration_statements stays importable where psycopg2 is absent (the project's venv)
    psycopg2 = None

log = logging.getLogger("netmon")
UVICORN_TICK = 0.1  # seconds

# TimescaleDB takes ALTER TABLE ... SET (timescaledb.compress, ...) through its library's utility hook,
# which PostgreSQL alone refuses: this lab's server has the stand-in's function for it instead.
COMPRESS_DDL = re.compile(r"ALTER TABLE (\w+) SET \(timescaledb\.compress, timescaledb\.compress_segmentby = '([^']*)'\)")
STAND_IN_COMPRESS = r"_timescaledb_functions.stand_in_enable_compression('\1', '\2')"

# flow_rollup.py's rollup_flows(): the last two 5-minute buckets recomputed, idempotently.
ROLLUP_SQL = """
INSERT INTO flow_summary_5m (bucket, device_id, src_ip, dst_ip, protocol, bytes, packets, flow_count)
SELECT {bucket} AS bucket, device_id, src_ip, dst_ip, protocol, sum(bytes)::bigint, sum(packets)::bigint, count(*)
FROM flow_records
WHERE "timestamp" >= (SELECT {window_start})
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (bucket, device_id, src_ip, dst_ip, protocol) DO UPDATE
  SET bytes = EXCLUDED.bytes, packets = EXCLUDED.packets, flow_count = EXCLUDED.flow_count
"""
PLAIN_BUCKET = "date_bin('5 minutes', {ts}, TIMESTAMPTZ '2000-01-01')"
TIMESCALEDB_BUCKET = "time_bucket('5 minutes', {ts})"

# Ids are drawn first so that they are known without RETURNING (a hypertable's insert returns no
# rows in the lab); one statement, so the rows commit together and then are recorded.
FLOW_IDS_SQL = "SELECT nextval(pg_get_serial_sequence('flow_records', 'id')) FROM generate_series(1, %s)"
INGEST_SQL = """
INSERT INTO flow_records (id, "timestamp", device_id, src_ip, dst_ip, src_port, dst_port, protocol, bytes, packets)
VALUES %s
"""
INGEST_RETURNING_SQL = """
INSERT INTO flow_records ("timestamp", device_id, src_ip, dst_ip, src_port, dst_port, protocol, bytes, packets)
VALUES %s RETURNING id
"""
HAS_SCHEDULER_SQL = "SELECT to_regprocedure('_timescaledb_functions.stand_in_run_due_jobs(interval)') IS NOT NULL"
RUN_JOBS_SQL = "SELECT _timescaledb_functions.stand_in_run_due_jobs(%s::interval)"
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
JOBS_EVERY = 2.0  # jobs fall due every LAB_JOB_INTERVAL anyway; half the idle queries of a tick every second
LAB_JOB_INTERVAL = "5 seconds"  # a job runs again this long after its last run, whatever its schedule
DEFAULT_INGEST_RATE = 3.0  # rows a second: light, so that 8-site labs fit on 2 cores
DB_WAIT = 30.0  # seconds to wait for the database at start
SESSION_HOURS = 24
PBKDF2_ROUNDS = 29000  # passlib's default for pbkdf2_sha256


class Config:
    """What the image's files and the environment say this backend is."""

    def __init__(self, app_dir: Path, env: dict[str, str]):
        self.database_url = env.get("DATABASE_URL", "")
        self.admin_password = env.get("ADMIN_PASSWORD", "")
        self.migration = migration_statements(app_dir / "main.py")
        self.timescaledb = any("create_hypertable" in s for s in self.migration)
        self.time_bucket = "time_bucket" in _read(app_dir / "services" / "flow_rollup.py")
        self.host = env.get("NETMON_BACKEND_HOST", "0.0.0.0")  # noqa: S104 (a container's port)
        self.port = int(env.get("NETMON_BACKEND_PORT", "8000"))
        self.lab_dir = Path(env.get("NETMON_LAB_DIR", "/root/netmon-lab"))

    def ingest_rate(self) -> float:
        """Rows a second, from the lab's ingest_rate file (a test may change it while this runs)."""
        try:
            return max(float((self.lab_dir / "ingest_rate").read_text().strip()), 0.0)
        except (OSError, ValueError):
            return DEFAULT_INGEST_RATE


def migration_statements(main_py: Path) -> list[str]:
    """The SQL main.py's run_migrations() runs: the module-level lists of strings its loops go over, in order.

    Read with ast, so nothing of the app (FastAPI, asyncpg...) is imported. ValueError when main.py has no
    run_migrations() or it loops over something else; OSError and SyntaxError as the real import would fail.
    """
    tree = ast.parse(main_py.read_text(), str(main_py))
    assigned = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    run = next((node for node in tree.body if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
                and node.name == "run_migrations"), None)
    if run is None:
        raise ValueError(f"{main_py}: no run_migrations()")
    names = sorted((name for loop in ast.walk(run) if isinstance(loop, ast.For | ast.AsyncFor)
                    for name in ast.walk(loop.iter) if isinstance(name, ast.Name)),
                   key=lambda name: (name.lineno, name.col_offset))
    statements = []
    for name in names:
        try:
            value = ast.literal_eval(assigned[name.id])
        except (KeyError, ValueError):
            value = None
        if not (isinstance(value, list | tuple) and all(isinstance(s, str) for s in value)):
            raise ValueError(f"{main_py}:{name.lineno}: run_migrations() runs {name.id}, not a list of SQL strings")
        statements += value
    return statements


def for_this_server(statement: str) -> str:
    """The statement as this lab's TimescaleDB stand-in takes it (see COMPRESS_DDL)."""
    verb = "PERFORM" if statement.lstrip().upper().startswith("DO") else "SELECT"
    return COMPRESS_DDL.sub(f"{verb} {STAND_IN_COMPRESS}", statement)


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
        for statement in cfg.migration:
            cur.execute(for_this_server(statement))
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
        self.carry = 0.0  # the fraction of a row ingest() owes to the next tick

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
    """Flows at the lab's rate, as the collector writes them (through the hypertable's trigger when
    migrated); the ids of the committed rows are appended to committed_flow_ids."""
    worker.carry += worker.cfg.ingest_rate() * worker.every
    count, worker.carry = int(worker.carry), worker.carry % 1
    if not count:
        return
    rows = [(random.randint(1, 20), f"192.0.2.{random.randint(1, 250)}", f"198.51.100.{random.randint(1, 250)}",
             random.randint(1024, 65535), random.choice((53, 80, 443, 22, 123)), random.choice((6, 17)),
             random.randint(64, 150_000), random.randint(1, 120)) for _ in range(count)]
    cur.execute(FLOW_IDS_SQL, (count,))
    ids = [row[0] for row in cur.fetchall()]
    if None in ids:  # no serial sequence behind flow_records.id (an identity column, say)
        ids = [row[0] for row in psycopg2.extras.execute_values(
            cur, INGEST_RETURNING_SQL, rows, template="(now(), %s, %s, %s, %s, %s, %s, %s, %s)", page_size=count,
            fetch=True)]
    else:
        psycopg2.extras.execute_values(cur, INGEST_SQL, [(i, *r) for i, r in zip(ids, rows, strict=True)],
                                       template="(%s, now(), %s, %s, %s, %s, %s, %s, %s, %s)", page_size=count)
    record_committed(worker.cfg, ids)


def record_committed(cfg: Config, ids: list[int]) -> None:
    """Append committed flow ids to the lab's record; a record that cannot be written is logged, not fatal."""
    try:
        cfg.lab_dir.mkdir(parents=True, exist_ok=True)
        with (cfg.lab_dir / "committed_flow_ids").open("a") as out:
            out.write("".join(f"{i}\n" for i in ids))
            out.flush()
            os.fsync(out.fileno())
    except OSError as err:
        log.error("cannot record committed flow ids: %s", err)


def run_jobs(worker: Worker, cur) -> None:
    """TimescaleDB's scheduler, where the database has the stand-in (it does nothing on the plain image)."""
    cur.execute(HAS_SCHEDULER_SQL)
    if not cur.fetchone()[0]:
        return
    cur.execute(RUN_JOBS_SQL, (LAB_JOB_INTERVAL,))
    ran = cur.fetchone()[0]
    if ran:
        log.info("timescaledb jobs: %d run", ran)


def rollup(worker: Worker, cur) -> None:
    """flow_rollup.py's job; a continuous aggregate (TimescaleDB rollup only) is refreshed instead."""
    bucket = TIMESCALEDB_BUCKET if worker.cfg.time_bucket else PLAIN_BUCKET
    window_start = bucket.format(ts="now() - interval '5 minutes'")
    if worker.cfg.time_bucket:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('flow_summary_5m')")
        if cur.fetchone() == ("v",):
            # the rollup's own window, not NULL, NULL: TimescaleDB refreshes only what changed, the
            # stand-in recomputes all it is given (every raw row, each 10 s, cost a site 6 % of a core)
            cur.execute(f"CALL refresh_continuous_aggregate('flow_summary_5m', {window_start}, NULL)")
            log.info("rollup: continuous aggregate flow_summary_5m refreshed")
            return
    cur.execute(ROLLUP_SQL.format(bucket=bucket.format(ts='"timestamp"'), window_start=window_start))
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
    # uvicorn's main loop looks at its exit flag every 0.1 s: so does this one (serve_forever's default 0.5 s
    # poll made every stop of the stand-in last up to 0.5 s, which NetMon's backend does not)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": UVICORN_TICK}, name="http", daemon=True).start()
    log.info("listening on %s:%d", cfg.host, cfg.port)
    return server


def main() -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cfg = Config(Path.cwd() / "app", dict(os.environ))
    except (OSError, SyntaxError, ValueError) as err:
        log.error("cannot load the app: %s", err)
        sys.exit(1)
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
    Worker("timescaledb-jobs", cfg, stop, JOBS_EVERY, run_jobs).start()
    server = serve(cfg)
    log.info("Application startup complete.")  # uvicorn's line once the app serves, as NetMon's backend logs it
    while not stop.wait(1):
        pass
    log.info("Shutting down")  # uvicorn's lines around its stop
    server.shutdown()
    log.info("Application shutdown complete.")
    sys.exit(0)


if __name__ == "__main__":
    main()
