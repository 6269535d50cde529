"""The lab's `timescale/timescaledb:latest-pg16` image, assembled from the host's PostgreSQL 15.

PostgreSQL finds its share and lib directories relative to its own binary, after resolving
symlinks. So an image is a directory tree `usr/lib/postgresql/15/{bin,lib}` + `usr/share/postgresql/15`
holding real copies of the programs: run from there, `postgres` reads this tree's extension
files and loads this tree's libraries. What makes it the TimescaleDB image:

- `share/.../extension/timescaledb.control` and the stand-in script (standin/timescaledb/);
- `share/.../postgresql.conf.sample` preloading timescaledb, as the real image's Dockerfile sets it,
  so every data directory initdb makes here preloads it;
- `lib/timescaledb.so`, a copy of PostgreSQL's own harmless `auth_delay.so`, so the preload loads.
  The plain image (the host's /usr/lib/postgresql/15/bin) has no such file and refuses to start
  such a data directory with PostgreSQL's own FATAL, as postgres:16-alpine does.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

HOST_BIN = Path("/usr/lib/postgresql/15/bin")
HOST_LIB = Path("/usr/lib/postgresql/15/lib")
HOST_SHARE = Path("/usr/share/postgresql/15")
BIN = Path("usr/lib/postgresql/15/bin")
LIB = Path("usr/lib/postgresql/15/lib")
SHARE = Path("usr/share/postgresql/15")
EXTENSION_SOURCE = Path(__file__).resolve().parent / "standin" / "timescaledb"
EXTENSION_FILES = ("timescaledb.control", "timescaledb--2.17.2.sql")


def library_settings(bin_dir: Path) -> list[str]:
    """Settings (-c) for `bin_dir`'s postgres: an image with TimescaleDB's library gets the GUC the
    library defines when it loads (src/guc.c), at its boot value. The stand-in's library is
    auth_delay's, so without this a session that did not set timescaledb.restoring could not show it."""
    return ["timescaledb.restoring=off"] if (Path(bin_dir).parent / "lib" / "timescaledb.so").exists() else []


def build_timescaledb_image(dest: Path) -> None:
    """Assemble the TimescaleDB image at `dest`; cheap to call again (refreshes the extension files).

    The trees are built beside `dest` and renamed into place, so `dest` is never half made even
    when two builders race or one is interrupted.
    """
    dest = Path(dest)
    if not (dest / BIN / "postgres").exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            _build_trees(work)
            work.chmod(0o755)
            os.rename(work, dest)
        except OSError:
            if not (dest / BIN / "postgres").exists():
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _install_timescaledb(dest)


def _build_trees(root: Path) -> None:
    # Every program is a real copy, not only postgres and initdb: pg_ctl (the entrypoint's
    # temporary server) and postmaster also start `postgres` found beside their resolved path.
    shutil.copytree(HOST_BIN, root / BIN, symlinks=True)
    _symlink_tree(HOST_LIB, root / LIB)
    _symlink_tree(HOST_SHARE, root / SHARE)
    shutil.copy2(HOST_LIB / "auth_delay.so", root / LIB / "timescaledb.so")
    for d in (root / "usr", root / "usr/lib", root / "usr/lib/postgresql", root / "usr/share",
              root / "usr/share/postgresql"):
        d.chmod(0o755)


def _symlink_tree(src: Path, dest: Path) -> None:
    """Like `cp -rs`: real directories, every file a symlink to the host's."""
    shutil.copytree(src, dest, symlinks=True, copy_function=lambda s, d: os.symlink(os.path.abspath(s), d))


def _install_timescaledb(root: Path) -> None:
    """(Re)write the files that differ from the host's, each replaced atomically."""
    extension = root / SHARE / "extension"
    for name in EXTENSION_FILES:
        _replace(extension / name, (EXTENSION_SOURCE / name).read_text())
    sample = (HOST_SHARE / "postgresql.conf.sample").read_text()
    # timescaledb-docker's Dockerfile: sed "s/[#]*\s*(shared_preload_libraries)\s*=\s*'(.*)'/\1 = 'timescaledb,\2'/;s/,'/'/"
    sample = re.sub(r"^[#]*\s*(shared_preload_libraries)\s*=\s*'(.*)'",
                    lambda m: f"{m[1]} = 'timescaledb,{m[2]}'".replace(",'", "'"), sample, count=1, flags=re.M)
    _replace(root / SHARE / "postgresql.conf.sample", sample)


def _replace(path: Path, text: str) -> None:
    if path.is_symlink() or not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, path)
