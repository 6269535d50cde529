"""The lab's `docker` command: answers like Docker CLI 27 with Compose v2.29 (DESIGN.md §5).

There is no Docker engine in the lab. A site's containers are directories under
SITE/docker/containers (config.json, state.json, log, tmp/, run/; see tests/lab/README.md),
each run by one shim.py process; this CLI creates, starts, stops and describes them with the
real CLI's output, error texts and exit codes, so that the rollback tool's parsers meet the
same text here as on a real server. What it does not implement fails loudly
("docker: '...' is not supported by the NetMon lab stand-in", exit 1), never silently.

Run by the site's wrapper: NETMON_LAB_SITE=SITE NETMON_LAB=LAB python3 LAB/standin/docker.py ARGS
"""

import collections
import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import shim  # beside this file: state files and the container's view, shared with the shim
import yaml

DOCKER_VERSION = "Docker version 27.5.1, build 9f9e405"
COMPOSE_VERSION = "2.29.7"
STANDIN = os.path.dirname(os.path.abspath(__file__))
PLAIN_PG_BIN = "/usr/lib/postgresql/15/bin"  # the postgres image is the host's PostgreSQL
TIMESCALE_PG_BIN = "images/timescaledb/usr/lib/postgresql/15/bin"  # under LAB, made by images.py
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PGDATA = "/var/lib/postgresql/data"
INITDB_D = "/docker-entrypoint-initdb.d"
STUB_SCRIPT = 'trap "exit 0" TERM INT QUIT; while :; do sleep 3600 & wait $!; done'
START_TIMEOUT = 10  # seconds for a shim to report the main process started
STOP_TIMEOUT = shim.STOP_GRACE
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
RUNNING = ("running", "restarting")  # what the engine lists without -a

# A stand-in image: which process plays it (runtime) and what `docker inspect` reports of it.
Image = collections.namedtuple("Image", "runtime entrypoint cmd exposed stop_signal")
POSTGRES = Image("postgres", ["docker-entrypoint.sh"], ["postgres"], ["5432/tcp"], "SIGINT")
NGINX = Image("stub", ["/docker-entrypoint.sh"], ["nginx", "-g", "daemon off;"], ["80/tcp"], "SIGQUIT")
# Which stand-in runs a service: by image name prefix, or by its build context's directory name.
IMAGES = (
    ("image", "postgres:", POSTGRES),
    ("image", "timescale/timescaledb:", POSTGRES._replace(runtime="timescaledb")),
    ("image", "redis:", Image("stub", ["docker-entrypoint.sh"], ["redis-server"], ["6379/tcp"], "SIGTERM")),
    ("image", "nginx:", NGINX),
    ("build", "backend", Image("backend", [], ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"],  # noqa: S104
                               ["8000/tcp"], "SIGTERM")),
    ("build", "frontend", NGINX),
)
# What each site's operator pulled while the registry still answered: (reference, size in bytes as
# the real image reports it). No registry answers in the lab, so these are all a daemon ever has,
# besides what it builds; `docker image rm` takes one away (the plain-image-missing variant).
PULLED = (("postgres:16-alpine", 275_036_400), ("timescale/timescaledb:latest-pg16", 1_104_000_000),
          ("redis:7-alpine", 41_167_800), ("nginx:alpine", 47_979_700), ("python:3.12-slim", 124_345_600))
PULLED_CREATED = 1732147200  # 2024-11-21: when the upstream images were built
DOCKER_HUB = "registry-1.docker.io"
PULL_FAILURE, BUILD_FAILURE = 18, 17  # compose v2.29's exit codes for these failure categories


class DockerError(Exception):
    """An error as the real CLI reports it: MESSAGE on stderr, STDOUT (if any) on stdout, CODE."""

    def __init__(self, message, code=1, stdout=None):
        super().__init__(message)
        self.code = code
        self.stdout = stdout


class Unsupported(DockerError):
    def __init__(self, what):
        super().__init__(f"docker: '{what}' is not supported by the NetMon lab stand-in")


def no_such_container(ref):
    return DockerError(f"Error response from daemon: No such container: {ref}")


def no_such_image(ref):
    return DockerError(f"Error response from daemon: No such image: {normal_ref(ref)}")


def registry_unreachable(ref, path="/v2/", method="Get"):
    """The daemon's answer when the registry of REF cannot be reached: the lab's sites resolve no
    names (their resolv.conf lists no server, so Go's resolver asks [::1]:53, which refuses)."""
    first, _, rest = ref.partition("/")
    host = first if rest and ("." in first or ":" in first or first == "localhost") else DOCKER_HUB
    port = secrets.randbelow(28000) + 32768
    return (f'{method} "https://{host}{path}": dial tcp: lookup {host} on [::1]:53: '
            f"read udp [::1]:{port}->[::1]:53: read: connection refused")


