"""The lab itself, proven over real SSH: each site is a host of its own with NetMon's names intact."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.lab.docker_texts import NO_SUCH_IMAGE, UNREACHABLE_REGISTRY
from tests.lab.lab import VARIANTS, Lab, LabError, plan_variants, sh, ssh

pytestmark = pytest.mark.lab

PSQL = "docker exec netmon-db psql -U netmon -d netmon -X -tAc"


def sql(lab: Lab, site: str, query: str) -> str:
    return ssh(lab, site, f"{PSQL} \"{query}\"").stdout.strip()


@pytest.fixture(scope="module")
def lab(lab_factory):
    """One site per variant, in the order of VARIANTS (lab1 = migrated, lab2 = fresh-volume, ...)."""
    return lab_factory(sites=len(VARIANTS), variants=list(VARIANTS), flows=3000)


def site_of(variant: str) -> str:
    return f"lab{VARIANTS.index(variant) + 1}"


def test_variants_are_planned_one_per_site_and_bad_ones_refused():
    assert plan_variants(3, ["summary-cagg"]) == ["summary-cagg"] * 3
    assert plan_variants(3, ["no-backup", "rolled-back"]) == ["no-backup", "rolled-back", "migrated"]
    with pytest.raises(LabError, match="unknown variant"):
        plan_variants(2, ["nope"])
    with pytest.raises(LabError, match="out of range"):
        plan_variants(0, None)


def test_client_files_describe_every_site(lab):
    inventory = yaml.safe_load(lab.inventory.read_text())
    assert set(inventory) == {"defaults", "sites", "groups"}
    assert sorted(inventory["sites"]) == sorted(f"lab{i}" for i in range(1, len(VARIANTS) + 1))
    assert oct(lab.admin_password_file.stat().st_mode & 0o777) == "0o600"
    assert oct(lab.key.stat().st_mode & 0o777) == "0o600"
    known = lab.known_hosts.read_text().splitlines()
    assert len(known) == len(VARIANTS) and all(" ssh-ed25519 " in line for line in known)


def test_each_site_is_a_host_of_its_own(lab):
    ssh(lab, "lab1", "echo only-on-lab1 > /root/marker")
    assert ssh(lab, "lab1", "cat /root/marker").stdout.strip() == "only-on-lab1"
    assert ssh(lab, "lab2", "test -e /root/marker", check=False).returncode == 1
    assert ssh(lab, "lab2", "hostname").stdout.strip() == "lab2"
    assert ssh(lab, "lab2", "command -v docker").stdout.strip() == "/usr/local/sbin/docker"
    assert int(ssh(lab, "lab2", "cd /root/netmon && git log --oneline | wc -l").stdout) >= 2
    ssh(lab, "lab1", "rm /root/marker")


def test_unknown_host_key_is_refused(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", f"UserKnownHostsFile={empty}", "lab1", "true"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr


def test_five_containers_run_and_timescaledb_is_there(lab):
    out = ssh(lab, "lab1", "cd /root/netmon && docker compose ps --format json").stdout
    states = {c["Name"]: c["State"] for c in map(json.loads, out.splitlines())}
    assert states == {n: "running" for n in ("netmon-db", "netmon-redis", "netmon-backend", "netmon-frontend",
                                             "netmon-nginx")}
    assert "timescaledb" in ssh(lab, "lab1", "docker exec netmon-db psql -U netmon -d netmon -c '\\dx'").stdout


def test_migrated_site_holds_a_hypertable_in_chunks(lab):
    site = site_of("migrated")
    assert sql(lab, site, "SELECT count(*) FROM ONLY flow_records") == "0"
    assert int(sql(lab, site, "SELECT count(*) FROM flow_records")) >= 3000
    assert int(sql(lab, site, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'flow_records'::regclass")) >= 2
    assert sql(lab, site, "SELECT hypertable_name FROM timescaledb_information.hypertables") == "flow_records"
    jobs = sql(lab, site, "SELECT proc_name FROM timescaledb_information.jobs ORDER BY 1").split()
    assert "policy_compression" in jobs and "policy_retention" in jobs
    assert sql(lab, site, "SELECT count(*) FROM information_schema.tables "
                          "WHERE table_schema='public' AND table_type='BASE TABLE'") == "32"
    assert int(sql(lab, site, "SELECT count(*) FROM devices")) > 0
    compose = ssh(lab, site, "cat /root/netmon/docker-compose.yml").stdout
    assert "timescale/timescaledb:latest-pg16" in compose and "shared_preload_libraries=timescaledb" in compose
    assert len(ssh(lab, site, "ls /root/netmon_pre_tsdb_*.dump").stdout.split()) == 1


def test_pre_migration_backup_is_a_plain_archive(lab):
    site = site_of("migrated")
    listing = ssh(lab, site, "docker cp /root/netmon_pre_tsdb_*.dump netmon-db:/tmp/b.dump && "
                             "docker exec netmon-db pg_restore -l /tmp/b.dump && docker exec netmon-db rm /tmp/b.dump").stdout
    assert "TABLE public flow_records" in listing
    assert "timescaledb" not in listing


def test_plain_image_refuses_a_preloading_data_directory(lab):
    site = site_of("migrated")
    compose = "/root/netmon/docker-compose.yml"
    ssh(lab, site, f"cp {compose} /root/compose.migrated && "
                   f"sed -i 's#timescale/timescaledb:latest-pg16#postgres:16-alpine#' {compose} && "
                   "cd /root/netmon && docker compose up -d db")
    try:
        logs = ""
        for _ in range(50):
            logs = ssh(lab, site, "cd /root/netmon && docker compose logs db").stdout
            if 'could not access file "timescaledb": No such file or directory' in logs:
                break
            ssh(lab, site, "sleep 0.2")
        assert 'FATAL:  could not access file "timescaledb": No such file or directory' in logs
        # A real engine shows a restart-looping container "running" for a moment between its crashes: poll.
        states = set()
        for _ in range(50):
            states.add(ssh(lab, site, "docker inspect --format '{{.State.Status}}' netmon-db").stdout.strip())
            if states & {"restarting", "exited"}:
                break
            ssh(lab, site, "sleep 0.2")
        assert states & {"restarting", "exited"}, states
        # A real engine runs the container for a moment between restarts, and an exec then lands: poll.
        for _ in range(20):
            refused = ssh(lab, site, "docker exec netmon-db true", check=False)
            if refused.returncode != 0:
                break
        assert refused.returncode == 1
        assert "is not running" in refused.stderr or "is restarting, wait until the container is running" in refused.stderr
    finally:
        ssh(lab, site, f"cp /root/compose.migrated {compose} && rm /root/compose.migrated && "
                       "cd /root/netmon && docker compose up -d db")
    for _ in range(100):
        if ssh(lab, site, "docker exec netmon-db pg_isready -q", check=False).returncode == 0:
            break
        ssh(lab, site, "sleep 0.2")
    assert sql(lab, site, "SELECT extversion FROM pg_extension WHERE extname='timescaledb'") == "2.17.2"


def test_compose_down_and_up_keep_the_volume(lab):
    site = site_of("rolled-back")
    before = sql(lab, site, "SELECT count(*) FROM devices")
    ssh(lab, site, "cd /root/netmon && docker compose down")
    assert ssh(lab, site, "cd /root/netmon && docker compose ps -a -q").stdout.strip() == ""
    assert "netmon_postgres_data" in ssh(lab, site, "docker volume ls -q").stdout
    ssh(lab, site, "cd /root/netmon && docker compose up -d")
    for _ in range(150):
        if ssh(lab, site, "curl -sf -o /dev/null http://localhost:8000/api/health", check=False).returncode == 0:
            break
        ssh(lab, site, "sleep 0.2")
    assert sql(lab, site, "SELECT count(*) FROM devices") == before


def test_backend_endpoints_answer_over_the_site_network(lab):
    site = site_of("rolled-back")
    ip = lab.site(site).ip
    password = lab.admin_password_file.read_text().strip()
    with urllib.request.urlopen(f"http://{ip}:8000/api/health", timeout=10) as resp:  # noqa: S310 (lab address)
        assert resp.status == 200
    body = json.dumps({"username": "admin", "password": password}).encode()
    req = urllib.request.Request(f"http://{ip}:8000/api/auth/login", data=body,  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        token = json.load(resp)["access_token"]
    req = urllib.request.Request(f"http://{ip}:8000/api/flows/stats?hours=1",  # noqa: S310
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        assert resp.status == 200 and json.load(resp)
    bad = json.dumps({"username": "admin", "password": "wrong"}).encode()
    req = urllib.request.Request(f"http://{ip}:8000/api/auth/login", data=bad,  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)  # noqa: S310
    assert err.value.code == 401


def test_runbook_option_a_fails_on_the_plain_image(lab):
    """DESIGN.md §1.2: with the extension still in the database, DDL on the plain image fails."""
    site = site_of("two-backups")  # a migrated site whose database no later test reads
    ssh(lab, site, "cd /root/netmon && sed -i 's#timescale/timescaledb:latest-pg16#postgres:16-alpine#; "
                   "/shared_preload_libraries/d' docker-compose.yml && docker compose up -d db")
    for _ in range(100):
        if ssh(lab, site, "docker exec netmon-db pg_isready -q", check=False).returncode == 0:
            break
        ssh(lab, site, "sleep 0.2")
    out = ssh(lab, site, f"{PSQL} 'DROP TABLE IF EXISTS flow_records CASCADE'", check=False)
    assert out.returncode != 0
    assert 'could not access file "$libdir/timescaledb-2.17.2": No such file or directory' in out.stderr


def test_variant_states_read_back(lab):
    s = site_of
    assert "'timescaledb'" in ssh(lab, s("fresh-volume"),
                                  "docker exec netmon-db cat /var/lib/postgresql/data/postgresql.conf").stdout
    for db in ("template1", "postgres", "netmon"):
        assert ssh(lab, s("fresh-volume"), f"docker exec netmon-db psql -U netmon -d {db} -tAc "
                   "\"SELECT count(*) FROM pg_extension WHERE extname='timescaledb'\"").stdout.strip() == "1"
    # the flows its migration lost (written after its backup) are not in the record of committed ids
    lost = ssh(lab, s("fresh-volume"), "sort -u /root/netmon-lab/committed_flow_ids > /tmp/c; docker exec netmon-db "
               "psql -U netmon -d netmon -XtAc 'SELECT id FROM flow_records' | sort > /tmp/k; comm -23 /tmp/c /tmp/k")
    assert lost.stdout.split() == []
    auto = ssh(lab, s("preload-alter-system"),
               "docker exec netmon-db cat /var/lib/postgresql/data/postgresql.auto.conf").stdout
    assert "shared_preload_libraries = 'timescaledb'" in auto
    assert sql(lab, s("preload-alter-system"),
               "SELECT sourcefile FROM pg_settings WHERE name='shared_preload_libraries'").endswith("postgresql.auto.conf")
    assert sql(lab, s("summary-cagg"), "SELECT relkind FROM pg_class WHERE relname='flow_summary_5m'") == "v"
    assert int(sql(lab, s("summary-cagg"), "SELECT sum(flow_count) FROM flow_summary_5m")) >= 3000
    assert sql(lab, s("summary-cagg"), "SELECT view_name FROM timescaledb_information.continuous_aggregates") \
        == "flow_summary_5m"
    assert "docker-compose.yml" in ssh(lab, s("uncommitted"), "cd /root/netmon && git status --porcelain").stdout
    assert ssh(lab, s("no-git"), "test -d /root/netmon/.git", check=False).returncode == 1
    assert ssh(lab, s("no-backup"), "ls /root/netmon_pre_tsdb_*.dump", check=False).returncode != 0
    assert len(ssh(lab, s("two-backups"), "ls /root/netmon_pre_tsdb_*.dump").stdout.split()) == 2
    dumps = ssh(lab, s("corrupt-backup"), "ls /root/netmon_pre_tsdb_*.dump").stdout.split()
    newest = ssh(lab, s("corrupt-backup"), f"docker cp {dumps[-1]} netmon-db:/tmp/n.dump && "
                 "docker exec netmon-db pg_restore -f /dev/null /tmp/n.dump", check=False)
    assert newest.returncode != 0
    assert sql(lab, s("rolled-back"), "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "0"
    assert "postgres:16-alpine" in ssh(lab, s("rolled-back"), "cat /root/netmon/docker-compose.yml").stdout


def test_plain_image_missing_variant_has_no_plain_image_and_cannot_pull_it(lab):
    site = site_of("plain-image-missing")
    inspect = ssh(lab, site, "docker image inspect postgres:16-alpine", check=False)
    assert (inspect.returncode, inspect.stdout.strip()) == (1, "[]")
    assert re.fullmatch(NO_SUCH_IMAGE.format("postgres:16-alpine"), inspect.stderr.strip()), inspect.stderr
    pulled = ssh(lab, site, "docker pull postgres:16-alpine", check=False)
    assert pulled.returncode == 1 and UNREACHABLE_REGISTRY.fullmatch(pulled.stderr.strip()), pulled.stderr
    assert sql(lab, site, "SELECT extversion FROM pg_extension WHERE extname='timescaledb'") == "2.17.2"  # migrated
    timescale = ssh(lab, site, "docker image inspect --format '{{.Id}}' timescale/timescaledb:latest-pg16").stdout
    assert timescale.startswith("sha256:")
    ssh(lab, site_of("migrated"), "docker image inspect postgres:16-alpine")  # other sites keep theirs


def test_third_hypertable_variant_holds_interface_metrics_in_chunks(lab):
    """Issue 8's lab variant: a hypertable besides the two flow tables, its rows in chunks, with policies."""
    site = site_of("third-hypertable")
    assert sql(lab, site, "SELECT string_agg(hypertable_name || ':' || compression_enabled, ',' ORDER BY 1) "
                          "FROM timescaledb_information.hypertables") == "flow_records:true,interface_metrics:true"
    assert sql(lab, site, "SELECT count(*) FROM ONLY interface_metrics") == "0"
    assert sql(lab, site, "SELECT count(*) FROM interface_metrics") == "4000"
    assert int(sql(lab, site, "SELECT count(*) FROM timescaledb_information.chunks "
                              "WHERE hypertable_name = 'interface_metrics'")) >= 3
    assert sql(lab, site, "SELECT string_agg(proc_name, ',' ORDER BY proc_name) FROM timescaledb_information.jobs "
                          "WHERE hypertable_name = 'interface_metrics'") == "policy_compression,policy_retention"
    assert sql(lab, site, "SELECT count(*) FROM interface_metrics m JOIN interfaces i ON i.id = m.interface_id") == "4000"


