"""End-to-end: the real `fab` command line over SSH against lab sites; every assertion reads the
server back (psql through the site's docker, HTTP, files), not what the tool printed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAB = ROOT / ".venv/bin/fab"

pytestmark = pytest.mark.lab

VARIANTS = ["migrated", "migrated", "corrupt-backup", "rolled-back", "fresh-volume", "summary-cagg"]


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=len(VARIANTS), variants=VARIANTS)


def fab(lab, site: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NETMON_INVENTORY": str(lab.inventory), "NETMON_AUDIT_DIR": str(ROOT / "logs")}
    full_env.update(env or {})
    return subprocess.run([str(FAB), "-S", str(lab.ssh_config), "-H", site, *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ssh(lab, site: str, command: str) -> str:
    out = subprocess.run(["ssh", "-F", str(lab.ssh_config), site, command], capture_output=True, text=True, timeout=120)
    return out.stdout.strip()


def sql(lab, site: str, query: str, db: str = "netmon") -> str:
    return ssh(lab, site, f"docker exec netmon-db psql -U netmon -d {db} -X -tAc \"{query}\"")


def snapshot(lab, site: str) -> dict:
    """What the server holds: databases, extensions, flow rows, files, containers, dumps."""
    return {
        "dbs": sql(lab, site, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database", db="postgres"),
        "ext": sql(lab, site, "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension"),
        "tables": sql(lab, site, "SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"),
        "files": ssh(lab, site, "cd /root/netmon && sha256sum docker-compose.yml scripts/init.sql backend/requirements.txt "
                                "backend/app/main.py backend/app/services/flow_rollup.py; git status --porcelain"),
        "containers": ssh(lab, site, "for c in netmon-db netmon-redis netmon-backend netmon-frontend netmon-nginx; do "
                                     "docker inspect --format '{{.State.Status}}' $c; done"),
        "root": ssh(lab, site, "ls -1 /root"),
    }


def assert_rolled_back(lab, site: str, expected_tables: int = 32) -> None:
    for db in ("netmon", "template1", "postgres"):
        assert sql(lab, site, "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'", db=db) == "0", db
    rel = sql(lab, site, "SELECT relkind || ':' || (SELECT count(*) FROM pg_inherits WHERE inhparent=c.oid) "
                         "FROM pg_class c WHERE relname='flow_records' AND relnamespace='public'::regnamespace")
    assert rel == "r:0"
    assert "timescaledb" not in sql(lab, site, "SHOW shared_preload_libraries")
    assert sql(lab, site, "SELECT count(*) FROM information_schema.tables WHERE table_schema='public' "
                          "AND table_type='BASE TABLE'") == str(expected_tables)
    assert "timescale" not in ssh(lab, site, "cat /root/netmon/docker-compose.yml").lower()
    assert ssh(lab, site, "curl -s -o /dev/null -w '%{http_code}' http://localhost:8000/api/health") == "200"
    assert not [d for d in sql(lab, site, "SELECT datname FROM pg_database", db="postgres").split()
                if d.startswith(("netmon_old_", "netmon_restore_"))]


def test_dry_run_changes_nothing_and_prints_the_plan(lab):
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", "rollback", "--mode=restore", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "pg_restore" in out.stdout and "TEMPLATE template0" in out.stdout
    assert snapshot(lab, "lab1") == before


@pytest.mark.parametrize(("args", "needle"), [
    (["rollback", "--mode=fast", "--yes"], "unknown mode"),
    (["rollback", "--mode=restore", "--dump=/root/nope.dump", "--yes"], "not found"),
    (["rollback", "--mode=restore", "--dump=/root/netmon/docker-compose.yml", "--yes"], "not a pg_dump archive"),
    (["rollback", "--mode=clean", "--commit=deadbeef", "--yes"], "not found"),
    (["rollback", "--mode=clean"], "no terminal"),
])
def test_bad_input_is_one_line_and_changes_nothing(lab, args, needle):
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", *args)
    assert out.returncode != 0
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert snapshot(lab, "lab1") == before


def test_dump_holding_timescaledb_is_refused(lab):
    ssh(lab, "lab1", "docker exec netmon-db pg_dump -U netmon -Fc netmon > '/root/with tsdb $(x).dump'")
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", "rollback", "--mode=restore", "--dump=/root/with tsdb $(x).dump", "--yes")
    assert out.returncode != 0 and "TimescaleDB objects" in out.stderr
    assert snapshot(lab, "lab1") == before
    ssh(lab, "lab1", "rm -f '/root/with tsdb $(x).dump'")


def test_truncated_newest_backup_is_refused(lab):
    before = snapshot(lab, "lab3")
    out = fab(lab, "lab3", "rollback", "--mode=restore", "--yes")
    assert out.returncode != 0 and "truncated or damaged" in out.stderr
    assert snapshot(lab, "lab3") == before


def test_unknown_host_key_is_refused_before_any_command(lab, tmp_path):
    cfg = tmp_path / "ssh_config"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cfg.write_text(lab.ssh_config.read_text().replace(str(lab.known_hosts), str(empty)))
    env = {**os.environ, "NETMON_AUDIT_DIR": str(tmp_path)}
    out = subprocess.run([str(FAB), "-S", str(cfg), "-H", "lab1", "status"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "host key" in out.stderr
    assert not list(tmp_path.glob("audit_*.jsonl")) or all(p.stat().st_size == 0 for p in tmp_path.glob("audit_*"))


def test_clean_rollback(lab):
    out = fab(lab, "lab1", "rollback", "--mode=clean", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab1")
    assert ssh(lab, "lab1", "ls /root/netmon_pre_rollback_*.dump.sha256 | wc -l") == "1"
    # a second run: already rolled back, nothing changes
    before = snapshot(lab, "lab1")
    again = fab(lab, "lab1", "rollback", "--mode=clean", "--yes")
    assert again.returncode == 0 and "already rolled back" in again.stdout
    assert snapshot(lab, "lab1")["files"] == before["files"] and snapshot(lab, "lab1")["dbs"] == before["dbs"]


def test_restore_rollback_restores_the_dump(lab):
    users_before = sql(lab, "lab2", "SELECT count(*) FROM users")
    out = fab(lab, "lab2", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab2")
    assert sql(lab, "lab2", "SELECT count(*) FROM users") == users_before
    assert int(sql(lab, "lab2", "SELECT count(*) FROM flow_records")) > 0
    verify = fab(lab, "lab2", "verify", "--json")
    assert verify.returncode == 0, verify.stdout


def test_already_rolled_back_site(lab):
    before = snapshot(lab, "lab4")
    out = fab(lab, "lab4", "rollback", "--mode=clean", "--yes")
    assert out.returncode == 0 and "already rolled back" in out.stdout
    after = snapshot(lab, "lab4")
    assert after["dbs"] == before["dbs"] and after["files"] == before["files"]


def test_fresh_volume_clean(lab):
    out = fab(lab, "lab5", "rollback", "--mode=clean", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab5")
    assert "timescaledb" not in ssh(lab, "lab5", "docker exec netmon-db sh -c 'grep -h shared_preload "
                                                 "/var/lib/postgresql/data/postgresql*.conf | grep -v \"^#\"'")


def test_summary_cagg_restore(lab):
    out = fab(lab, "lab6", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert_rolled_back(lab, "lab6")
    assert sql(lab, "lab6", "SELECT relkind FROM pg_class WHERE relname='flow_summary_5m'") == "r"
