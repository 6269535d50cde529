#!/usr/bin/python3
"""Put a lab site into its starting state, the way a real NetMon install got there.

Runs inside the site (its own /root and `docker`), as root, with the system Python. It drives the
site only through what an operator has: files in /root/netmon, git, and the `docker` command.
Variants are described in tests/lab/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

APP = Path("/root/netmon")
LAB_DIR = Path("/root/netmon-lab")  # the lab's own files on the site (see standin/backend.py)
LAB = Path(os.environ.get("NETMON_LAB", "/nonexistent"))
TEMPLATES = LAB / "standin" / "app"
# The runbook's five files: all that standin/app/post holds (the rest of the install is as in pre).
MIGRATED_FILES = ("docker-compose.yml", "scripts/init.sql", "backend/app/main.py",
                  "backend/app/services/flow_rollup.py", "backend/requirements.txt")
SAFE_POLICY = "add_compression_policy('flow_records', INTERVAL '7 days', if_not_exists => TRUE)"
PSQL = ["docker", "exec", "-i", "netmon-db", "psql", "-U", "netmon", "-d", "netmon", "-X", "-q", "-v", "ON_ERROR_STOP=1"]


def run(*argv: str, stdin: str | None = None, cwd: Path = APP, check: bool = True) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        sys.exit(f"build: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def psql(sql: str) -> str:
    return run(*PSQL, "-tA", stdin=sql)


def wait_for(what: str, probe, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            logs = run("docker", "compose", "logs", "--tail=30", check=False)
            sys.exit(f"build: timed out waiting for {what}\n{logs}")
        time.sleep(0.2)


def db_ready() -> bool:
    # Over TCP: during first init the entrypoint's temporary server answers on the socket only.
    return subprocess.run(["docker", "exec", "netmon-db", "pg_isready", "-q", "-h", "127.0.0.1", "-U", "netmon", "-d", "netmon"],
                          capture_output=True).returncode == 0


def backend_healthy() -> bool:
    return subprocess.run(["curl", "-sf", "-o", "/dev/null", "--max-time", "2", "http://localhost:8000/api/health"],
                          capture_output=True).returncode == 0


def git(*args: str) -> str:
    return run("git", *args)


def lay_files(stage: str, names=None, templates: Path = TEMPLATES, app: Path = APP) -> None:
    """Copy the install's files as they were at `stage`: all of `pre`, or `post`'s MIGRATED_FILES over them."""
    src = templates / stage
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and (names is None or str(rel) in names):
            dest = app / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def break_compression_policy(main_py: Path) -> None:
    """The backend-crashloop variant's bug: add_compression_policy without if_not_exists, which fails
    once the policy exists, so every start of the backend fails its migration."""
    text = main_py.read_text()
    if SAFE_POLICY not in text:
        sys.exit(f"build: {main_py} does not call {SAFE_POLICY}")
    main_py.write_text(text.replace(SAFE_POLICY, SAFE_POLICY.replace(", if_not_exists => TRUE", "")))


def write_env(db_password: str, admin_password: str) -> None:
    env = APP / ".env"
    env.write_text(f"POSTGRES_PASSWORD={db_password}\nADMIN_PASSWORD={admin_password}\n")
    env.chmod(0o600)


def set_ingest_rate(rows_per_s: float) -> None:
    """The backend stand-in reads its rate from this file every second (a test may rewrite it)."""
    LAB_DIR.mkdir(exist_ok=True)
    (LAB_DIR / "ingest_rate").write_text(f"{rows_per_s}\n")


def forget_flows_the_migration_lost() -> None:
    """A migration onto a fresh volume loses the flows written between its backup and the stop (as it
    would for real); the lab's record of committed flow ids then keeps only the ids the database
    holds, so a test of the rollback counts the rollback's losses alone. The backend is stopped."""
    record = LAB_DIR / "committed_flow_ids"
    if record.exists():
        held = set(psql("SELECT id FROM flow_records").split())
        record.write_text("".join(f"{i}\n" for i in record.read_text().split() if i in held))


def stamp(ago: timedelta) -> str:
    return (datetime.now(UTC) - ago).strftime("%Y%m%d_%H%M%S")


