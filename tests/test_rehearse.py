"""Unit tests of rehearse.py: what it checks before starting, and the commands it builds."""

import re
import shlex

import pytest

from fabfile import rehearse as rh
from fabfile import stack
from fabfile.dumps import DumpInfo
from fabfile.errors import PreflightError
from fabfile.facts.dumps import Readback
from fabfile.inventory import SiteSettings
from fabfile.plan import Preflight, RollbackOptions, build_plan
from fabfile.procedures import HostResult
from fabfile.runner import Runner
from tests.fakes import FakeContext, probe_answers, recorded
from tests.test_plan import SITE, TS, migrated

MiB = 2**20


def plans(mode: str, measure_restart: bool = False, **state):
    """(the real run's plan, the rehearsal's plan, the titles it leaves out) for one recorded state."""
    dump = DumpInfo("/root/netmon_pre_tsdb_20250101_000000.dump", readback=Readback(counts={"public.flow_records": 1}))
    pf = Preflight(migrated(**state), revision="aaa", dump=dump if mode == "restore" else None)
    real = build_plan(SITE, pf, RollbackOptions(mode=mode), TS)
    rehearsal, skipped = rh.rehearsal_plan(SITE, pf, build_plan(rh.throwaway_site(SITE), pf, RollbackOptions(mode=mode), TS),
                                           measure_restart)
    return real, rehearsal, skipped


def test_disk_need_is_a_cluster_the_copy_the_safety_dump_and_what_the_mode_makes():
    state = migrated(db_size=100 * MiB, hypertable_bytes=80 * MiB)
    base = rh.CLUSTER_BYTES + 200 * MiB + 50 * MiB + 100 * MiB  # + the portable copy's scratch database
    assert rh.disk_need(state, "clean") == base
    assert rh.disk_need(state, "convert") == base + 80 * MiB
    assert rh.disk_need(state, "restore") == base + 100 * MiB


def test_too_little_disk_is_refused_with_the_figure_needed():
    state = migrated(db_size=100 * MiB, db_free_kb=200 * 1024, backup_free_kb=10**9)
    with pytest.raises(PreflightError) as err:
        rh.check_disk(state, "clean", "s1")
    assert "200.0 MiB free" in err.value.message and "needs about 414.0 MiB" in err.value.message
    assert "nothing was started" in err.value.message
    assert rh.check_disk(migrated(db_size=100 * MiB, db_free_kb=10**9, backup_free_kb=10**9), "clean", "s1") > 0


def test_unknown_size_or_free_space_is_refused_not_guessed():
    with pytest.raises(PreflightError, match="how big the database"):
        rh.check_disk(migrated(db_size=None, db_free_kb=10**9), "clean", "s1")
    with pytest.raises(PreflightError, match="how much disk"):
        rh.check_disk(migrated(db_free_kb=None, backup_free_kb=None), "clean", "s1")


def test_convert_rehearsal_runs_the_real_plans_database_steps_on_the_throwaway():
    real, rehearsal, skipped = plans("convert")
    assert [s.key for s in rehearsal.steps] == ["rehearse-throwaway", "rehearse-copy", "safety-dump", "convert-prepare",
                                                "convert-copy", "convert-check", "convert-switch", "start-db"]
    assert {s.key for s in real.steps} - {s.key for s in rehearsal.steps} == set(rh.LIVE_STEPS) & {s.key for s in real.steps}
    assert any("stop the writers" in t for t in skipped)
    assert_same_database_commands(real, rehearsal, {"convert-prepare", "convert-copy", "convert-check", "convert-switch"})
    assert [s.key for s in rehearsal.steps if s.downtime] == ["convert-switch", "start-db"]


def assert_same_database_commands(real, rehearsal, keys: set[str]) -> None:
    """Each of ``keys`` runs the real plan's commands, pointed at the throwaway (and its scratch directory)."""
    by_key = {s.key: s for s in real.steps}
    assert keys <= set(by_key) and keys <= {s.key for s in rehearsal.steps}, (keys, list(by_key))
    for step in rehearsal.steps:
        if step.key in keys:
            assert [c.cmd for c in step.commands] == [
                # the container, and backup_dir where the run writes (not the backup restore reads, nor the app)
                re.sub(r"(?<![\w/])/root(?=[/ ])(?!/netmon_pre_tsdb|/netmon/)", rh.scratch_dir(SITE),
                       re.sub(r"(?<=[ '])netmon-db(?=[ :'])", rh.CONTAINER, c.cmd))
                for c in by_key[step.key].commands], step.key


