"""Compose facts (fabfile/facts/compose.py): the compose file and `docker compose ps` in every shape."""

from fabfile.facts import compose
from fabfile.facts.parts import Unknown, keyed
from fabfile.inventory import SiteSettings
from tests.fakes import recorded

NDJSON = (
    '{"Command":"docker-entrypoint.sh postgres","ExitCode":0,"Health":"","Image":"timescale/timescaledb:latest-pg16",'
    '"Name":"netmon-db","Service":"db","State":"running","Status":"Up 5 minutes"}\n'
    '{"ExitCode":1,"Image":"netmon-backend","Name":"netmon-backend","Service":"backend","State":"restarting",'
    '"Status":"Restarting (1) 3 seconds ago"}\n'
)
COMPOSE_TSDB = ("services:\n  db:\n    image: timescale/timescaledb:latest-pg16\n"
                "    command: postgres -c shared_preload_libraries=timescaledb\n")
ARRAY = ('[{"Name":"netmon-db","Service":"db","State":"running"},'
         '{"Name":"netmon-nginx","Service":"nginx","State":"exited","ExitCode":0}]')


def test_compose_ps_ndjson():
    ps = compose.parse_compose_ps(NDJSON)
    assert [(p["Service"], p["State"]) for p in ps] == [("db", "running"), ("backend", "restarting")]


def test_compose_ps_array_and_null():
    assert [p["Name"] for p in compose.parse_compose_ps(ARRAY)] == ["netmon-db", "netmon-nginx"]
    assert compose.parse_compose_ps("null\n") == []
    assert compose.parse_compose_ps("") == []


def test_compose_db_service():
    db = compose.compose_db_service(COMPOSE_TSDB)
    assert compose.is_timescale_image(db["image"]) and compose.command_preloads(db["command"])
    assert compose.compose_db_service(": [") == {}


def test_recorded_compose_file_and_ps_of_a_migrated_site():
    kv = keyed(recorded("host_probe_migrated.txt"))
    text = compose.parse_file(kv)
    assert compose.parse_services(text) == ("timescale/timescaledb:latest-pg16",
                                            "postgres -c shared_preload_libraries=timescaledb", ["backend", "frontend"])
    ps = compose.parse_ps(kv, app_dir=True)
    assert sorted(p["Service"] for p in ps) == ["backend", "db", "frontend", "nginx", "redis"]
    assert {p["State"] for p in ps} == {"running"}


def test_a_failed_ps_or_unreadable_file_is_unknown_not_empty():
    failed = keyed("ps=permission denied while trying to connect\nps=ps_rc=1\n")
    assert compose.parse_ps(failed, app_dir=True) == Unknown(
        "docker compose ps failed: permission denied while trying to connect")
    assert compose.parse_ps(failed, app_dir=False) == []  # no app directory: nothing to list
    assert compose.parse_ps(keyed("ps=not json\nps=ps_rc=0\n"), app_dir=True) == Unknown("docker compose ps printed no JSON")
    assert compose.parse_ps(keyed(""), app_dir=True) == Unknown("docker compose ps failed: no answer")
    assert compose.parse_file(keyed("compose_b64=//79\n")) == Unknown("docker-compose.yml cannot be read as text")
    assert compose.parse_file(keyed("app=yes\n")) is None  # no compose file at all


def test_ps_and_file_commands_quote_the_app_dir():
    site = SiteSettings(app_dir="/srv/net mon")
    assert "cd '/srv/net mon' 2>/dev/null && docker compose ps -a --format json" in compose.ps_script(site)
    assert "base64 -w0 '/srv/net mon'/docker-compose.yml" in compose.file_script(site)
    assert compose.backend_log_part(site, 30).startswith("out=$( cd '/srv/net mon' && docker compose logs --tail=30 backend")
