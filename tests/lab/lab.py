"""The NetMon lab: stand-in NetMon servers, each in namespaces of its own, reached over real SSH.

`Lab(name).up(...)` makes sites lab1..labN, `down()` removes everything the lab made and
`status()` reads each site back. See tests/lab/README.md for the layout and why it is so.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import engine, relay
from .images import build_timescaledb_image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAB_BASE = Path("/var/lib/netmon-lab")
RUN_BASE = HERE / "run"
DEFAULT_NAME = "lab"
SUBNET = "10.213"  # 10.213.<lab octet>.0/24, one /30 per site; only inside namespaces the lab made
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
VARIANTS = (
    "migrated",
    "fresh-volume",
    "preload-alter-system",
    "summary-cagg",
    "uncommitted",
    "no-git",
    "no-backup",
    "two-backups",
    "corrupt-backup",
    "backend-crashloop",
    "rolled-back",
    "plain-image-missing",
    "third-hypertable",
)
ENGINES = ("standin", "docker")  # the docker CLI stand-in, or a real Docker Engine per site (engine.py)
MAX_SITES = 60
BUILD_WORKERS = 3


class LabError(Exception):
    """A lab command cannot go on; the message says why and what to do."""


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a host command, capturing output; a failure names the command and its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@dataclass(frozen=True)
class Site:
    lab: str
    index: int  # 1-based
    octet: int

    @property
    def name(self) -> str:
        return f"lab{self.index}"

    @property
    def netns(self) -> str:
        return f"nl-{self.lab}-{self.name}"

    @property
    def veth(self) -> str:
        return f"nl{self.octet}h{self.index}"

    @property
    def host_ip(self) -> str:
        return f"{SUBNET}.{self.octet}.{4 * (self.index - 1) + 1}"

    @property
    def ip(self) -> str:
        return f"{SUBNET}.{self.octet}.{4 * (self.index - 1) + 2}"

    @property
    def dir(self) -> Path:
        return LAB_BASE / self.lab / "sites" / self.name

    @property
    def cgroup_parent(self) -> str:
        return f"/netmon-lab-{self.lab}-{self.name}"

    def daemon(self) -> engine.Daemon:
        """The site's own dockerd (engine docker), entered through the site's namespaces."""
        return engine.Daemon(self.dir / "engine", self.enter(), self.cgroup_parent)

    def holder_pid(self) -> int | None:
        return engine.live_pid(self.dir / "holder.pid")

    def enter(self, *argv: str) -> list[str]:
        """The argv that runs a command inside the site: its network, mount and UTS namespaces."""
        pid = self.holder_pid()
        if pid is None:
            raise LabError(f"site {self.name} of lab {self.lab} is not running — run `invoke lab.up` again")
        # --root/--wd: entering a mount namespace resets the root to the namespace's own; keep the
        # holder's (it differs when the lab runs inside a chroot).
        return ["nsenter", "-t", str(pid), "--net", "--mount", "--uts", "--root", "--wd", "--", *argv]

    def run(self, cmd: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """Run a shell command inside the site as root (what a console login there would do)."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        argv = self.enter("/bin/sh", "-c", f"cd /root && {cmd}")
        return sh(*argv, check=check, timeout=timeout, env=env, **kw)