def test_restore_and_clean_rehearsals_run_the_real_plans_database_steps_on_the_throwaway():
    real, rehearsal, _ = plans("restore")
    assert_same_database_commands(real, rehearsal, {"restore-side", "convert-prepare", "convert-copy", "convert-check",
                                                    "convert-switch", "swap", "copy-old", "drop-old"})
    real, rehearsal, _ = plans("clean")
    assert_same_database_commands(real, rehearsal, {"capture", "keep-written", "drop-flow-tables", "copy-at-stop",
                                                    "drop-capture"})


def test_no_rehearsed_step_acts_on_the_live_stack():
    for mode in ("clean", "convert", "restore"):
        _, rehearsal, _ = plans(mode)
        for step in rehearsal.steps:
            for c in step.commands:
                assert "docker compose" not in c.cmd, (mode, step.key, c.cmd)
                if "netmon-db" in shlex.split(c.cmd.replace(":", " ")):  # reads of the live container only
                    assert c.cmd.startswith(("docker exec netmon-db pg_dump ", "docker cp netmon-db:")), c.cmd


def test_measure_restart_adds_the_live_backends_stop_and_start_last_and_only_when_asked():
    _, rehearsal, _ = plans("convert", measure_restart=True)
    step = rehearsal.steps[-1]
    assert step.key == "measure-restart" and step.downtime and rehearsal.steps[-2].key == "start-db"
    cmds = [c.cmd for c in step.commands]
    marker = f"{rh.scratch_dir(SITE)}/{rh.RESTARTING}"
    assert cmds[0] == f"touch {marker}" and cmds[-1] == f"rm -f {marker}"
    assert cmds[1:3] == [c.cmd for c in stack.stop_writers(SITE)]  # the real run's own stop of the writers
    assert cmds[1].endswith("docker compose stop backend") and "docker exec netmon-db " in cmds[2]
    assert cmds[3:5] == [c.cmd for c in stack.start_app(SITE)]  # the real run's own start and health wait
    assert cmds[3].endswith("up -d --no-deps --pull never --no-build backend") and "/api/health" in cmds[4]
    assert all(s.key != "measure-restart" for s in plans("convert")[1].steps)


def test_cleanup_starts_a_backend_an_interrupted_restart_left_stopped_then_removes_everything():
    first, *rest = rh.cleanup_commands(SITE)
    marker = f"{rh.scratch_dir(SITE)}/{rh.RESTARTING}"
    assert first.cmd.startswith(f"if [ -f {marker} ]; then ") and "up -d --no-deps --pull never --no-build backend" in first.cmd
    assert rest[-1].cmd == f"rm -rf {rh.scratch_dir(SITE)}"


def test_the_disk_is_sampled_before_each_step_that_frees_space_and_at_the_end():
    def sampled(mode):
        _, rehearsal, _ = plans(mode)
        keys = [s.key for s in rehearsal.steps]
        return keys, [keys[i - 1] for i in range(1, len(keys) + 1) if rh.peaks_after(rehearsal, i)]
    for mode in ("clean", "restore", "convert"):
        keys, after = sampled(mode)
        frees = [i for i, k in enumerate(keys) if k.startswith(rh.FREES_SPACE)]
        assert after[-1] == keys[-1] and len(after) < len(keys), (mode, keys, after)
        assert all(keys[i - 1] in after for i in frees if i > 0), (mode, keys, after)
    # convert's peak: the copies beside the originals, after convert-check, before convert-switch drops them
    assert sampled("convert")[1] == ["convert-check", "convert-switch", "start-db"]
    # restore's: the side database beside the live one, before the switch and the swap; before drop-old
    assert sampled("restore")[1] == ["convert-check", "convert-switch", "swap", "copy-old", "drop-old"]


def test_the_predicted_downtime_is_a_lower_bound_until_the_restart_is_measured():
    assert rh.downtime_text({"predicted_downtime": 1.23}) == "≥1.2s"
    assert rh.downtime_text({"predicted_downtime": 4.56, "restart_measured": True}) == "4.6s"


def test_safety_dump_goes_to_the_scratch_directory():
    _, rehearsal, _ = plans("clean")
    step = next(s for s in rehearsal.steps if s.key == "safety-dump")
    assert f"/root/netmon_rehearse/netmon_pre_rollback_{TS}.dump" in step.title


