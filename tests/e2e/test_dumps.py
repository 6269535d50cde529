"""End-to-end: backup, fetch-dump, push-dump (sha256 at both ends), portable copies and restore-check,
and reset, read back on the server."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.helpers import PlainServer, dump_flows, fab, http_code, login_and_stats, snapshot, sql, ssh

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(sites=2, variants=["migrated", "summary-cagg"], flows=1000)


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


def flow_ids(text: str) -> set[int]:
    return {int(x) for x in text.split()}


def backup_path(out) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("backup:"))


@pytest.mark.parametrize("site", ["lab1", "lab2"])
def test_a_backup_of_a_migrated_site_restores_on_plain_postgres_with_every_row(lab, site):
    """`fab backup` while the backend ingests, a chunk compressed first: restored by the test onto the
    plain binaries with pg_restore alone, it holds every flow the hypertable held when the copy began
    (and none it never held), the compressed chunk's rows, the cagg's rows (lab2), no TimescaleDB."""
    chunk = sql(lab, site, "SELECT compress_chunk(c) FROM show_chunks('flow_records') c LIMIT 1")
    # buckets the rollup no longer recomputes (it redoes the last two while the backend runs); one clock
    cutoff = (datetime.now(UTC) - timedelta(minutes=15)).isoformat()
    summary = ("SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM flow_summary_5m t "
               f"WHERE bucket < '{cutoff}';")  # noqa: S608
    ids = "SELECT coalesce(string_agg(id::text, ' '), '') FROM "
    committed = flow_ids(ssh(lab, site, "cat /root/netmon-lab/committed_flow_ids"))  # read first: all in `before`
    only, compressed, before, relkind, summary_before = sql(lab, site, (
        f"SELECT count(*) FROM ONLY {chunk}; {ids}{chunk}; {ids}flow_records; "  # noqa: S608
        f"SELECT relkind FROM pg_class WHERE oid = 'flow_summary_5m'::regclass; {summary}")).splitlines()
    assert only == "0" and flow_ids(compressed)  # the chunk's rows live in the compressed store now
    assert relkind == ("v" if site == "lab2" else "r") and int(summary_before.split()[0]) > 0
    sql(lab, site, "CREATE DATABASE netmon_portable_20000101_000000", db="postgres")  # as a copy that died leaves it
    path = backup_path(fab(lab, site, "backup"))
    after, scratch, extension = sql(lab, site, (
        f"{ids}flow_records; SELECT count(*) FROM pg_database WHERE datname LIKE 'netmon_portable%'; "
        "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")).splitlines()
    assert committed <= flow_ids(before) <= flow_ids(after)
    plain = PlainServer(lab, site)
    try:
        out = plain.restore(path)
        assert "error" not in out.lower(), out
        restored, summary_restored, facts = plain.sql(
            f"{ids}flow_records; {summary} SELECT (SELECT last_value FROM flow_records_id_seq), "
            "(SELECT relkind FROM pg_class WHERE oid = 'flow_summary_5m'::regclass), "
            "(SELECT count(*) FROM pg_constraint WHERE conrelid = 'flow_summary_5m'::regclass AND contype = 'p'), "
            "(SELECT count(*) FROM pg_extension WHERE extname LIKE '%timescale%'), "
            "(SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%timescaledb%'), "
            "(SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ts\\_%'), (SELECT count(*) FROM pg_inherits), "
            "(SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_type = 'BASE TABLE')").splitlines()
    finally:
        plain.close()
    restored_ids = flow_ids(restored)
    assert flow_ids(before) <= restored_ids <= flow_ids(after), (len(before), len(restored_ids), len(after))
    assert flow_ids(compressed) <= restored_ids and committed <= restored_ids
    assert summary_restored == summary_before  # what the aggregate (lab2) or the table showed, exactly
    last_value, kind, keys, *no_timescaledb, tables = facts.split("|")
    assert int(last_value) >= max(restored_ids)  # sequences carry their values
    assert (kind, keys) == ("r", "1")  # the application's table, with its ON CONFLICT key
    assert no_timescaledb == ["0", "0", "0", "0"] and tables == "32"  # no extension, schema, trigger, chunk
    # the scratch databases (this copy's, the one left before) and their files are gone; TimescaleDB stays live
    assert (scratch, extension) == ("0", "1")
    assert ssh(lab, site, f"rm {path} {path}.sha256 && docker exec netmon-db ls /tmp | grep -c netmon_portable",
               check=False) == "0"


def restore_check(lab, site: str, path: str):
    out = fab(lab, site, "restore-check", path)
    left = ssh(lab, site, "docker ps -a --format '{{.Names}}'; docker volume ls -q")
    assert "restore-check" not in left and "restore_check" not in left, left  # the throwaway is gone, pass or fail
    return out


def test_restore_check_passes_a_portable_copy_and_fails_old_style_truncated_and_changed_ones(lab):
    path = backup_path(fab(lab, "lab2", "backup"))
    out = restore_check(lab, "lab2", path)
    assert out.returncode == 0, out.stdout + out.stderr
    flows = int(sql(lab, "lab2", "SELECT count(*) FROM flow_records"))
    row = next(ln.split() for ln in out.stdout.splitlines() if ln.startswith("public.flow_records "))
    assert row[1] == row[2] and 0 < int(row[1]) <= flows and row[3] == "ok"
    assert "restore-check passed: " in out.stdout and "every count matches the dump" in out.stdout
    # what the tool made before portable copies: a plain pg_dump of the migrated database
    ssh(lab, "lab2", "docker exec netmon-db pg_dump -U netmon -Fc netmon > /root/old_style.dump")
    assert dump_flows(lab, "lab2", "/root/old_style.dump")[0] == 0  # its flows are in chunk tables
    ssh(lab, "lab2", f"head -c 50000 {path} > /root/truncated.dump; cp {path} /root/changed.dump && "
                     f"sed 's/ .*/  changed.dump/' {path}.sha256 > /root/changed.dump.sha256 && "
                     "printf x | dd of=/root/changed.dump bs=1 seek=30000 conv=notrunc 2>/dev/null")
    for name, why in (("old_style.dump", "does not restore on postgres:16-alpine with pg_restore alone"),
                      ("truncated.dump", "is truncated or damaged"),
                      ("changed.dump", "does not match its recorded sha256")):
        out = restore_check(lab, "lab2", f"/root/{name}")
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1, out.stdout + out.stderr
        assert lines[0].startswith(f"error: restore-check failed: /root/{name} ") and why in lines[0], lines[0]
    ssh(lab, "lab2", f"rm /root/old_style.dump /root/truncated.dump /root/changed.dump /root/changed.dump.sha256 "
                     f"{path} {path}.sha256")


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
