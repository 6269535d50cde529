"""`docker exec` and `docker cp`: a container's paths resolved through its view (its binds)."""

import os
import shutil
import sys

import shim

from .errors import DockerError, Unsupported
from .flags import parse
from .output import human_size


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
