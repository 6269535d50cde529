import json
import re
import shlex

import pytest

from fabfile import dumps, journal
from fabfile.commands import Command, Expect
from fabfile.dumps import DumpInfo
from fabfile.errors import CommandFailed, InputError, PreflightError
from fabfile.expect import judge
from fabfile.facts.docker import Container
from fabfile.facts.dumps import Readback
from fabfile.facts.host import Backup
from fabfile.inventory import SiteSettings
from fabfile.plan import Plan, Preflight, RollbackOptions, Step, apply_plan, build_plan, finish_plan, reset_plan
from fabfile.report import Printer
from fabfile.runner import Outcome, Runner
from fabfile.site_state import SiteState
from tests.fakes import BATCH, FakeContext, run_locally

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
        plain_image=True, timescale_image=True, build_services=["backend"],
    )
    for k, v in kw.items():
        setattr(state, k, v)
    return state


def keys(plan):
    return [s.key for s in plan.steps]


def step(plan, key):
    return next(s for s in plan.steps if s.key == key)


def test_clean_plan_order_on_migrated_site():
    plan = build_plan(SITE, Preflight(migrated(), revision="aaa"), RollbackOptions(mode="clean"), TS)
    assert keys(plan) == ["capture", "safety-dump", "revert-files", "build", "stop-writers", "keep-written",
                          "drop-flow-tables", "start-db", "start-app", "start-rest", "copy-at-stop", "drop-capture"]
    # the site is down only from the writers' stop to the backend's health
    assert [s.key for s in plan.steps if s.downtime] == ["stop-writers", "keep-written", "drop-flow-tables", "start-db",
                                                         "start-app"]
    assert "pg_terminate_backend" in step(plan, "stop-writers").commands[1].cmd  # before the drops' locks
    # what the writers add after the safety dump: logged from before it, kept in one copy after the stop
    assert "CREATE TRIGGER netmon_rollback_capture" in step(plan, "capture").commands[0].stdin
    assert plan.undo and plan.undo_steps == ["capture", "safety-dump"]
    keep = shlex.split(step(plan, "keep-written").commands[0].cmd)
    assert "LOCK TABLE ONLY public.\"flow_records\" IN EXCLUSIVE MODE" in keep and "COMMIT" in keep
    at_stop = f"/root/netmon_pre_rollback_{TS}_at_stop.dump"
    copy = step(plan, "copy-at-stop")
    assert copy.done.cmd == dumps.sealed_probe(at_stop).cmd
    assert any(f"docker cp /root/netmon_pre_rollback_{TS}.dump " in c.cmd for c in copy.commands)
    assert [c.check.arg for c in copy.commands if c.check is not None and c.check.kind == "seal"] == [at_stop]
    drop = step(plan, "drop-capture").commands
    assert not [c.cmd for st in plan.steps for c in st.commands if "\n" in c.cmd]  # the plan prints one line each
    assert at_stop in drop[0].what and "DROP SCHEMA IF EXISTS netmon_rollback CASCADE" in drop[1].cmd


def test_cagg_is_dropped_as_materialized_view_first():
    state = migrated(caggs=["flow_summary_5m"], relations={"flow_records": ("r", 4), "flow_summary_5m": ("v", 0)})
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    sql = shlex.split(step(plan, "drop-flow-tables").commands[0].cmd)[-1]
    assert "DROP MATERIALIZED VIEW IF EXISTS flow_summary_5m" in sql and "DROP TABLE IF EXISTS flow_summary_5m" not in sql
    assert sql.index("MATERIALIZED VIEW") < sql.index("flow_records")