def backup(name_stamp: str) -> Path:
    """The runbook's pre-migration backup, made the runbook's way."""
    dump = Path(f"/root/netmon_pre_tsdb_{name_stamp}.dump")
    with dump.open("wb") as out:
        subprocess.run(["docker", "exec", "netmon-db", "pg_dump", "-U", "netmon", "-Fc", "netmon"], stdout=out, check=True)
    return dump


def add_flows(rows: int, span: str) -> None:
    """Flows spread over `span` before now, inserted set-based on the server (no row-by-row round trips)."""
    if rows <= 0:
        return
    psql(f"""
INSERT INTO flow_records ("timestamp", device_id, src_ip, dst_ip, src_port, dst_port, protocol, bytes, packets)
SELECT now() - interval '{span}' * (g::float8 / {rows}),
       1 + g % 20,
       ('192.0.2.' || (1 + g % 250))::inet, ('198.51.100.' || (1 + (g * 7) % 250))::inet,
       1024 + g % 50000, (ARRAY[53, 80, 443, 22, 123])[1 + g % 5], (ARRAY[6, 17])[1 + g % 2],
       64 + (g * 37) % 150000, 1 + g % 120
FROM generate_series(1, {rows}) AS g;
""")


def rollup_all() -> None:
    psql("""
INSERT INTO flow_summary_5m (bucket, device_id, src_ip, dst_ip, protocol, bytes, packets, flow_count)
SELECT date_bin('5 minutes', "timestamp", TIMESTAMPTZ '2000-01-01'), device_id, src_ip, dst_ip, protocol,
       sum(bytes), sum(packets), count(*)
FROM flow_records GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (bucket, device_id, src_ip, dst_ip, protocol) DO UPDATE
  SET bytes = EXCLUDED.bytes, packets = EXCLUDED.packets, flow_count = EXCLUDED.flow_count;
""")


def seed_inventory() -> None:
    """The other tables' data: devices, interfaces, metrics, alerts, MACs and the rest."""
    from seed import COLUMNS_SQL, seed_sql  # noqa: PLC0415  (beside this file in LAB)

    columns = [line.split("|") for line in run(*PSQL, "-tA", "-F", "|", stdin=COLUMNS_SQL).splitlines() if line]
    psql(seed_sql(columns))


def install_plain(flows: int, backups: int) -> None:
    """NetMon as first deployed on postgres:16-alpine, used for a while, then backed up."""
    APP.mkdir(exist_ok=True)
    lay_files("pre")
    git("init", "-q", "-b", "main")
    git("config", "user.email", "ops@netmon.example")
    git("config", "user.name", "NetMon Ops")
    (APP / ".gitignore").write_text(".env\n")
    git("add", "-A")
    git("commit", "-q", "-m", "NetMon deployment: postgres:16-alpine")
    run("docker", "compose", "up", "-d", "--build")
    wait_for("the backend's health", backend_healthy)
    seed_inventory()
    first = flows - flows // 10 if backups > 1 else flows
    add_flows(first, "7 days")
    rollup_all()
    if backups > 1:
        backup(stamp(timedelta(days=2)))
        add_flows(flows - first, "1 hour")
        rollup_all()
    if backups:
        backup(stamp(timedelta(hours=1)))


