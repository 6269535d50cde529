"""The lab's docker stand-in answers like Docker CLI 27 + Compose v2.29 (DESIGN.md §5).

The site tests build a throwaway site of their own (README layout, a network namespace, private
mounts) and drive the stand-in's `docker` there, through the wrapper a site has. The rest feed
the stand-in's pure helpers directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.lab.docker_texts import UNREACHABLE_REGISTRY
from tests.lab.images import build_timescaledb_image

STANDIN = Path(__file__).parent / "standin"
sys.path.insert(0, str(STANDIN))  # as python3 LAB/standin/docker.py has it: dockercli/ and shim.py importable
from dockercli import errors, output, project, templates  # noqa: E402 — the stand-in itself, for its pure helpers

pytestmark = pytest.mark.lab

COMPOSE = """\
services:
  db:
    image: postgres:16-alpine
    container_name: netmon-db
    restart: unless-stopped
    environment:
      POSTGRES_DB: netmon
      POSTGRES_USER: netmon
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    volumes:
      - postgres_data:/var/lib/postgresql/data
      - ./scripts/init.sql:/docker-entrypoint-initdb.d/init.sql:ro
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U netmon -d netmon"]
      interval: 1s
      timeout: 5s
      retries: 15
  redis: {image: redis:7-alpine, container_name: netmon-redis, restart: unless-stopped}
  backend:
    build: ./backend
    container_name: netmon-backend
    restart: unless-stopped
    environment:
      DATABASE_URL: postgresql://netmon:${POSTGRES_PASSWORD}@db:5432/netmon
      ADMIN_PASSWORD: ${ADMIN_PASSWORD:-admin}
    depends_on:
      db: {condition: service_healthy}
      redis: {condition: service_started}
    ports: ["8000:8000"]
  frontend: {build: ./frontend, container_name: netmon-frontend, restart: unless-stopped}
  nginx: {image: "nginx:alpine", container_name: netmon-nginx, restart: unless-stopped, ports: ["80:80"],
          depends_on: [backend, frontend]}
volumes:
  postgres_data:
"""

INIT_SQL = """\
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS "pg_stat_statements";
SELECT 'NetMon DB initialized' AS status;
"""

# Stands in for standin/backend.py (someone else's): these tests are about the container around it.
FAKE_BACKEND = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("backend up, version", open("app/version.txt").read().strip(), flush=True)
while True:
    time.sleep(3600)
"""

# Run COMMAND ($1) inside the site: its mounts over /root, /tmp, /etc/hosts, /usr/local/sbin ($0 = SITE).
ENTER = ('mount --bind "$0/root" /root && mount --bind "$0/tmp" /tmp && mount --bind "$0/etc/hosts" /etc/hosts '
         '&& mount --bind "$0/sbin" /usr/local/sbin && cd /root/netmon && exec /bin/sh -c "$1"')


