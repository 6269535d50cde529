"""fabfile/stack.py: the start split around the downtime (the backend alone inside it, the rest
after), and the waits as one remote command each that retries on the server — run here through a
real ``sh`` with stand-in programs, and judged on their output recorded on a lab site."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from fabfile import commands as cmds
from fabfile import stack
from fabfile.errors import CommandFailed
from fabfile.inventory import SiteSettings
from fabfile.runner import Runner
from tests.fakes import FakeContext, recorded

SITE = SiteSettings(name="s1", host="s1")


def compose_args(command) -> list[str]:
    words = shlex.split(command.cmd)
    return words[words.index("compose") + 1:]


def test_the_downtime_starts_the_backend_alone_then_waits_for_its_health_in_one_command():
    up, health = stack.start_app(SITE)
    assert compose_args(up) == ["up", "-d", "--no-deps", "--pull", "never", "--no-build", "backend"]
    assert health.poll is None and health.check.kind == "http" and health.check.arg == "200"
    assert health.timeout > SITE.health_timeout  # the server-side bound ends the wait, not the SSH timeout
    assert "http://localhost:8000/api/health" in health.what and f"{SITE.health_timeout}s" in health.what
    # a stack the plan stopped whole: redis too; a finishing run builds first
    assert compose_args(stack.start_app(SITE, build=True, redis=True)[0])[-3:] == ["--build", "redis", "backend"]


def test_the_rest_starts_after_the_downtime_without_touching_the_backend_and_is_checked():
    up, running = stack.start_rest(SITE)
    assert compose_args(up) == ["up", "-d", "--no-deps", "--pull", "never", "--no-build", "redis", "frontend", "nginx"]
    assert "--build" in compose_args(stack.start_rest(SITE, build=True)[0])
    assert running.poll is None and running.timeout > stack.RUNNING_SECONDS
    assert "netmon-redis netmon-frontend netmon-nginx" in shlex.split(running.cmd)[-1]


def test_db_wait_is_one_server_side_command():
    ready = stack.wait_ready(SITE)
    assert ready.poll is None and ready.timeout > SITE.db_ready_timeout
    assert shlex.split(ready.cmd)[:2] == ["sh", "-c"] and "docker exec netmon-db pg_isready -U netmon -d netmon" in ready.cmd


@pytest.fixture
def bin_dir(tmp_path):
    """A PATH whose curl answers the codes listed in ``curl_codes`` one per call (the last one
    repeats), and whose docker answers ``docker_out`` / exits ``docker_rc``, counting calls."""
    (tmp_path / "curl").write_text('#!/bin/sh\nd=$(dirname "$0"); n=$(cat "$d/calls" 2>/dev/null || echo 0); '
                                   'echo $((n + 1)) > "$d/calls"\n'
                                   'c=$(sed -n "$((n + 1))p" "$d/curl_codes"); [ -n "$c" ] || c=$(tail -1 "$d/curl_codes")\n'
                                   'printf %s "$c"\n')
    (tmp_path / "docker").write_text('#!/bin/sh\nd=$(dirname "$0"); n=$(cat "$d/calls" 2>/dev/null || echo 0); '
                                     'echo $((n + 1)) > "$d/calls"\n'
                                     '[ "$((n + 1))" -ge "$(cat "$d/docker_ok_at")" ] && { cat "$d/docker_out"; exit 0; }\n'
                                     'echo "Error response from daemon: container abc is not running"; exit 1\n')
    for name in ("curl", "docker"):
        os.chmod(tmp_path / name, 0o700)
    return tmp_path


def sh(command: str, bin_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, cwd=bin_dir, timeout=30)


def calls(bin_dir) -> int:
    return int((bin_dir / "calls").read_text())


def test_the_health_wait_retries_on_the_server_until_200(bin_dir):
    (bin_dir / "curl_codes").write_text("000\n502\n200\n")
    out = sh(stack.wait_health(SITE).cmd, bin_dir)
    assert (out.returncode, out.stdout, calls(bin_dir)) == (0, "200\n", 3)


def test_the_health_wait_gives_up_at_its_bound_naming_what_did_not_answer(bin_dir):
    (bin_dir / "curl_codes").write_text("503\n")
    out = sh(cmds.wait_http("http://x:8000/api/health", "200", 1), bin_dir)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == "http://x:8000/api/health did not answer 200 within 1s (last answer: 503)\n"
    assert 2 <= calls(bin_dir) <= 25  # every 0.1 s for one to two seconds (never less than the bound)


def test_a_long_wait_slows_down_after_its_quick_tries(bin_dir):
    """Every 0.1 s at first, then every 0.5 s: 4 s of waiting is about 20 + 4 tries, not 40."""
    (bin_dir / "curl_codes").write_text("503\n")
    out = sh(cmds.wait_http("http://x:8000/api/health", "200", 4), bin_dir)
    assert out.returncode == 1
    assert 5 <= calls(bin_dir) <= cmds.QUICK_TRIES + 8, calls(bin_dir)  # at 0.1 s throughout: 40 or more


def test_a_nasty_url_reaches_curl_as_one_word(bin_dir):
    (bin_dir / "curl_codes").write_text("200\n")
    (bin_dir / "curl").write_text('#!/bin/sh\nfor a; do printf "%s\\n" "$a"; done > "$(dirname "$0")/args"; printf 200\n')
    url = "http://h/'$(touch pwned) `id`"
    assert sh(cmds.wait_http(url, "200", 5), bin_dir).stdout == "200\n"
    assert (bin_dir / "args").read_text().splitlines()[-1] == url and not (bin_dir / "pwned").exists()


def test_the_db_wait_retries_pg_isready_on_the_server(bin_dir):
    (bin_dir / "docker_ok_at").write_text("3\n")
    (bin_dir / "docker_out").write_text("/var/run/postgresql:5432 - accepting connections\n")
    out = sh(stack.wait_ready(SITE).cmd, bin_dir)
    assert (out.returncode, calls(bin_dir)) == (0, 3)


def test_the_running_check_names_the_containers_that_do_not_run(bin_dir):
    (bin_dir / "docker_ok_at").write_text("1\n")
    (bin_dir / "docker_out").write_text("/netmon-redis running\n/netmon-frontend exited\n/netmon-nginx running\n")
    out = sh(cmds.wait_running(["netmon-redis", "netmon-frontend", "netmon-nginx"], 1), bin_dir)
    assert out.returncode == 1 and out.stderr == "not running after 1s: /netmon-frontend exited \n"
    (bin_dir / "docker_out").write_text("/netmon-redis running\n/netmon-frontend running\n/netmon-nginx running\n")
    assert sh(stack.start_rest(SITE)[1].cmd, bin_dir).returncode == 0


@pytest.mark.parametrize(("command", "output", "words"), [
    (stack.wait_health(SITE), "wait_health_backend_stopped.txt",
     ["wait for http://localhost:8000/api/health to answer 200 (up to 180s) failed (exit 1)", "within 3s",
      "(last answer: 000)"]),
    (stack.wait_ready(SITE), "wait_ready_db_stopped.txt",
     ["wait for pg_isready (up to 120s) failed (exit 1)", "netmon-db did not accept connections within 3s",
      "is not running"]),
    (stack.start_rest(SITE)[1], "wait_running_stopped.txt",
     ["check netmon-redis, netmon-frontend, netmon-nginx run failed", "/netmon-redis exited /netmon-nginx exited"]),
])
def test_a_wait_that_ran_out_fails_naming_the_step_what_and_how_long(command, output, words):
    """The waits' stderr as a lab site printed it when they ran out (bounds of 3 s)."""
    runner = Runner(FakeContext([("^sh -c ", "", 1, recorded(output))]), "s1")
    runner.step = "start-app"
    with pytest.raises(CommandFailed) as err:
        runner.must(command)
    assert err.value.message.startswith("step 'start-app' on s1: ")
    for word in words:
        assert word in err.value.message


def test_a_health_wait_that_ends_without_200_is_still_a_failure():
    runner = Runner(FakeContext([("^sh -c ", "502\n", 0)]), "s1")
    with pytest.raises(CommandFailed, match="health answered 502"):
        runner.must(stack.wait_health(SITE))