def test_cagg_on_the_plain_image_is_dropped_as_a_view():
    plain = {**RUN, "netmon-db": Container("netmon-db", "running", image="postgres:16-alpine")}
    state = migrated(caggs=["flow_summary_5m"], relations={"flow_records": ("r", 4), "flow_summary_5m": ("v", 0)},
                     containers=plain, db_image="postgres:16-alpine")
    sql = shlex.split(step(build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS),
                           "drop-flow-tables").commands[0].cmd)[-1]
    assert "DROP VIEW IF EXISTS flow_summary_5m" in sql and "MATERIALIZED" not in sql
    assert sql.index("ALTER EVENT TRIGGER") < sql.index("DROP VIEW")


def test_fresh_volume_cleans_template1_postgres_and_postgresql_conf():
    state = migrated(extension={"netmon": True, "postgres": True, "template1": True},
                     preload="timescaledb", preload_source="configuration file",
                     preload_files=[("/var/lib/postgresql/data/postgresql.conf", 700, "timescaledb")])
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    other = [s for s in plan.steps if s.key == "clean-other-dbs"][0]
    assert [shlex.split(c.cmd)[shlex.split(c.cmd).index("-d") + 1] for c in other.commands] == ["template1", "postgres"]
    pre = [s for s in plan.steps if s.key == "preload"][0].commands[0].cmd
    # by content, not by line number: the same command run twice changes nothing more
    assert "shared_preload_libraries" in pre and "postgresql.conf" in pre and "NR==" not in pre


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
    # the old database is converted too (online, then its last catch-up in the downtime), and dumped
    # as plain PostgreSQL once the site serves again: what it held when the writers stopped is kept
    assert keys(plan) == ["safety-dump", "restore-side", "convert-prepare", "convert-copy", "convert-check",
                          "revert-files", "build", "stop-writers", "convert-switch", "swap", "start-db", "start-app",
                          "start-rest", "copy-old", "drop-old"]
    assert [s.key for s in plan.steps if s.downtime] == ["stop-writers", "convert-switch", "swap", "start-db", "start-app"]
    assert len(step(plan, "stop-writers").commands) == 1  # the switch, and the swap, end the sessions left
    at_stop = f"/root/netmon_pre_rollback_{TS}_at_stop.dump"
    assert f"-Fc netmon_old_{TS}" in step(plan, "copy-old").commands[0].cmd and at_stop in step(plan, "drop-old").title
    side = step(plan, "restore-side").commands
    assert f'DROP DATABASE IF EXISTS "netmon_restore_{TS}" WITH (FORCE)' in side[0].cmd  # a rerun starts clean
    assert "TEMPLATE template0" in side[2].cmd and f"netmon_restore_{TS}" in side[2].cmd
    assert "-j" in side[3].cmd and "--no-owner" in side[3].cmd and f"/tmp/netmon_restore_{TS}.dump" in side[3].cmd
    # the count check judges against the dump
    assert judge(side[4].check, Outcome("x", 0, "public.flow_records|10\npublic.users|1\n")) is None
    assert "has 9 rows" in judge(side[4].check, Outcome("x", 0, "public.flow_records|9\npublic.users|1\n"))
    swap = step(plan, "swap")
    script = swap.commands[0].cmd
    # both renames in one transaction; connections allowed again on the app database if it fails
    assert (f'BEGIN; ALTER DATABASE "netmon" RENAME TO "netmon_old_{TS}"; ALTER DATABASE "netmon_restore_{TS}" '
            'RENAME TO "netmon"; ALTER DATABASE "netmon_old_' in script)
    assert script.index("ALLOW_CONNECTIONS false") < script.index("pg_terminate_backend") < script.index("BEGIN;")
    assert script.rstrip().endswith('ALLOW_CONNECTIONS true\'; exit $rc; }')
    assert judge(swap.done.check, Outcome("x", 0, "1|0\n")) is None and judge(swap.done.check, Outcome("x", 0, "0|1\n"))
    # the old database goes only once its copy is checked
    drop = step(plan, "drop-old").commands
    assert "sha256sum -c --status" in drop[0].cmd and "netmon_pre_rollback_" in drop[0].cmd and "DROP DATABASE" in drop[1].cmd


