import shlex

import pytest

from fabfile.dumps import DumpInfo
from fabfile.errors import InputError
from fabfile.inventory import SiteSettings
from fabfile.plan import Preflight, RollbackOptions, apply_plan, build_plan, reset_plan
from fabfile.probes import Backup, Container, Readback, SiteState
from fabfile.report import Printer
from fabfile.runner import Outcome, Runner
from tests.fakes import FakeContext

SITE = SiteSettings(name="s1", host="s1")
TS = "20250102_030405"
RUN = {n: Container(n, "running", image="timescale/timescaledb:latest-pg16" if n == "netmon-db" else "x")
       for n in SITE.containers.values()}


def migrated(**kw) -> SiteState:
    state = SiteState(
        docker=True, app_dir=True, compose_file=True, files=["docker-compose.yml", "scripts/init.sql"],
        db_image="timescale/timescaledb:latest-pg16", db_command="postgres -c shared_preload_libraries=timescaledb",
        containers=dict(RUN), db_answers=True,
        databases={"netmon": True, "postgres": True, "template1": True, "template0": False},
        extension={"netmon": True, "postgres": False, "template1": False},
        preload="timescaledb", preload_source="command line",
        relations={"flow_records": ("r", 4), "flow_summary_5m": ("r", 0)}, hypertables=["flow_records"],
        table_count=32, db_size=10_000_000, git=True, git_history=[("bbb", "tsdb"), ("aaa", "plain")],
        backups=[Backup("/root/netmon_pre_tsdb_20250101_000000.dump", 100, 10, True)],
    )
    for k, v in kw.items():
        setattr(state, k, v)
    return state


def keys(plan):
    return [s.key for s in plan.steps]


def test_clean_plan_order_on_migrated_site():
    plan = build_plan(SITE, Preflight(migrated(), revision="aaa"), RollbackOptions(mode="clean"), TS)
    assert keys(plan) == ["safety-dump", "drop-flow-tables", "stop-stack", "revert-files", "start-db", "start-app"]
    drop = plan.steps[1].commands[0].cmd
    sql = shlex.split(drop)[-1]
    assert sql.index("DROP TABLE IF EXISTS flow_records") < sql.index("DROP EXTENSION IF EXISTS timescaledb CASCADE")
    assert "DISABLE" not in sql  # TimescaleDB image still runs: the extension works
    assert plan.safety_dump == f"/root/netmon_pre_rollback_{TS}.dump"
    assert "git -C /root/netmon checkout aaa --" in plan.steps[3].commands[-1].cmd
    assert any("compose file's command" in f for f in plan.findings)


def test_cagg_is_dropped_as_materialized_view_first():
    state = migrated(caggs=["flow_summary_5m"], relations={"flow_records": ("r", 4), "flow_summary_5m": ("m", 0)})
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    sql = shlex.split(plan.steps[1].commands[0].cmd)[-1]
    assert "DROP MATERIALIZED VIEW IF EXISTS flow_summary_5m" in sql and "DROP TABLE IF EXISTS flow_summary_5m" not in sql
    assert sql.index("MATERIALIZED VIEW") < sql.index("flow_records")


def test_fresh_volume_cleans_template1_postgres_and_postgresql_conf():
    state = migrated(extension={"netmon": True, "postgres": True, "template1": True},
                     preload="timescaledb", preload_source="configuration file",
                     preload_files=[("/var/lib/postgresql/data/postgresql.conf", 700, "timescaledb")])
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    other = [s for s in plan.steps if s.key == "clean-other-dbs"][0]
    assert [shlex.split(c.cmd)[shlex.split(c.cmd).index("-d") + 1] for c in other.commands] == ["template1", "postgres"]
    pre = [s for s in plan.steps if s.key == "preload"][0].commands[0].cmd
    assert "NR==n" in pre and "postgresql.conf" in pre and "n=700" in pre


@pytest.mark.parametrize(("setting", "sql"), [
    ("timescaledb", "ALTER SYSTEM RESET shared_preload_libraries"),
    ("timescaledb,pg_stat_statements", "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"),
])
def test_alter_system_preload_never_empty_string(setting, sql):
    state = migrated(preload_files=[("/var/lib/postgresql/data/postgresql.auto.conf", 3, setting)])
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    cmd = [s for s in plan.steps if s.key == "preload"][0].commands[0].cmd
    assert shlex.split(cmd)[-1] == sql and "= ''" not in shlex.split(cmd)[-1]


def test_restore_plan_side_database_then_swap_then_drop_old():
    dump = DumpInfo("/root/netmon_pre_tsdb_20250101_000000.dump",
                    readback=Readback(counts={"public.flow_records": 10, "public.users": 1}, complete=True, exit=0))
    plan = build_plan(SITE, Preflight(migrated(), dump=dump, revision="aaa"), RollbackOptions(mode="restore"), TS)
    assert keys(plan) == ["safety-dump", "restore-side", "stop-writers", "swap", "drop-old", "stop-stack",
                          "revert-files", "start-db", "start-app"]
    side = plan.steps[1].commands
    assert "TEMPLATE template0" in side[1].cmd and f"netmon_restore_{TS}" in side[1].cmd
    assert "-j" in side[2].cmd and "--no-owner" in side[2].cmd and f"/tmp/netmon_restore_{TS}.dump" in side[2].cmd
    # the count check judges against the dump
    assert side[3].check(Outcome("x", 0, "public.flow_records|10\npublic.users|1\n")) is None
    assert "has 9 rows" in side[3].check(Outcome("x", 0, "public.flow_records|9\npublic.users|1\n"))
    swap = shlex.split(plan.steps[3].commands[0].cmd)
    stmts = [swap[i + 1] for i, w in enumerate(swap) if w == "-c"]
    assert stmts[0].endswith("ALLOW_CONNECTIONS false") and "pg_terminate_backend" in stmts[1]
    assert stmts[2] == f'ALTER DATABASE "netmon" RENAME TO "netmon_old_{TS}"'
    assert stmts[-1] == f'ALTER DATABASE "netmon_restore_{TS}" RENAME TO "netmon"'


