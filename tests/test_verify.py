"""fabfile/verify.py: every check read from the probe's two commands (recorded on lab sites),
a part that did not finish read as unknown, the password only ever on standard input."""

from __future__ import annotations

import json

from fabfile import verify
from fabfile.inventory import SiteSettings
from fabfile.runner import AuditLog, Runner
from tests.fakes import FakeContext, recorded

HOST, DB = r"^sh -c .*docker compose version", r"^docker exec netmon-db sh -c .*@@ready"
PASSWORD = "s3cret-pw"  # noqa: S105 - a test value


def _checks(host: str, db: str = "db_probe_rolled_back.txt", password: str | None = PASSWORD, tmp_path=None):
    text = recorded(host) if host.endswith(".txt") else host
    c = FakeContext([(HOST, text, 0), (DB, recorded(db), 0)])
    audit = AuditLog("s1", "verify", directory=tmp_path) if tmp_path else None
    checks = verify.verify_checks(Runner(c, "s1", audit=audit), SiteSettings(name="s1"), password, ingest_wait=30)
    return c, {ch.key: ch for ch in checks}


def test_every_check_of_a_rolled_back_site_from_two_commands(tmp_path):
    c, checks = _checks("host_probe_verify_rolled_back.txt", tmp_path=tmp_path)
    assert len(c.calls) == 2  # the host script (health, login, log, ingestion alongside) and the database probe
    assert len(checks) == 13 and all(ch.ok for ch in checks.values()), [ch for ch in checks.values() if not ch.ok]
    assert checks["ingest"].actual == "+3 (max id)" and checks["login+stats"].actual == "200"
    # the password goes on the host script's stdin only, as JSON; never on a command line
    assert json.loads(c.calls[0]["stdin"]) == {"username": "admin", "password": PASSWORD}
    assert not any(PASSWORD in call["cmd"] for call in c.calls) and c.calls[1]["stdin"] is None
    # the deliberate wait is in the audit log, apart from the commands (server clock: 0.5 s here)
    [wait] = [json.loads(ln) for f in tmp_path.glob("audit_*") for ln in f.read_text().splitlines()
              if json.loads(ln)["kind"] == "wait"]
    assert wait["what"] == "ingestion wait" and 0.4 < wait["seconds"] < 0.6


def test_a_stopped_backend_fails_health_login_and_ingestion_but_nothing_else():
    _, checks = _checks("host_probe_verify_backend_stopped.txt")
    failed = {k: ch.actual for k, ch in checks.items() if not ch.ok}
    assert failed == {"containers": "netmon-backend=exited", "health": "000", "login+stats": "login answered 000",
                      "ingest": "no new row"}


def test_a_part_that_did_not_finish_is_unknown_not_absent():
    text = recorded("host_probe_verify_rolled_back.txt")
    for cut, key in (("x.login.rc=0", "login+stats"), ("x.ingest.rc=0", "ingest"), ("x.log.rc=0", "log"),
                     ("x.health", "health")):
        kept = "\n".join(ln for ln in text.splitlines() if not ln.startswith(cut)) + "\n"
        _, checks = _checks(kept)
        assert not checks[key].ok and checks[key].actual in (
            "unknown (the login check did not finish)", "unknown (flow_records cannot be read)",
            "unknown (docker compose logs did not finish)", "no answer"), (key, checks[key].actual)
        assert all(ch.ok for k, ch in checks.items() if k != key)


def test_no_password_fails_the_login_check_and_sends_no_stdin():
    c, checks = _checks("host_probe_verify_rolled_back.txt", password=None)
    assert not checks["login+stats"].ok and "no admin password" in checks["login+stats"].actual
    assert c.calls[0]["stdin"] is None and "/api/auth/login" not in c.calls[0]["cmd"]


def test_a_state_probed_for_something_else_gets_the_parts_in_one_command():
    from fabfile import site_state  # noqa: PLC0415

    site = SiteSettings(name="s1")
    c = FakeContext([(HOST, recorded("host_probe_verify_rolled_back.txt"), 0), (DB, recorded("db_probe_rolled_back.txt"), 0)])
    runner = Runner(c, "s1")
    state = site_state.probe_site(runner, site)  # a preflight's probe: no verify parts
    assert "/api/health" not in c.calls[0]["cmd"]
    parts = recorded("host_probe_verify_rolled_back.txt")
    c.answers.insert(0, (r"^sh -c 'exec 3<&0 </dev/null; :\n", "\n".join(
        ln for ln in parts.splitlines() if ln.startswith("x.")), 0))
    checks = verify.verify_state(runner, site, state, PASSWORD)
    assert len(c.calls) == 3 and all(ch.ok for ch in checks)


def test_parsers_of_the_parts():
    assert verify.parse_ingest("x.ingest=waited 10.25 11.75\nx.ingest=+4\nx.ingest.rc=0\n") == ("+4", 1.5)
    assert verify.parse_ingest("x.ingest=Error: No such container: netmon-db\nx.ingest.rc=1\n") == ("", 0.0)
    assert verify.parse_login("x.login=401\nx.token=no\nx.login.rc=0\n") == ("401", False, "")
    assert verify.parse_login("x.login=200\n") == ("200", None, "")
    assert verify.parse_backend_log("x.log=a | ERROR boom\nx.log=b | ok\nx.log.rc=0\n") == (0, ["a | ERROR boom"])
    assert verify.parse_health("x.health.rc=7\n") == ""
