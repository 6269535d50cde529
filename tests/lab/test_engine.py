"""The lab on a real Docker Engine (`lab.up --engine docker`), read back over real SSH.

One engine lab (a migrated site and a plain-image-missing one) serves the module; a stand-in lab
of one migrated site runs the same docker command lines for the differential test. The last test
takes the engine lab down and checks that nothing is left and the machine's forwarding and
firewall settings are as before.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import wait_until
from tests.lab import engine
from tests.lab.docker_texts import NO_SUCH_IMAGE, UNREACHABLE_REGISTRY
from tests.lab.lab import LAB_BASE, Lab, ssh

pytestmark = [pytest.mark.lab, pytest.mark.engine]

PSQL = "docker exec netmon-db psql -U netmon -d netmon -X -tAc"
FATAL = 'could not access file "timescaledb": No such file or directory'


def machine_network_settings() -> str:
    """What a daemon in the machine's own namespace would change: forwarding and the firewall,"""
    forwarding = [f"{p}={Path(p).read_text().strip()}" for p in (
        "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/forwarding",
        "/proc/sys/net/ipv4/conf/default/forwarding", "/proc/sys/net/ipv6/conf/all/forwarding",
        "/proc/sys/net/ipv6/conf/default/forwarding") if os.path.exists(p)]
    rules = [subprocess.run(argv, capture_output=True, text=True).stdout
             for argv in (["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"]) if os.path.exists(
                 f"/usr/sbin/{argv[0]}")]
    # and what a daemon sharing the machine's /run or /etc/docker would leave there
    traces = [f"{p}: {sorted(os.listdir(p)) if os.path.isdir(p) else os.path.exists(p)}"
              for p in ("/run/docker", "/run/containerd", "/run/docker.sock", "/etc/docker")]
    return "\n".join(forwarding + traces + [re.sub(r"^#.*\n", "", r, flags=re.M) for r in rules])


@pytest.fixture(scope="module")
def engine_lab():
    if os.geteuid() != 0:
        pytest.fail("the engine lab needs root (network and mount namespaces)")
    lab = Lab("e" + secrets.token_hex(3))
    lab.network_before = machine_network_settings()
    lab.store_before = tree_digest(engine.ensure_store(engine.ensure_images(log=lambda *_: None), log=lambda *_: None))
    try:
        lab.up(sites=3, flows=1000, variants=["migrated", "plain-image-missing", "migrated"], log=lambda *_: None,
               engine_name="docker")  # lab3: a copy of lab1
        yield lab
    finally:
        lab.down(log=lambda *_: None)


@pytest.fixture(scope="module")
def standin_lab():
    lab = Lab("s" + secrets.token_hex(3))
    try:
        lab.up(sites=1, flows=1000, log=lambda *_: None, engine_name="standin")
        yield lab
    finally:
        lab.down(log=lambda *_: None)


def test_each_site_runs_its_own_engine_inside_its_namespaces(engine_lab):
    assert ssh(engine_lab, "lab1", "docker version --format '{{.Server.Version}}'").stdout.startswith("20.10.")
    assert ssh(engine_lab, "lab1", "docker compose version --short").stdout.strip().startswith("2.")
    for site in engine_lab.sites():
        pid = site.daemon().pid()
        assert pid is not None
        holder = site.holder_pid()
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink(f"/proc/{holder}/ns/net") \
            != os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{holder}/ns/mnt")
    ids = {ssh(engine_lab, s, "docker inspect --format '{{.Id}}' netmon-db").stdout for s in ("lab1", "lab2")}
    assert len(ids) == 2  # two daemons, each with its own netmon-db


def test_netmon_runs_on_real_containers_with_timescaledb(engine_lab):
    out = ssh(engine_lab, "lab1", "cd /root/netmon && docker compose ps --format json").stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["Name"]: r["State"] for r in rows} == {n: "running" for n in (
        "netmon-db", "netmon-redis", "netmon-backend", "netmon-frontend", "netmon-nginx")}
    assert ssh(engine_lab, "lab1", f"{PSQL} \"SELECT extversion FROM pg_extension WHERE extname='timescaledb'\"") \
        .stdout.strip() == "2.17.2"
    assert int(ssh(engine_lab, "lab1", f"{PSQL} 'SELECT count(*) FROM flow_records'").stdout) >= 1000
    health = ssh(engine_lab, "lab1", "curl -fsS localhost:8000/api/health").stdout
    assert json.loads(health)["status"] == "ok"
    image = ssh(engine_lab, "lab1", "docker inspect --format '{{.Config.Image}}' netmon-backend").stdout.strip()
    assert image == "netmon-backend"  # built by compose from the site's backend/
    # the backend's record of committed flow ids is on the site (the lab's runtime), and outlives the container
    record = "wc -l < /root/netmon-lab/committed_flow_ids"
    before = int(ssh(engine_lab, "lab1", record).stdout)
    ssh(engine_lab, "lab1", "cd /root/netmon && docker compose up -d --force-recreate backend")
    assert wait_until(lambda: int(ssh(engine_lab, "lab1", record).stdout) > before, timeout=60)
    assert ssh(engine_lab, "lab1", "docker inspect --format '{{len .Mounts}}' netmon-backend").stdout.strip() == "0"