def test_restore_without_safety_dump_keeps_the_old_database():
    dump = DumpInfo("/root/netmon_pre_tsdb_20250101_000000.dump", readback=Readback(counts={"public.flow_records": 1}))
    plan = build_plan(SITE, Preflight(migrated(), dump=dump, revision="aaa"),
                      RollbackOptions(mode="restore", safety_dump=False), TS)
    assert "drop-old" not in keys(plan) and "safety-dump" not in keys(plan) and plan.kept == [f"netmon_old_{TS}"]
    assert f"netmon_old_{TS} is kept" in plan.render()
    with pytest.raises(InputError, match="no copy"):
        RollbackOptions(mode="clean", safety_dump=False).validate()


def test_clean_refuses_when_other_tables_are_hypertables():
    state = migrated(hypertables=["flow_records", "interface_metrics"])
    with pytest.raises(PreflightError, match="would empty interface_metrics.*--mode=restore"):
        build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)


def test_an_unknown_fact_refuses_the_plan():
    state = migrated(unknown={"ext:postgres": "cannot read database postgres (it does not allow connections)"})
    with pytest.raises(PreflightError, match="cannot read database postgres"):
        build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)


def test_app_database_refusing_connections_plans_the_repair_first():
    state = migrated(databases={"netmon": False, "postgres": True, "template1": True},
                     unknown={"app": "cannot read database netmon (it does not allow connections)"})
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="restore"), TS)
    assert keys(plan) == ["allow-connections"] and plan.steps[0].replan
    assert 'ALTER DATABASE "netmon" WITH ALLOW_CONNECTIONS true' in plan.steps[0].commands[0].cmd


def test_missing_plain_image_is_pulled_before_anything_stops_and_stale_partials_go():
    state = migrated(plain_image=False, partials=["/root/.netmon_pre_rollback_1.dump.partial"])
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)
    assert keys(plan)[:4] == ["remove-partials", "pull-image", "capture", "safety-dump"]
    assert step(plan, "pull-image").commands[0].cmd == "docker pull postgres:16-alpine"


def test_plan_round_trips_as_data():
    dump = DumpInfo("/root/netmon_pre_tsdb_20250101_000000.dump", readback=Readback(counts={"public.flow_records": 1}))
    plan = build_plan(SITE, Preflight(migrated(), dump=dump, revision="aaa"), RollbackOptions(mode="restore"), TS)
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.to_dict() == plan.to_dict() and again.render() == plan.render()
    assert judge(step(again, "restore-side").commands[4].check, Outcome("x", 0, "public.flow_records|1\n")) is None


def test_already_rolled_back_plans_nothing():
    plain = {n: Container(n, "running", image="postgres:16-alpine") for n in SITE.containers.values()}
    state = migrated(db_image="postgres:16-alpine", db_command="", containers=plain, preload="pg_stat_statements",
                     extension={"netmon": False, "postgres": False, "template1": False},
                     relations={"flow_records": ("r", 0), "flow_summary_5m": ("r", 0)}, hypertables=[])
    plan = build_plan(SITE, Preflight(state), RollbackOptions(mode="clean"), TS)
    assert plan.already_done and plan.steps == []


def put_back_by_hand(**kw) -> SiteState:
    """Someone put the plain image back in the compose file: the db restart-loops (it preloads timescaledb)."""
    return migrated(db_answers=False, db_image="postgres:16-alpine",
                    compose_text="services:\n  db:\n    image: postgres:16-alpine  # by hand\n"
                                 "    command: postgres -c shared_preload_libraries=timescaledb\n  redis:\n    image: redis\n",
                    containers={**RUN, "netmon-db": Container("netmon-db", "restarting", image="postgres:16-alpine")}, **kw)