def test_backend_records_the_flow_ids_it_committed_on_the_site(lab):
    site = site_of("migrated")
    recorded = [int(i) for i in ssh(lab, site, "cat /root/netmon-lab/committed_flow_ids").stdout.split()]
    assert recorded and len(recorded) == len(set(recorded))
    ids = ",".join(map(str, recorded))
    assert sql(lab, site, f"SELECT count(*) FROM flow_records WHERE id IN ({ids})") == str(len(recorded))  # noqa: S608


def test_crashloop_variant_restarts_the_backend(lab):
    site = site_of("backend-crashloop")
    out = ssh(lab, site, "cd /root/netmon && docker compose ps -a --format json backend").stdout
    first = json.loads(out.splitlines()[0])
    assert first["State"] in ("restarting", "exited", "running")
    count = ssh(lab, site, "docker inspect --format '{{.RestartCount}}' netmon-backend").stdout.strip()
    assert int(count) >= 1
    assert "ERROR" in ssh(lab, site, "cd /root/netmon && docker compose logs --tail=50 backend").stdout


def test_down_leaves_nothing_behind(lab_factory):
    lab = lab_factory(sites=2, flows=100)
    root, run_dir, sites = lab.root, lab.run_dir, lab.sites()
    lab.down(log=lambda *_: None)
    lab.down(log=lambda *_: None)  # twice is safe
    assert not any(s.netns in sh("ip", "netns", "list").stdout for s in sites)
    assert not any(s.veth in sh("ip", "-o", "link").stdout for s in sites)
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    assert not root.exists() and not (run_dir / "ssh_config").exists()
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, str(root))]
    assert leftovers == []


def _cmdline_has(proc: Path, needle: str) -> bool:
    try:
        return needle.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False
