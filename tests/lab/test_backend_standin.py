"""The NetMon backend stand-in against throwaway PostgreSQL servers: the plain image and the TimescaleDB one."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.lab.build import MIGRATED_FILES, break_compression_policy, lay_files
from tests.lab.images import BIN, HOST_BIN
from tests.lab.pgcluster import Cluster, free_port, running_cluster
from tests.lab.standin.backend import migration_statements

STANDIN = Path(__file__).resolve().parent / "standin"
# NetMon's tables: those the pre-migration main.py's run_migrations() creates.
TABLES = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)",
                    "\n".join(migration_statements(STANDIN / "app/pre/backend/app/main.py")))
ADMIN_PASSWORD = secrets.token_urlsafe(12)


class Backend:
    """backend.py as the lab's container runs it: cwd = a copy of the backend image, log in a file."""

    def __init__(self, workdir: Path, name: str, stage: str, cluster: Cluster, edit=None, db: str = "netmon",
                 ingest_rate: float | None = None):
        install = workdir / name  # /root/netmon as build.py lays it; the image is its backend/
        lay_files("pre", templates=STANDIN / "app", app=install)
        if stage == "post":
            lay_files("post", MIGRATED_FILES, templates=STANDIN / "app", app=install)
        self.image = install / "backend"
        if edit:  # a change to the image's main.py, as a variant makes it
            edit(self.image / "app" / "main.py")
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.lab_dir = workdir / f"{name}-lab"  # the site's /root/netmon-lab
        if ingest_rate is not None:
            self.lab_dir.mkdir()
            (self.lab_dir / "ingest_rate").write_text(f"{ingest_rate}\n")
        env = {"PATH": os.environ["PATH"], "DATABASE_URL": cluster.url.rsplit("/", 1)[0] + "/" + db,
               "ADMIN_PASSWORD": ADMIN_PASSWORD, "NETMON_BACKEND_HOST": "127.0.0.1",
               "NETMON_BACKEND_PORT": str(self.port), "NETMON_LAB_DIR": str(self.lab_dir)}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(["/usr/bin/python3", STANDIN / "backend.py"], cwd=self.image, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(path), data=data, headers=headers)  # noqa: S310 (loopback, made here)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    def wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"backend exited {self.proc.returncode}:\n{self.log.read_text()}"
            try:
                if self.request("/api/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"backend not healthy:\n{self.log.read_text()}")

    def login(self) -> str:
        status, body = self.request("/api/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
        assert status == 200 and body["token_type"] == "bearer"  # noqa: S105 (not a secret)
        return body["access_token"]

    def committed_ids(self) -> list[int]:
        try:
            return [int(line) for line in (self.lab_dir / "committed_flow_ids").read_text().splitlines()]
        except FileNotFoundError:
            return []

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_for(probe, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def plain(workdir):
    """postgres:16-alpine's stand-in: the host's PostgreSQL, no TimescaleDB anywhere."""
    with running_cluster(workdir / "plain", HOST_BIN) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def timescale(workdir, image):
    """timescale/timescaledb's stand-in: the lab's image, preloading timescaledb."""
    with running_cluster(workdir / "timescale", image / BIN) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pre_backend(workdir, plain):
    backend = Backend(workdir, "pre", "pre", plain)
    try:
        backend.wait_healthy()
        yield backend
    finally:
        backend.terminate()


def test_serves_the_runbook_checks(pre_backend, plain):
    assert pre_backend.request("/api/health") == (200, {"status": "ok"})
    assert pre_backend.request("/api/auth/login", {"username": "admin", "password": "wrong"})[0] == 401
    assert pre_backend.request("/api/flows/stats?hours=1")[0] == 401
    assert pre_backend.request("/api/flows/stats?hours=1", token="not-a-session")[0] == 401  # noqa: S106
    status, stats = pre_backend.request("/api/flows/stats?hours=1", token=pre_backend.login())
    assert status == 200 and stats["hours"] == 1 and {"count", "bytes"} <= set(stats["flows"])
    assert plain.value("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'") == "32"
    assert plain.value("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables "
                       "WHERE table_schema = 'public'") == ",".join(sorted(TABLES))


def test_admin_password_is_hashed_and_never_logged(pre_backend, plain):
    stored = plain.value("SELECT password_hash FROM users WHERE username = 'admin'")
    assert stored.startswith("$pbkdf2-sha256$29000$") and ADMIN_PASSWORD not in stored
    assert ADMIN_PASSWORD not in pre_backend.log.read_text()
    assert plain.password not in pre_backend.log.read_text()


def test_ingests_and_rolls_up_flows(pre_backend, plain):
    def flows() -> int:
        return int(plain.value("SELECT count(*) FROM flow_records"))

    before = flows()
    wait_for(lambda: flows() > before, 5, "new flow rows")
    wait_for(lambda: int(plain.value("SELECT count(*) FROM flow_summary_5m")) > 0, 15, "the first rollup")
    assert plain.value("SELECT sum(flow_count) > 0 FROM flow_summary_5m") == "t"


def test_stats_fail_loudly_without_the_summary_table(pre_backend, plain):
    token = pre_backend.login()
    plain.psql("ALTER TABLE flow_summary_5m RENAME TO flow_summary_5m_away")
    try:
        assert pre_backend.request("/api/flows/stats?hours=1", token=token)[0] == 500
    finally:
        plain.psql("ALTER TABLE flow_summary_5m_away RENAME TO flow_summary_5m")
    assert 'ERROR GET /api/flows/stats failed: relation "flow_summary_5m" does not exist' in pre_backend.log.read_text()


def test_survives_a_database_restart(pre_backend, plain):
    plain.stop()
    try:
        assert pre_backend.request("/api/health")[0] == 503
    finally:
        plain.start()
    pre_backend.wait_healthy()
    after = int(plain.value("SELECT count(*) FROM flow_records"))
    wait_for(lambda: int(plain.value("SELECT count(*) FROM flow_records")) > after, 5, "ingestion to resume")


def test_sigterm_ends_it_with_status_0(workdir, plain):
    backend = Backend(workdir, "short", "pre", plain)
    try:
        backend.wait_healthy()
    finally:
        assert backend.terminate() == 0
    # uvicorn's lines, which a rehearsal reads to estimate the backend's start and stop
    said = [m for line in backend.log.read_text().splitlines() for m in (
        "Application startup complete.", "Shutting down", "Application shutdown complete.") if line.endswith(m)]
    assert said == ["Application startup complete.", "Shutting down", "Application shutdown complete."]


def test_migrated_files_on_the_plain_image_crash_it(workdir, plain):
    backend = Backend(workdir, "post-on-plain", "post", plain)
    try:
        assert backend.proc.wait(timeout=20) == 1
    finally:
        backend.terminate()
    log = backend.log.read_text()
    assert 'ERROR migration failed: extension "timescaledb" is not available' in log


def test_timescaledb_mode_makes_and_feeds_a_hypertable(workdir, timescale):
    backend = Backend(workdir, "post", "post", timescale)
    try:
        backend.wait_healthy()
        q = timescale.value
        assert q("SELECT hypertable_name FROM timescaledb_information.hypertables") == "flow_records"
        assert q("SELECT string_agg(proc_name, ',' ORDER BY proc_name) FROM timescaledb_information.jobs "
                 "WHERE hypertable_name = 'flow_records'") == "policy_compression,policy_retention"
        wait_for(lambda: int(q("SELECT count(*) FROM flow_records")) > 0, 5, "flows through the hypertable")
        assert q("SELECT count(*) FROM ONLY flow_records") == "0"
        assert backend.request("/api/flows/stats?hours=1", token=backend.login())[0] == 200
    finally:
        assert backend.terminate() == 0


def test_broken_compression_policy_makes_it_crash_loop(workdir, timescale):
    """The backend-crashloop variant: once the policy exists, every start fails."""
    first = Backend(workdir, "post-first", "post", timescale)
    try:
        first.wait_healthy()
    finally:
        first.terminate()
    backend = Backend(workdir, "crashloop", "post", timescale, edit=break_compression_policy)
    try:
        assert backend.proc.wait(timeout=20) == 1
    finally:
        backend.terminate()
    assert ('ERROR migration failed: compression policy already exists for hypertable or continuous aggregate '
            '"flow_records"') in backend.log.read_text()



def test_a_main_py_without_run_migrations_crashes_it(workdir, plain):
    """As the real import would fail: the stand-in runs nothing it cannot find in main.py."""
    def rename(main: Path) -> None:
        main.write_text(main.read_text().replace("def run_migrations(", "def migrate("))

    backend = Backend(workdir, "no-run-migrations", "pre", plain, edit=rename)
    try:
        assert backend.proc.wait(timeout=20) == 1
    finally:
        backend.terminate()
    assert "ERROR cannot load the app: " in backend.log.read_text() and "no run_migrations()" in backend.log.read_text()


def test_records_every_committed_flow_id_at_the_rate_chosen(workdir, timescale):
    """Ingestion at a test's rate through the hypertable; the record holds exactly the committed rows."""
    timescale.psql("CREATE DATABASE recorded", db="postgres")
    backend = Backend(workdir, "recorded", "post", timescale, db="recorded", ingest_rate=300)
    try:
        backend.wait_healthy()
        wait_for(lambda: len(backend.committed_ids()) >= 600, 30, "600 recorded flow ids")
    finally:
        assert backend.terminate() == 0
    recorded = backend.committed_ids()
    table = [int(i) for i in timescale.value("SELECT string_agg(id::text, ' ') FROM flow_records", db="recorded").split()]
    assert len(recorded) == len(set(recorded))
    assert sorted(recorded) == sorted(table)
    assert timescale.value("SELECT count(*) FROM ONLY flow_records", db="recorded") == "0"


def test_runs_timescaledb_jobs_and_a_paused_one_stays_paused(workdir, timescale):
    """The lab's stand-in for TimescaleDB's scheduler: the compression policy runs within seconds."""
    timescale.psql("CREATE DATABASE scheduled", db="postgres")
    backend = Backend(workdir, "scheduled", "post", timescale, db="scheduled", ingest_rate=1)
    q = timescale.value

    def runs(proc: str) -> int:
        return int(q("SELECT coalesce(sum(s.total_runs), 0) FROM timescaledb_information.job_stats s JOIN "
                     f"timescaledb_information.jobs j USING (job_id) WHERE j.proc_name = '{proc}'", db="scheduled"))

    def compressed(age: str) -> str:
        return q("SELECT is_compressed FROM timescaledb_information.chunks WHERE range_start <= now() - "
                 f"interval '{age}' AND range_end > now() - interval '{age}'", db="scheduled")

    try:
        backend.wait_healthy()
        timescale.psql("INSERT INTO flow_records (\"timestamp\", bytes) VALUES (now() - interval '10 days', 1)",
                       db="scheduled")
        wait_for(lambda: compressed("10 days") == "t", 30, "the compression policy to compress a 10-day-old chunk")
        assert q("SELECT count(*) FROM flow_records WHERE bytes = 1", db="scheduled") == "1"

        timescale.psql("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                       "WHERE proc_name = 'policy_compression'", db="scheduled")
        paused_runs, retention_runs = runs("policy_compression"), runs("policy_retention")
        timescale.psql("INSERT INTO flow_records (\"timestamp\", bytes) VALUES (now() - interval '12 days', 2)",
                       db="scheduled")
        wait_for(lambda: runs("policy_retention") >= retention_runs + 2, 30, "two more runs of the retention policy")
        assert runs("policy_compression") == paused_runs
        assert compressed("12 days") == "f"
    finally:
        assert backend.terminate() == 0
    assert "timescaledb jobs: " in backend.log.read_text()
