"""Entrypoint of the lab's postgres images: docker-library/postgres's docker-entrypoint.sh in Python.

`python3 pg_entrypoint.py CONTAINER_DIR`, run by the shim as root inside the container's view
(the volume on /var/lib/postgresql/data, the container's run/ on /var/run/postgresql). On an
empty data directory it initialises the cluster as the image does (initdb, listen_addresses,
the database, TimescaleDB's 000_install_timescaledb.sh, the /docker-entrypoint-initdb.d
scripts); a non-empty one is left alone, init scripts included. Then it execs the image's own
postgres binary as user postgres, so the server's real messages (e.g. the FATAL for a
preloaded library the image lacks) reach the container log.
"""

import contextlib
import gzip
import os
import pwd
import shlex
import subprocess
import sys
import time

import shim  # the stand-in's shared helpers, beside this file

PGDATA = "/var/lib/postgresql/data"
SOCKET_DIR = "/var/run/postgresql"
INITDB_D = "/docker-entrypoint-initdb.d"
ME = "/usr/local/bin/docker-entrypoint.sh"  # the name the real image's messages carry
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
READY_TIMEOUT = 60  # seconds for the temporary server to accept connections
#: the GUC TimescaleDB's library defines when it loads (src/guc.c), at its boot value: without the
#: C library a setting of that name is only a placeholder, unknown to a session that did not set it
LIBRARY_SETTINGS = ["-c", "timescaledb.restoring=off"]

UNINITIALISED_ERROR = """\
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run"."""


def say(message):
    print(message, file=sys.stderr, flush=True)


def prepare_dirs():
    """Own the data and socket dirs as postgres, as the image does before dropping root."""
    subprocess.run(["chown", "-R", "postgres:postgres", PGDATA], check=True)
    os.chmod(PGDATA, 0o700)
    user = pwd.getpwnam("postgres")
    os.chown(SOCKET_DIR, user.pw_uid, user.pw_gid)
    os.chmod(SOCKET_DIR, 0o3777)  # noqa: S103 — the image's mode for its socket dir


def initdb(bin_dir, env):
    """initdb with the password on a pipe (as the image's <(...)), never on a command line.

    The pipe is made by a shell already running as postgres: a pipe a root process made could
    not be reopened through /dev/fd by postgres. Host connections get the password method from
    initdb itself, because here the backend connects over 127.0.0.1, where the real one comes
    from another container's address."""
    method = env.get("POSTGRES_HOST_AUTH_METHOD") or "scram-sha-256"
    argv = [f"{bin_dir}/initdb", f"--username={env['POSTGRES_USER']}", "--auth-local=trust",
            f"--auth-host={method}", *shlex.split(env.get("POSTGRES_INITDB_ARGS", ""))]
    subprocess.run([*AS_POSTGRES, "bash", "-c", 'exec "$@" --pwfile=<(cat)', "initdb", *argv],
                   input=env.get("POSTGRES_PASSWORD", "").encode() + b"\n", check=True, env=env)
    with open(f"{PGDATA}/pg_hba.conf", "a") as f:
        f.write(f"\nhost all all all {method}\n")
    with open(f"{PGDATA}/postgresql.conf", "a") as f:
        f.write("listen_addresses = '*'\n")


def server_settings(cfg):
    """The image's library, when it has one, defines its setting (images.py library_settings, for the host's servers)."""
    return LIBRARY_SETTINGS if os.path.exists(f"{cfg['pg_bin']}/../lib/timescaledb.so") else []


@contextlib.contextmanager
def temp_server(cfg, args, env):
    """The image's postgres on the socket only, for the init steps; stopped (fast) afterwards."""
    server = subprocess.Popen([*AS_POSTGRES, f"{cfg['pg_bin']}/postgres", "-D", PGDATA, *server_settings(cfg),
                               "-c", "listen_addresses=", "-p", "5432", *args], env=env)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        probe = ["pg_isready", "-q", "-h", SOCKET_DIR, "-p", "5432", "-U", env["POSTGRES_USER"], "-d", "postgres"]
        while subprocess.run(probe, env=env).returncode:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(1)
            time.sleep(0.1)
        yield
    finally:
        if server.poll() is None:
            server.send_signal(2)  # SIGINT: fast shutdown, as pg_ctl -m fast
            server.wait()


def psql(env, database, *args, script=None):
    """psql as the image's docker_process_sql runs it; SCRIPT, if given, on standard input."""
    argv = ["psql", "-v", "ON_ERROR_STOP=1", "--username", env["POSTGRES_USER"], "--no-password",
            "--no-psqlrc", "--dbname", database, *args]
    subprocess.run(argv, env=env, input=script, check=True)


def init_scripts(cfg):
    """(container path, host path) of the files bind-mounted into /docker-entrypoint-initdb.d.

    They are read from their host path: the view binds only directories the site already has."""
    scripts = [(m["target"], m["source"]) for m in cfg["mounts"]
               if m["type"] == "bind" and os.path.dirname(m["target"]) == INITDB_D]
    return sorted(scripts)


def initialise(cfg, args, env):
    bin_dir = cfg["pg_bin"]
    initdb(bin_dir, env)
    with temp_server(cfg, args, env):
        database = env["POSTGRES_DB"]
        if database != "postgres":
            quoted = database.replace('"', '""')
            psql(env, "postgres", "-c", f'CREATE DATABASE "{quoted}" ;')
        if cfg["runtime"] == "timescaledb":  # the image's 000_install_timescaledb.sh
            say(f"{ME}: running {INITDB_D}/000_install_timescaledb.sh")
            for db in dict.fromkeys(["postgres", "template1", database]):
                psql(env, db, "-c", "CREATE EXTENSION IF NOT EXISTS timescaledb CASCADE;")
        for target, source in init_scripts(cfg):
            if target.endswith(".sql"):
                say(f"{ME}: running {target}")
                psql(env, database, "-f", source)
            elif target.endswith(".sql.gz"):
                say(f"{ME}: running {target}")
                with gzip.open(source) as f:
                    psql(env, database, script=f.read())
            elif target.endswith(".sh"):
                say(f"{ME}: running {target}")
                subprocess.run(["bash", source], env=env, check=True)
            else:
                say(f"{ME}: ignoring {target}")
    say("\nPostgreSQL init process complete; ready for start up.\n")


def main(cdir):
    cfg = shim.read_json(os.path.join(cdir, "config.json"))
    args = cfg["cmd"]
    if args[0].startswith("-"):
        args = ["postgres", *args]
    if args[0] != "postgres":  # like the image: any other command runs as given
        os.execvp(args[0], args)  # noqa: S606
    env = dict(os.environ)
    env.setdefault("POSTGRES_USER", "postgres")
    env.setdefault("POSTGRES_DB", env["POSTGRES_USER"])
    prepare_dirs()
    if not os.path.exists(f"{PGDATA}/PG_VERSION"):
        if not env.get("POSTGRES_PASSWORD") and env.get("POSTGRES_HOST_AUTH_METHOD") != "trust":
            say(UNINITIALISED_ERROR)
            sys.exit(1)
        initialise(cfg, args[1:], env)
    else:
        say("\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n")
    server = [*AS_POSTGRES, "--pdeathsig", "KILL", "--", f"{cfg['pg_bin']}/postgres", "-D", PGDATA,
              *server_settings(cfg), *args[1:]]
    os.execvpe(server[0], server, env)  # noqa: S606 — the server becomes the container's main process


if __name__ == "__main__":
    main(sys.argv[1])