def tree_digest(top: Path) -> list[tuple]:
    """Every file under TOP with its size, mode and modification time."""
    return sorted((str(p.relative_to(top)), st.st_size, st.st_mode, st.st_mtime_ns)
                  for p in top.rglob("*") for st in [p.lstat()])


def test_sites_start_from_the_shared_layer_store_and_own_what_they_change(engine_lab):
    store = engine.layer_store()
    binary = next(store.glob("overlay2/*/diff/usr/lib/postgresql/15/bin/postgres"))
    for site in engine_lab.sites():
        data = site.daemon().dir / "data"
        assert (data / binary.relative_to(store)).stat().st_ino == binary.stat().st_ino  # a layer: shared
        assert (data / "volumes/metadata.db").stat().st_ino != (store / "volumes/metadata.db").stat().st_ino
        assert re.search(r"images linked from the layer store|a copy of lab1", (site.dir / "build.log").read_text())


def test_a_second_site_of_a_variant_is_a_copy_of_the_first_that_lives_on_its_own(engine_lab):
    copy, first = engine_lab.site("lab3"), engine_lab.site("lab1")
    assert "engine: a copy of lab1 (migrated)" in (copy.dir / "build.log").read_text()
    assert ssh(engine_lab, "lab3", "curl -s -o /dev/null -w '%{http_code}' localhost:8000/api/health").stdout == "200"
    # what lab1's build made, lab3 holds: the install, its dump, the same database password
    for path in ("root/netmon/docker-compose.yml", "root/netmon/.env", "db_password"):
        assert (copy.dir / path).read_bytes() == (first.dir / path).read_bytes()
    assert sorted(p.name for p in (copy.dir / "root").glob("netmon_pre_tsdb_*.dump")) == \
        sorted(p.name for p in (first.dir / "root").glob("netmon_pre_tsdb_*.dump")) != []
    # and then it is a server of its own: its volume, its daemon's files, its ingestion
    source = ssh(engine_lab, "lab3", "docker inspect --format '{{range .Mounts}}{{.Source}} {{end}}' netmon-db").stdout
    assert str(copy.daemon().dir / "data/volumes/netmon_postgres_data/_data") in source.split()
    ssh(engine_lab, "lab3", f"{PSQL} 'CREATE TABLE copy_mark (x int)'")
    assert ssh(engine_lab, "lab1", f"{PSQL} \"SELECT to_regclass('copy_mark') IS NULL\"").stdout.strip() == "t"
    pg_version = "data/volumes/netmon_postgres_data/_data/PG_VERSION"
    assert (copy.daemon().dir / pg_version).stat().st_ino != (first.daemon().dir / pg_version).stat().st_ino
    record = "wc -l < /root/netmon-lab/committed_flow_ids"
    before = int(ssh(engine_lab, "lab3", record).stdout)
    assert wait_until(lambda: int(ssh(engine_lab, "lab3", record).stdout) > before, timeout=60)


def test_plain_image_missing_on_the_real_engine(engine_lab):
    inspect = ssh(engine_lab, "lab2", "docker image inspect postgres:16-alpine", check=False)
    assert inspect.returncode == 1 and inspect.stdout.strip() == "[]"
    assert "No such image: postgres:16-alpine" in inspect.stderr
    pulled = ssh(engine_lab, "lab2", "docker pull postgres:16-alpine", check=False)
    assert pulled.returncode == 1 and UNREACHABLE_REGISTRY.fullmatch(pulled.stderr.strip()), pulled.stderr
    assert ssh(engine_lab, "lab1", "docker image inspect postgres:16-alpine").returncode == 0


def test_the_plain_image_refuses_a_preloading_data_directory_on_the_real_engine(engine_lab):
    compose = "/root/netmon/docker-compose.yml"
    ssh(engine_lab, "lab1", f"cp {compose} /root/compose.migrated && sed -i "
                            f"'s#timescale/timescaledb:latest-pg16#postgres:16-alpine#' {compose} && "
                            "cd /root/netmon && docker compose up -d db")
    try:
        logs = ""
        for _ in range(100):
            logs = ssh(engine_lab, "lab1", "cd /root/netmon && docker compose logs db").stdout
            if FATAL in logs:
                break
            ssh(engine_lab, "lab1", "sleep 0.3")
        assert FATAL in logs
    finally:
        ssh(engine_lab, "lab1", f"cp /root/compose.migrated {compose} && cd /root/netmon && docker compose up -d db")


