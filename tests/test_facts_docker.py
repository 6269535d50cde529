"""Docker facts (fabfile/facts/docker.py): container states from `docker inspect`, the plain image."""

import shlex
import subprocess

import pytest

from fabfile.facts import docker
from fabfile.facts.parts import Unknown, keyed
from fabfile.inventory import SiteSettings
from tests.fakes import recorded


def test_inspect_states_with_and_without_health():
    text = ("/netmon-db|running|healthy|0|timescale/timescaledb:latest-pg16\n"
            "/netmon-backend|restarting||7|netmon-backend\n"
            "/netmon-redis|exited|<no value>|0|redis:7-alpine\n")
    got = docker.parse_inspect(text)
    assert got["netmon-db"].status == "running" and got["netmon-db"].health == "healthy"
    assert got["netmon-backend"].restarts == 7 and got["netmon-backend"].status == "restarting"
    assert got["netmon-redis"].health == ""


def test_inspect_started_at_as_docker_prints_it():
    got = docker.parse_inspect("/netmon-backend|running||3|netmon-backend|2026-12-01T09:42:15.123456789Z\n"
                               "/netmon-nginx|created||0|nginx:alpine|0001-01-01T00:00:00Z\n")
    assert got["netmon-backend"].started == pytest.approx(1796118135.123, abs=0.01)
    assert got["netmon-nginx"].started is None


def test_recorded_containers_of_a_rolled_back_site():
    got = docker.parse_containers(keyed(recorded("host_probe_verify_rolled_back.txt")))
    assert list(got) == ["netmon-db", "netmon-redis", "netmon-backend", "netmon-frontend", "netmon-nginx"]
    assert got["netmon-db"].image == "postgres:16-alpine" and got["netmon-db"].health == "healthy"
    assert got["netmon-backend"].started == pytest.approx(got["netmon-db"].started + 2.24, abs=0.01)


def test_a_name_docker_lacks_is_missing_and_any_other_inspect_error_leaves_every_state_unknown():
    """What docker inspect prints on stdout and stderr (the script keeps both): CLI 20.10's words."""
    found = "inspect=/netmon-db|running|healthy|0|postgres:16-alpine|2026-12-01T10:00:00.5Z\n"
    got = docker.parse_containers(keyed(found + "inspect=Error: No such object: netmon-nginx\n"))
    assert list(got) == ["netmon-db"] and got["netmon-db"].status == "running"
    assert docker.parse_containers(keyed("inspect=\ninspect=Error: No such object: netmon-db\n")) == {}
    down = "inspect=Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
    assert docker.parse_containers(keyed(down)) == Unknown(
        "docker inspect failed: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?")


def test_plain_image_found_missing_or_unknown():
    assert docker.parse_image(keyed(recorded("host_probe_migrated.txt")), "plain_image") is True
    assert docker.parse_image(keyed("plain_image=no\n"), "plain_image") is False
    assert docker.parse_image(keyed("plain_image=unknown Cannot connect to the Docker daemon\n"), "plain_image") == Unknown(
        "docker image inspect failed: Cannot connect to the Docker daemon")


@pytest.mark.parametrize("answer, code, found", [
    ("sha256:4f1d9c", 0, True),
    ("Error: No such image: timescale/timescaledb:latest-pg16", 1, False),  # CLI 20.10
    ("Error response from daemon: No such image: timescale/timescaledb:latest-pg16", 1, False),  # CLI 27
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", 1,
     Unknown("docker image inspect failed: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
             "Is the docker daemon running?")),
])
def test_the_image_script_run_by_a_real_shell_reads_dockers_answers(tmp_path, answer, code, found):
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\necho {shlex.quote(answer)} >&2\nexit {code}\n" if code else
                    f"#!/bin/sh\necho {shlex.quote(answer)}\n")
    fake.chmod(0o755)
    script = docker.image_script("timescale_image", SiteSettings().timescale_image)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, check=True).stdout
    assert docker.parse_image(keyed(out), "timescale_image") == found
    assert docker.parse_image(keyed(""), "timescale_image") is None  # the line never came: not "absent"


def test_commands_name_the_site_containers_and_image_quoted():
    site = SiteSettings(plain_image="postgres:16 alpine")
    assert "docker image inspect --format '{{.Id}}' 'postgres:16 alpine'" in docker.image_script("plain_image", site.plain_image)
    assert docker.inspect_script(site).endswith(
        " netmon-db netmon-redis netmon-backend netmon-frontend netmon-nginx 2>&1 | sed 's/^/inspect=/'")
