from fabfile.inventory import SiteSettings
from fabfile.probes import Container, SiteState
from fabfile.status import signals

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