def test_a_missing_plain_image_is_pulled_first_as_the_real_run_does():
    real, rehearsal, _ = plans("restore", plain_image=False)
    assert real.steps[0].key == rehearsal.steps[0].key == "pull-image"
    assert [c.cmd for c in rehearsal.steps[0].commands] == [c.cmd for c in real.steps[0].commands]


def test_the_copy_is_restored_between_pre_and_post_restore_in_one_job():
    cmds = [c.cmd for c in rh.copy_commands(SITE)]
    assert cmds[0] == "docker exec netmon-db pg_dump -U netmon -Fc netmon > /root/netmon_rehearse/live.dump"
    pre = next(i for i, c in enumerate(cmds) if "timescaledb_pre_restore()" in c)
    restore = next(i for i, c in enumerate(cmds) if " pg_restore " in c)
    post = next(i for i, c in enumerate(cmds) if "timescaledb_post_restore()" in c)
    assert pre < restore < post
    assert cmds[restore].startswith(f"docker exec {rh.CONTAINER} pg_restore ") and " -j" not in cmds[restore]


def test_the_throwaway_is_configured_as_the_live_database():
    state = migrated()
    cmds = [c.cmd for c in rh.throwaway_commands(SITE, state, "timescale/timescaledb:latest-pg16")]
    run = next(c for c in cmds if c.startswith("docker run"))
    assert shlex.split(run)[-3:] == ["postgres", "-c", "shared_preload_libraries=timescaledb"]
    assert f"-v {rh.VOLUME}:/var/lib/postgresql/data" in run and "-p " not in run
    assert any(c.startswith("docker cp netmon-db:/var/lib/postgresql/data/postgresql.auto.conf ") for c in cmds)
    dropped = [c for c in cmds if "DROP EXTENSION" in c]  # the live site has TimescaleDB in netmon only
    assert len(dropped) == 2 and all(f"docker exec {rh.CONTAINER} " in c for c in dropped)
    fresh = migrated(extension={"netmon": True, "postgres": True, "template1": True}, db_command="")
    cmds = [c.cmd for c in rh.throwaway_commands(SITE, fresh, "timescale/timescaledb:latest-pg16")]
    assert not any("DROP EXTENSION" in c for c in cmds)
    assert next(c for c in cmds if c.startswith("docker run")).endswith("timescale/timescaledb:latest-pg16")


def test_rows_kept_and_lost_per_table():
    rows = rh.kept_and_lost({"public.a": 10, "public.b": 5, "public.c": 3}, {"public.a": 10, "public.b": 4, "public.d": 1})
    assert rows == [{"table": "public.a", "before": 10, "after": 10, "kept": 10, "lost": 0},
                    {"table": "public.b", "before": 5, "after": 4, "kept": 4, "lost": 1},
                    {"table": "public.c", "before": 3, "after": None, "kept": 0, "lost": 3},
                    {"table": "public.d", "before": None, "after": 1, "kept": 1, "lost": 0}]


def test_fleet_table_is_sorted_by_predicted_downtime_failures_last():
    def result(site, ok, down):
        return HostResult(site, "rehearse", ok, error="" if ok else "boom", data={
            "predicted_downtime": down, "timeline": [{"seconds": 1.0}], "tables": [], "peak_disk": MiB,
            "failed_step": "" if ok else "pull-image", "error": "" if ok else "step 'pull-image' on b: no registry"})
    text = rh.fleet_table([result("a", True, 3.0), result("b", False, 0.5), result("c", True, 1.2)])
    *lines, note = text.splitlines()
    sites = [line.split()[0] for line in lines[2:]]
    assert sites == ["c", "a", "b"]
    assert lines[-1].split()[2] == "-"  # a failed site predicts nothing
    assert lines[-1].endswith("pull-image: no registry")
    assert note.startswith("predicted downtime: the database steps") and "not rehearsed" in note
    measured = [result("a", True, 3.0), result("b", False, 0.5)]
    measured[0].data["restart_measured"] = True  # a site that failed measured nothing: the note is the passing sites'
    note = rh.fleet_table(measured).splitlines()[-1]
    assert "measured once (--measure-restart)" in note and "not rehearsed" not in note