def test_rerun_after_swap_only_drops_old_and_continues():
    state = migrated(databases={"netmon": True, "postgres": True, "template1": True, "netmon_old_20250101_000000": True},
                     extension={"netmon": False, "postgres": False, "template1": False},
                     relations={"flow_records": ("r", 0), "flow_summary_5m": ("r", 0)}, hypertables=[],
                     backups=[Backup("/root/netmon_pre_rollback_20250101_000000.dump", 5, 1, True)])
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="restore"), TS)
    assert keys(plan)[:1] == ["drop-old"] and "restore-side" not in keys(plan)


def test_already_rolled_back_plans_nothing():
    plain = {n: Container(n, "running", image="postgres:16-alpine") for n in SITE.containers.values()}
    state = migrated(db_image="postgres:16-alpine", db_command="", containers=plain, preload="pg_stat_statements",
                     extension={"netmon": False, "postgres": False, "template1": False},
                     relations={"flow_records": ("r", 0), "flow_summary_5m": ("r", 0)}, hypertables=[])
    plan = build_plan(SITE, Preflight(state), RollbackOptions(mode="clean"), TS)
    assert plan.already_done and plan.steps == []


def test_db_that_cannot_start_gets_the_fallback():
    state = migrated(db_answers=False, db_image="postgres:16-alpine", db_command="",
                     compose_text="services:\n  db:\n    image: postgres:16-alpine\n",
                     containers={**RUN, "netmon-db": Container("netmon-db", "restarting", image="postgres:16-alpine")})
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    assert keys(plan) == ["fallback-start"] and plan.steps[0].replan
    write = [c for c in plan.steps[0].commands if c.stdin][0]
    assert "shared_preload_libraries=" in write.stdin


def test_plain_image_with_extension_disables_event_triggers_first():
    plain = {**RUN, "netmon-db": Container("netmon-db", "running", image="postgres:16-alpine")}
    state = migrated(containers=plain, db_image="postgres:16-alpine")
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    sql = shlex.split([s for s in plan.steps if s.key == "drop-flow-tables"][0].commands[0].cmd)[-1]
    assert sql.index("ALTER EVENT TRIGGER") < sql.index("DROP TABLE")


def test_dry_run_apply_sends_nothing_and_prints_every_change():
    plan = build_plan(SITE, Preflight(migrated(), revision="aaa"), RollbackOptions(mode="clean"), TS)
    c = FakeContext()
    printer = Printer("s1", quiet=True)
    apply_plan(Runner(c, "s1", printer=printer, dry_run=True), plan)
    assert c.calls == []
    printed = "\n".join(printer.lines)
    for step in plan.steps:
        for command in step.commands:
            assert command.display() in printed


def test_options_validation():
    with pytest.raises(InputError, match="unknown mode 'fast'"):
        RollbackOptions(mode="fast").validate()
    with pytest.raises(InputError, match="--dump only applies"):
        RollbackOptions(mode="clean", dump="/x").validate()


def test_reset_plan_dumps_stops_reverts_files_then_removes_the_volume():
    plan = reset_plan(SITE, Preflight(migrated(), revision="aaa", files_in_rev=["docker-compose.yml"]), TS)
    assert keys(plan) == ["safety-dump", "stop-stack", "revert-files", "remove-volume", "start-db", "start-app"]
    assert plan.safety_dump == f"/root/netmon_pre_rollback_{TS}.dump"
    # the rollback's own revert step: the files saved, then checked out at the pre-migration revision
    assert "git -C /root/netmon checkout aaa -- docker-compose.yml" in plan.steps[2].commands[-1].cmd
    assert plan.steps[3].commands[0].cmd == "docker volume rm netmon_postgres_data"
    assert "(reset)" in plan.render().splitlines()[0]


def test_reset_plan_without_a_database_skips_the_dump_and_on_plain_files_skips_the_revert():
    state = migrated(db_answers=False, db_image="postgres:16-alpine", db_command="", mentions=[])
    plan = reset_plan(SITE, Preflight(state, revision="aaa"), TS)
    assert keys(plan) == ["stop-stack", "remove-volume", "start-db", "start-app"]
    assert plan.safety_dump is None and any("no safety dump" in f for f in plan.findings)


def test_unfinished_side_database_is_dropped_with_force():
    state = migrated(databases={"netmon": True, "postgres": True, "template1": True, "template0": False,
                                "netmon_restore_20250101_000000": True})
    dump = DumpInfo("/root/netmon_pre_tsdb_20250101_000000.dump", readback=Readback(counts={"public.flow_records": 3}))
    plan = build_plan(SITE, Preflight(state, dump=dump, revision="aaa"), RollbackOptions(mode="restore"), TS)
    side = next(s for s in plan.steps if s.key == "restore-side")
    assert 'DROP DATABASE IF EXISTS "netmon_restore_20250101_000000" WITH (FORCE)' in shlex.split(side.commands[0].cmd)[-1]