def test_a_db_put_back_on_the_plain_image_by_hand_starts_on_timescaledb_again_so_the_copy_reads_every_chunk():
    plan = build_plan(SITE, Preflight(put_back_by_hand(), revision="aaa"), RollbackOptions(mode="restore"), TS)
    assert keys(plan) == ["start-db-on-timescaledb"] and plan.steps[0].replan and plan.steps[0].downtime
    write = [c for c in plan.steps[0].commands if c.stdin][0]
    assert "image: timescale/timescaledb:latest-pg16" in write.stdin and "postgres:16-alpine" not in write.stdin
    assert "redis:\n    image: redis" in write.stdin and "shared_preload_libraries=timescaledb" in write.stdin
    assert any("netmon_files_pre_rollback_" in c.cmd for c in plan.steps[0].commands)  # the hand-edited file is kept


def test_db_that_cannot_start_gets_the_fallback_when_the_timescaledb_image_is_gone():
    plan = build_plan(SITE, Preflight(put_back_by_hand(timescale_image=False), revision="aaa"),
                      RollbackOptions(mode="clean"), TS)
    assert keys(plan) == ["fallback-start"] and plan.steps[0].replan
    write = [c for c in plan.steps[0].commands if c.stdin][0]
    assert "shared_preload_libraries=" in write.stdin


def test_the_choice_between_them_refuses_while_the_timescaledb_image_is_unknown():
    state = put_back_by_hand(timescale_image=None, unknown={"timescale_image": "docker image inspect failed: daemon gone"})
    with pytest.raises(PreflightError, match="cannot read the state of s1: .*daemon gone"):
        build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="clean"), TS)


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
    assert keys(plan) == ["safety-dump", "stop-stack", "revert-files", "remove-volume", "start-db", "start-app", "start-rest"]
    assert plan.safety_dump == f"/root/netmon_pre_rollback_{TS}.dump"
    # the rollback's own revert step: the files saved, then checked out at the pre-migration revision
    assert "git -C /root/netmon checkout aaa -- docker-compose.yml" in step(plan, "revert-files").commands[-1].cmd
    assert step(plan, "remove-volume").commands[0].cmd == "docker volume rm netmon_postgres_data"
    assert "(reset)" in plan.render().splitlines()[0]


def test_reset_refuses_while_it_cannot_tell_whether_the_database_answers():
    state = migrated(db_answers=False, containers={}, unknown={"containers": "docker inspect failed: Cannot connect to "
                                                                            "the Docker daemon", "db": "x"})
    with pytest.raises(PreflightError, match="cannot read the state of s1: .*Cannot connect to the Docker daemon"):
        reset_plan(SITE, Preflight(state, revision="aaa"), TS)


def test_reset_plan_without_a_database_archives_the_volume_first():
    state = migrated(db_answers=False, db_image="postgres:16-alpine", db_command="", mentions=[])
    plan = reset_plan(SITE, Preflight(state, revision="aaa"), TS)
    assert keys(plan) == ["stop-stack", "archive-volume", "remove-volume", "start-db", "start-app", "start-rest"]
    assert plan.safety_dump == f"/root/netmon_volume_pre_reset_{TS}.tar.gz"
    assert "tar -czf" in step(plan, "archive-volume").commands[0].cmd


def compose_services(step_) -> list[str]:
    words = shlex.split(step_.commands[0].cmd)
    return words[words.index("--no-deps") + 4:]


def test_only_the_backend_starts_in_the_downtime_the_rest_after_it():
    plan = build_plan(SITE, Preflight(migrated(), revision="aaa"), RollbackOptions(mode="clean"), TS)
    assert compose_services(step(plan, "start-app")) == ["backend"] and step(plan, "start-app").downtime
    assert compose_services(step(plan, "start-rest")) == ["redis", "frontend", "nginx"]
    assert not step(plan, "start-rest").downtime and "--no-build" in step(plan, "start-rest").commands[0].cmd
    # reset stopped the whole stack: redis comes up with the backend; both build first
    reset = reset_plan(SITE, Preflight(migrated(), revision="aaa"), TS)
    assert compose_services(step(reset, "start-app")) == ["redis", "backend"]
    assert "--build" in shlex.split(step(reset, "start-rest").commands[0].cmd)
    # a finishing run: redis with the backend only when it is not running
    stopped = {**RUN, "netmon-redis": Container("netmon-redis", "exited")}
    for containers, services in ((RUN, ["backend"]), (stopped, ["redis", "backend"])):
        finish = finish_plan(SITE, migrated(containers=containers), ["backend /api/health"], TS, "s1")
        assert keys(finish) == ["start-app", "start-rest"] and compose_services(step(finish, "start-app")) == services


