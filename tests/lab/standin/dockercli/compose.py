"""`docker compose` (Compose v2.29): up, down, stop, start, restart, ps, logs, config, pull, build,
and the containers it creates from a project's services."""

import hashlib
import json
import os
import shutil
import sys
import time

import yaml

from .containers import STOP_TIMEOUT, new_container, parse_tail, ps_row, read_log, remove, start, stop, wait_healthy
from .errors import PULL_FAILURE, DockerError, Unsupported
from .flags import parse
from .images import build, image_for, image_id, image_ref, no_such_image, registry_unreachable
from .output import emit, event, progress
from .project import Project, env_value, parse_duration
from .state import RUNNING, normal_ref
from .volumes import create_volume, remove_volume

COMPOSE_VERSION = "2.29.7"


def shim_healthcheck(check):
    """A compose healthcheck as the shim runs it (argv, seconds), or None when there is none."""
    if not check or check["test"][0] == "NONE" or check.get("disable"):
        return None
    test = check["test"]
    argv = ["/bin/sh", "-c", " ".join(test[1:])] if test[0] == "CMD-SHELL" else test[1:]
    durations = {key: parse_duration(check.get(key, default), key)
                 for key, default in (("interval", "30s"), ("timeout", "30s"), ("start_period", "0s"))}
    return {"test": test, "argv": argv, "retries": check["retries"], **durations}


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
            wait_dependencies(site, project, name, among=order if opts.get("no_deps") else None)
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


def wait_dependencies(site, project, service, among=None):
    """Honour depends_on conditions before SERVICE starts, as compose does; with ``among`` (up
    --no-deps: the services named) only those: compose does not wait for a service --no-deps left
    out (shouldWaitForDependency: "don't wait for disabled service")."""
    for dep, spec in project.services[service].get("depends_on", {}).items():
        container = site.find(project.services[dep]["container_name"])
        if container is None or spec["condition"] == "service_started" or (among is not None and dep not in among):
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
