"""Named volumes: SITE/docker/volumes/NAME/_data; `docker volume ls|rm|inspect`."""

import os
import shutil
import time

import shim

from .errors import DockerError
from .flags import parse
from .output import emit


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


VOLUME_COLUMNS = [("DRIVER", "Driver"), ("VOLUME NAME", "Name")]


def volume_ls(site, args):
    """docker volume ls [-q] [--format F]."""
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


def volume_rm(site, args):
    """docker volume rm [-f] VOLUME...: one in use is refused; with -f a missing one is no failure."""
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