def test_unfinished_side_database_is_dropped_with_force():
    state = migrated(databases={"netmon": True, "postgres": True, "template1": True, "template0": False,
                                "netmon_restore_20250101_000000": True})
    dump = DumpInfo("/root/netmon_pre_tsdb_20250101_000000.dump", readback=Readback(counts={"public.flow_records": 3}))
    plan = build_plan(SITE, Preflight(state, dump=dump, revision="aaa"), RollbackOptions(mode="restore"), TS)
    left = step(plan, "drop-leftovers")
    assert 'DROP DATABASE IF EXISTS "netmon_restore_20250101_000000" WITH (FORCE)' in shlex.split(left.commands[0].cmd)[-1]


def test_convert_plan_copies_online_and_switches_in_the_downtime():
    state = migrated(caggs=["flow_summary_5m"], relations={"flow_records": ("r", 4), "flow_summary_5m": ("v", 0)},
                     hypertable_bytes=5_000_000, db_free_kb=100_000)
    plan = build_plan(SITE, Preflight(state, revision="aaa"), RollbackOptions(mode="convert"), TS)
    assert keys(plan) == ["safety-dump", "convert-prepare", "convert-copy", "convert-check", "revert-files", "build",
                          "stop-writers", "convert-switch", "start-db", "start-app", "start-rest"]
    assert [s.key for s in plan.steps if s.downtime] == ["stop-writers", "convert-switch", "start-db", "start-app"]
    assert plan.undo_steps == ["convert-prepare", "convert-copy", "convert-check"]
    assert "DROP SCHEMA netmon_rollback CASCADE" in plan.undo[0].cmd
    switch = shlex.split(step(plan, "convert-switch").commands[0].cmd)
    sql = [switch[i + 1] for i, a in enumerate(switch) if a == "-c"]
    # the sessions the stopped backend left are ended by the switch's own session, first (no docker exec of
    # their own in the downtime), then one transaction
    assert "pg_terminate_backend" in sql[0] and sql[1] == "BEGIN" and sql[-1] == "COMMIT"
    assert [c.what for c in step(plan, "stop-writers").commands] == ["stop the backend (the writer)"]
    # the aggregate goes before the hypertable it reads; the extension without CASCADE, last
    assert sql.index('DROP MATERIALIZED VIEW public."flow_summary_5m"') < sql.index('DROP TABLE public."flow_records"')
    assert sql[-3] == "DROP EXTENSION timescaledb"
    assert step(plan, "convert-switch").done is not None
    assert "if steps convert-prepare, convert-copy, convert-check fail: undo" in plan.render()
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.undo == plan.undo and again.undo_steps == plan.undo_steps


def test_convert_refuses_the_plain_image_too_little_disk_and_no_safety_dump():
    plain = dict(RUN, **{"netmon-db": Container("netmon-db", "running", image="postgres:16-alpine")})
    with pytest.raises(PreflightError, match="convert reads the hypertables through TimescaleDB"):
        build_plan(SITE, Preflight(migrated(containers=plain, db_image="postgres:16-alpine"), revision="aaa"),
                   RollbackOptions(mode="convert"), TS)
    with pytest.raises(InputError, match="--no-safety-dump with --mode=convert"):
        RollbackOptions(mode="convert", safety_dump=False).validate()