def test_a_missing_database_image_is_refused_before_anything_starts():
    c = FakeContext([(r"ls-tree", "docker-compose.yml\nscripts/init.sql\n", 0), *probe_answers(),
                     (r"^docker image inspect --format '\{\{.Id\}\}' timescale/timescaledb:latest-pg16$", "[]\n", 1,
                      "Error response from daemon: No such image: timescale/timescaledb:latest-pg16\n")])
    with pytest.raises(PreflightError) as err:
        rh.rehearse(Runner(c, "s1"), SiteSettings(name="s1"), "convert", TS)
    assert "timescale/timescaledb:latest-pg16 is not on s1" in err.value.message
    assert "nothing was started" in err.value.message
    assert not any(re.search(r"docker (run|rm|cp|volume rm)|mkdir|pg_dump", cmd) for cmd in c.commands)
    assert c.commands[-1].startswith("docker image inspect")


def test_the_report_says_what_its_predicted_downtime_holds():
    report = {"timeline": [{"key": "convert-switch", "seconds": 0.4, "downtime": True, "ok": True},
                           {"key": "measure-restart", "seconds": 1.0, "downtime": True, "ok": True}],
              "tables": [], "checks": [], "not_rehearsed": ["stop the writers"], "peak_disk": MiB, "disk_needed": 2 * MiB,
              "predicted_downtime": 1.4, "restart_measured": True, "passed": True, "mode": "convert", "site": "s1"}
    text = rh.render(report)
    assert "predicted downtime: 1.4s, the database steps inside the window, measured on the copy, and the live " \
           "backend's stop and start, measured once (--measure-restart)" in text
    assert "stop the writers; the backend's stop and start were measured instead (measure-restart)" in text
    text = rh.render({**report, "restart_measured": False, "predicted_downtime": 0.4})
    assert "predicted downtime: ≥0.4s, " in text and "measured instead" not in text


def test_too_little_disk_is_refused_through_rehearse_before_anything_starts():
    db = recorded("db_probe_migrated.txt").replace("free 80511212", "free 20480")  # 20 MiB free by df
    host = recorded("host_probe_migrated.txt").replace("backup_free_kb=80512124", "backup_free_kb=40960")
    c = FakeContext([(r"ls-tree", "docker-compose.yml\nscripts/init.sql\n", 0),
                     (r"^sh -c .*docker compose version", host, 0), (r"^docker exec netmon-db sh -c .*@@ready", db, 0)])
    with pytest.raises(PreflightError) as err:
        rh.rehearse(Runner(c, "s1"), SiteSettings(name="s1"), "convert", TS)
    need = re.search(r"needs about (\S+ \S+) \((\S+ \S+) database\)", err.value.message)
    assert "s1 has 20.0 MiB free" in err.value.message and need, err.value.message
    assert need.group(1) != need.group(2) and "nothing was started" in err.value.message
    sent = [cmd for cmd in c.commands if not re.match(r"sh -c 'docker compose version|docker exec netmon-db sh -c ", cmd)]
    assert sent and not any(re.search(r"docker (run|rm|cp|volume rm|image inspect)|mkdir|pg_dump", cmd) for cmd in sent)


def test_the_predicted_downtime_is_measured_plus_estimated_parts_when_the_restart_is_estimated():
    report = {"timeline": [{"key": "convert-switch", "seconds": 0.4, "downtime": True, "ok": True}],
              "tables": [], "checks": [], "not_rehearsed": [], "peak_disk": MiB, "disk_needed": 2 * MiB,
              "predicted_downtime": 1.5, "downtime_measured": 0.4, "downtime_estimated": 1.1, "restart_measured": False,
              "restart_estimate": {"seconds": 1.1, "stop": 0.0, "start": 0.2, "commands": 0.9, "how": "its log"},
              "passed": True, "mode": "convert", "site": "s1"}
    text = rh.render(report)
    assert "predicted downtime: 1.5s (0.4s measured on the copy + 1.1s estimated), the database steps inside the " \
           "window, measured on the copy, plus the live backend's stop and start, estimated read-only" in text
    assert "the backend's stop and start, estimated: stop 0.00s, start 0.20s, commands 0.90s (its log)" in text
    assert rh.downtime_text(report) == "1.5s"
    unknown = {**report, "downtime_estimated": None, "predicted_downtime": 0.4,
               "restart_estimate": {**report["restart_estimate"], "seconds": None, "start": None}}
    assert rh.downtime_text(unknown) == "≥0.4s" and "start unknown" in rh.render(unknown)