class Site:
    """A throwaway lab site as tests/lab/README.md lays it out, with a network namespace of its own."""

    up: subprocess.CompletedProcess  # the module fixture's `docker compose up -d`

    def __init__(self, compose: str = COMPOSE):
        self.lab = Path(tempfile.mkdtemp(prefix="netmon-dst-", dir="/var/tmp"))
        self.lab.chmod(0o755)  # as lab.py's LAB: the postgres user runs the images' programs from it
        self.dir = self.lab / "sites" / "s1"
        self.netns = f"dst-{secrets.token_hex(4)}"
        (self.lab / "standin").mkdir(parents=True)
        for name in ("docker.py", "shim.py", "pg_entrypoint.py"):
            shutil.copy2(STANDIN / name, self.lab / "standin" / name)
        shutil.copytree(STANDIN / "dockercli", self.lab / "standin/dockercli", ignore=shutil.ignore_patterns("__pycache__"))
        (self.lab / "standin/backend.py").write_text(FAKE_BACKEND)
        app = self.dir / "root/netmon"
        for sub in ("scripts", "backend/app", "frontend"):
            (app / sub).mkdir(parents=True)
        (self.dir / "tmp").mkdir()
        os.chmod(self.dir / "tmp", 0o1777)  # noqa: S103 — a /tmp
        (self.dir / "etc").mkdir()
        (self.dir / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.0.1\tdb redis backend frontend nginx\n")
        (self.dir / "sbin").mkdir()
        wrapper = self.dir / "sbin/docker"
        wrapper.write_text(f'#!/bin/sh\nNETMON_LAB_SITE={self.dir} NETMON_LAB={self.lab} '
                           f'exec /usr/bin/python3 {self.lab}/standin/docker.py "$@"\n')
        wrapper.chmod(0o755)
        (app / "docker-compose.yml").write_text(compose)
        (app / ".env").write_text(f"POSTGRES_PASSWORD={secrets.token_hex(8)}\n")
        (app / "scripts/init.sql").write_text(INIT_SQL)
        (app / "backend/app/version.txt").write_text("1\n")
        (app / "frontend/index.html").write_text("<html></html>\n")
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"], check=True)

    def sh(self, command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        argv = ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
                "/bin/sh", "-c", ENTER, str(self.dir), command]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8"}
        return subprocess.run(argv, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120, env=env)

    def docker(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.sh(shlex.join(["docker", *args]), stdin=stdin)

    def ok(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        proc = self.docker(*args, stdin=stdin)
        assert proc.returncode == 0, f"docker {shlex.join(args)} exited {proc.returncode}: {proc.stderr}"
        return proc

    def state(self, container: str) -> dict:
        return json.loads((self.dir / "docker/containers" / container / "state.json").read_text())

    def close(self) -> None:
        """Every process in the namespace ends (gently first), then the namespace and files go."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            deadline = time.monotonic() + grace
            while pids := self._pids():
                if time.monotonic() > deadline:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                time.sleep(0.1)
        subprocess.run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(self.lab, ignore_errors=True)

    def _pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ps_json(site: Site, *args: str) -> dict:
    out = site.ok("compose", "ps", "--format", "json", *args).stdout
    return {row["Service"]: row for row in map(json.loads, out.splitlines())}


@pytest.fixture(scope="module")
def site():
    if os.geteuid() != 0:
        pytest.fail("the docker stand-in's tests need root (network and mount namespaces)")
    made = Site()
    try:
        made.up = made.docker("compose", "up", "-d")
        yield made
    finally:
        made.close()


# ---------------------------------------------------------------- a whole stack in a site

def test_compose_up_starts_the_stack_and_the_database_answers(site):
    assert site.up.returncode == 0, site.up.stderr
    assert site.up.stdout == ""
    for line in (' Volume "netmon_postgres_data"  Created', " Container netmon-db  Started",
                 " Container netmon-db  Healthy", " Container netmon-backend  Started"):
        assert line in site.up.stderr.splitlines()
    # As with the real image, "healthy" can come from the init's temporary server: poll.
    query = ("exec", "netmon-db", "psql", "-U", "netmon", "-d", "netmon", "-tAc", "SELECT extname FROM pg_extension")
    extensions = wait_for(lambda: site.docker(*query).returncode == 0 and site.docker(*query).stdout.split(),
                          what="the database after its first init")
    assert {"uuid-ossp", "pg_stat_statements"} <= set(extensions)  # init.sql ran on the empty volume
    assert site.ok("compose", "up", "-d", "db").stderr.strip() == "Container netmon-db  Running"


def test_compose_ps_json_is_one_object_per_line(site):
    rows = ps_json(site)
    assert set(rows) == {"db", "redis", "backend", "frontend", "nginx"}
    assert {r["State"] for r in rows.values()} == {"running"}
    assert rows["db"]["Health"] == "healthy" and rows["db"]["Status"].endswith("(healthy)")
    assert rows["redis"]["Health"] == "" and rows["redis"]["Name"] == "netmon-redis"
    assert rows["backend"]["Image"] == "netmon-backend" and rows["db"]["Project"] == "netmon"
    assert {"URL": "0.0.0.0", "TargetPort": 8000, "PublishedPort": 8000, "Protocol": "tcp"} in rows["backend"]["Publishers"]  # noqa: S104
    assert site.ok("ps", "--filter", "name=netmon-db", "--format", "{{.Names}}").stdout == "netmon-db\n"
    assert site.ok("compose", "config", "--services").stdout.split() == ["db", "redis", "backend", "frontend", "nginx"]
    table = site.ok("compose", "ps").stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
    assert any(line.startswith("netmon-db ") and "Up " in line for line in table[1:])


def test_inspect_answers_templates_and_refuses_unknown_objects(site):
    out = site.ok("inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                  "netmon-db", "netmon-redis").stdout
    assert out.splitlines() == ["running healthy", "running "]
    [db] = json.loads(site.ok("inspect", "netmon-db").stdout)
    assert db["Name"] == "/netmon-db" and len(db["Id"]) == 64 and db["Config"]["Image"] == "postgres:16-alpine"
    assert db["Mounts"][0]["Name"] == "netmon_postgres_data"
    missing = site.docker("inspect", "nope")
    assert (missing.returncode, missing.stdout.strip(), missing.stderr.strip()) == (1, "[]", "Error: No such object: nope")
    unsupported = site.docker("inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "netmon-db")
    assert unsupported.returncode == 1 and "not supported by the NetMon lab stand-in" in unsupported.stderr


def test_the_image_store_answers_inspect_and_ls_and_refuses_unknown_images(site):
    [image] = json.loads(site.ok("image", "inspect", "postgres:16-alpine").stdout)
    assert image["RepoTags"] == ["postgres:16-alpine"] and image["Id"].startswith("sha256:")
    assert image["Config"]["Cmd"] == ["postgres"] and image["Os"] == "linux"
    assert site.ok("image", "inspect", "--format", "{{.Id}}", "postgres:16-alpine").stdout.strip() == image["Id"]
    [db] = json.loads(site.ok("inspect", "netmon-db").stdout)
    assert db["Image"] == image["Id"]  # the container runs the stored image
    assert json.loads(site.ok("inspect", "--type", "image", image["Id"][7:19]).stdout)[0]["Id"] == image["Id"]
    listed = site.ok("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert {"postgres:16-alpine", "timescale/timescaledb:latest-pg16", "redis:7-alpine", "nginx:alpine",
            "python:3.12-slim", "netmon-backend:latest", "netmon-frontend:latest"} == set(listed)
    table = site.ok("image", "ls", "redis").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:3] == ["redis", "7-alpine", image_id_of(site, "redis:7-alpine")[7:19]]
    for args, stdout in ((["image", "inspect", "nosuch:1"], "[]\n"), (["inspect", "--type", "image", "nosuch:1"], "[]\n"),
                         (["image", "inspect", "--format", "{{.Id}}", "nosuch:1"], "\n")):
        missing = site.docker(*args)
        assert (missing.returncode, missing.stdout, missing.stderr) == (
            1, stdout, "Error response from daemon: No such image: nosuch:1\n")
    in_use = site.docker("rmi", "redis:7-alpine")
    assert in_use.returncode == 1 and in_use.stderr.startswith(
        'Error response from daemon: conflict: unable to remove repository reference "redis:7-alpine" (must force) - '
        f"container {site.ok('inspect', '--format', '{{.Id}}', 'netmon-redis').stdout[:12]} is using its referenced image")


def image_id_of(site: Site, ref: str) -> str:
    return site.ok("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def test_every_pull_fails_as_with_no_registry_even_of_a_present_image(site):
    for ref, stdout in (("postgres:16-alpine", ""), ("postgres", "Using default tag: latest\n")):
        pulled = site.docker("pull", ref)
        assert (pulled.returncode, pulled.stdout) == (1, stdout)
        assert UNREACHABLE_REGISTRY.fullmatch(pulled.stderr.strip()), pulled.stderr
    pull = site.docker("compose", "pull")
    lines = pull.stderr.splitlines()
    assert pull.returncode == 18 and UNREACHABLE_REGISTRY.fullmatch(lines[-1]), pull.stderr
    assert lines[:3] == [" backend Skipped - No image to be pulled ", " frontend Skipped - No image to be pulled ",
                         " db Pulling "]
    assert lines[5].startswith(' db Error Get "https://registry-1.docker.io/v2/"') and lines[6] == " redis Error context canceled"
    ignored = site.docker("compose", "pull", "--ignore-pull-failures", "db", "redis")
    assert ignored.returncode == 0 and ignored.stderr.count(" Error Get ") == 2
    assert image_id_of(site, "postgres:16-alpine")  # a failed pull leaves the stored image as it was


def test_exec_passes_stdin_only_with_i_and_returns_the_commands_status(site):
    assert site.ok("exec", "netmon-db", "cat", stdin="hello").stdout == ""
    assert site.ok("exec", "-i", "netmon-db", "cat", stdin="hello").stdout == "hello"
    assert site.docker("exec", "netmon-db", "sh", "-c", "exit 3").returncode == 3
    tty = site.docker("exec", "-it", "netmon-db", "true")
    assert (tty.returncode, tty.stderr.strip()) == (1, "the input device is not a TTY")
    missing = site.docker("exec", "netmon-db", "foo")
    assert missing.returncode == 127
    assert missing.stdout.strip() == ('OCI runtime exec failed: exec failed: unable to start container process: '
                                      'exec: "foo": executable file not found in $PATH: unknown')
    unknown = site.docker("exec", "nope", "true")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "Error response from daemon: No such container: nope")
    assert site.ok("exec", "-u", "postgres", "netmon-db", "id", "-un").stdout.strip() == "postgres"


def test_cp_round_trips_bytes_through_the_containers_tmp(site):
    blob = secrets.token_bytes(300_000)
    (site.dir / "root/blob.bin").write_bytes(blob)
    into = site.ok("cp", "/root/blob.bin", "netmon-db:/tmp/blob.bin")
    assert into.stderr.strip() == "Successfully copied 302kB to netmon-db:/tmp/blob.bin"  # as a tar stream
    assert site.ok("exec", "netmon-db", "sha256sum", "/tmp/blob.bin").stdout.split()[0] == hashlib.sha256(blob).hexdigest()
    site.ok("cp", "netmon-db:/tmp/blob.bin", "/root/back.bin")
    assert (site.dir / "root/back.bin").read_bytes() == blob
    missing = site.docker("cp", "netmon-db:/tmp/nope", "/root/x")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error response from daemon: Could not find the file /tmp/nope in container netmon-db"


def test_volumes_are_listed_inspected_and_kept_while_in_use(site):
    assert "netmon_postgres_data" in site.ok("volume", "ls", "-q").stdout.split()
    [volume] = json.loads(site.ok("volume", "inspect", "netmon_postgres_data").stdout)
    assert volume["Driver"] == "local" and volume["Scope"] == "local"
    assert volume["Labels"]["com.docker.compose.project"] == "netmon"
    assert volume["Labels"]["com.docker.compose.volume"] == "postgres_data"
    assert Path(volume["Mountpoint"], "PG_VERSION").read_text().strip() == "15"
    db_id = site.ok("inspect", "--format", "{{.Id}}", "netmon-db").stdout.strip()
    refused = site.docker("volume", "rm", "netmon_postgres_data")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"Error response from daemon: remove netmon_postgres_data: volume is in use - [{db_id}]"
    unknown = site.docker("volume", "inspect", "nope")
    assert (unknown.returncode, unknown.stdout.strip()) == (1, "[]")
    assert unknown.stderr.strip() == "Error response from daemon: get nope: no such volume"


def test_compose_logs_prefix_each_line_with_the_container_name(site):
    lines = site.ok("compose", "logs", "--tail=5", "db").stdout.splitlines()
    assert 0 < len(lines) <= 5 and all(line.startswith("netmon-db  | ") for line in lines)
    backend = site.ok("compose", "logs", "--no-color", "backend").stdout
    assert "netmon-backend  | backend up, version 1" in backend


def test_build_refreshes_the_image_only_when_asked(site):
    (site.dir / "root/netmon/backend/app/version.txt").write_text("2\n")
    assert "Recreate" not in site.ok("compose", "up", "-d", "backend").stderr  # stale image kept, as docker does
    rebuilt = site.ok("compose", "up", "-d", "--build", "backend")
    assert " Container netmon-backend  Recreated" in rebuilt.stderr.splitlines()
    assert (site.dir / "docker/images/backend/app/version.txt").read_text() == "2\n"
    wait_for(lambda: "version 2" in site.ok("logs", "netmon-backend").stdout, what="the rebuilt backend")


def test_a_missing_backend_program_fails_to_start_with_127(site):
    program = site.lab / "standin/backend.py"
    program.rename(program.with_suffix(".away"))
    try:
        failed = site.docker("compose", "up", "-d", "--force-recreate", "--no-deps", "backend")
        assert failed.returncode == 1
        assert f'exec: "{program}": stat {program}: no such file or directory' in failed.stderr
        state = site.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "netmon-backend").stdout
        assert state.strip() == "exited 127"
    finally:
        program.with_suffix(".away").rename(program)
    site.ok("compose", "up", "-d", "--no-deps", "backend")


def test_a_killed_shim_reads_as_exited_and_takes_its_process_along(site):
    state = site.state("netmon-redis")
    os.kill(state["shim_pid"], signal.SIGKILL)
    wait_for(lambda: ps_json(site, "-a")["redis"]["State"] == "exited", what="redis to read as exited")
    assert ps_json(site, "-a")["redis"]["ExitCode"] == 137
    assert "redis" not in ps_json(site)  # stopped containers are hidden without -a
    wait_for(lambda: not Path(f"/proc/{state['pid']}").exists()
             or Path(f"/proc/{state['pid']}/stat").read_text().split()[2] == "Z", what="the stub to die")
    site.ok("compose", "up", "-d", "redis")
    assert ps_json(site)["redis"]["State"] == "running"


def test_stopped_container_refuses_exec_but_allows_cp(site):
    db_id = site.ok("inspect", "--format", "{{.Id}}", "netmon-db").stdout.strip()
    stopped = site.ok("compose", "stop", "db")
    assert " Container netmon-db  Stopped" in stopped.stderr.splitlines()
    assert site.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "netmon-db").stdout.strip() == "exited 0"
    refused = site.docker("exec", "netmon-db", "true")
    assert (refused.returncode, refused.stderr.strip()) == (1, f"Error response from daemon: container {db_id} is not running")
    site.ok("cp", "netmon-db:/var/lib/postgresql/data/PG_VERSION", "/root/PG_VERSION")
    assert (site.dir / "root/PG_VERSION").read_text().strip() == "15"
    assert "Exited (0)" in ps_json(site, "-a")["db"]["Status"]
    site.ok("compose", "start", "db")
    skipped = "PostgreSQL Database directory appears to contain a database; Skipping initialization"
    wait_for(lambda: skipped in site.ok("compose", "logs", "db").stdout, what="a start without init")  # as the image


def test_run_starts_a_throwaway_database_with_a_network_of_its_own_and_rm_takes_it(site):
    """`docker run -d --rm` beside the stack's database: its own loopback (both listen on 5432), its
    named volume created and kept after the container goes; rm's refusals and -f as the CLI has them."""
    args = ["run", "-d", "--rm", "--name", "scratch-pg", "-e", "POSTGRES_HOST_AUTH_METHOD=trust",
            "-v", "scratch_vol:/var/lib/postgresql/data", "postgres:16-alpine"]
    out = site.ok(*args)
    assert re.fullmatch(r"[0-9a-f]{64}\n", out.stdout)
    ready = ("exec", "scratch-pg", "pg_isready", "-h", "127.0.0.1", "-U", "postgres")
    wait_for(lambda: site.docker(*ready).returncode == 0, what="the throwaway server on its own 127.0.0.1:5432")
    query = ("exec", "scratch-pg", "psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc",
             "SELECT count(*) FROM pg_database WHERE datname = 'netmon'")
    assert site.ok(*query).stdout.strip() == "0"  # TCP reached its own server, not netmon-db's
    assert site.ok("exec", "netmon-db", "pg_isready", "-U", "netmon").returncode == 0
    assert "scratch-pg" in site.ok("ps", "--format", "{{.Names}}").stdout.split()
    assert "scratch_vol" in site.ok("volume", "ls", "-q").stdout.split()
    again = site.docker(*args)
    assert again.returncode == 125 and 'Conflict. The container name "/scratch-pg" is already in use' in again.stderr
    refused = site.docker("rm", "scratch-pg")
    assert (refused.returncode, refused.stderr.strip()) == (1, 'Error response from daemon: cannot remove container '
                                                              '"/scratch-pg": container is running: stop the container '
                                                              "before removing or force remove")
    assert site.ok("rm", "-f", "scratch-pg").stdout == "scratch-pg\n"
    assert "scratch-pg" not in site.ok("ps", "-a", "--format", "{{.Names}}").stdout.split()
    gone = site.docker("rm", "-f", "scratch-pg")
    assert (gone.returncode, gone.stdout, gone.stderr.strip()) == (0, "", "Error response from daemon: No such "
                                                                   "container: scratch-pg")
    assert site.docker("rm", "scratch-pg").returncode == 1
    assert site.ok("volume", "rm", "scratch_vol").stdout.strip() == "scratch_vol"  # --rm keeps named volumes
    # --rm: a container whose main process ends is removed by itself
    site.ok("run", "-d", "--rm", "--name", "quick", "postgres:16-alpine", "true")
    wait_for(lambda: "quick" not in site.ok("ps", "-a", "--format", "{{.Names}}").stdout.split(), what="--rm")
    missing = site.docker("run", "-d", "--name", "nope", "nope:1")
    assert missing.returncode == 125 and "Unable to find image 'nope:1' locally" in missing.stderr


def test_down_keeps_the_volume_and_then_it_can_be_removed(site):
    down = site.ok("compose", "down")
    assert " Container netmon-db  Removed" in down.stderr.splitlines()
    assert site.ok("compose", "ps", "-a", "-q").stdout == ""
    assert site.ok("ps", "-a", "-q").stdout == ""
    assert "netmon_postgres_data" in site.ok("volume", "ls", "-q").stdout.split()
    assert site.ok("volume", "rm", "netmon_postgres_data").stdout.strip() == "netmon_postgres_data"
    assert site.ok("volume", "ls", "-q").stdout == ""


def test_unsupported_commands_fail_loudly(site):
    for args, what in ((["network", "ls"], "network"), (["compose", "top"], "compose top"),
                       (["compose", "up", "db"], "compose up without -d"), (["ps", "--no-trunc"], "ps --no-trunc")):
        proc = site.docker(*args)
        assert (proc.returncode, proc.stderr.strip()) == (1, f"docker: '{what}' is not supported by the NetMon lab stand-in")
    assert site.ok("--version").stdout.strip() == "Docker version 27.5.1, build 9f9e405"
    assert site.ok("compose", "version").stdout.strip() == "Docker Compose version v2.29.7"


# ---------------------------------------------------------------- the rollback's trap

DB_ONLY = COMPOSE.split("  redis:", maxsplit=1)[0] + "volumes:\n  postgres_data:\n"
PRELOADING = DB_ONLY.replace("    container_name: netmon-db",
                             "    command: postgres -c shared_preload_libraries=timescaledb\n    container_name: netmon-db")
TIMESCALEDB = DB_ONLY.replace("postgres:16-alpine", "timescale/timescaledb:latest-pg16")
FATAL = 'FATAL:  could not access file "timescaledb": No such file or directory'


@pytest.fixture
def fresh_site():
    if os.geteuid() != 0:
        pytest.fail("the docker stand-in's tests need root (network and mount namespaces)")
    made = []

    def make(compose: str) -> Site:
        made.append(Site(compose))
        return made[-1]

    yield make
    for site in made:
        site.close()


def assert_restart_loop(site: Site) -> None:
    """db keeps dying with PostgreSQL's own FATAL and shows as restarting, as on a real server."""
    wait_for(lambda: site.state("netmon-db")["restart_count"] >= 1, what="a restart")

    def restarting_status():
        row = ps_json(site)["db"]
        return row["Status"] if row["State"] == "restarting" else None

    assert wait_for(restarting_status, what="the restarting state").startswith("Restarting (1)")
    assert FATAL in site.ok("compose", "logs", "db").stdout
    assert site.docker("exec", "netmon-db", "true").returncode == 1


def test_plain_image_preloading_timescaledb_restart_loops_with_postgres_own_fatal(fresh_site):
    site = fresh_site(PRELOADING)
    up = site.docker("compose", "up", "-d", "db")
    assert up.returncode == 0, up.stderr  # up -d does not wait: the container dies after it returns
    assert_restart_loop(site)


def test_a_volume_made_by_the_timescaledb_image_restart_loops_on_the_plain_image(fresh_site):
    site = fresh_site(TIMESCALEDB)
    build_timescaledb_image(site.lab / "images/timescaledb")
    site.ok("compose", "up", "-d", "db")

    def query(db: str, sql: str) -> str:
        return site.docker("exec", "netmon-db", "psql", "-U", "netmon", "-d", db, "-tAc", sql).stdout.strip()

    def settled():
        """Every fact from one pass, or None while a read fails (the entrypoint's temporary server stops between)."""
        facts = [query(db, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
                 for db in ("postgres", "template1", "netmon")]
        facts.append(query("netmon", "SELECT setting, sourcefile FROM pg_settings "
                                     "WHERE name = 'shared_preload_libraries'"))
        facts.append(query("netmon", "SHOW timescaledb.restoring"))  # defined by the image's library
        return facts if facts[2] == "1" and all(facts) else None

    # "healthy" may come from the entrypoint's temporary server, as with the real image: poll the outcome
    assert wait_for(settled, timeout=120, what="the init scripts") == [
        "1", "1", "1", "timescaledb|/var/lib/postgresql/data/postgresql.conf", "off"]
    (site.dir / "root/netmon/docker-compose.yml").write_text(DB_ONLY)
    assert " Container netmon-db  Recreated" in site.ok("compose", "up", "-d", "db").stderr.splitlines()
    assert_restart_loop(site)


UNHEALTHY = """\
services:
  redis:
    image: redis:7-alpine
    container_name: netmon-redis
    healthcheck: {test: ["CMD", "false"], interval: 200ms, retries: 2}
  nginx: {image: "nginx:alpine", container_name: netmon-nginx, depends_on: {redis: {condition: service_healthy}}}
"""


def test_compose_reports_an_unhealthy_dependency_and_a_failed_pull(fresh_site):
    site = fresh_site(UNHEALTHY)
    up = site.docker("compose", "up", "-d")
    assert up.returncode == 1
    assert up.stderr.splitlines()[-2:] == [" Container netmon-redis  Error",
                                           "dependency failed to start: container netmon-redis is unhealthy"]
    assert ps_json(site)["redis"]["Health"] == "unhealthy" and "nginx" not in ps_json(site)
    alone = site.docker("compose", "up", "-d", "--no-deps", "nginx")  # compose waits only for what it starts
    assert alone.returncode == 0 and "Waiting" not in alone.stderr, alone.stderr
    assert ps_json(site)["nginx"]["State"] == "running"
    (site.dir / "root/netmon/other.yml").write_text("services:\n  app: {image: acme/thing:1}\n")
    pull = site.docker("compose", "-f", "other.yml", "up", "-d")
    assert pull.returncode == 18 and pull.stderr.splitlines()[0] == " app Pulling "
    assert UNREACHABLE_REGISTRY.fullmatch(pull.stderr.splitlines()[-1]), pull.stderr


def test_up_pulls_a_missing_image_and_fails_before_changing_anything(fresh_site):
    site = fresh_site(DB_ONLY)
    removed = site.ok("image", "rm", "postgres:16-alpine").stdout.splitlines()
    assert removed[0] == "Untagged: postgres:16-alpine" and removed[1].startswith("Untagged: postgres@sha256:")
    assert removed[2].startswith("Deleted: sha256:")
    up = site.docker("compose", "up", "-d", "db")
    lines = up.stderr.splitlines()
    assert up.returncode == 18 and lines[:1] == [" db Pulling "] and len(lines) == 3, up.stderr
    assert lines[1].startswith(' db Error Get "https://registry-1.docker.io/v2/"') and UNREACHABLE_REGISTRY.fullmatch(lines[2])
    assert site.ok("ps", "-a", "-q").stdout == "" and site.ok("volume", "ls", "-q").stdout == ""
    never = site.docker("compose", "up", "-d", "--pull", "never", "db")
    assert never.returncode == 1 and never.stderr.splitlines()[-3:] == [
        " Container netmon-db  Creating", " Container netmon-db  Error response from daemon: No such image: postgres:16-alpine",
        "Error response from daemon: No such image: postgres:16-alpine"]


FRONTEND_ONLY = "services:\n  frontend: {build: ./frontend, container_name: netmon-frontend}\n"


def test_build_needs_no_registry_while_its_base_image_is_there(fresh_site):
    site = fresh_site(FRONTEND_ONLY)
    (site.dir / "root/netmon/frontend/Dockerfile").write_text("FROM nginx:alpine AS web\nFROM web\nCOPY index.html /\n")
    unbuilt = site.docker("compose", "up", "-d", "--no-build")
    assert unbuilt.returncode == 1 and unbuilt.stderr.splitlines()[-1] == \
        "Error response from daemon: No such image: netmon-frontend:latest"
    assert site.ok("compose", "build").stderr.splitlines() == [" Service frontend  Building", " Service frontend  Built"]
    assert site.ok("compose", "up", "-d", "--no-build").stderr.splitlines()[-1] == " Container netmon-frontend  Started"
    assert site.docker("compose", "build", "--pull").returncode == 17  # --pull asks the registry for the base
    site.ok("compose", "down")
    site.ok("rmi", "nginx:alpine")
    refused = site.docker("compose", "build", "frontend")
    assert refused.returncode == 17 and refused.stderr.splitlines()[-1].startswith(
        "failed to solve: nginx:alpine: failed to resolve source metadata for docker.io/library/nginx:alpine: "
        'failed to do request: Head "https://registry-1.docker.io/v2/library/nginx/manifests/alpine": dial tcp: ')


# ---------------------------------------------------------------- pure helpers

def test_interpolation_follows_compose():
    env = {"SET": "x", "EMPTY": ""}
    assert project.interpolate("${SET}-${EMPTY:-d}-${EMPTY-d}-${NOPE:-d}-$$-$SET", env, set()) == "x-d--d-$-x"
    with pytest.raises(errors.DockerError, match="required variable NOPE is missing a value: say so"):
        project.interpolate("${NOPE:?say so}", env, set())


def test_templates_cover_the_subset_and_refuse_the_rest():
    data = {"State": {"Status": "running", "Health": {"Status": "healthy"}}, "Name": "/x", "List": [1, 2]}
    template = templates.Template("{{.Name}}\\t{{json .State.Health}}{{if .State.Nope}}yes{{else}} no{{end}}")
    assert template.render(data) == '/x\t{"Status":"healthy"} no'
    assert templates.Template("{{.Nope}} {{.List}}").render(data) == "<no value> [1 2]"
    with pytest.raises(errors.Unsupported):
        templates.Template("{{index .List 0}}")
    with pytest.raises(errors.DockerError, match="unexpected EOF"):
        templates.Template("{{if .Name}}x")


def test_human_texts_match_docker():
    assert [output.human_duration(s) for s in (0.5, 1, 59, 61, 3000, 3700, 90000)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "50 minutes", "About an hour", "25 hours"]
    assert output.human_size(2048) == "2.05kB" and output.human_size(512) == "512B"
    assert output.table([["NAME", "X"], ["a", "b"]]) == "NAME      X\na         b"