def test_a_steps_started_record_rides_first_in_its_first_script_before_its_first_command(tmp_path):
    """One script per run of a step's commands up to an output check: the journal's started record (with the
    records still pending) is written by the first of them before its first command, not on a round trip of its own."""
    server = tmp_path / "server"
    server.mkdir()
    steps = [Step("one", "the first step", [Command(f"echo a > {tmp_path}/a", what="a"),
                                            Command("echo b", what="b", check=Expect("stdout", "b")),
                                            Command(f"cat {tmp_path}/a", what="c")]),
             Step("two", "the second step", [Command("echo d", what="d"), Command("echo e", what="e")])]
    c = FakeContext([(BATCH, run_locally, 0), (r"^umask 077; printf %s |^cat ", run_locally, 0)])
    printer = Printer("s1", quiet=True)
    runner = Runner(c, "s1", printer=printer)
    apply_plan(runner, Plan("s1", "clean", TS, steps), str(server), "r1")
    # a script up to the check, the last command alone, a script for step two, the end of the run
    assert [bool(re.match(BATCH, cmd)) for cmd in c.commands] == [True, False, True, False]
    first = c.commands[0]
    assert first.index("umask 077; printf %s") < first.index('"state": "started"') < first.index(f"echo a > {tmp_path}/a")
    assert '"state": "started"' in c.commands[2] and '"key": "one", "run": "r1", "seconds"' in c.commands[2]
    records = journal.parse((server / "netmon_rollback_journal.jsonl").read_text().splitlines())
    assert [(r["key"], r["state"]) for r in records] == [("one", "started"), ("one", "done"), ("two", "started"),
                                                         ("two", "done")]
    text = "\n".join(printer.lines)
    assert text.index("[1/2] the first step ...") < text.index("[1/2] done") < text.index("[2/2] the second step ...")


def test_done_probes_run_only_when_a_run_resumes(tmp_path):
    """A plan this run built has nothing done yet: its steps run with no probe (none in the downtime).
    A resumed run probes each step and skips one that took effect before the stop."""
    def plan():
        probe = Command(f"cat {tmp_path}/swapped", what="has the swap committed", changes=False,
                        check=Expect("stdout", "1|0"), ok_codes=(0,))
        return Plan("s1", "restore", TS, [Step("swap", "swap", [Command(f"echo ran >> {tmp_path}/ran", what="swap")],
                                                downtime=True, done=probe)])
    (tmp_path / "swapped").write_text("1|0\n")
    fresh = FakeContext([(BATCH, run_locally, 0), (r"^cat |^echo ran ", run_locally, 0)])
    apply_plan(Runner(fresh, "s1"), plan())
    assert not any(cmd.startswith("cat ") for cmd in fresh.commands) and (tmp_path / "ran").read_text() == "ran\n"
    resumed = FakeContext([(BATCH, run_locally, 0), (r"^cat |^echo ran ", run_locally, 0)])
    applied = apply_plan(Runner(resumed, "s1"), plan(), resumed=True)
    assert resumed.commands == [f"cat {tmp_path}/swapped"] and (tmp_path / "ran").read_text() == "ran\n"
    assert applied.timeline[0]["skipped"] is True


def test_a_journal_that_cannot_be_written_fails_the_step_before_its_first_command(tmp_path):
    c = FakeContext([(BATCH, run_locally, 0)])
    plan = Plan("s1", "clean", TS, [Step("one", "the first step", [Command(f"touch {tmp_path}/ran", what="touch")])])
    with pytest.raises(CommandFailed) as err:
        apply_plan(Runner(c, "s1"), plan, str(tmp_path / "missing"), "r1")
    assert err.value.message.startswith("step 'one' on s1: the journal could not be written, so the step did not "
                                        "start (journal: step 1 failed (exit 1): ")
    assert "No such file or directory" in err.value.message and not (tmp_path / "ran").exists()
