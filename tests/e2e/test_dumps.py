"""End-to-end: backup, fetch-dump, push-dump (sha256 at both ends) and reset, read back on the server."""

from __future__ import annotations

import hashlib

import pytest

from tests.e2e.helpers import fab, http_code, login_and_stats, snapshot, sql, ssh

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=2, variants=["migrated", "migrated"], flows=1000)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remote_sha(lab, site: str, path: str) -> str:
    return ssh(lab, site, f"sha256sum {path}").split()[0]


def test_backup_is_whole_sealed_and_downloaded(lab, tmp_path):
    out = fab(lab, "lab1", "backup", "--download", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    path = next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("backup:"))
    assert path.startswith("/root/netmon_pre_tsdb_") and path.endswith(".dump")
    assert ssh(lab, "lab1", f"cd /root && sha256sum -c {path}.sha256 >/dev/null && echo ok") == "ok"
    # read back whole, in the container, every byte
    ssh(lab, "lab1", f"docker cp {path} netmon-db:/tmp/check.dump && docker exec netmon-db pg_restore -f /dev/null "
                     "/tmp/check.dump && docker exec netmon-db rm /tmp/check.dump")
    assert ssh(lab, "lab1", "ls -a /root | grep -c partial || true") == "0"
    local = tmp_path / path.rsplit("/", 1)[1]
    assert sha256(local) == remote_sha(lab, "lab1", path)


def test_a_backup_of_the_migrated_database_is_flagged_and_not_restored(lab):
    """`fab backup` after the migration makes the newest netmon_pre_tsdb_*.dump a TimescaleDB copy."""
    out = fab(lab, "lab1", "backup")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "note: netmon holds TimescaleDB" in out.stdout
    dumps = ssh(lab, "lab1", "ls /root/netmon_pre_tsdb_*.dump | sort").split()
    before = snapshot(lab, "lab1")
    out = fab(lab, "lab1", "rollback", "--mode=restore", "--yes")
    assert out.returncode == 2
    error = out.stderr.strip().splitlines()[-1]
    assert f"{dumps[-1]} is not a pre-migration backup" in error and f"--dump={dumps[-2]}" in error
    assert snapshot(lab, "lab1") == before
    ssh(lab, "lab1", f"rm {dumps[-1]} {dumps[-1]}.sha256")


def test_fetch_then_push_dump_checks_sha256_at_both_ends(lab, tmp_path):
    newest = ssh(lab, "lab1", "ls /root/netmon_pre_tsdb_*.dump | sort | head -1")
    out = fab(lab, "lab1", "fetch-dump", f"--dump={newest}", f"--to={tmp_path}")
    assert out.returncode == 0, out.stdout + out.stderr
    local = tmp_path / newest.rsplit("/", 1)[1]
    assert sha256(local) == remote_sha(lab, "lab1", newest)
    copy = tmp_path / "netmon_pre_tsdb_20000101_000000.dump"
    local.rename(copy)
    out = fab(lab, "lab2", "push-dump", str(copy))
    assert out.returncode == 0, out.stdout + out.stderr
    remote = f"/root/{copy.name}"
    assert remote_sha(lab, "lab2", remote) == sha256(copy)
    assert ssh(lab, "lab2", f"cd /root && sha256sum -c {copy.name}.sha256 >/dev/null && echo ok") == "ok"
    ssh(lab, "lab2", f"rm {remote} {remote}.sha256")


def test_fetch_of_a_missing_dump_is_refused(lab, tmp_path):
    out = fab(lab, "lab1", "fetch-dump", "--dump=/root/nope.dump", f"--to={tmp_path}")
    assert out.returncode != 0 and "not found" in out.stderr and not list(tmp_path.iterdir())


def test_reset_reverts_the_files_and_starts_fresh_on_plain_postgres(lab):
    devices = int(sql(lab, "lab2", "SELECT count(*) FROM devices"))
    assert devices > 0 and sql(lab, "lab2", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == "1"
    before = snapshot(lab, "lab2")
    out = fab(lab, "lab2", "reset", "--confirm=lab2x")
    assert out.returncode != 0 and "--confirm=lab2" in out.stderr and snapshot(lab, "lab2") == before
    out = fab(lab, "lab2", "reset", "--confirm=lab2")
    assert out.returncode == 0, out.stdout + out.stderr
    # the safety dump of the old database, sealed, with the old rows in it
    safety = ssh(lab, "lab2", "ls /root/netmon_pre_rollback_*.dump")
    assert len(safety.split()) == 1
    assert ssh(lab, "lab2", f"cd /root && sha256sum -c {safety}.sha256 >/dev/null && echo ok") == "ok"
    awk = r"""/^COPY public.devices /{c=1; next} c && /^\\\.$/{c=0} c{n++} END{print n+0}"""
    assert ssh(lab, "lab2", f"docker exec -i netmon-db pg_restore -f - < {safety} | awk '{awk}'") == str(devices)
    # the files at the pre-migration revision, the database fresh on the plain image
    compose = ssh(lab, "lab2", "cd /root/netmon && docker compose config --images")
    assert "postgres:16-alpine" in compose.split() and "timescale" not in compose
    pre_migration = "$(git log --format=%H -1 -S timescale -- docker-compose.yml)~1"  # the migration commit's parent
    assert ssh(lab, "lab2", f"cd /root/netmon && git diff --quiet {pre_migration} -- docker-compose.yml scripts/init.sql "
                            "backend/requirements.txt backend/app/main.py backend/app/services/flow_rollup.py "
                            "&& echo same") == "same"
    assert ssh(lab, "lab2", "docker inspect --format '{{.Config.Image}} {{.State.Status}}' netmon-db") == \
        "postgres:16-alpine running"
    for db in ("netmon", "template1", "postgres"):
        assert sql(lab, "lab2", "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'", db=db) == "0", db
    assert "timescaledb" not in sql(lab, "lab2", "SHOW shared_preload_libraries")
    assert sql(lab, "lab2", "SELECT count(*) FROM information_schema.tables WHERE table_schema='public' "
                            "AND table_type='BASE TABLE'") == "32"
    assert sql(lab, "lab2", "SELECT count(*) FROM devices") == "0"
    assert sql(lab, "lab2", "SELECT count(*) FROM users") == "1"  # the default admin only
    assert http_code(lab, "lab2", "/api/health") == "200"
    assert login_and_stats(lab, "lab2") == ("200", "200")