def migrate(variant: str, post_flows: int) -> None:
    """The TimescaleDB migration as an operator ran it (runbook's 'before you migrate' onward)."""
    post_names = set(MIGRATED_FILES)
    if variant == "fresh-volume":
        run("docker", "compose", "down")
        run("docker", "volume", "rm", "netmon_postgres_data")
    elif variant == "preload-alter-system":
        psql("ALTER SYSTEM SET shared_preload_libraries = 'timescaledb';")
        run("docker", "compose", "down")
    else:
        run("docker", "compose", "down")
    lay_files("post", post_names)
    compose = APP / "docker-compose.yml"
    if variant in ("fresh-volume", "preload-alter-system"):
        # The preload lives in the data directory here, not in the compose file.
        compose.write_text("".join(line for line in compose.read_text().splitlines(keepends=True)
                                   if "shared_preload_libraries" not in line))
    if variant == "backend-crashloop":
        break_compression_policy(APP / "backend/app/main.py")
    if variant not in ("uncommitted", "no-git"):
        git("add", "-A")
        git("commit", "-q", "-m", "Migrate flow tables to TimescaleDB")
    run("docker", "compose", "up", "-d", "--build", "db")
    wait_for("the database", db_ready)
    if variant == "fresh-volume":
        dump = sorted(Path("/root").glob("netmon_pre_tsdb_*.dump"))[-1]
        run("docker", "cp", str(dump), "netmon-db:/tmp/restore.dump")
        run("docker", "exec", "netmon-db", "pg_restore", "-U", "netmon", "-d", "netmon", "--no-owner",
            "/tmp/restore.dump")
        run("docker", "exec", "netmon-db", "rm", "/tmp/restore.dump")
        forget_flows_the_migration_lost()
    psql("""
CREATE EXTENSION IF NOT EXISTS timescaledb;
ALTER TABLE flow_records DROP CONSTRAINT flow_records_pkey, ADD PRIMARY KEY (id, "timestamp");
SELECT create_hypertable('flow_records', 'timestamp', chunk_time_interval => interval '1 day', migrate_data => true);
-- a real migration runs: ALTER TABLE flow_records SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id')
SELECT _timescaledb_functions.stand_in_enable_compression('flow_records', 'device_id');
SELECT add_compression_policy('flow_records', interval '7 days');
SELECT add_retention_policy('flow_records', interval '30 days');
""")
    if variant == "third-hypertable":
        third_hypertable()
    if variant == "summary-cagg":
        psql("""
DROP TABLE flow_summary_5m;
SELECT _timescaledb_functions.stand_in_create_cagg('flow_summary_5m', $q$
  SELECT time_bucket('5 minutes', "timestamp") AS bucket, device_id, src_ip, dst_ip, protocol,
         sum(bytes)::bigint AS bytes, sum(packets)::bigint AS packets, count(*) AS flow_count
  FROM flow_records GROUP BY 1, 2, 3, 4, 5 $q$);
-- CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous) without WITH NO DATA fills it at once
CALL refresh_continuous_aggregate('flow_summary_5m', NULL, NULL);
""")
    run("docker", "compose", "up", "-d", "--build")
    add_flows(post_flows, "30 minutes")
    if variant != "backend-crashloop":
        wait_for("the backend's health", backend_healthy)


def third_hypertable() -> None:
    """The third-hypertable variant: an operator also made interface_metrics (one of the other 30
    tables, its rows seeded before the migration) a hypertable with compression and retention."""
    psql("""
ALTER TABLE interface_metrics DROP CONSTRAINT interface_metrics_pkey, ADD PRIMARY KEY (id, "timestamp");
SELECT create_hypertable('interface_metrics', 'timestamp', chunk_time_interval => interval '1 day', migrate_data => true);
-- for real: ALTER TABLE interface_metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'interface_id')
SELECT _timescaledb_functions.stand_in_enable_compression('interface_metrics', 'interface_id');
SELECT add_compression_policy('interface_metrics', interval '2 days');
SELECT add_retention_policy('interface_metrics', interval '90 days');
""")


def roll_back_files() -> None:
    """A site someone already rolled back by hand: migration committed, then reverted."""
    lay_files("post", set(MIGRATED_FILES))
    git("add", "-A")
    git("commit", "-q", "-m", "Migrate flow tables to TimescaleDB")
    git("revert", "--no-edit", "HEAD")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="migrated")
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--db-password-file", required=True)
    ap.add_argument("--admin-password-file", required=True)
    ap.add_argument("--ingest-rate", type=float, help="flow rows a second the backend writes (default: its own)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    write_env(Path(args.db_password_file).read_text().strip(), Path(args.admin_password_file).read_text().strip())
    if args.ingest_rate is not None:
        set_ingest_rate(args.ingest_rate)
    variant = args.variant
    backups = {"no-backup": 0, "two-backups": 2, "corrupt-backup": 2}.get(variant, 1)
    install_plain(args.flows, backups)
    if variant == "rolled-back":
        roll_back_files()
    else:
        migrate(variant, max(args.flows // 10, 50))
    if variant == "no-git":
        shutil.rmtree(APP / ".git")
    if variant == "corrupt-backup":
        newest = sorted(Path("/root").glob("netmon_pre_tsdb_*.dump"))[-1]
        with newest.open("r+b") as f:
            f.truncate(newest.stat().st_size // 2)
    if variant == "plain-image-missing":  # pruned after the migration; no registry answers to pull it back
        run("docker", "image", "rm", "postgres:16-alpine")
    print(f"build: {variant} ready")


if __name__ == "__main__":
    main()
