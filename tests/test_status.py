from fabfile.facts.docker import Container
from fabfile.facts.host import Backup
from fabfile.inventory import SiteSettings
from fabfile.site_state import SiteState
from fabfile.status import advised_mode, signals

SITE = SiteSettings(name="s1")


def state(backend: Container) -> SiteState:
    return SiteState(db_answers=True, now=1000.0, containers={"netmon-backend": backend})


def test_a_restart_loop_is_seen_between_two_crashes_too():
    looping = [Container("netmon-backend", "restarting", restarts=1),
               Container("netmon-backend", "exited", restarts=4),
               Container("netmon-backend", "running", restarts=4, started=990.0)]  # up 10 s after its 4th restart
    for backend in looping:
        assert any("restart loop" in s for s in signals(SITE, state(backend))), backend
    settled = Container("netmon-backend", "running", restarts=1, started=100.0)  # one restart, up for 15 min since
    assert not any("restart loop" in s for s in signals(SITE, state(settled)))
    assert not signals(SITE, state(Container("netmon-backend", "running", started=995.0)))


def test_convert_is_advised_on_the_timescaledb_image_with_the_room_it_needs():
    ts = {"netmon-db": Container("netmon-db", "running", image="timescale/timescaledb:2.17.2-pg15")}
    migrated = SiteState(db_answers=True, containers=ts, hypertables=["flow_records"], hypertable_bytes=300 * 2**20,
                         db_free_kb=2 * 2**20)
    advice = advised_mode(SITE, migrated)
    assert advice.startswith("--mode=convert") and "300.0 MiB" in advice and "2.0 GiB free" in advice
    migrated.db_free_kb = 100 * 1024
    assert advised_mode(SITE, migrated).startswith("--mode=restore: convert needs about 300.0 MiB")
    down = SiteState(db_answers=False, containers=ts, hypertables=[], backups=[Backup("/root/x.dump", 1, 1, True)])
    assert advised_mode(SITE, down).startswith("--mode=restore")
    assert advised_mode(SITE, SiteState(db_answers=False, containers=ts)).startswith("--mode=clean")
