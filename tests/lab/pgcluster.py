"""Throwaway PostgreSQL servers for the stand-in tests: a cluster in a temp dir, run as `postgres`."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.lab.images import HOST_BIN, library_settings


class Cluster:
    """A PostgreSQL cluster in a temp dir: socket in it, TCP on 127.0.0.1 only, run as `postgres`."""

    def __init__(self, root: Path, bin_dir: Path):
        self.root, self.bin_dir, self.password = root, bin_dir, secrets.token_urlsafe(12)
        self.data, self.sockets = root / "data", root / "run"
        self.port = free_port()
        root.mkdir(mode=0o755)
        for d in (self.data, self.sockets):
            d.mkdir(mode=0o700)
            shutil.chown(d, "postgres", "postgres")
        pwfile = root / "pw"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password + "\n")
        shutil.chown(pwfile, "postgres")
        as_postgres(bin_dir / "initdb", "-D", self.data, "-U", "netmon", f"--pwfile={pwfile}", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
        pwfile.unlink()

    @property
    def url(self) -> str:
        return f"postgresql://netmon:{self.password}@127.0.0.1:{self.port}/netmon"

    def options(self, *settings: str) -> list[str]:
        return ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-c", f"unix_socket_directories={self.sockets}",
                *(arg for s in settings for arg in ("-c", s))]

    def start(self, bin_dir: Path | None = None, *settings: str) -> None:
        """pg_ctl start of `bin_dir`'s postgres (default: the cluster's own image)."""
        bin_dir = bin_dir or self.bin_dir
        as_postgres(bin_dir / "pg_ctl", "-D", self.data, "-l", self.sockets / "log", "-w", "-t", "30",
                    "-o", " ".join(self.options(*library_settings(bin_dir), *settings)), "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            as_postgres(HOST_BIN / "pg_ctl", "-D", self.data, "-w", "-m", "fast", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, db: str = "netmon", check: bool = True) -> subprocess.CompletedProcess:
        """Run `sql` (one or more statements) with verbose errors (they carry the SQLSTATE)."""
        proc = subprocess.run([HOST_BIN / "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                               "-h", self.sockets, "-p", str(self.port), "-U", "netmon", "-d", db],
                              input=sql, capture_output=True, text=True, timeout=60)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def value(self, sql: str, db: str = "netmon") -> str:
        return self.psql(sql, db).stdout.strip()


def as_postgres(*argv) -> subprocess.CompletedProcess:
    proc = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, argv)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{argv[0]} failed: {proc.stdout}{proc.stderr}"
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_cluster(root: Path, bin_dir: Path) -> Iterator[Cluster]:
    """A cluster made and started by `bin_dir`'s PostgreSQL, with an empty database netmon; destroyed after."""
    cluster = Cluster(root, bin_dir)
    try:
        cluster.start()
        cluster.psql("CREATE DATABASE netmon", db="postgres")
        yield cluster
    finally:
        cluster.destroy()
