"""The stack: stop the writers, compose down, start the db on the plain image and wait for
pg_isready, start the backend and wait for its health, then the rest. Each wait is one remote
command that retries on the server with a bound, no fixed sleeps."""

from __future__ import annotations

from . import commands as cmds
from .commands import Command, Expect, literal
from .inventory import SiteSettings

#: what starts after the backend, once the site serves again
REST_SERVICES = ("redis", "frontend", "nginx")
#: how long a started service may take to show as running
RUNNING_SECONDS = 30
#: a server-side wait's command timeout beyond its own bound
WAIT_MARGIN = 30


def end_sessions_sql(site: SiteSettings) -> str:
    """Ends the sessions a stopped backend leaves behind: a statement a killed client was running goes on
    in PostgreSQL (holding its locks) until it next writes to the socket."""
    return (f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {literal(site.db_name)} "  # noqa: S608
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")


def stop_writers(site: SiteSettings, end_sessions: bool = True) -> list[Command]:
    """The backend stopped, then the sessions it leaves behind ended — unless the next step's psql
    session ends them first (``end_sessions=False``: one ``docker exec`` fewer in the downtime)."""
    stop = Command(cmds.compose(site, "stop", "backend"), what="stop the backend (the writer)")
    if not end_sessions:
        return [stop]
    return [stop, Command(cmds.psql(site, end_sessions_sql(site), db="postgres"),
                          what=f"end the sessions left in {site.db_name}")]


def down(site: SiteSettings) -> list[Command]:
    return [Command(cmds.compose(site, "down"), what="docker compose down")]


def wait_ready(site: SiteSettings) -> Command:
    """pg_isready retried on the server (one remote command, bounded by ``db_ready_timeout``)."""
    return Command(cmds.wait_pg_isready(site, site.db_ready_timeout),
                   what=f"wait for pg_isready (up to {site.db_ready_timeout}s)", changes=True,
                   timeout=site.db_ready_timeout + WAIT_MARGIN)


def start_db(site: SiteSettings) -> list[Command]:
    """(Re)create the db container from the compose file as it now is, and wait for it; never a pull
    (the image was made present before the downtime)."""
    return [Command(cmds.compose(site, "up", "-d", "--pull", "never", "--no-build", "db"), what="start the database"),
            wait_ready(site)]


def health_url(site: SiteSettings) -> str:
    return site.api_url.rstrip("/") + "/api/health"


def wait_health(site: SiteSettings) -> Command:
    """/api/health retried on the server until it answers 200 (bounded by ``health_timeout``)."""
    return Command(cmds.wait_http(health_url(site), "200", site.health_timeout),
                   what=f"wait for {health_url(site)} to answer 200 (up to {site.health_timeout}s)", changes=True,
                   timeout=site.health_timeout + WAIT_MARGIN, check=Expect("http", "200"))


def start_app(site: SiteSettings, build: bool = False, redis: bool = False) -> list[Command]:
    """The downtime's last step: the backend alone (``--no-deps``: the db was waited for already,
    the other services are started after the site serves again), then its health. ``redis`` when
    the plan stopped it (the backend needs it); ``build`` builds first (a finishing run)."""
    services = ["redis", "backend"] if redis else ["backend"]
    args = ["up", "-d", "--no-deps", "--pull", "never", "--build" if build else "--no-build", *services]
    return [Command(cmds.compose(site, *args), what=f"start {', '.join(services)}", timeout=site.command_timeout),
            wait_health(site)]


def start_rest(site: SiteSettings, build: bool = False) -> list[Command]:
    """After the downtime: redis, frontend and nginx from the compose file as it now is (whatever
    changed is recreated; the backend is left alone), and a check that every one runs."""
    args = ["up", "-d", "--no-deps", "--pull", "never", "--build" if build else "--no-build", *REST_SERVICES]
    names = [site.containers[s] for s in REST_SERVICES]
    return [Command(cmds.compose(site, *args), what=f"start {', '.join(REST_SERVICES)}", timeout=site.command_timeout),
            Command(cmds.wait_running(names, RUNNING_SECONDS), what=f"check {', '.join(names)} run", changes=True,
                    timeout=RUNNING_SECONDS + WAIT_MARGIN)]


def build(site: SiteSettings, services: list[str]) -> list[Command]:
    """Build what ``up --build`` would, while the stack still serves."""
    return [Command(cmds.compose(site, "build", *services), what=f"build {', '.join(services)} (the stack still serves)",
                    timeout=site.command_timeout)] if services else []


def pull_image(site: SiteSettings) -> list[Command]:
    return [Command(f"docker pull {cmds.q(site.plain_image)}", what=f"pull {site.plain_image} before anything stops",
                    timeout=site.command_timeout)]


def remove_volume(site: SiteSettings) -> list[Command]:
    """docker volume rm; a volume that is already gone is fine (a rerun)."""
    return [Command(f"docker volume rm {cmds.q(site.volume)}", what=f"docker volume rm {site.volume}", ok_codes=(0, 1),
                    check=Expect("volume-gone"))]


def archive_volume(site: SiteSettings, path: str) -> list[Command]:
    """A tar of the volume's files, sealed like a dump (sha256 beside it, then renamed into place)."""
    tmp = f"{path.rpartition('/')[0]}/.{path.rpartition('/')[2]}.partial"
    mount = f"$(docker volume inspect --format '{{{{.Mountpoint}}}}' {cmds.q(site.volume)})"
    return [
        Command(f"rm -f {cmds.q(tmp)} && m={mount} && [ -d \"$m\" ] && tar -czf {cmds.q(tmp)} -C \"$m\" .",
                what=f"archive the volume {site.volume} to {tmp}", timeout=site.command_timeout),
        Command(cmds.seal_dump(tmp, path), what=f"record sha256 and rename to {path}", check=Expect("seal", path)),
    ]