def normal_ref(ref):
    """REF as the engine names it: docker.io/library/ dropped, ":latest" added when it has no tag."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    return ref if "@" in ref or ":" in ref.rsplit("/", 1)[-1] else ref + ":latest"


def pulled_image_id(ref):
    return "sha256:" + hashlib.sha256(normal_ref(ref).encode()).hexdigest()


# ---------------------------------------------------------------- options and output

def parse(args, spec, what, interspersed=True):
    """Split ARGS into (options, operands) as docker's flag parsing does.

    SPEC maps flags ("-d", "--detach") to keys; a key ending in "=" takes a value, one ending
    in "*" collects values. Unknown flags are unsupported. Without INTERSPERSED the first
    operand ends the options (docker exec CONTAINER CMD -x)."""
    opts, operands, args = {}, [], list(args)
    while args:
        arg = args.pop(0)
        if arg == "--":
            operands += args
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            if not interspersed:
                operands += args
                break
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            items = [(name, value if eq else None)]
        else:  # a cluster of short flags: -it, -uroot, -n5
            items = []
            for i, char in enumerate(arg[1:], 2):
                if spec.get("-" + char, "")[-1:] in ("=", "*") and i < len(arg):
                    items.append(("-" + char, arg[i:]))
                    break
                items.append(("-" + char, None))
        for name, inline in items:
            key = spec.get(name)
            if key is None:
                raise Unsupported(f"{what} {name}")
            if key[-1] not in "=*":
                opts[key] = inline is None or inline.lower() in ("1", "true")
                continue
            if inline is None and not args:
                raise DockerError(f"flag needs an argument: {name}", code=125)
            value = args.pop(0) if inline is None else inline
            if key[-1] == "*":
                opts.setdefault(key[:-1], []).append(value)
            else:
                opts[key[:-1]] = value
    return opts, operands


def table(rows):
    """Columns as docker's tabwriter lays them out (min width 10, padding 3)."""
    widths = [max(10, max(len(row[i]) for row in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "\n".join("".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + row[-1] for row in rows)


def human_duration(seconds):
    """go-units HumanDuration, which docker's STATUS and CREATED columns use."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def human_size(size):
    """go-units HumanSizeWithPrecision(size, 3), as `docker cp` reports sizes."""
    units = ["B", "kB", "MB", "GB", "TB"]
    while size >= 1000 and len(units) > 1:
        size /= 1000
        units.pop(0)
    return f"{size:.3g}{units[0]}"


def go_time(epoch):
    """Go's time.String() in UTC, as in ps's CreatedAt."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def go_duration(seconds):
    """Go's Duration.String() for the values compose files use (2s, 1m30s, 500ms)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms" if seconds else "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:g}s"
    if hours or minutes:
        text = f"{int(minutes)}m{text}"
    return f"{int(hours)}h{text}" if hours else text


def parse_duration(value, where):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    if isinstance(value, (int, float)):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise DockerError(f"{where}: invalid duration {value!r}: invalid compose project")
    return sum(float(n) * units[u] for n, u in parts)


def warn(message):
    """A compose warning, in logrus's format for a stderr that is not a terminal."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level=warning msg={json.dumps(message)}', file=sys.stderr)


def progress(kind, name, action):
    """A compose progress line (stderr), as ` Container netmon-db  Started`."""
    print(f" {kind} {name}  {action}", file=sys.stderr, flush=True)


def event(ident, text, status=""):
    """A compose event keyed by service, as its plain writer prints it (Go's Println): ` db Pulling `."""
    print(" " + " ".join((ident, text, status)), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- Go templates

class _Missing:
    """A field the data lacks: prints as Go's <no value>, is false in {{if}}."""

    def __bool__(self):
        return False


MISSING = _Missing()


class _Headers(dict):
    """The data a "table ..." template's header line is rendered from: each field's title
    (the table's own titles, else docker's habit of upper-casing the field name)."""

    def __contains__(self, key):
        return True

    def __missing__(self, key):
        return {"CreatedAt": "CREATED AT", "LocalVolumes": "LOCAL VOLUMES"}.get(key, key.upper())


def go_str(value):
    """A value as Go's template printer shows it."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def go_json(value):
    """json.Marshal's output: compact, with <, > and & escaped."""
    text = json.dumps(None if value is MISSING else value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Template:
    """The part of Go's text/template docker's --format needs here: {{.A.B}}, {{json .X}},
    {{if .X}}...{{else}}...{{end}} and literal text. Anything else is unsupported.

    STRICT is for a fixed set of fields (ps rows): an unknown one is an error, as in docker."""

    FIELD = r"\.(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?"

    def __init__(self, text, strict=False):
        self.strict = strict
        self.nodes = self._parse(text.replace("\\t", "\t").replace("\\n", "\n"))

    def _parse(self, text):
        root = []
        branches, ifs = [root], []  # where nodes go now; the open {{if}}s
        pos = 0
        for match in re.finditer(r"\{\{(.*?)\}\}", text, re.S):
            if match.start() > pos:
                branches[-1].append(text[pos:match.start()])
            pos = match.end()
            action = match.group(1).strip()
            value = re.fullmatch(rf"(json\s+)?({self.FIELD})", action)
            condition = re.fullmatch(rf"if\s+({self.FIELD})", action)
            if value:
                branches[-1].append(("value", value.group(2), bool(value.group(1))))
            elif condition:
                node = ("if", condition.group(1), [], [])
                branches[-1].append(node)
                branches.append(node[2])
                ifs.append(node)
            elif action == "else" and ifs:
                branches[-1] = ifs[-1][3]
            elif action == "end" and ifs:
                branches.pop()
                ifs.pop()
            else:
                raise Unsupported(f"--format {match.group(0)}")
        if ifs:
            raise DockerError("template parsing error: template: :1: unexpected EOF")
        branches[-1].append(text[pos:])
        return root

    def render(self, data):
        return "".join(self._render(self.nodes, data))

    def _render(self, nodes, data):
        for node in nodes:
            if isinstance(node, str):
                yield node
            elif node[0] == "value":
                value = self._lookup(data, node[1])
                yield go_json(value) if node[2] else go_str(value)
            else:
                yield from self._render(node[2] if self._lookup(data, node[1]) else node[3], data)

    def _lookup(self, data, path):
        for key in filter(None, path.split(".")):
            if isinstance(data, dict) and key in data:
                data = data[key]
            elif self.strict:
                raise DockerError(f'template: :1: executing "" at <{path}>: can\'t evaluate field {key}')
            else:
                return MISSING
        return data


def emit(rows, fmt, columns):
    """Print ROWS (dicts) as docker's formatter: "table" with COLUMNS ((title, key) pairs),
    "json" (one object per line), "table TEMPLATE" (header + tab-aligned), or a TEMPLATE."""
    if fmt == "json":
        for row in rows:
            print(go_json(row))
    elif fmt == "table":
        print(table([[title for title, _ in columns]] + [[row[key] for _, key in columns] for row in rows]))
    elif fmt.startswith("table "):
        template = Template(fmt[len("table "):].strip(), strict=True)
        titles = _Headers({key: title for title, key in columns})
        lines = [template.render(titles)] + [template.render(row) for row in rows]
        cells = [line.split("\t") for line in lines]
        width = max(len(c) for c in cells)
        print(table([c + [""] * (width - len(c)) for c in cells]))
    else:
        template = Template(fmt, strict=True)
        for row in rows:
            print(template.render(row))


# ---------------------------------------------------------------- the site's containers and volumes

class Container:
    """One container directory: config.json (what docker.py created), state.json (the shim's)."""

    def __init__(self, cdir):
        self.dir = cdir
        self.cfg = shim.read_json(os.path.join(cdir, "config.json"))
        self.name = self.cfg["name"]
        self.id = self.cfg["id"]

    @property
    def state(self):
        return shim.read_state(self.dir)


class Site:
    """The site's docker state under SITE/docker (tests/lab/README.md)."""

    def __init__(self, lab, root):
        self.lab = lab
        self.root = root
        self.base = os.path.join(root, "docker")
        for sub in ("containers", "volumes", "images"):
            os.makedirs(os.path.join(self.base, sub), exist_ok=True)

    def path(self, *parts):
        return os.path.join(self.base, *parts)

    def containers(self):
        top = self.path("containers")
        return [Container(os.path.join(top, name)) for name in sorted(os.listdir(top))
                if os.path.exists(os.path.join(top, name, "config.json"))]

    def find(self, ref):
        """The container named REF (with or without "/"), or whose id is or starts with REF."""
        ref = ref.lstrip("/")
        containers = self.containers()
        for container in containers:
            if ref in (container.name, container.id):
                return container
        by_prefix = [c for c in containers if ref and c.id.startswith(ref)]
        return by_prefix[0] if len(by_prefix) == 1 else None

    def need(self, ref):
        container = self.find(ref)
        if container is None:
            raise no_such_container(ref)
        return container

    def images(self):
        """The daemon's image store, {reference: {"Id", "Created", "Size", "Build"?}}: PULLED at first."""
        store = shim.read_json(self.path("images.json"))
        if store is None:
            store = {ref: {"Id": pulled_image_id(ref), "Created": PULLED_CREATED, "Size": size} for ref, size in PULLED}
            shim.write_json(self.path("images.json"), store)
        return store

    def save_images(self, store):
        shim.write_json(self.path("images.json"), store)

    def find_image(self, ref):
        """(reference, entry) of the image REF names by reference, id or unique id prefix; else None."""
        store = self.images()
        if normal_ref(ref) in store:
            return normal_ref(ref), store[normal_ref(ref)]
        bare = ref.removeprefix("sha256:")
        ids = {e["Id"] for e in store.values() if re.fullmatch(r"[0-9a-f]{1,64}", bare)
               and e["Id"].removeprefix("sha256:").startswith(bare)}
        if len(ids) != 1:
            return None
        return next((r, e) for r, e in store.items() if e["Id"] in ids)

    def volumes(self):
        top = self.path("volumes")
        return sorted(v for v in os.listdir(top) if os.path.isdir(os.path.join(top, v, "_data")))

    def has_volume(self, name):
        return re.fullmatch(r"[A-Za-z0-9][\w.-]*", name) is not None and name in self.volumes()

    @contextlib.contextmanager
    def locked(self):
        """One changing command at a time per site, as the engine serialises them."""
        with open(self.path(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def create_volume(site, name, labels):
    """A new volume: SITE/docker/volumes/NAME/_data, with its labels and creation time beside it."""
    os.makedirs(site.path("volumes", name, "_data"))
    shim.write_json(site.path("volumes", name, "meta.json"),
                    {"CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "Labels": labels})


def volume_users(site, name):
    return [c.id for c in site.containers()
            if any(m["type"] == "volume" and m["name"] == name for m in c.cfg["mounts"])]


def remove_volume(site, name):
    users = volume_users(site, name)
    if users:
        raise DockerError(f"Error response from daemon: remove {name}: volume is in use - [{', '.join(users)}]")
    shutil.rmtree(site.path("volumes", name))


def volume_info(site, name):
    """`docker volume inspect`'s object for NAME."""
    meta = shim.read_json(site.path("volumes", name, "meta.json"), {})
    return {"CreatedAt": meta.get("CreatedAt", ""), "Driver": "local", "Labels": meta.get("Labels"),
            "Mountpoint": site.path("volumes", name, "_data"), "Name": name, "Options": None, "Scope": "local"}


# ---------------------------------------------------------------- container lifecycle

def start(container):
    """Start CONTAINER's shim and wait until it reports the main process started."""
    shim.kill_leftovers(container.state)
    shim.write_json(os.path.join(container.dir, "state.json"), {"status": "created"})
    subprocess.run([sys.executable, os.path.join(STANDIN, "shim.py"), container.dir], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while (state := container.state)["status"] == "created":
        if time.monotonic() > deadline:
            raise DockerError(f"Error response from daemon: container {container.id} did not start")
        time.sleep(0.05)
    if state["error"]:
        raise DockerError("Error response from daemon: failed to create task for container: failed to "
                          "create shim task: OCI runtime create failed: runc create failed: unable to "
                          f"start container process: {state['error']}: unknown")


def stop(container, timeout=STOP_TIMEOUT):
    """Stop CONTAINER as docker stop does: its shim sends the stop signal, then SIGKILL."""
    state = container.state
    if state["status"] not in RUNNING:
        shim.kill_leftovers(state)
        return
    os.kill(state["shim_pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout + 5
    while shim.alive(state["shim_pid"], state["shim_start"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    if shim.alive(state["shim_pid"], state["shim_start"]):  # a wedged shim: kill it and its container
        shim.kill_group(state["shim_pid"])
        shim.kill_group(state["pid"])
        shim.write_json(os.path.join(container.dir, "state.json"),
                        {**container.state, "status": "exited", "exit_code": 137, "finished_at": time.time()})


def remove(container):
    stop(container)
    shutil.rmtree(container.dir, ignore_errors=container.cfg.get("auto_remove", False))  # --rm: its shim may be at it


def wait_healthy(container, deadline=None):
    """Wait for CONTAINER to be healthy (compose's service_healthy); raise as compose words it.

    Compose would wait for ever on a container that never settles (a restart loop keeps its
    health "starting"); here the wait ends after the start period plus every retry."""
    check = container.cfg["healthcheck"]
    if deadline is None and check:
        span = check["start_period"] + (check["interval"] + check["timeout"]) * (check["retries"] + 1)
        deadline = time.monotonic() + span
    while True:
        state = container.state
        if state["status"] == "exited":
            raise DockerError(f"container {container.name} exited ({state['exit_code']})")
        if not check:
            raise DockerError(f"container {container.name} has no healthcheck configured")
        health = (state["health"] or {}).get("Status")
        if state["status"] == "running" and health == "healthy":
            return
        if health == "unhealthy" or time.monotonic() > deadline:
            raise DockerError(f"container {container.name} is unhealthy")
        time.sleep(0.2)


# ---------------------------------------------------------------- compose files

def find_compose_file(files):
    """The compose file: -f, else the first of compose's names in the cwd or a parent directory."""
    if files:
        if len(files) > 1:
            raise Unsupported("compose -f (more than one file)")
        path = os.path.abspath(files[0])
        if not os.path.exists(path):
            raise DockerError(f"open {path}: no such file or directory")
        return path
    directory = os.getcwd()
    while True:
        for name in COMPOSE_FILES:
            if os.path.exists(os.path.join(directory, name)):
                return os.path.join(directory, name)
        if directory == "/":
            raise DockerError("no configuration file provided: not found")
        directory = os.path.dirname(directory)


def dotenv(path):
    """KEY=VALUE lines of an env file (export prefix, quotes and comments handled)."""
    env = {}
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            value = value.strip()
            if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
                value = value[1:-1]
            else:
                value = value.split(" #")[0].strip()
            env[key.strip()] = value
    return env


def interpolate(value, env, unset):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alt}, $VAR and $$ in every string.

    An unset variable is blank, with compose's warning once (names collected in UNSET)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, unset) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match):
        if match.group(1):
            return "$"
        expr = match.group(2) if match.group(2) is not None else match.group(3)
        parts = re.fullmatch(r"([A-Za-z_]\w*)(?:(:?[-?+])(.*))?", expr, re.S)
        if not parts:
            raise DockerError(f'invalid interpolation format for "{value}".\n'
                              "You may need to escape any $ with another $.")
        name, op, arg = parts.groups()
        current = env.get(name)
        empty = current is None or (current == "" and op and op.startswith(":"))
        if op in ("-", ":-"):
            return interpolate(arg, env, unset) if empty else current
        if op in ("?", ":?") and empty:
            raise DockerError(f"required variable {name} is missing a value: {arg}")
        if op in ("+", ":+"):
            return "" if empty else interpolate(arg, env, unset)
        if current is None:
            if name not in unset:
                warn(f'The "{name}" variable is not set. Defaulting to a blank string.')
                unset.add(name)
            return ""
        return current

    return re.sub(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_]\w*))", substitute, value)


def env_value(value):
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class Project:
    """A compose project as `docker compose` reads it: the file, .env interpolation, and services
    normalised to the shape `docker compose config` prints (which is also what gets hashed)."""

    TOP_LEVEL = {"name", "services", "volumes", "networks", "version"}
    SERVICE_KEYS = {"image", "build", "command", "container_name", "restart", "environment", "env_file",
                    "volumes", "ports", "depends_on", "healthcheck", "expose", "networks", "labels", "logging"}

    def __init__(self, opts):
        self.file = find_compose_file(opts.get("file"))
        self.dir = os.path.abspath(opts.get("project_directory") or os.path.dirname(self.file))
        env_file = opts.get("env_file") or os.path.join(self.dir, ".env")
        if opts.get("env_file") and not os.path.exists(env_file):
            raise DockerError(f"couldn't find env file: {os.path.abspath(env_file)}")
        self.env = {**(dotenv(env_file) if os.path.exists(env_file) else {}), **os.environ}
        with open(self.file) as f:
            raw = yaml.safe_load(f) or {}
        data = interpolate(raw, self.env, set())
        for key in data:
            if key not in self.TOP_LEVEL and not key.startswith("x-"):
                raise Unsupported(f"compose file key {key}")
        if "version" in data:
            warn(f"{self.file}: the attribute `version` is obsolete, it will be ignored, "
                 "please remove it to avoid potential confusion")
        name = opts.get("project_name") or self.env.get("COMPOSE_PROJECT_NAME") or data.get("name") \
            or os.path.basename(self.dir)
        self.name = re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")
        self.volumes = {}
        for key, declared in (data.get("volumes") or {}).items():
            spec = declared or {}
            external = bool(spec.get("external"))
            self.volumes[key] = {"name": spec.get("name") or (key if external else f"{self.name}_{key}"),
                                 "external": external}
        self.services = {name: self._service(name, spec or {}) for name, spec in (data.get("services") or {}).items()}
        for name, svc in self.services.items():
            for dep in svc.get("depends_on", {}):
                if dep not in self.services:
                    raise DockerError(f'service "{name}" depends on undefined service "{dep}": invalid compose project')

    def _service(self, name, spec):
        for key in spec:
            if key not in self.SERVICE_KEYS and not key.startswith("x-"):
                raise Unsupported(f"compose service key {key}")
        if not spec.get("image") and not spec.get("build"):
            raise DockerError(f'service "{name}" has neither an image nor a build context specified: '
                              "invalid compose project")
        svc = {"container_name": spec.get("container_name") or f"{self.name}-{name}-1",
               "networks": {"default": None}}
        if spec.get("image"):
            svc["image"] = spec["image"]
        if spec.get("build"):
            build = spec["build"] if isinstance(spec["build"], dict) else {"context": spec["build"]}
            svc["build"] = {"context": self._host_path(build.get("context", ".")),
                            "dockerfile": build.get("dockerfile", "Dockerfile")}
        if spec.get("command") is not None:
            command = spec["command"]
            svc["command"] = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        restart = str(spec.get("restart", "no"))
        if not re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", restart):
            raise DockerError(f'invalid restart policy "{restart}" for service "{name}": invalid compose project')
        svc["restart"] = restart
        environment = self._environment(spec)
        if environment:
            svc["environment"] = environment
        for key in ("expose", "labels", "logging"):
            if spec.get(key):
                svc[key] = spec[key]
        if spec.get("volumes"):
            svc["volumes"] = [self._mount(name, v) for v in spec["volumes"]]
        if spec.get("ports"):
            svc["ports"] = [self._port(p) for p in spec["ports"]]
        if spec.get("depends_on"):
            deps = spec["depends_on"]
            deps = {d: {} for d in deps} if isinstance(deps, list) else deps
            svc["depends_on"] = {d: {"condition": (c or {}).get("condition", "service_started"),
                                     "required": (c or {}).get("required", True)} for d, c in deps.items()}
        if spec.get("healthcheck"):
            svc["healthcheck"] = self._healthcheck(name, spec["healthcheck"])
        return svc

    def _host_path(self, path):
        return os.path.normpath(os.path.join(self.dir, os.path.expanduser(path)))

    def _environment(self, spec):
        environment = {}
        files = spec.get("env_file") or []
        for path in [files] if isinstance(files, str) else files:
            environment.update(dotenv(self._host_path(path)))
        entries = spec.get("environment") or {}
        if isinstance(entries, list):
            entries = {key: value if eq else None for key, eq, value in (e.partition("=") for e in entries)}
        for key, value in entries.items():
            if value is None:  # KEY alone: from the shell's environment, if it has it
                if key in self.env:
                    environment[key] = self.env[key]
            else:
                environment[key] = env_value(value)
        return environment

    def _mount(self, service, entry):
        if isinstance(entry, dict):
            mount = {"type": entry.get("type", "volume"), "source": entry.get("source"), "target": entry["target"]}
            read_only = bool(entry.get("read_only"))
        else:
            parts = entry.split(":")
            if len(parts) < 2:
                raise Unsupported(f"anonymous volume {entry}")
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            mount = {"type": kind, "source": source, "target": target}
            read_only = "ro" in ",".join(parts[2:]).split(",")
        if mount["type"] == "bind":
            mount["source"] = self._host_path(mount["source"])
            mount["bind"] = {"create_host_path": True}
        elif mount["type"] == "volume":
            if mount["source"] not in self.volumes:
                raise DockerError(f'service "{service}" refers to undefined volume {mount["source"]}: '
                                  "invalid compose project")
            mount["volume"] = {}
        else:
            raise Unsupported(f"{mount['type']} mount")
        if read_only:
            mount["read_only"] = True
        return mount

    @staticmethod
    def _port(entry):
        if isinstance(entry, dict):
            port = {"mode": "ingress", "target": int(entry["target"]), "published": str(entry.get("published", "")),
                    "protocol": entry.get("protocol", "tcp")}
            if "host_ip" in entry:
                port["host_ip"] = entry["host_ip"]
            return port
        text, _, protocol = str(entry).partition("/")
        parts = text.split(":")
        port = {"mode": "ingress", "target": int(parts[-1]), "published": parts[-2] if len(parts) > 1 else "",
                "protocol": protocol or "tcp"}
        if len(parts) > 2:
            port["host_ip"] = parts[0]
        return port

    @staticmethod
    def _healthcheck(service, spec):
        test = spec.get("test")
        test = ["CMD-SHELL", test] if isinstance(test, str) else list(test or ["NONE"])
        check = {"test": test}
        for key in ("interval", "timeout", "start_period"):
            if key in spec:
                check[key] = go_duration(parse_duration(spec[key], f"services.{service}.healthcheck.{key}"))
        check["retries"] = int(spec.get("retries", 3))
        if spec.get("disable"):
            check["disable"] = True
        return check

    def select(self, names, with_deps=True):
        """Service names NAMES (all when empty), plus what they depend on, dependencies first."""
        for name in names:
            if name not in self.services:
                raise DockerError(f"no such service: {name}")
        chosen = set(names or self.services)
        while with_deps:
            deps = {d for n in chosen for d in self.services[n].get("depends_on", {})} - chosen
            if not deps:
                break
            chosen |= deps
        order = []

        def visit(name, path):
            if name in path:
                raise DockerError(f"dependency cycle detected: {' -> '.join(path + [name])}")
            if name not in order:
                for dep in self.services[name].get("depends_on", {}):
                    visit(dep, path + [name])
                order.append(name)

        for name in self.services:
            visit(name, [])
        return [name for name in order if name in chosen]

    def containers(self, site, names=()):
        """The project's existing containers for service NAMES (all when empty), by name."""
        for name in names:
            if name not in self.services:
                raise DockerError(f"no such service: {name}")
        return [c for c in site.containers() if c.cfg["project"] == self.name
                and (not names or c.cfg["service"] in names)]

    def model(self):
        """What `docker compose config` prints."""
        volumes = {k: {"name": v["name"], **({"external": True} if v["external"] else {})}
                   for k, v in self.volumes.items()}
        return {"name": self.name, "services": self.services,
                "networks": {"default": {"name": f"{self.name}_default"}}, "volumes": volumes}


# ---------------------------------------------------------------- images and containers from services

def runtime_of(ref, entry):
    """The stand-in image that plays the stored image REF (ENTRY from the store), or None."""
    if entry.get("Build"):
        found = [image for kind, match, image in IMAGES if kind == "build" and entry["Build"] == match]
    else:
        found = [image for kind, match, image in IMAGES if kind == "image" and ref.startswith(match)]
    return found[0] if found else None


def image_for(site, svc):
    """The stand-in image SVC's container runs; a context the lab cannot build is unsupported."""
    if "build" in svc:
        key = os.path.basename(svc["build"]["context"])
        found = [image for kind, match, image in IMAGES if kind == "build" and key == match]
        if not found:
            raise Unsupported(f"build {svc['build']['context']}")
        return found[0]
    image = runtime_of(normal_ref(svc["image"]), {})
    if image is None:
        raise Unsupported(f"image {svc['image']}")
    if image.runtime == "timescaledb" and not os.path.exists(os.path.join(site.lab, TIMESCALE_PG_BIN, "postgres")):
        raise DockerError(f"the lab has no {svc['image']} image tree under {site.lab} (lab.up makes it)")
    return image


def image_ref(project, service):
    """The reference SERVICE's container runs: its `image:`, else the one compose builds it as."""
    return normal_ref(project.services[service].get("image") or f"{project.name}-{service}")


def tree_hash(top):
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, top).encode() + b"\0")
            if os.path.islink(path):
                digest.update(os.readlink(path).encode())
            else:
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


def base_images(context, dockerfile):
    """The images a Dockerfile builds FROM (stages it names itself excluded)."""
    bases, stages = [], set()
    path = os.path.join(context, dockerfile)
    with open(path) if os.path.exists(path) else contextlib.nullcontext(io.StringIO()) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and words[0].upper() == "FROM":
                image = next(w for w in words[1:] if not w.startswith("--"))
                if image.lower() not in stages and image != "scratch":
                    bases.append(image)
                if len(words) >= 4 and words[-2].upper() == "AS":
                    stages.add(words[-1].lower())
    return bases


def build(site, project, service, pull=False):
    """`docker build` as far as the lab needs: copy the context to SITE/docker/images/SERVICE and
    tag it as compose does (PROJECT-SERVICE). Its FROM images must be in the store: with no
    registry, BuildKit cannot resolve them (nor any, with --pull).

    The image id is the tree's hash, so an unchanged context keeps its containers. A replaced
    copy is parked (.old-*) until `up` has recreated the containers that still run from it."""
    spec = project.services[service]["build"]
    context = spec["context"]
    if not os.path.isdir(context):
        raise DockerError(f'unable to prepare context: path "{context}" not found')
    for base in base_images(context, spec["dockerfile"]):
        if pull or site.find_image(base) is None:
            name = normal_ref(base)
            repo, _, tag = name.rpartition(":")
            full = repo if "/" in repo else f"library/{repo}"
            where = registry_unreachable(base, f"/v2/{full}/manifests/{tag}", "Head")
            raise DockerError(f"failed to solve: {base}: failed to resolve source metadata for docker.io/{full}:{tag}: "
                              f"failed to do request: {where}", code=BUILD_FAILURE)
    image_id = "sha256:" + tree_hash(context)
    target = site.path("images", service)
    store = site.images()
    if store.get(image_ref(project, service), {}).get("Id") != image_id:
        store[image_ref(project, service)] = {"Id": image_id, "Created": time.time(), "Size": tar_size(context),
                                              "Build": os.path.basename(context)}
        site.save_images(store)
    if shim.read_json(target + ".json", {}).get("id") == image_id and os.path.isdir(target):
        return image_id
    staging = tempfile.mkdtemp(dir=site.path("images"), prefix=f".new-{service}-")
    shutil.copytree(context, staging, symlinks=True, dirs_exist_ok=True)
    os.chmod(staging, 0o755)  # noqa: S103 — as an image's files: readable by the container's users
    if os.path.exists(target):
        os.rename(target, site.path("images", f".old-{service}-{secrets.token_hex(4)}"))
    os.rename(staging, target)
    shim.write_json(target + ".json", {"id": image_id, "created": time.time()})
    return image_id


def image_id(site, project, service, rebuild, no_build=False):
    """SERVICE's image id, building it when asked (--build) or when it is not in the store (unless
    --no-build); None when the store lacks it (creating the container then fails)."""
    svc = project.services[service]
    found = site.find_image(image_ref(project, service))
    built = shim.read_json(site.path("images", service + ".json"))
    if "build" not in svc or no_build or (found and built and not rebuild
                                          and os.path.isdir(site.path("images", service))):
        return found[1]["Id"] if found else None
    progress("Service", service, "Building")
    made = build(site, project, service)
    progress("Service", service, "Built")
    return made


def shim_healthcheck(check):
    """A compose healthcheck as the shim runs it (argv, seconds), or None when there is none."""
    if not check or check["test"][0] == "NONE" or check.get("disable"):
        return None
    test = check["test"]
    argv = ["/bin/sh", "-c", " ".join(test[1:])] if test[0] == "CMD-SHELL" else test[1:]
    durations = {key: parse_duration(check.get(key, default), key)
                 for key, default in (("interval", "30s"), ("timeout", "30s"), ("start_period", "0s"))}
    return {"test": test, "argv": argv, "retries": check["retries"], **durations}


def main_process(site, image, service, cdir, mounts):
    """How the stand-in runs IMAGE's main process: argv, cwd, the program that must exist,
    the container's view (binds; postgres only), PATH and any lab-only environment."""
    if image.runtime in ("postgres", "timescaledb"):
        bin_dir = PLAIN_PG_BIN if image.runtime == "postgres" else os.path.join(site.lab, TIMESCALE_PG_BIN)
        view = {"/tmp": os.path.join(cdir, "tmp"), "/var/run/postgresql": os.path.join(cdir, "run")}
        for mount in mounts:
            if mount["type"] == "volume":
                view[mount["target"]] = mount["source"]
            elif os.path.dirname(mount["target"]) != INITDB_D:  # init scripts: read by pg_entrypoint
                raise Unsupported(f"bind mount on {mount['target']} in the {image.runtime} image")
        if PGDATA not in view:  # docker would make an anonymous volume
            view[PGDATA] = os.path.join(cdir, "data")
            os.makedirs(view[PGDATA])
        entrypoint = os.path.join(STANDIN, "pg_entrypoint.py")
        path = ":".join(dict.fromkeys([bin_dir, PLAIN_PG_BIN, STD_PATH]))  # client tools from the host
        return dict(argv=[sys.executable, entrypoint, cdir], cwd="/", program=entrypoint, view=view,
                    path=path, extra_env={}, pg_bin=bin_dir,
                    image_env={"PGDATA": PGDATA, "PG_MAJOR": "15", "LANG": "C.UTF-8"})
    if image.runtime == "backend":
        program = os.path.join(STANDIN, "backend.py")
        return dict(argv=[sys.executable, program], cwd=site.path("images", service), program=program,
                    view={}, path=STD_PATH, extra_env={"NETMON_LAB": site.lab, "NETMON_LAB_SITE": site.root},
                    pg_bin=None, image_env={})
    return dict(argv=["/bin/sh", "-c", STUB_SCRIPT], cwd="/", program="/bin/sh", view={}, path=STD_PATH,
                extra_env={}, pg_bin=None, image_env={})


def config_hash(project, service, image):
    text = json.dumps([project.name, project.services[service], image], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def create(site, project, service, image_id):
    """Create the container of SERVICE (directory, config.json, state.json); not started."""
    svc = project.services[service]
    image = image_for(site, svc)
    mounts = []
    for mount in svc.get("volumes", []):
        record = {"type": mount["type"], "target": mount["target"], "read_only": mount.get("read_only", False)}
        if mount["type"] == "volume":
            volume = project.volumes[mount["source"]]["name"]
            record.update(name=volume, source=site.path("volumes", volume, "_data"))
        else:
            record["source"] = mount["source"]
        mounts.append(record)
    digest = config_hash(project, service, image_id)
    labels = {"com.docker.compose.config-hash": digest, "com.docker.compose.container-number": "1",
              "com.docker.compose.image": image_id, "com.docker.compose.oneoff": "False",
              "com.docker.compose.project": project.name,
              "com.docker.compose.project.config_files": project.file,
              "com.docker.compose.project.working_dir": project.dir,
              "com.docker.compose.service": service, "com.docker.compose.version": COMPOSE_VERSION,
              **{k: env_value(v) for k, v in (svc.get("labels") or {}).items()}}
    return new_container(site, svc["container_name"], image, service, mounts, svc.get("environment", {}), {
        "project": project.name, "service": service, "image": svc.get("image") or f"{project.name}-{service}",
        "image_id": image_id, "cmd": svc.get("command") or image.cmd, "restart": svc["restart"],
        "healthcheck": shim_healthcheck(svc.get("healthcheck")), "ports": svc.get("ports", []), "labels": labels,
        "config_hash": digest})


def new_container(site, name, image, service, mounts, env, fields):
    """Write a new container NAME running IMAGE (config.json, state.json, tmp/, run/); not started.
    FIELDS: what differs between compose's containers and `docker run`'s (project, cmd, labels ...)."""
    cdir = site.path("containers", name)
    os.makedirs(os.path.join(cdir, "run"))
    os.makedirs(os.path.join(cdir, "tmp"))
    os.chmod(os.path.join(cdir, "tmp"), 0o1777)  # noqa: S103 — the container's /tmp
    process = main_process(site, image, service, cdir, mounts)
    image_env = {"PATH": process.pop("path"), **process.pop("image_env")}
    cfg = {"id": secrets.token_hex(32), "name": name, "created": time.time(), "runtime": image.runtime,
           "entrypoint": image.entrypoint, **process,
           "env": {**env, **{k: v for k, v in image_env.items() if k not in env}},
           "stop_signal": image.stop_signal, "mounts": mounts, "exposed": image.exposed, **fields}
    shim.write_json(os.path.join(cdir, "config.json"), cfg)
    shim.write_json(os.path.join(cdir, "state.json"), {"status": "created"})
    return Container(cdir)


def cmd_run(site, args):
    """docker run -d [--rm] [--name N] [-e K=V] [-v VOLUME:PATH] IMAGE [CMD...]: create and start a
    container of IMAGE with a network of its own (no port published), print its id. A named volume
    that does not exist is created, as the engine does; --rm removes the container when it exits."""
    opts, rest = parse(args, {"-d": "detach", "--detach": "detach", "--rm": "rm", "--name": "name=",
                              "-e": "env*", "--env": "env*", "-v": "volume*", "--volume": "volume*"},
                       "run", interspersed=False)
    if not rest:
        raise DockerError('docker: \'docker run\' requires at least 1 argument\n\nUsage:  docker run [OPTIONS] IMAGE '
                          "[COMMAND] [ARG...]\n\nSee 'docker run --help' for more information", code=125)
    if not opts.get("detach"):
        raise Unsupported("run without -d")
    ref, cmd = normal_ref(rest[0]), rest[1:]
    name = opts.get("name") or f"lab_{secrets.token_hex(4)}"
    with site.locked():
        found = site.find_image(ref)
        if found is None:
            print(f"Unable to find image '{ref}' locally", file=sys.stderr)
            raise DockerError(f"docker: Error response from daemon: {registry_unreachable(ref)}.\n\n"
                              "Run 'docker run --help' for more information", code=125)
        image = runtime_of(*found)
        if image is None:
            raise Unsupported(f"image {ref}")
        existing = site.find(name)
        if existing is not None and existing.name == name:
            raise DockerError(f'docker: Error response from daemon: Conflict. The container name "/{name}" is already in '
                              f'use by container "{existing.id}". You have to remove (or rename) that container to '
                              "be able to reuse that name.\n\nRun 'docker run --help' for more information", code=125)
        mounts = []
        for spec in opts.get("volume", []):
            volume, _, target = spec.partition(":")
            if not target.startswith("/") or not re.fullmatch(r"[A-Za-z0-9][\w.-]+", volume):
                raise Unsupported(f"run -v {spec}")
            if not site.has_volume(volume):
                create_volume(site, volume, None)
            mounts.append({"type": "volume", "target": target, "read_only": False, "name": volume,
                           "source": site.path("volumes", volume, "_data")})
        env = dict(item.partition("=")[::2] for item in opts.get("env", []))
        container = new_container(site, name, image, name, mounts, env, {
            "project": "", "service": "", "image": rest[0], "image_id": found[1]["Id"], "cmd": cmd or image.cmd,
            "restart": "no", "healthcheck": None, "ports": [], "labels": {}, "config_hash": "",
            "netns": True, "auto_remove": bool(opts.get("rm"))})
        start(container)
    print(container.id)
    return 0


def cmd_rm(site, args):
    """docker rm [-f] CONTAINER...: a running one only with -f; with -f a missing one is no failure."""
    opts, names = parse(args, {"-f": "force", "--force": "force", "-v": "volumes", "--volumes": "volumes"}, "rm")
    if not names:
        raise DockerError('"docker rm" requires at least 1 argument.')
    errors = []
    with site.locked():
        for name in names:
            container = site.find(name)
            if container is None:  # with -f the CLI prints the error and carries on: exit 0
                if opts.get("force"):
                    print(no_such_container(name), file=sys.stderr)
                else:
                    errors.append(str(no_such_container(name)))
                continue
            if container.state["status"] in RUNNING and not opts.get("force"):
                errors.append(f'Error response from daemon: cannot remove container "/{container.name}": container is '
                              "running: stop the container before removing or force remove")
                continue
            remove(container)
            print(name)
    if errors:
        raise DockerError("\n".join(errors))
    return 0


# ---------------------------------------------------------------- what ps and inspect show

def command_line(cfg):
    return " ".join(cfg["entrypoint"] + cfg["cmd"])


def port_entries(cfg):
    """(host ip, published, target, protocol) of a running container, as the engine lists them."""
    entries, published = [], set()
    for port in cfg["ports"]:
        if port["published"]:
            published.add(f"{port['target']}/{port['protocol']}")
            for ip in [port["host_ip"]] if "host_ip" in port else ["0.0.0.0", "::"]:  # noqa: S104 — what docker lists
                entries.append((ip, int(port["published"]), port["target"], port["protocol"]))
    for exposed in cfg["exposed"]:
        if exposed not in published:
            port, _, protocol = exposed.partition("/")
            entries.append(("", 0, int(port), protocol))
    return entries


def ports_text(entries):
    """docker ps's PORTS: "0.0.0.0:8000->8000/tcp, :::8000->8000/tcp" or "5432/tcp"."""
    return ", ".join(f"{ip}:{public}->{target}/{protocol}" if ip else f"{target}/{protocol}"
                     for ip, public, target, protocol in entries)


def status_text(state, now):
    """The human STATUS column: "Up 5 minutes (healthy)", "Restarting (1) 3 seconds ago", ..."""
    status, code = state["status"], state["exit_code"]
    since_end = human_duration(now - state["finished_at"])
    if status == "running":
        health = (state["health"] or {}).get("Status")
        suffix = {"healthy": " (healthy)", "unhealthy": " (unhealthy)", "starting": " (health: starting)"}
        return "Up " + human_duration(now - state["started_at"]) + suffix.get(health, "")
    if status == "restarting":
        return f"Restarting ({code}) {since_end} ago"
    if status == "exited":
        return f"Exited ({code}) {since_end} ago"
    return status.capitalize()


def ps_row(container, compose):
    """A container as `docker ps` (or, COMPOSE, `docker compose ps`) shows it, field by field."""
    cfg, state, now = container.cfg, container.state, time.time()
    command = command_line(cfg)
    running = state["status"] in RUNNING
    entries = port_entries(cfg) if running else []
    row = {"Command": json.dumps(command if len(command) <= 20 else command[:19] + "…", ensure_ascii=False),
           "CreatedAt": go_time(cfg["created"]), "ID": cfg["id"][:12], "Image": cfg["image"],
           "Labels": ",".join(f"{k}={v}" for k, v in sorted(cfg["labels"].items())),
           "LocalVolumes": str(sum(m["type"] == "volume" for m in cfg["mounts"])),
           "Mounts": ",".join(m.get("name") or m["source"] for m in cfg["mounts"]),
           "Names": cfg["name"], "Networks": f"{cfg['project']}_default", "Ports": ports_text(entries),
           "RunningFor": human_duration(now - cfg["created"]) + " ago", "Size": "0B",
           "State": state["status"], "Status": status_text(state, now)}
    if compose:
        row.update(Name=cfg["name"], Project=cfg["project"], Service=cfg["service"],
                   Health=(state["health"] or {}).get("Status", "") if state["status"] == "running" else "",
                   ExitCode=state["exit_code"] if state["status"] == "exited" else 0,
                   Publishers=[{"URL": ip, "TargetPort": target, "PublishedPort": public, "Protocol": protocol}
                               for ip, public, target, protocol in entries])
    return row


def inspect_container(container):
    """`docker inspect`'s object for CONTAINER (the fields the lab's users read, docker's shape)."""
    cfg, st = container.cfg, container.state
    status = st["status"]
    state = {"Status": status, "Running": status in RUNNING, "Paused": False,
             "Restarting": status == "restarting", "OOMKilled": False, "Dead": False,
             "Pid": st["pid"] if status == "running" else 0,
             "ExitCode": 0 if status == "running" else st["exit_code"], "Error": st["error"],
             "StartedAt": shim.rfc3339(st["started_at"]), "FinishedAt": shim.rfc3339(st["finished_at"])}
    if cfg["healthcheck"] and st["health"]:
        state["Health"] = st["health"]
    argv = cfg["entrypoint"] + cfg["cmd"]
    running = status in RUNNING
    ports = {}
    for ip, public, target, protocol in port_entries(cfg) if running else []:
        bindings = ports.setdefault(f"{target}/{protocol}", [] if ip else None)
        if ip:
            bindings.append({"HostIp": ip, "HostPort": str(public)})
    mounts = []
    for m in cfg["mounts"]:
        if m["type"] == "volume":
            mounts.append({"Type": "volume", "Name": m["name"], "Source": m["source"], "Destination": m["target"],
                           "Driver": "local", "Mode": "z", "RW": not m["read_only"], "Propagation": ""})
        else:
            mounts.append({"Type": "bind", "Source": m["source"], "Destination": m["target"],
                           "Mode": "ro" if m["read_only"] else "", "RW": not m["read_only"], "Propagation": "rprivate"})
    policy, _, retries = cfg["restart"].partition(":")
    config = {"Hostname": cfg["id"][:12], "Domainname": "", "User": "", "Tty": False, "OpenStdin": False,
              "ExposedPorts": {p: {} for p in cfg["exposed"]}, "Env": [f"{k}={v}" for k, v in cfg["env"].items()],
              "Cmd": cfg["cmd"], "Image": cfg["image"], "WorkingDir": "",
              "Entrypoint": cfg["entrypoint"] or None, "Labels": cfg["labels"], "StopSignal": cfg["stop_signal"]}
    if cfg["healthcheck"]:
        check = cfg["healthcheck"]
        config["Healthcheck"] = {"Test": check["test"], "Interval": int(check["interval"] * 1e9),
                                 "Timeout": int(check["timeout"] * 1e9),
                                 "StartPeriod": int(check["start_period"] * 1e9), "Retries": check["retries"]}
    network = f"{cfg['project']}_default"
    return {
        "Id": cfg["id"], "Created": shim.rfc3339(cfg["created"]), "Path": argv[0], "Args": argv[1:],
        "State": state, "Image": cfg["image_id"], "LogPath": os.path.join(container.dir, "log"),
        "Name": "/" + cfg["name"], "RestartCount": st["restart_count"], "Driver": "overlay2", "Platform": "linux",
        "HostConfig": {"Binds": [f"{m['source']}:{m['target']}{':ro' if m['read_only'] else ''}"
                                 for m in cfg["mounts"] if m["type"] == "bind"],
                       "NetworkMode": network, "PortBindings": {},
                       "RestartPolicy": {"Name": policy, "MaximumRetryCount": int(retries or 0)}},
        "Mounts": mounts, "Config": config,
        "NetworkSettings": {"Ports": ports, "Networks": {network: {
            "Aliases": [cfg["name"], cfg["service"]], "IPAddress": "127.0.0.1" if running else ""}}},
    }


def read_log(container, tail):
    """(timestamp, stream, text) of CONTAINER's log lines; only the last TAIL when TAIL is set."""
    path = os.path.join(container.dir, "log")
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = collections.deque(f, maxlen=tail) if tail is not None else list(f)
    return [line.decode(errors="replace").split(" ", 2) for line in lines]


def parse_tail(value):
    if value in (None, "all"):
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise DockerError(f'invalid value for "tail": "{value}"')
    return int(value) if int(value) >= 0 else None


# ---------------------------------------------------------------- docker compose

def compose_up(site, project, args):
    opts, names = parse(args, {"-d": "detach", "--detach": "detach", "--build": "build", "--wait": "wait",
                               "--wait-timeout": "wait_timeout=", "--force-recreate": "force_recreate",
                               "--no-recreate": "no_recreate", "--no-deps": "no_deps", "--no-build": "no_build",
                               "--pull": "pull=", "--quiet-pull": "quiet_pull"}, "compose up")
    if not opts.get("detach"):
        raise Unsupported("compose up without -d")
    policy = opts.get("pull", "policy")
    if policy not in ("policy", "missing", "always", "never", "build"):
        raise Unsupported(f"compose up --pull {policy}")
    order = project.select(names, with_deps=not opts.get("no_deps"))
    with site.locked():
        # compose pulls what is missing (all, with --pull always) before it builds or changes anything
        pull([(name, project.services[name]["image"], "build" in project.services[name]) for name in order
              if "image" in project.services[name] and (policy == "always" or policy in ("policy", "missing")
                                                        and site.find_image(project.services[name]["image"]) is None)],
             quiet=opts.get("quiet_pull"))
        for name in order:
            image_for(site, project.services[name])  # what the lab cannot run fails before anything changes
        images = {name: image_id(site, project, name, opts.get("build"), opts.get("no_build")) for name in order}
        for name in order:
            for mount in project.services[name].get("volumes", []):
                if mount["type"] == "volume":
                    ensure_project_volume(site, project, mount["source"])
        containers = {name: converge(site, project, name, images[name], opts) for name in order}
        for old in os.listdir(site.path("images")):  # copies replaced by --build, no longer in use
            if old.startswith(".old-"):
                shutil.rmtree(site.path("images", old))
        for name in order:
            wait_dependencies(site, project, name)
            container = containers[name]
            if container.state["status"] in RUNNING:
                progress("Container", container.name, "Running")
            else:
                progress("Container", container.name, "Starting")
                start(container)
                progress("Container", container.name, "Started")
        if opts.get("wait"):
            timeout = float(opts.get("wait_timeout") or 0)
            for name in order:
                wait_ready(containers[name], time.monotonic() + timeout if timeout else None)
    return 0


def ensure_project_volume(site, project, key):
    volume = project.volumes[key]
    if volume["external"]:
        if not site.has_volume(volume["name"]):
            raise DockerError(f'external volume "{volume["name"]}" not found')
        return
    labels = {"com.docker.compose.project": project.name, "com.docker.compose.version": COMPOSE_VERSION,
              "com.docker.compose.volume": key}
    if not site.has_volume(volume["name"]):
        progress("Volume", f'"{volume["name"]}"', "Creating")
        create_volume(site, volume["name"], labels)
        progress("Volume", f'"{volume["name"]}"', "Created")


def converge(site, project, service, image, opts):
    """The service's container: kept, recreated (config or image changed, or forced) or created."""
    name = project.services[service]["container_name"]
    if image is None:  # not pulled (--pull never) nor built (--no-build): the engine refuses the create
        progress("Container", name, "Creating")
        missing = no_such_image(image_ref(project, service))
        progress("Container", name, str(missing))
        raise missing
    existing = site.find(name)
    if existing is not None and existing.name == name:
        if (existing.cfg["project"], existing.cfg["service"]) != (project.name, service):
            raise DockerError(f'Error response from daemon: Conflict. The container name "/{name}" is already in '
                              f'use by container "{existing.id}". You have to remove (or rename) that container '
                              "to be able to reuse that name.")
        unchanged = existing.cfg["config_hash"] == config_hash(project, service, image)
        if opts.get("no_recreate") or (unchanged and not opts.get("force_recreate")):
            return existing
        progress("Container", name, "Recreate")
        remove(existing)
        container = create(site, project, service, image)
        progress("Container", name, "Recreated")
        return container
    progress("Container", name, "Creating")
    container = create(site, project, service, image)
    progress("Container", name, "Created")
    return container


def wait_dependencies(site, project, service):
    """Honour depends_on conditions before SERVICE starts, as compose does."""
    for dep, spec in project.services[service].get("depends_on", {}).items():
        container = site.find(project.services[dep]["container_name"])
        if container is None or spec["condition"] == "service_started":
            continue
        progress("Container", container.name, "Waiting")
        try:
            if spec["condition"] == "service_healthy":
                wait_healthy(container)
                progress("Container", container.name, "Healthy")
            else:  # service_completed_successfully
                while (state := container.state)["status"] in RUNNING + ("created",):
                    time.sleep(0.2)
                if state["exit_code"]:
                    raise DockerError(f'service "{dep}" didn\'t complete successfully: exit {state["exit_code"]}')
                progress("Container", container.name, "Exited")
        except DockerError as err:
            progress("Container", container.name, "Error")
            raise DockerError(f"dependency failed to start: {err}") from None


def wait_ready(container, deadline):
    """--wait: running, and healthy when it has a healthcheck."""
    progress("Container", container.name, "Waiting")
    if container.cfg["healthcheck"]:
        wait_healthy(container, deadline)
        progress("Container", container.name, "Healthy")
        return
    while (state := container.state)["status"] != "running":
        if state["status"] == "exited" or (deadline and time.monotonic() > deadline):
            raise DockerError(f"container {container.name} exited ({state['exit_code']})")
        time.sleep(0.2)
    progress("Container", container.name, "Running")


def in_reverse_order(project, containers):
    """CONTAINERS, dependents first (orphans, unknown to the file, before all)."""
    rank = {name: i for i, name in enumerate(project.select([]))}
    return sorted(containers, key=lambda c: -rank.get(c.cfg["service"], len(rank)))


def compose_down(site, project, args):
    opts, names = parse(args, {"-v": "volumes", "--volumes": "volumes", "--remove-orphans": "orphans",
                               "-t": "timeout=", "--timeout": "timeout="}, "compose down")
    timeout = int(opts.get("timeout", STOP_TIMEOUT))
    with site.locked():
        containers = [c for c in project.containers(site, names)
                      if c.cfg["service"] in project.services or opts.get("orphans")]
        volumes = [v["name"] for v in project.volumes.values()
                   if opts.get("volumes") and not names and not v["external"] and site.has_volume(v["name"])]
        if not containers and not volumes:
            print(f'Warning: No resource found to remove for project "{project.name}".', file=sys.stderr)
        for container in in_reverse_order(project, containers):
            if container.state["status"] in RUNNING:
                progress("Container", container.name, "Stopping")
                stop(container, timeout)
                progress("Container", container.name, "Stopped")
            progress("Container", container.name, "Removing")
            remove(container)
            progress("Container", container.name, "Removed")
        for volume in volumes:
            progress("Volume", volume, "Removing")
            remove_volume(site, volume)
            progress("Volume", volume, "Removed")
    return 0


def compose_stop(site, project, args):
    opts, names = parse(args, {"-t": "timeout=", "--timeout": "timeout="}, "compose stop")
    with site.locked():
        for container in in_reverse_order(project, project.containers(site, names)):
            if container.state["status"] in RUNNING:
                progress("Container", container.name, "Stopping")
                stop(container, int(opts.get("timeout", STOP_TIMEOUT)))
                progress("Container", container.name, "Stopped")
    return 0


def compose_start(site, project, args):
    _, names = parse(args, {}, "compose start")
    with site.locked():
        for service in project.select(names, with_deps=False):
            container = site.find(project.services[service]["container_name"])
            if container is None:
                if names:
                    raise DockerError(f'service "{service}" has no container to start')
                continue
            if container.state["status"] not in RUNNING:
                wait_dependencies(site, project, service)
                progress("Container", container.name, "Starting")
                start(container)
                progress("Container", container.name, "Started")
    return 0


def compose_restart(site, project, args):
    opts, names = parse(args, {"-t": "timeout=", "--timeout": "timeout="}, "compose restart")
    with site.locked():
        for service in project.select(names, with_deps=False):
            container = site.find(project.services[service]["container_name"])
            if container is None:
                continue
            progress("Container", container.name, "Restarting")
            stop(container, int(opts.get("timeout", STOP_TIMEOUT)))
            start(container)
            progress("Container", container.name, "Started")
    return 0


COMPOSE_PS_COLUMNS = [("NAME", "Name"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("SERVICE", "Service"),
                      ("CREATED", "RunningFor"), ("STATUS", "Status"), ("PORTS", "Ports")]
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def compose_ps(site, project, args):
    opts, names = parse(args, {"-a": "all", "--all": "all", "-q": "quiet", "--quiet": "quiet",
                               "--format": "format=", "--status": "status*", "--services": "services"}, "compose ps")
    for status in opts.get("status", []):
        if status not in STATES:
            raise DockerError(f"invalid filter 'status={status}'")
    wanted = opts.get("status") or (STATES if opts.get("all") else RUNNING)
    containers = [c for c in project.containers(site, names) if c.state["status"] in wanted]
    if opts.get("quiet"):
        for container in containers:
            print(container.id)
    elif opts.get("services"):
        for container in containers:
            print(container.cfg["service"])
    else:
        emit([ps_row(c, compose=True) for c in containers], opts.get("format", "table"), COMPOSE_PS_COLUMNS)
    return 0


def compose_logs(site, project, args):
    opts, names = parse(args, {"--tail": "tail=", "-n": "tail=", "--no-color": "no_color", "-t": "timestamps",
                               "--timestamps": "timestamps", "--no-log-prefix": "no_prefix"}, "compose logs")
    tail = parse_tail(opts.get("tail"))
    containers = project.containers(site, names)
    width = max((len(c.name) for c in containers), default=0) + 1
    for container in containers:
        prefix = "" if opts.get("no_prefix") else f"{container.name:<{width}} | "
        for stamp, _, text in read_log(container, tail):
            sys.stdout.write(prefix + (stamp + " " if opts.get("timestamps") else "") + text)
    return 0


def compose_config(site, project, args):
    opts, _ = parse(args, {"--services": "services", "--images": "images", "--volumes": "volumes",
                           "--format": "format=", "-q": "quiet", "--quiet": "quiet"}, "compose config")
    if opts.get("services"):
        print("\n".join(project.services))
    elif opts.get("images"):
        print("\n".join(svc.get("image") or f"{project.name}-{name}" for name, svc in project.services.items()))
    elif opts.get("volumes"):
        print("\n".join(project.volumes))
    elif opts.get("format") == "json":
        print(json.dumps(project.model(), indent=2))
    elif opts.get("format", "yaml") != "yaml":
        raise Unsupported(f"compose config --format {opts['format']}")
    elif not opts.get("quiet"):
        sys.stdout.write(yaml.safe_dump(project.model(), default_flow_style=False, sort_keys=True))
    return 0


def pull(candidates, ignore=False, quiet=False):
    """Pull each (service, image, buildable) as compose does, all at once; with no registry reachable
    each fails. The first failure of an image that cannot be built cancels the others' requests and
    ends the command (exit 18), unless IGNOREd; an image that can be built only warns."""
    for service, _, _ in candidates:
        if not quiet:
            event(service, "Pulling")
    fatal = None
    for service, image, buildable in candidates:
        if fatal is not None:
            message = "context canceled"
        else:
            message = registry_unreachable(normal_ref(image))
            fatal = None if ignore or buildable else message
        if not quiet:
            event(service, "Warning" if buildable else "Error", message)
    if fatal is not None:
        raise DockerError(f"Error response from daemon: {fatal}", code=PULL_FAILURE)


def compose_pull(site, project, args):
    opts, names = parse(args, {"-q": "quiet", "--quiet": "quiet", "--ignore-pull-failures": "ignore",
                               "--ignore-buildable": "ignore_buildable", "--include-deps": "include_deps",
                               "--policy": "policy="}, "compose pull")
    if opts.get("policy", "missing") not in ("missing", "always"):
        raise DockerError(f'invalid pull policy "{opts["policy"]}"')  # compose: only these two
    quiet, candidates = opts.get("quiet"), []
    for name in project.select(names, with_deps=opts.get("include_deps", False)):
        svc = project.services[name]
        skipped = None
        if "image" not in svc:
            skipped = "Skipped - No image to be pulled"
        elif opts.get("policy") == "missing" and site.find_image(svc["image"]) \
                and not normal_ref(svc["image"]).endswith(":latest"):
            skipped = "Skipped - Image is already present locally"
        elif "build" in svc and opts.get("ignore_buildable"):
            skipped = "Skipped - Image can be built"
        if skipped and not quiet:
            event(name, skipped)
        elif not skipped:
            candidates.append((name, svc["image"], "build" in svc))
    pull(candidates, ignore=opts.get("ignore"), quiet=quiet)
    return 0


def compose_build(site, project, args):
    opts, names = parse(args, {"--pull": "pull", "--no-cache": "no_cache", "-q": "quiet", "--quiet": "quiet"},
                        "compose build")
    with site.locked():
        for name in project.select(names, with_deps=False):
            if "build" in project.services[name]:
                image_for(site, project.services[name])
                progress("Service", name, "Building")
                build(site, project, name, pull=opts.get("pull"))
                progress("Service", name, "Built")
    return 0


COMPOSE_COMMANDS = {"up": compose_up, "down": compose_down, "stop": compose_stop, "start": compose_start,
                    "restart": compose_restart, "ps": compose_ps, "logs": compose_logs, "config": compose_config,
                    "pull": compose_pull, "build": compose_build}


def cmd_compose(site, args):
    opts, rest = parse(args, {"-f": "file*", "--file": "file*", "-p": "project_name=",
                              "--project-name": "project_name=", "--project-directory": "project_directory=",
                              "--env-file": "env_file=", "--ansi": "ansi=", "--progress": "progress="},
                       "compose", interspersed=False)
    if rest[:1] == ["version"]:
        vopts, _ = parse(rest[1:], {"--short": "short"}, "compose version")
        print(COMPOSE_VERSION if vopts.get("short") else f"Docker Compose version v{COMPOSE_VERSION}")
        return 0
    if not rest or rest[0] not in COMPOSE_COMMANDS:
        raise Unsupported(" ".join(["compose"] + rest[:1]))
    return COMPOSE_COMMANDS[rest[0]](site, Project(opts), rest[1:])


# ---------------------------------------------------------------- docker exec, cp, logs

def container_path(container, path):
    """Where CONTAINER's PATH lives on the site: through the view's binds, else the site's own."""
    path = os.path.normpath(os.path.join("/", path))
    for target, source in sorted(container.cfg["view"].items(), key=lambda item: -len(item[0])):
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source + path[len(target):]
    return path


def exec_failure(name, container, env):
    """Why NAME cannot be executed in CONTAINER (docker's OCI message), or None if it can."""
    if "/" in name:
        host = container_path(container, name)
        if not os.path.exists(host):
            return f'exec: "{name}": stat {name}: no such file or directory', 127
        return None if os.access(host, os.X_OK) else (f'exec: "{name}": permission denied', 126)
    for directory in env.get("PATH", "").split(":"):
        candidate = container_path(container, os.path.join(directory, name))
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return None
    return f'exec: "{name}": executable file not found in $PATH', 127


def cmd_exec(site, args):
    opts, rest = parse(args, {"-i": "interactive", "--interactive": "interactive", "-t": "tty", "--tty": "tty",
                              "-u": "user=", "--user": "user=", "-e": "env*", "--env": "env*",
                              "-w": "workdir=", "--workdir": "workdir="}, "exec", interspersed=False)
    if len(rest) < 2:
        raise DockerError('"docker exec" requires at least 2 arguments.\nSee \'docker exec --help\'.\n\n'
                          "Usage:  docker exec [OPTIONS] CONTAINER COMMAND [ARG...]\n\n"
                          "Execute a command in a running container")
    container = site.need(rest[0])
    if opts.get("interactive") and opts.get("tty") and not os.isatty(0):
        raise DockerError("the input device is not a TTY")
    status = container.state["status"]
    if status == "restarting":
        raise DockerError(f"Error response from daemon: Container {container.id} is restarting, "
                          "wait until the container is running")
    if status != "running":
        raise DockerError(f"Error response from daemon: container {container.id} is not running")
    env = shim.process_env(container.cfg)
    for item in opts.get("env", []):
        key, eq, value = item.partition("=")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    if opts.get("tty"):
        env["TERM"] = "xterm"
    argv = rest[1:]
    failure = exec_failure(argv[0], container, env)
    if failure:
        raise DockerError("", code=failure[1], stdout="OCI runtime exec failed: exec failed: unable to start "
                                                      f"container process: {failure[0]}: unknown")
    user = opts.get("user", "")
    if user not in ("", "root", "0", "0:0"):
        uid, _, gid = user.partition(":")
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--init-groups", "--", *argv]
    workdir = opts.get("workdir") or container.cfg["cwd"]
    if container.cfg["view"]:
        argv = shim.view_argv(container.cfg, argv, cwd=workdir, cdir=container.dir)
    else:
        os.chdir(workdir)
    if not opts.get("interactive"):  # as docker: without -i the command's stdin is empty
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)  # noqa: S606 — docker exec becomes the command: its stdio, its status


def tar_size(path):
    """Bytes of the tar stream docker cp sends for PATH (what its "Successfully copied" counts)."""
    def entry(p):
        return 512 + (-(-os.path.getsize(p) // 512) * 512 if os.path.isfile(p) and not os.path.islink(p) else 0)
    total = entry(path)
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path):
            total += sum(entry(os.path.join(dirpath, n)) for n in dirnames + filenames)
    return total + 1024


def copy(source, dest, contents_only):
    """Copy SOURCE to DEST by docker cp's rules: into DEST if it is a directory, and for a
    source directory given as "dir/." (CONTENTS_ONLY) its contents rather than itself."""
    if os.path.isdir(source):
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise DockerError("cannot copy a directory to a file")
        if os.path.isdir(dest) and not contents_only:
            dest = os.path.join(dest, os.path.basename(source))
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    else:
        if os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(source))
        shutil.copy2(source, dest, follow_symlinks=False)


def cp_operand(arg):
    """(container name, path) of a docker cp operand; the name is None for a local path."""
    name, colon, path = arg.partition(":")
    if colon and not os.path.isabs(arg) and not name.startswith("."):
        return name, path
    return None, arg


def cmd_cp(site, args):
    _, rest = parse(args, {}, "cp")
    if len(rest) != 2:
        raise DockerError('"docker cp" requires exactly 2 arguments.')
    (src_name, src), (dst_name, dst) = map(cp_operand, rest)
    if "-" in (src, dst):
        raise Unsupported("cp -")
    if src_name and dst_name:
        raise DockerError("copying between containers is not supported")
    if not src_name and not dst_name:
        raise DockerError("must specify at least one container source")
    if src_name:
        source = container_path(site.need(src_name), src)
        if not os.path.lexists(source):
            raise DockerError(f"Error response from daemon: Could not find the file {src} in container {src_name}")
        dest = os.path.abspath(dst)
        if not os.path.isdir(os.path.dirname(dest)):
            raise DockerError(f"open {dest}: no such file or directory")
    else:
        container = site.need(dst_name)
        source = os.path.abspath(src)
        if not os.path.lexists(source):
            raise DockerError(f"lstat {source}: no such file or directory")
        dest = container_path(container, dst)
        if not os.path.isdir(os.path.dirname(dest)):
            parent = os.path.dirname(os.path.normpath(os.path.join("/", dst)))
            raise DockerError(f"Error response from daemon: Could not find the file {parent} in container {dst_name}")
    copy(source, dest, contents_only=src.endswith("/."))
    print(f"Successfully copied {human_size(tar_size(source))} to {rest[1]}", file=sys.stderr)
    return 0


def cmd_logs(site, args):
    opts, rest = parse(args, {"--tail": "tail=", "-n": "tail=", "-t": "timestamps", "--timestamps": "timestamps"},
                       "logs")
    if len(rest) != 1:
        raise DockerError('"docker logs" requires exactly 1 argument.')
    container = site.need(rest[0])
    for stamp, stream, text in read_log(container, parse_tail(opts.get("tail"))):
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write((stamp + " " if opts.get("timestamps") else "") + text)
    return 0


# ---------------------------------------------------------------- docker ps, inspect, volume, start/stop

PS_COLUMNS = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "RunningFor"),
              ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")]


def ps_filter(container, item):
    key, eq, value = item.partition("=")
    if not eq or key not in ("name", "status", "label", "id"):
        raise DockerError(f"Error response from daemon: invalid filter '{item}'")
    if key == "name":
        return re.search(value, "/" + container.name) is not None
    if key == "id":
        return container.id.startswith(value)
    if key == "status":
        return container.state["status"] == value
    label, eq, wanted = value.partition("=")
    return label in container.cfg["labels"] and (not eq or container.cfg["labels"][label] == wanted)


def cmd_ps(site, args):
    opts, rest = parse(args, {"-a": "all", "--all": "all", "-q": "quiet", "--quiet": "quiet",
                              "--format": "format=", "-f": "filter*", "--filter": "filter*"}, "ps")
    if rest:
        raise DockerError('"docker ps" accepts no arguments.')
    filters = opts.get("filter", [])
    show_all = opts.get("all") or any(f.startswith("status=") for f in filters)
    containers = [c for c in site.containers()
                  if (show_all or c.state["status"] in RUNNING) and all(ps_filter(c, f) for f in filters)]
    containers.sort(key=lambda c: -c.cfg["created"])
    if opts.get("quiet"):
        for container in containers:
            print(container.id[:12])
    else:
        emit([ps_row(c, compose=False) for c in containers], opts.get("format", "table"), PS_COLUMNS)
    return 0


def cmd_inspect(site, args, kind=None):
    opts, names = parse(args, {"-f": "format=", "--format": "format=", "--type": "type="}, "inspect")
    kind = kind or opts.get("type")
    if kind not in (None, "container", "image", "volume"):
        raise Unsupported(f"inspect --type {kind}")
    if not names:
        raise DockerError(f'"docker {"inspect" if kind is None else kind + " inspect"}" requires at least 1 argument.')
    found, missing = [], []
    for name in names:
        container = site.find(name) if kind in (None, "container") else None
        image = site.find_image(name) if kind in (None, "image") and container is None else None
        if container is not None:
            found.append(inspect_container(container))
        elif image is not None:
            found.append(inspect_image(site, *image))
        elif kind in (None, "volume") and site.has_volume(name):
            found.append(volume_info(site, name))
        else:
            missing.append(name)
    if opts.get("format"):
        template = Template(opts["format"])
        print("\n".join(template.render(obj) for obj in found))  # nothing found: one empty line, as docker
    else:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    if missing:
        if kind == "volume":
            raise DockerError("\n".join(f"Error response from daemon: get {n}: no such volume" for n in missing))
        if kind == "image":
            raise DockerError("\n".join(str(no_such_image(n)) for n in missing))
        raise DockerError("\n".join(f"Error: No such {kind or 'object'}: {n}" for n in missing))
    return 0


def repo_digest(ref, entry):
    """The digest a pulled image was pulled by (built images have none)."""
    if entry.get("Build"):
        return None
    return ref.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(("digest " + ref).encode()).hexdigest()


def inspect_image(site, ref, entry):
    """`docker image inspect`'s object for the stored image REF (the fields the lab's users read)."""
    image = runtime_of(ref, entry)
    tags = sorted(r for r, e in site.images().items() if e["Id"] == entry["Id"])
    digests = [d for d in (repo_digest(r, entry) for r in tags) if d]
    config = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
              "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False,
              "Env": [f"PATH={STD_PATH}"], "Cmd": image.cmd if image else None, "Image": "", "Volumes": None,
              "WorkingDir": "", "Entrypoint": (image.entrypoint or None) if image else None, "OnBuild": None,
              "Labels": None}
    if image:
        config["ExposedPorts"] = {p: {} for p in image.exposed}
        config["StopSignal"] = image.stop_signal
        if image.runtime in ("postgres", "timescaledb"):
            config["Volumes"] = {PGDATA: {}}
    layer = "sha256:" + hashlib.sha256(("layer " + entry["Id"]).encode()).hexdigest()
    return {"Id": entry["Id"], "RepoTags": tags, "RepoDigests": digests, "Parent": "", "Comment": "",
            "Created": shim.rfc3339(entry["Created"]), "DockerVersion": "", "Author": "", "Config": config,
            "Architecture": "amd64", "Os": "linux", "Size": entry["Size"],
            "GraphDriver": {"Data": None, "Name": "overlay2"}, "RootFS": {"Type": "layers", "Layers": [layer]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}}


IMAGE_COLUMNS = [("REPOSITORY", "Repository"), ("TAG", "Tag"), ("IMAGE ID", "ID"), ("CREATED", "CreatedSince"),
                 ("SIZE", "Size")]


def cmd_images(site, args):
    """docker images / docker image ls [-q] [--no-trunc] [--format F] [REPOSITORY[:TAG]], newest first."""
    opts, refs = parse(args, {"-q": "quiet", "--quiet": "quiet", "-a": "all", "--all": "all", "--no-trunc": "no_trunc",
                              "--format": "format="}, "images")
    if len(refs) > 1:
        raise DockerError('"docker images" requires at most 1 argument.')
    rows, now = [], time.time()
    for ref, entry in sorted(site.images().items(), key=lambda item: (-item[1]["Created"], item[0])):
        repo, _, tag = ref.rpartition(":")
        if refs and refs[0] not in (repo, ref):
            continue
        short = entry["Id"] if opts.get("no_trunc") else entry["Id"].removeprefix("sha256:")[:12]
        rows.append({"Containers": "N/A", "CreatedAt": go_time(entry["Created"]),
                     "CreatedSince": human_duration(now - entry["Created"]) + " ago", "Digest": "<none>", "ID": short,
                     "Repository": repo, "SharedSize": "N/A", "Size": human_size(entry["Size"]), "Tag": tag,
                     "UniqueSize": "N/A", "VirtualSize": human_size(entry["Size"])})
    if opts.get("quiet"):
        for short in dict.fromkeys(row["ID"] for row in rows):
            print(short)
        return 0
    emit(rows, opts.get("format", "table"), IMAGE_COLUMNS)
    return 0


def cmd_pull(site, args):
    """docker pull: no registry answers in the lab, so every pull fails as the daemon reports it."""
    opts, refs = parse(args, {"-q": "quiet", "--quiet": "quiet", "-a": "all_tags", "--all-tags": "all_tags",
                              "--platform": "platform="}, "pull")
    if len(refs) != 1:
        raise DockerError("\"docker pull\" requires exactly 1 argument.\nSee 'docker pull --help'.")
    ref = refs[0]
    if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?"
                        r"(@sha256:[0-9a-f]{64})?", ref):
        raise DockerError("invalid reference format")
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1] and not opts.get("quiet"):
        print("Using default tag: latest", flush=True)
    raise DockerError(f"Error response from daemon: {registry_unreachable(ref)}")


def cmd_rmi(site, args):
    """docker rmi / docker image rm: untag; delete the image when no tag is left (moby's rules)."""
    opts, refs = parse(args, {"-f": "force", "--force": "force", "--no-prune": "no_prune"}, "rmi")
    if not refs:
        raise DockerError('"docker rmi" requires at least 1 argument.')
    errors = []
    with site.locked():
        for ref in refs:
            found, store = site.find_image(ref), site.images()
            if found is None:
                errors.append(str(no_such_image(ref)))
                continue
            name, entry = found
            tags = [r for r, e in store.items() if e["Id"] == entry["Id"]]
            users = [c for c in site.containers() if c.cfg["image_id"] == entry["Id"]]
            running = [c for c in users if c.state["status"] in RUNNING]
            untag = [name] if normal_ref(ref) == name else tags
            short = entry["Id"].removeprefix("sha256:")[:12]
            if len(untag) == len(tags) and running and opts.get("force"):
                errors.append(f"Error response from daemon: conflict: unable to delete {short} (cannot be forced) - "
                              f"image is being used by running container {running[0].id[:12]}")
                continue
            if len(untag) == len(tags) and users and not opts.get("force"):
                errors.append(f'Error response from daemon: conflict: unable to remove repository reference "{name}" '
                              f"(must force) - container {users[0].id[:12]} is using its referenced image {short}")
                continue
            for tag in untag:
                print(f"Untagged: {tag}")
                if repo_digest(tag, entry):
                    print(f"Untagged: {repo_digest(tag, entry)}")
                del store[tag]
            if len(untag) == len(tags):
                print(f"Deleted: {entry['Id']}")
            site.save_images(store)
    if errors:
        raise DockerError("\n".join(errors))
    return 0


def cmd_image(site, args):
    subs = {"inspect": lambda s, a: cmd_inspect(s, a, kind="image"), "ls": cmd_images, "list": cmd_images,
            "rm": cmd_rmi, "remove": cmd_rmi, "pull": cmd_pull}
    if not args or args[0] not in subs:
        raise Unsupported(" ".join(["image"] + args[:1]))
    return subs[args[0]](site, args[1:])


VOLUME_COLUMNS = [("DRIVER", "Driver"), ("VOLUME NAME", "Name")]


def cmd_volume(site, args):
    if not args or args[0] not in ("ls", "list", "inspect", "rm", "remove"):
        raise Unsupported(" ".join(["volume"] + args[:1]))
    sub, args = args[0], args[1:]
    if sub in ("ls", "list"):
        opts, _ = parse(args, {"-q": "quiet", "--quiet": "quiet", "--format": "format="}, "volume ls")
        names = site.volumes()
        if opts.get("quiet"):
            for name in names:
                print(name)
            return 0
        rows = []
        for name in names:
            info = volume_info(site, name)
            labels = ",".join(f"{k}={v}" for k, v in sorted((info["Labels"] or {}).items()))
            rows.append({**info, "Labels": labels, "Links": "N/A", "Size": "N/A"})
        emit(rows, opts.get("format", "table"), VOLUME_COLUMNS)
        return 0
    if sub == "inspect":
        return cmd_inspect(site, args, kind="volume")
    opts, names = parse(args, {"-f": "force", "--force": "force"}, "volume rm")
    errors = []
    with site.locked():
        for name in names:
            try:
                if not site.has_volume(name):
                    if opts.get("force"):
                        continue
                    raise DockerError(f"Error response from daemon: get {name}: no such volume")
                remove_volume(site, name)
                print(name)
            except DockerError as err:
                errors.append(str(err))
    if errors:
        raise DockerError("\n".join(errors))
    return 0


def cmd_lifecycle(action):
    """docker stop|start|restart CONTAINER...: the container's name echoed per success."""
    def run(site, args):
        opts, names = parse(args, {"-t": "timeout=", "--time": "timeout=", "--timeout": "timeout="}
                            if action != "start" else {}, action)
        errors = []
        with site.locked():
            for name in names:
                container = site.find(name)
                if container is None:
                    errors.append(str(no_such_container(name)))
                    continue
                timeout = int(opts.get("timeout", STOP_TIMEOUT))
                if action in ("stop", "restart"):
                    stop(container, timeout)
                if action in ("start", "restart") and container.state["status"] not in RUNNING:
                    start(container)
                print(name)
        if errors:
            raise DockerError("\n".join(errors))
        return 0
    return run


COMMANDS = {"compose": cmd_compose, "exec": cmd_exec, "cp": cmd_cp, "logs": cmd_logs, "ps": cmd_ps,
            "inspect": cmd_inspect, "volume": cmd_volume, "image": cmd_image, "images": cmd_images, "pull": cmd_pull,
            "rmi": cmd_rmi, "run": cmd_run, "rm": cmd_rm, "stop": cmd_lifecycle("stop"),
            "start": cmd_lifecycle("start"), "restart": cmd_lifecycle("restart")}


def main(argv):
    try:
        if argv[:1] in (["--version"], ["-v"]):
            print(DOCKER_VERSION)
            return 0
        if not argv or argv[0] not in COMMANDS:
            raise Unsupported(argv[0] if argv else "docker without a command")
        lab, root = os.environ.get("NETMON_LAB"), os.environ.get("NETMON_LAB_SITE")
        if not lab or not root:
            raise DockerError("docker: NETMON_LAB and NETMON_LAB_SITE must be set (run it through the site's wrapper)")
        return COMMANDS[argv[0]](Site(lab, root), argv[1:])
    except DockerError as err:
        sys.stdout.flush()
        if err.stdout:
            print(err.stdout, flush=True)
        if str(err):
            print(err, file=sys.stderr)
        return err.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