# The same command lines on a stand-in site and an engine site: same exit status and output shape.
# Known differences, each a real one between the versions: Compose 2.29 (the stand-in) exits 18
# for a failed pull, 2.40 exits 1; CLI 27 words a missing image "Error response from daemon: No
# such image: X", CLI 20.10 "Error: No such image: X".
DIFFERENTIAL = (
    ("docker inspect --format '{{.State.Status}}' netmon-db", r"running\n"),
    ("docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' netmon-redis", r"\n"),
    ("docker inspect nope", r"\[\]\n"),
    ("docker image inspect --format '{{.Id}}' postgres:16-alpine", r"sha256:[0-9a-f]{64}\n"),
    ("docker image inspect nosuch:1", r"\[\]\n"),
    ("docker pull postgres:16-alpine", r""),
    ("docker exec netmon-db true", r""),
    ("docker exec netmon-db psql -U netmon -d netmon -tAc 'SELECT 1'", r"1\n"),
    ("docker volume ls -q", r"netmon_postgres_data\n"),
    ("cd /root/netmon && docker compose config --services | sort", r"backend\ndb\nfrontend\nnginx\nredis\n"),
    ("cd /root/netmon && docker compose pull db", r""),
    ("cd /root/netmon && docker compose build backend >/dev/null 2>&1; echo $?", r"0\n"),
    ("cd /root/netmon && docker compose up -d --pull never --no-build db", r""),
)
STDERR = {
    "docker inspect nope": r"Error: No such object: nope\n",
    "docker image inspect nosuch:1": NO_SUCH_IMAGE.format("nosuch:1") + r"\n",
    "docker pull postgres:16-alpine": UNREACHABLE_REGISTRY.pattern + r"\n",
}
EXIT = {"cd /root/netmon && docker compose pull db": {18, 1}}


def test_the_same_command_lines_answer_alike_on_both_engines(engine_lab, standin_lab):
    for cmd, stdout in DIFFERENTIAL:
        answers = {name: ssh(lab, "lab1", cmd, check=False) for name, lab in (("engine", engine_lab),
                                                                               ("standin", standin_lab))}
        codes = {a.returncode for a in answers.values()}
        assert codes <= EXIT.get(cmd, codes) and (len(codes) == 1 or cmd in EXIT), (cmd, answers)
        for name, answer in answers.items():
            assert re.fullmatch(stdout, answer.stdout), (name, cmd, answer.stdout)
            if cmd in STDERR:
                assert re.fullmatch(STDERR[cmd], answer.stderr), (name, cmd, answer.stderr)
    ps = {name: [json.loads(line) for line in ssh(lab, "lab1", "cd /root/netmon && docker compose ps --format json")
                 .stdout.splitlines()] for name, lab in (("engine", engine_lab), ("standin", standin_lab))}
    wanted = {"Name", "Service", "State", "Status", "Health", "ExitCode", "Image", "Project", "Publishers"}
    for rows in ps.values():
        assert all(wanted <= set(row) for row in rows)
    assert {r["Service"]: r["State"] for r in ps["engine"]} == {r["Service"]: r["State"] for r in ps["standin"]}


def test_down_leaves_nothing_and_the_machines_network_unchanged(engine_lab):
    sites = engine_lab.sites()
    daemons = [s.daemon().pid() for s in sites]
    engine_lab.down(log=lambda *_: None)
    assert all(not Path(f"/proc/{pid}").exists() for pid in daemons)
    assert not any(engine.cgroup_dirs(s.cgroup_parent) for s in sites)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"nl-{engine_lab.name}-" not in netns
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(LAB_BASE / engine_lab.name) not in mounts and not (LAB_BASE / engine_lab.name).exists()
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, engine_lab.name)]
    assert leftovers == []
    assert machine_network_settings() == engine_lab.network_before
    assert tree_digest(engine.layer_store()) == engine_lab.store_before  # no site changed the shared store


def _cmdline_has(proc: Path, name: str) -> bool:
    try:
        return str(LAB_BASE / name).encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


PIVOTED = ("2262 2188 254:1 /var/tmp/fresh/root / rw,relatime - ext4 /dev/vda1 rw\n"
           "2263 2262 0:5 / /proc rw,nosuid - proc proc rw\n")
CHROOTED = "2263 2188 0:5 / /proc rw,nosuid - proc proc rw\n2264 2188 0:22 / /dev rw - tmpfs dev rw\n"


def test_a_plain_chroot_is_refused_before_any_daemon_starts(monkeypatch):
    assert not engine.in_plain_chroot()  # this machine
    assert not engine.in_plain_chroot(PIVOTED)  # a root made with pivot_root is a mount point
    assert engine.in_plain_chroot(CHROOTED)  # a chroot into a directory: no mount at "/"
    monkeypatch.setattr(engine, "in_plain_chroot", lambda: True)
    with pytest.raises(engine.EngineError, match=r"plain chroot.*NETMON_LAB_ENGINE=standin"):
        engine.check_engine()