class Lab:
    """One lab: a name, its sites and the files it writes for clients."""

    def __init__(self, name: str = DEFAULT_NAME):
        if not NAME_RE.match(name):
            raise LabError(f"lab name {name!r} is not valid — use 1-8 lowercase letters or digits, starting with a letter")
        self.name = name
        self.root = LAB_BASE / name
        self.run_dir = RUN_BASE if name == DEFAULT_NAME else RUN_BASE / name

    # -- paths the clients use -------------------------------------------------------------
    @property
    def ssh_config(self) -> Path:
        return self.run_dir / "ssh_config"

    @property
    def inventory(self) -> Path:
        return self.run_dir / "hosts.yml"

    @property
    def key(self) -> Path:
        return self.run_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.run_dir / "known_hosts"

    @property
    def admin_password_file(self) -> Path:
        return self.run_dir / "admin_password"

    def sites(self) -> list[Site]:
        try:
            meta = json.loads((self.root / "lab.json").read_text())
        except (OSError, ValueError):
            return []
        return [Site(self.name, i, meta["octet"]) for i in range(1, meta["sites"] + 1)]

    def site(self, name: str) -> Site:
        for s in self.sites():
            if s.name == name:
                return s
        raise LabError(f"lab {self.name} has no site {name!r}")

    @property
    def relay_dir(self) -> Path:
        return self.root / "relay"

    def relay_ports(self) -> dict[str, int]:
        """site → its relay port on 127.0.0.1 when the lab was brought up with a latency, else {}."""
        try:
            return json.loads((self.root / "lab.json").read_text()).get("relay", {}).get("ports", {})
        except (OSError, ValueError):
            return {}

    def set_latency(self, latency_ms: float, jitter_ms: float = 0.0) -> None:
        """Change the running relay's delay (a lab brought up with a latency), e.g. to compare 0 and 50 ms."""
        if not self.relay_ports():
            raise LabError(f"lab {self.name} has no latency relay — bring it up with --latency MS")
        relay.set_delay(self.relay_dir, latency_ms, jitter_ms)

    def variants(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "lab.json").read_text())["variants"]
        except (OSError, ValueError, KeyError):
            return {}

    def engine(self) -> str:
        try:
            return json.loads((self.root / "lab.json").read_text()).get("engine", "standin")
        except (OSError, ValueError):
            return "standin"

    @contextmanager
    def docker_daemon_unreachable(self, name: str):
        """Inside the block, docker on site NAME answers as when its daemon is down (the CLI's own
        "Cannot connect to the Docker daemon" error; `docker compose version` still works): the
        engine's socket moved aside (the daemon keeps running), or the stand-in told by a file."""
        site = self.site(name)
        if self.engine() == "docker":
            sock = site.daemon().socket
            aside = sock.with_name(sock.name + ".aside")
            sock.rename(aside)
            try:
                yield
            finally:
                aside.rename(sock)
            return
        marker = site.dir / "docker" / "daemon-unreachable"
        marker.touch()
        try:
            yield
        finally:
            marker.unlink()

    # -- up ----------------------------------------------------------------------------------
    def up(self, sites: int = 3, flows: int = 10_000, variants: list[str] | None = None, log=print,
           latency_ms: float | None = None, jitter_ms: float = 0.0, ingest_rate: float | None = None,
           engine_name: str | None = None) -> None:
        """``latency_ms`` (None: none): every site's SSH is reached through a relay on 127.0.0.1 that
        delays each byte that long (± ``jitter_ms``) each way (relay.py). ``ingest_rate``: flow rows a
        second each backend writes (None: the backend stand-in's light default). ``engine_name``:
        "docker" or "standin"; by default $NETMON_LAB_ENGINE, else "docker" (a whole test run moves to
        the stand-in with NETMON_LAB_ENGINE=standin, where dockerd cannot run, without changing its fixtures)."""
        variants = plan_variants(sites, variants)
        if latency_ms is None and jitter_ms:
            raise LabError("--jitter needs --latency")
        if latency_ms is not None and not (0 <= jitter_ms <= latency_ms):
            raise LabError(f"--latency {latency_ms} --jitter {jitter_ms}: use 0 <= jitter <= latency")
        engine_name = engine_name or os.environ.get("NETMON_LAB_ENGINE") or "docker"
        if engine_name not in ENGINES:
            raise LabError(f"unknown engine {engine_name!r} — choose from {', '.join(ENGINES)}")
        check_host()
        started = time.monotonic()
        images = None
        if engine_name == "docker":
            try:
                engine.check_engine()
                images = engine.ensure_images(log)
                engine.ensure_store(images, log)
            except engine.EngineError as exc:
                raise LabError(str(exc)) from None
        self.down(log=lambda *_: None)
        LAB_BASE.mkdir(parents=True, exist_ok=True)
        with (LAB_BASE / ".alloc.lock").open("w") as lock:  # labs made at the same time get different subnets
            fcntl.flock(lock, fcntl.LOCK_EX)
            octet = free_octet()
            self.root.mkdir(parents=True)
            (self.root / "lab.json").write_text(json.dumps({
                "sites": sites, "octet": octet, "flows": flows, "engine": engine_name,
                "variants": {f"lab{i + 1}": v for i, v in enumerate(variants)}}))
        shutil.copytree(HERE / "standin", self.root / "standin", ignore=shutil.ignore_patterns("__pycache__"))
        for script in ("build.py", "seed.py"):
            shutil.copy2(HERE / script, self.root / script)
        if images is None:
            build_timescaledb_image(self.root / "images" / "timescaledb")
        else:
            (self.root / "bin").mkdir()
            plugin = engine.compose_plugin()
            try:
                os.link(plugin, self.root / "bin/docker-compose")
            except OSError:
                shutil.copy2(plugin, self.root / "bin/docker-compose")
        self._write_client_secrets()
        all_sites = self.sites()
        for site in all_sites:
            self._make_host(site, images)
        log(f"lab {self.name}: {sites} site(s) have hosts and sshd ({time.monotonic() - started:.1f}s); building NetMon installs")
        copies = clone_plan(variants) if images is not None and engine.can_link(engine.layer_store(), self.root) else {}
        with ThreadPoolExecutor(BUILD_WORKERS) as pool:
            futures = {pool.submit(self._build, site, variants[site.index - 1], flows, images, ingest_rate): site
                       for site in all_sites if site.index not in copies}
            for fut, site in futures.items():
                fut.result()
                log(f"  {site.name}: {variants[site.index - 1]} ready ({time.monotonic() - started:.1f}s)")
        groups: dict[int, list[Site]] = {}
        for index, template in copies.items():
            groups.setdefault(template, []).append(all_sites[index - 1])
        with ThreadPoolExecutor(BUILD_WORKERS) as pool:
            futures = {pool.submit(self._clone, all_sites[t - 1], group, variants[t - 1]): group for t, group in groups.items()}
            for fut, group in futures.items():
                fut.result()
                for site in group:
                    log(f"  {site.name}: {variants[site.index - 1]} ready, a copy of {all_sites[copies[site.index] - 1].name} "
                        f"({time.monotonic() - started:.1f}s)")
        if latency_ms is not None:
            self._start_relay(all_sites, latency_ms, jitter_ms)
            log(f"lab {self.name}: SSH through a relay delaying {latency_ms:g} ms ± {jitter_ms:g} ms each way")
        self._write_client_files(all_sites)
        log(f"lab {self.name}: up in {time.monotonic() - started:.1f}s — ssh -F {rel(self.ssh_config)} lab1")

    def _start_relay(self, sites: list[Site], latency_ms: float, jitter_ms: float) -> None:
        try:
            ports = relay.start(self.relay_dir, {s.name: (s.ip, 22) for s in sites}, latency_ms, jitter_ms)
        except relay.RelayError as err:
            raise LabError(str(err)) from None
        meta = json.loads((self.root / "lab.json").read_text())
        meta["relay"] = {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "ports": ports}
        (self.root / "lab.json").write_text(json.dumps(meta))

    def _write_client_secrets(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for f in (self.key, self.key.with_suffix(".pub")):
            f.unlink(missing_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"netmon-lab-{self.name}", "-f", str(self.key))
        password = secrets.token_urlsafe(18)
        write_secret(self.admin_password_file, password)
        # The builder runs inside the sites, which do not see the checkout when it lives under
        # /root or /tmp (theirs are private): it reads the lab's own copy.
        write_secret(self.root / "admin_password", password)

    def _make_host(self, site: Site, images: Path | None) -> None:
        """Namespaces, veth, addresses, private mounts and sshd: a host that answers on port 22.
        IMAGES (engine docker): the site also gets cgroups, its own /run and /etc/docker, for dockerd."""
        d = site.dir
        for sub in ("root/.ssh", "root/netmon", "tmp", "etc/docker", "sbin", "docker", "ssh"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "root", 0o700)
        os.chmod(d / "tmp", 0o1777)  # noqa: S103 — a /tmp is world-writable and sticky
        (d / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost {site.name}\n127.0.0.1\tdb redis backend frontend nginx\n::1\tlocalhost\n")
        # No name server: nothing in a site resolves (or sends to) an outside name, so no registry answers.
        (d / "etc/resolv.conf").write_text("# NetMon lab site: no name server\n")
        wrapper = d / "sbin/docker"
        if images is None:
            wrapper.write_text(
                "#!/bin/sh\n# The NetMon lab's docker stand-in (tests/lab/standin/docker.py).\n"
                f"NETMON_LAB_SITE={d} NETMON_LAB={self.root} exec /usr/bin/python3 {self.root}/standin/docker.py \"$@\"\n")
        else:
            # The Compose plugin goes with this wrapper (its DOCKER_CONFIG), not in the site's ~/.docker:
            # with the wrapper moved away the site has no `docker compose`, as with the stand-in, even
            # though this machine's docker CLI is on the site's PATH too.
            wrapper.write_text("#!/bin/sh\n# The site's own Docker Engine (tests/lab/engine.py).\n"
                               f"DOCKER_HOST=unix://{d}/engine/docker.sock DOCKER_CONFIG={d}/engine/client "
                               f"exec {engine.DOCKER} \"$@\"\n")
            (d / "engine/client/cli-plugins").mkdir(parents=True)
            os.symlink(self.root / "bin/docker-compose", d / "engine/client/cli-plugins/docker-compose")
        wrapper.chmod(0o755)
        shutil.copy(self.key.with_suffix(".pub"), d / "root/.ssh/authorized_keys")
        os.chmod(d / "root/.ssh/authorized_keys", 0o600)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", site.name, "-f", str(d / "ssh/ssh_host_ed25519_key"))
        (d / "ssh/sshd_config").write_text(sshd_config(d))
        (d / "admin_password").unlink(missing_ok=True)
        env_pw = secrets.token_urlsafe(18)
        write_secret(d / "db_password", env_pw)

        sh("ip", "netns", "add", site.netns)
        sh("ip", "link", "add", site.veth, "type", "veth", "peer", "name", "eth0", "netns", site.netns)
        sh("ip", "addr", "add", f"{site.host_ip}/30", "dev", site.veth)
        sh("ip", "link", "set", site.veth, "up")
        for cmd in (["ip", "addr", "add", f"{site.ip}/30", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", site.netns, *cmd)
        mounts = "; ".join(f"mount --bind {d / src} {dst}" for src, dst in (
            ("root", "/root"), ("tmp", "/tmp"), ("etc/hosts", "/etc/hosts"), ("etc/resolv.conf", "/etc/resolv.conf"),
            ("sbin", "/usr/local/sbin"), ("sbin", "/usr/local/bin")))  # no docker client or tools of this machine's
        if images is not None:
            mounts = (f"{engine.cgroup_mounts_script()}; {mounts}; mount --bind {d / 'etc/docker'} /etc/docker; "
                      "mount -t tmpfs -o mode=755 run /run; mkdir -m 755 /run/sshd /run/lock")
        holder = subprocess.Popen(
            ["ip", "netns", "exec", site.netns, "unshare", "--mount", "--uts", "--propagation", "private", "--",
             "/bin/sh", "-c", f"set -e; {mounts}; hostname {site.name}; echo ready; exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True)
        if holder.stdout.readline().strip() != "ready":
            raise LabError(f"{site.name}: could not set up its namespaces: {holder.stderr.read().strip()}")
        holder.stdout.close()
        # `ip netns exec` execs unshare which execs sh which execs sleep: one pid throughout.
        (d / "holder.pid").write_text(str(holder.pid))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        sh(*site.enter("/usr/sbin/sshd", "-f", str(d / "ssh/sshd_config"), "-E", str(d / "ssh/sshd.log")))

    def _build(self, site: Site, variant: str, flows: int, images: Path | None,
               ingest_rate: float | None = None) -> None:
        engine_log = ""
        if images is not None:
            try:
                daemon, started = site.daemon(), time.monotonic()
                linked = engine.seed_data_root(engine.layer_store(), daemon.dir / "data")
                seeded = time.monotonic()
                daemon.start()
                loading = time.monotonic()
                if not linked:
                    daemon.docker("load", "-q", "-i", str(images), timeout=900)
                how = "linked from the layer store" if linked else "loaded"
                engine_log = (f"engine: images {how} in {seeded - started + time.monotonic() - loading:.1f}s, "
                              f"dockerd answered in {loading - seeded:.1f}s\n")
            except engine.EngineError as exc:
                raise LabError(f"{site.name}: {exc}") from None
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8", "NETMON_LAB": str(self.root)}
        argv = site.enter("/usr/bin/python3", str(self.root / "build.py"), "--variant", variant, "--flows", str(flows),
                          "--db-password-file", str(site.dir / "db_password"),
                          "--admin-password-file", str(self.root / "admin_password"),
                          *(["--ingest-rate", str(ingest_rate)] if ingest_rate is not None else []))
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        (site.dir / "build.log").write_text(engine_log + proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise LabError(f"{site.name} ({variant}): build failed — see {site.dir / 'build.log'}\n{tail}")

    def _clone(self, template: Site, copies: list[Site], variant: str) -> None:
        """Engine sites of one variant after the first are copies of it, not builds of their own: its
        daemon stopped (its containers stop cleanly, their data consistent), its data root and /root
        copied (image layers hard-linked from the store, the rest copied: containers, volumes, the
        NetMon install, its dumps, the backend's record of committed flow ids, the database
        password), then every daemon started; the containers start by their restart policy, as on a
        server that rebooted. A build costs a site 60-90 s on a busy machine, a copy seconds."""
        started = time.monotonic()
        source = template.daemon().dir / "data"
        if not template.daemon().stop():  # a data root is copied only from a daemon that has stopped
            raise LabError(f"{template.name}: its dockerd did not stop within {engine.STOP_TIMEOUT}s, so no copy of it was made")
        try:
            for site in copies:
                if not engine.seed_data_root(engine.layer_store(), site.daemon().dir / "data", source=source):
                    raise LabError(f"{site.name}: cannot link {source}'s layers — "
                                   "the lab and the image cache need one file system")
                for entry in (template.dir / "root").iterdir():
                    if entry.name != ".ssh":
                        sh("cp", "-a", str(entry), f"{site.dir / 'root'}/")
                shutil.copy2(template.dir / "db_password", site.dir / "db_password")
        finally:
            template.daemon().start()
        try:
            for site in copies:
                site.daemon().start()
        except engine.EngineError as exc:
            raise LabError(str(exc)) from None
        for site in (template, *copies):
            wait_ready(site, variant)
        for site in copies:
            (site.dir / "build.log").write_text(
                f"engine: a copy of {template.name} ({variant}), made and started in {time.monotonic() - started:.1f}s\n")

    def _write_client_files(self, sites: list[Site]) -> None:
        """known_hosts, ssh_config and hosts.yml. Through a relay a site is 127.0.0.1:PORT: its key is
        filed under the site's name (ssh_config's HostKeyAlias, which ssh looks up without the port) and
        under `[127.0.0.1]:PORT` (what paramiko looks up when only the inventory is used)."""
        ports = self.relay_ports()
        address = {s.name: ("127.0.0.1", ports[s.name]) if ports else (s.ip, 22) for s in sites}
        lines = []
        for s in sites:
            host_key = (s.dir / "ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
            host, port = address[s.name]
            lines.append(f"{s.name},{host if port == 22 else f'[{host}]:{port}'} {' '.join(host_key)}\n")
        self.known_hosts.write_text("".join(lines))
        cfg = [f"# NetMon lab {self.name!r}: written by `invoke lab.up`; removed by `invoke lab.down`.\n"]
        for s in sites:
            host, port = address[s.name]
            cfg.append(
                f"Host {s.name}\n  HostName {host}\n  User root\n  Port {port}\n  IdentityFile {self.key}\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
                f"  HostKeyAlias {s.name}\n  ConnectTimeout 5\n  ServerAliveInterval 5\n  BatchMode yes\n\n")
        self.ssh_config.write_text("".join(cfg))
        inventory = {
            "defaults": {
                "user": "root",
                "port": 22,
                "identity_file": str(self.key),
                "known_hosts": str(self.known_hosts),
                "admin_password_file": str(self.admin_password_file),
            },
            "sites": {s.name: {"host": address[s.name][0], **({"port": address[s.name][1]} if ports else {})}
                      for s in sites},
            "groups": {"lab": [s.name for s in sites]},
        }
        self.inventory.write_text(
            f"# NetMon lab {self.name!r}: written by `invoke lab.up`.\n" + yaml.safe_dump(inventory, sort_keys=False))

    # -- down --------------------------------------------------------------------------------
    def down(self, log=print) -> None:
        """Remove processes, namespaces, links, mounts and files of this lab; safe to run twice."""
        prefix = f"nl-{self.name}-"
        namespaces = [n.split()[0] for n in sh("ip", "netns", "list", check=False).stdout.splitlines()
                      if n.startswith(prefix)]
        sites = self.sites()
        if self.engine() == "docker":  # each daemon stops its containers first, as on a shutdown
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda s: engine.Daemon(s.dir / "engine", [], s.cgroup_parent).stop(), sites))
        pids = set()
        for ns in namespaces:
            pids |= {int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()}
        relay.stop(self.relay_dir)
        pids |= lab_processes(self.root)
        stop_processes(pids)
        try:
            for site in sites:
                engine.remove_cgroups(site.cgroup_parent)
        except engine.EngineError as exc:
            raise LabError(f"lab {self.name}: {exc}") from None
        for ns in namespaces:
            sh("ip", "netns", "del", ns, check=False)
        meta_octet = None
        try:
            meta_octet = json.loads((self.root / "lab.json").read_text())["octet"]
        except (OSError, ValueError, KeyError):
            pass
        if meta_octet is not None:  # a veth whose namespace vanished first leaves its host end behind
            for link in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
                name = link.split(":")[1].strip().split("@")[0]
                if re.fullmatch(rf"nl{meta_octet}h\d+", name):
                    sh("ip", "link", "del", name, check=False)
        if self.root.exists():
            with ThreadPoolExecutor(8) as pool:  # an engine site's data root holds its images' files: in parallel
                list(pool.map(lambda d: sh("rm", "-rf", "--one-file-system", str(d), check=False),
                              list((self.root / "sites").glob("*")) if (self.root / "sites").is_dir() else []))
            shutil.rmtree(self.root)
        for f in ("ssh_config", "known_hosts", "hosts.yml", "admin_password", "id_ed25519", "id_ed25519.pub"):
            (self.run_dir / f).unlink(missing_ok=True)
        if self.run_dir != RUN_BASE and self.run_dir.exists() and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()
        log(f"lab {self.name}: down" + (f" (removed {len(namespaces)} site(s))" if namespaces else " (nothing was up)"))

    # -- status ------------------------------------------------------------------------------
    def status(self) -> list[dict]:
        variants = self.variants()
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda s: site_status(s, variants.get(s.name, "?")), self.sites()))


def site_status(site: Site, variant: str) -> dict:
    row = {"site": site.name, "address": site.ip, "variant": variant, "sshd": "down", "containers": "-",
           "db image": "-", "timescaledb": "-", "health": "-"}
    if site.holder_pid() is None:
        row["sshd"] = "no namespace"
        return row
    pidfile = site.dir / "ssh/sshd.pid"
    if pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists():
        row["sshd"] = "up"
    ps = site.run("docker compose -f /root/netmon/docker-compose.yml ps -a --format json", check=False, timeout=30)
    states = [json.loads(line) for line in ps.stdout.splitlines() if line.strip().startswith("{")]
    if states:
        running = sum(1 for c in states if c.get("State") == "running")
        row["containers"] = f"{running}/{len(states)} running"
        row["db image"] = next((c.get("Image", "-") for c in states if c.get("Service") == "db"), "-")
    ext = site.run("docker exec netmon-db psql -U netmon -d netmon -tAc "
                   "\"SELECT coalesce(max(extversion), 'absent') FROM pg_extension WHERE extname='timescaledb'\"",
                   check=False, timeout=30)
    row["timescaledb"] = ext.stdout.strip() if ext.returncode == 0 else "db down"
    health = site.run("curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://localhost:8000/api/health",
                      check=False, timeout=30)
    row["health"] = health.stdout.strip() or "no answer"
    return row


def clone_plan(variants: list[str]) -> dict[int, int]:
    """Site index → the index of the site it is a copy of: the first site of each variant is built,
    the others of that variant are copies of it."""
    first: dict[str, int] = {}
    copies = {}
    for index, variant in enumerate(variants, 1):
        if variant in first:
            copies[index] = first[variant]
        else:
            first[variant] = index
    return copies


def wait_ready(site: Site, variant: str, timeout: float = 120) -> None:
    """Bounded: the site answers as its build left it (the backend's health; the database alone
    where the backend crash-loops by design)."""
    probe = ("docker exec netmon-db pg_isready -U netmon -d netmon" if variant == "backend-crashloop"
             else "curl -sf -o /dev/null http://localhost:8000/api/health")
    deadline = time.monotonic() + timeout
    while site.run(probe, check=False, timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            raise LabError(f"{site.name} ({variant}): not ready {timeout:.0f}s after its daemon started ({probe})")
        time.sleep(0.5)


def plan_variants(sites: int, variants: list[str] | None) -> list[str]:
    """One variant per site: a single name applies to all, a list is taken in order."""
    if not 1 <= sites <= MAX_SITES:
        raise LabError(f"--sites {sites} is out of range — use 1..{MAX_SITES}")
    variants = variants or ["migrated"]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise LabError(f"unknown variant(s) {', '.join(unknown)} — choose from {', '.join(VARIANTS)}")
    if len(variants) == 1:
        return variants * sites
    if len(variants) > sites:
        raise LabError(f"{len(variants)} variants for {sites} site(s) — pass --sites {len(variants)} or fewer variants")
    return variants + ["migrated"] * (sites - len(variants))


def check_host() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network and mount namespaces) — run it as root")
    missing = [p for p in ("/usr/sbin/sshd", "/usr/lib/postgresql/15/bin/postgres", "/usr/bin/ssh-keygen")
               if not Path(p).exists()]
    for tool in ("ip", "nsenter", "unshare", "curl"):
        if shutil.which(tool) is None:
            missing.append(tool)
    try:
        sh("/usr/bin/python3", "-c", "import yaml, psycopg2")
    except (LabError, FileNotFoundError):
        missing.append("python3-yaml/python3-psycopg2")
    if missing:
        raise LabError(f"missing on this machine: {', '.join(missing)} — run `make setup` first")


def free_octet() -> int:
    used = set()
    for meta in LAB_BASE.glob("*/lab.json"):
        try:
            used.add(json.loads(meta.read_text())["octet"])
        except (OSError, ValueError, KeyError):
            pass
    addrs = sh("ip", "-o", "-4", "addr", "show", check=False).stdout
    free = [o for o in range(1, 255) if o not in used and f" {SUBNET}.{o}." not in addrs]
    if not free:
        raise LabError("no free lab subnet left — take older labs down with `invoke lab.down --name NAME`")
    # At random: labs from another checkout (or a chroot) share the network but not our lock file.
    return secrets.choice(free)


def lab_processes(root: Path) -> set[int]:
    """Processes whose command line names the lab's directory (shims, backends, stray builders)."""
    needle = str(root).encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    found.add(int(proc.name))
            except OSError:
                pass
    found.discard(os.getpid())
    return found


def stop_processes(pids: set[int], grace: float = 5.0) -> None:
    """SIGTERM (PostgreSQL shuts down cleanly and frees its shared memory), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            pids = {p for p in pids if relay.alive(p)}
            if not pids:
                return
            time.sleep(0.1)


def sshd_config(site_dir: Path) -> str:
    return f"""# sshd of a NetMon lab site: key login only.
Port 22
ListenAddress 0.0.0.0
HostKey {site_dir}/ssh/ssh_host_ed25519_key
PidFile {site_dir}/ssh/sshd.pid
AuthorizedKeysFile /root/.ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
MaxSessions 32
MaxStartups 64:30:128
"""


def ssh(lab: Lab, site: str, cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """CMD run on SITE over the lab's real SSH, as a client would; CHECK: a failure raises."""
    proc = subprocess.run(["ssh", "-F", str(lab.ssh_config), site, cmd], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{site}: {cmd!r} exited {proc.returncode}: {proc.stderr}")
    return proc


def write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
