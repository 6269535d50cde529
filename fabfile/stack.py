"""The stack: stop the writers, compose down, start the db on the plain image and wait for
pg_isready, start the rest and wait for the backend's health. Polls with timeouts, no fixed sleeps."""

from __future__ import annotations

from . import commands as cmds
from .commands import Command
from .inventory import SiteSettings

APP_SERVICES = ("redis", "backend", "frontend", "nginx")


def stop_writers(site: SiteSettings) -> list[Command]:
    return [Command(cmds.compose(site, "stop", "backend"), what="stop the backend (the writer)")]


def down(site: SiteSettings) -> list[Command]:
    return [Command(cmds.compose(site, "down"), what="docker compose down")]


def start_db(site: SiteSettings) -> list[Command]:
    return [
        Command(cmds.compose(site, "up", "-d", "db"), what="start the database"),
        Command(cmds.pg_isready(site), what=f"wait for pg_isready (up to {site.db_ready_timeout}s)",
                poll=site.db_ready_timeout, changes=True, timeout=30),
    ]


def health_url(site: SiteSettings) -> str:
    return site.api_url.rstrip("/") + "/api/health"


def start_app(site: SiteSettings) -> list[Command]:
    return [
        Command(cmds.compose(site, "up", "-d", "--build", *APP_SERVICES), what="start redis, backend, frontend, nginx",
                timeout=site.command_timeout),
        Command(cmds.curl_status(health_url(site)),
                what=f"wait for {health_url(site)} to answer 200 (up to {site.health_timeout}s)",
                poll=site.health_timeout, changes=True, timeout=30,
                check=lambda r: None if r.stdout.strip() == "200" else f"health answered {r.stdout.strip() or 'nothing'}"),
    ]


def remove_volume(site: SiteSettings) -> list[Command]:
    """docker volume rm; a volume that is already gone is fine (a rerun)."""
    def judge(r) -> str | None:
        return None if r.ok or "no such volume" in (r.stderr + r.stdout).lower() else (r.stderr.strip() or "volume rm failed")
    return [Command(f"docker volume rm {cmds.q(site.volume)}", what=f"docker volume rm {site.volume}", ok_codes=(0, 1),
                    check=judge)]


def start_all(site: SiteSettings) -> list[Command]:
    return [Command(cmds.compose(site, "up", "-d"), what="docker compose up -d")]
