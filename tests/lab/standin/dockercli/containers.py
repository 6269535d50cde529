"""A site's containers: start/stop through their shims, create, and what `docker run`, `rm`, `ps`,
`logs`, `stop|start|restart` and `inspect` show of them."""

import collections
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time

import shim

from .errors import DockerError, Unsupported, no_such_container
from .flags import parse
from .images import PGDATA, PLAIN_PG_BIN, STD_PATH, TIMESCALE_PG_BIN, registry_unreachable, runtime_of
from .output import emit, go_time, human_duration
from .state import RUNNING, Container, normal_ref
from .volumes import create_volume

STANDIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # shim.py and the programs beside it
INITDB_D = "/docker-entrypoint-initdb.d"
STUB_SCRIPT = 'trap "exit 0" TERM INT QUIT; while :; do sleep 3600 & wait $!; done'
START_TIMEOUT = 10  # seconds for a shim to report the main process started
STOP_TIMEOUT = shim.STOP_GRACE


def start(container):
    """Start CONTAINER's shim and wait until it reports the main process started."""
    shim.kill_leftovers(container.state)
    shim.write_json(os.path.join(container.dir, "state.json"), {"status": "created"})
    subprocess.run([sys.executable, os.path.join(STANDIN, "shim.py"), container.dir], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while (state := container.state)["status"] == "created":
        if not os.path.isdir(container.dir):  # --rm, and its main process has already come and gone
            return
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
