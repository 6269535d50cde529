"""fabfile/fleet.py: bounded parallelism, the failure budget, one row per site."""

from __future__ import annotations

import sys
import threading
import time

from fabfile.connection import RejectUnknown, make_connection
from fabfile.fleet import Connections, FleetOptions, fabric_config, failed_sites, run_fleet, summary_table, verify_matrix
from fabfile.inventory import SiteSettings
from fabfile.procedures import HostResult
from fabfile.verify import Check

SITES = [SiteSettings(name=f"s{i}", host=f"s{i}.invalid") for i in range(1, 7)]


def test_runs_at_most_parallel_sites_at_once_and_keeps_site_order():
    lock = threading.Lock()
    now = peak = 0

    def work(c, site, out):
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.05)
        out.line("working")
        with lock:
            now -= 1
        return HostResult(site.name, "t", True, summary="done")

    results = run_fleet(SITES, "t", work, FleetOptions(parallel=2, quiet=True))
    assert peak == 2
    assert [r.site for r in results] == [s.name for s in SITES]
    assert all(r.ok for r in results)
    assert results[0].data["output"] == ["[s1] working"]


def test_failure_budget_stops_new_sites_but_reports_them():
    started = []

    def work(c, site, out):
        started.append(site.name)
        return HostResult(site.name, "t", site.name != "s1", error="boom" if site.name == "s1" else "")

    results = run_fleet(SITES, "t", work, FleetOptions(parallel=1, max_failures=1, quiet=True))
    assert started == ["s1"]
    assert failed_sites(results) == [s.name for s in SITES]
    assert results[1].summary == "not started" and "max-failures 1" in results[1].error


def test_a_crash_in_one_site_is_that_sites_row():
    def work(c, site, out):
        if site.name == "s2":
            raise RuntimeError("socket closed")
        return HostResult(site.name, "t", True)

    results = run_fleet(SITES[:3], "t", work, FleetOptions(parallel=3, quiet=True))
    assert [r.ok for r in results] == [True, False, True]
    assert "socket closed" in results[1].error
    assert "s2" in summary_table(results) and "FAIL" in summary_table(results)


def test_verify_matrix_marks_failures_with_the_actual_value():
    ok = HostResult("a", "verify", True, checks=[Check("backend /api/health (runbook 4)", "200", "200", True)])
    bad = HostResult("b", "verify", False, checks=[Check("backend /api/health (runbook 4)", "200", "502", False)])
    down = HostResult("c", "verify", False, error="cannot connect to c: timed out")
    headers, rows = verify_matrix([ok, bad, down])
    assert headers == ["site", "health", "overall"]
    assert rows[0] == ["a", "ok", "healthy"]
    assert rows[1] == ["b", "FAIL: 502", "unhealthy (1 failed)"]
    assert rows[2] == ["c", "-", "unreachable: cannot connect to c: timed out"]


def test_every_connection_of_a_fleet_checks_its_own_host_keys(tmp_path):
    """Connections share one Fabric Config; hardening one must not make the next look hardened."""

    key = "AAAAC3NzaC1lZDI1NTE5AAAAIHWeDA7dEZ5R+2fmq/SeoDqRIXpYFMZ3oGiUO9oQHsKl"
    files = []
    for i in (1, 2):
        f = tmp_path / f"kh{i}"
        f.write_text(f"s{i}.invalid ssh-ed25519 {key}\n")
        files.append(f)
    config = fabric_config(None)
    conns = [make_connection(SiteSettings(name=f"s{i}", host=f"s{i}.invalid", known_hosts=str(files[i - 1])),
                             config=config) for i in (1, 2)]
    for i, c in enumerate(conns, 1):
        assert c.client.get_host_keys().lookup(f"s{i}.invalid") is not None
        assert isinstance(c.client._policy, RejectUnknown)


class _Conn:
    def __init__(self, site):
        self.site, self.closed = site, 0

    def close(self):
        self.closed += 1


def test_a_batch_and_its_preflight_share_one_connection_per_site(monkeypatch):
    made = []

    def fake_make_connection(site, config=None, connect_timeout=None):
        made.append(_Conn(site.name))
        return made[-1]

    monkeypatch.setattr("fabfile.fleet.make_connection", fake_make_connection)
    seen = []

    def work(c, site, out):
        seen.append((site.name, id(c)))
        return HostResult(site.name, "t", True)

    opts = FleetOptions(parallel=3, quiet=True)
    with Connections(opts) as conns:
        run_fleet(SITES[:3], "plan", work, opts, conns)
        run_fleet(SITES[:3], "run", work, opts, conns)
        assert len(made) == 3 and not any(c.closed for c in made)  # shared: left open between the two
    assert [c.closed for c in made] == [1, 1, 1]
    assert {name: {i for n, i in seen if n == name} for name, _ in seen} == {
        c.site: {id(c)} for c in made}  # each site's two runs got the same connection
    made.clear()
    run_fleet(SITES[:2], "alone", work, opts)  # a run of its own closes each site's connection when it is done
    assert [c.closed for c in made] == [1, 1]


def test_connections_made_by_many_workers_at_once_are_all_whole(tmp_path):
    """Fabric's Connection reads and writes the Config it is given (its ssh_config lookup, the
    runner class harden sets): workers that made theirs at the same moment from the fleet's one
    Config once got "No attribute or config key found for 'gateway'". Sixteen at once, many times."""
    (tmp_path / "known_hosts").write_text("")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: the race shows within a few rounds
    try:
        many_at_once(tmp_path)
    finally:
        sys.setswitchinterval(interval)


def many_at_once(tmp_path):
    for round_ in range(30):
        conns = Connections(FleetOptions())
        sites = [SiteSettings(name=f"s{round_}-{i}", host=f"10.0.{round_}.{i}", known_hosts=str(tmp_path / "known_hosts"))
                 for i in range(16)]
        start, errors = threading.Barrier(len(sites)), []

        def make(site, start=start, conns=conns, errors=errors):
            start.wait()
            try:
                conns.get(site)
            except Exception as err:  # noqa: BLE001 — any error is the failure this test looks for
                errors.append(repr(err))
        workers = [threading.Thread(target=make, args=(s,)) for s in sites]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        assert sorted(c.host for c in conns._by_site.values()) == sorted(s.host for s in sites)
