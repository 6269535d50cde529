"""The command table and `main`: docker's subcommands dispatched, errors printed as the CLI prints them.

`docker inspect` lives here because it answers for every kind of object (container, image, volume)."""

import json
import os
import sys

from .compose import cmd_compose
from .containers import cmd_lifecycle, cmd_logs, cmd_ps, cmd_rm, cmd_run, inspect_container
from .errors import DockerError, Unsupported
from .exec_cp import cmd_cp, cmd_exec
from .flags import parse
from .images import cmd_images, cmd_pull, cmd_rmi, inspect_image, no_such_image
from .state import Site
from .templates import Template
from .volumes import volume_info, volume_ls, volume_rm

DOCKER_VERSION = "Docker version 27.5.1, build 9f9e405"
#: what the CLI says, exit 1, for any command that needs the daemon when it does not answer
DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


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


def subcommands(group, table):
    """docker GROUP SUB ARGS: SUB's function from TABLE; any other SUB is unsupported."""
    def run(site, args):
        if not args or args[0] not in table:
            raise Unsupported(" ".join([group] + args[:1]))
        return table[args[0]](site, args[1:])
    return run


COMMANDS = {"compose": cmd_compose, "exec": cmd_exec, "cp": cmd_cp, "logs": cmd_logs, "ps": cmd_ps,
            "inspect": cmd_inspect, "images": cmd_images, "pull": cmd_pull, "rmi": cmd_rmi, "run": cmd_run,
            "rm": cmd_rm, "stop": cmd_lifecycle("stop"), "start": cmd_lifecycle("start"),
            "restart": cmd_lifecycle("restart"),
            "image": subcommands("image", {"inspect": lambda s, a: cmd_inspect(s, a, kind="image"), "ls": cmd_images,
                                           "list": cmd_images, "rm": cmd_rmi, "remove": cmd_rmi, "pull": cmd_pull}),
            "volume": subcommands("volume", {"ls": volume_ls, "list": volume_ls, "rm": volume_rm, "remove": volume_rm,
                                             "inspect": lambda s, a: cmd_inspect(s, a, kind="volume")})}


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
        site = Site(lab, root)
        if os.path.exists(site.path("daemon-unreachable")) and argv[:2] != ["compose", "version"]:
            raise DockerError(DAEMON_DOWN)
        return COMMANDS[argv[0]](site, argv[1:])
    except DockerError as err:
        sys.stdout.flush()
        if err.stdout:
            print(err.stdout, flush=True)
        if str(err):
            print(err, file=sys.stderr)
        return err.code
