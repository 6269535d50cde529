"""The stand-in images (which process plays each), builds, and `docker images`, `pull`, `rmi`,
`image inspect`; no registry answers in the lab."""

import collections
import contextlib
import hashlib
import io
import os
import re
import secrets
import shutil
import tempfile
import time

import shim

from .errors import BUILD_FAILURE, DockerError, Unsupported
from .exec_cp import tar_size
from .flags import parse
from .output import emit, go_time, human_duration, human_size, progress
from .state import RUNNING, normal_ref

PLAIN_PG_BIN = "/usr/lib/postgresql/15/bin"  # the postgres image is the host's PostgreSQL
TIMESCALE_PG_BIN = "images/timescaledb/usr/lib/postgresql/15/bin"  # under LAB, made by images.py
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PGDATA = "/var/lib/postgresql/data"
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
DOCKER_HUB = "registry-1.docker.io"


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
