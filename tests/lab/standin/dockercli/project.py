"""A compose project as `docker compose` reads it: the file, .env, interpolation, normalised services."""

import os
import re
import shlex

import yaml

from .errors import DockerError, Unsupported
from .output import warn

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


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
