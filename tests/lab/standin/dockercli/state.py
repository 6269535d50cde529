"""The site's daemon state on disk (SITE/docker, tests/lab/README.md): containers, volumes,
the image store, and the lock that serialises changing commands."""

import contextlib
import fcntl
import hashlib
import os
import re

import shim

from .errors import no_such_container

RUNNING = ("running", "restarting")  # what the engine lists without -a
# What each site's operator pulled while the registry still answered: (reference, size in bytes as
# the real image reports it). No registry answers in the lab, so these are all a daemon ever has,
# besides what it builds; `docker image rm` takes one away (the plain-image-missing variant).
PULLED = (("postgres:16-alpine", 275_036_400), ("timescale/timescaledb:latest-pg16", 1_104_000_000),
          ("redis:7-alpine", 41_167_800), ("nginx:alpine", 47_979_700), ("python:3.12-slim", 124_345_600))
PULLED_CREATED = 1732147200  # 2024-11-21: when the upstream images were built


def normal_ref(ref):
    """REF as the engine names it: docker.io/library/ dropped, ":latest" added when it has no tag."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    return ref if "@" in ref or ":" in ref.rsplit("/", 1)[-1] else ref + ":latest"


def pulled_image_id(ref):
    return "sha256:" + hashlib.sha256(normal_ref(ref).encode()).hexdigest()


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
