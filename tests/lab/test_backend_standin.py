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

    def __init__(self, workdir: Path, name: str, stage: str, cluster: Cluster, edit=None):
        install = workdir / name  # /root/netmon as build.py lays it; the image is its backend/
        lay_files("pre", templates=STANDIN / "app", app=install)
        if stage == "post":
            lay_files("post", MIGRATED_FILES, templates=STANDIN / "app", app=install)
        self.image = install / "backend"
        if edit:  # a change to the image's main.py, as a variant makes it
            edit(self.image / "app" / "main.py")
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        env = {"PATH": os.environ["PATH"], "DATABASE_URL": cluster.url, "ADMIN_PASSWORD": ADMIN_PASSWORD,
               "NETMON_BACKEND_HOST": "127.0.0.1", "NETMON_BACKEND_PORT": str(self.port)}
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
