"""Per-container supervisor of the lab's docker stand-in, plus the runtime helpers docker.py shares.

`python3 shim.py CONTAINER_DIR` plays containerd-shim and dockerd for one container: it
daemonises (so the SSH session that ran `docker compose up -d` ends at once), runs the main
process described by CONTAINER_DIR/config.json, timestamps its output into CONTAINER_DIR/log,
keeps CONTAINER_DIR/state.json current, runs the healthcheck and applies the restart policy.
SIGTERM (docker stop) stops the main process with the image's stop signal, SIGKILL after the
grace period, and records the container as exited.

state.json holds: status (created|running|restarting|exited), shim_pid/shim_start, pid/pid_start
(start times guard against recycled pids), started_at/finished_at (epoch seconds, 0 = never),
exit_code, error, restart_count, health (docker's Health object, or None without a healthcheck).
"""

import datetime
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

STOP_GRACE = 10  # seconds between the stop signal and SIGKILL, as `docker stop`'s default
BACKOFF_CAP = 5  # seconds; restarts wait 1, 2, 4, 5, 5 ... like dockerd's growing delay
STEADY_RUN = 10  # a process that ran this long restarts with the backoff reset, as dockerd does
HEALTH_LOG_KEEP = 5  # results kept in State.Health.Log, as docker keeps
HEALTH_OUTPUT_MAX = 4096  # bytes of a check's output kept, as docker keeps

# Bind each SOURCE on TARGET in a fresh mount namespace, cd, then become the command.
VIEW_SCRIPT = (
    'cwd=$1; shift; while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 125; shift 2; done; '
    'shift; cd "$cwd" || exit 126; exec "$@"'
)


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def write_json(path, data):
    """Replace PATH atomically, so a reader never sees half a file."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def rfc3339(epoch):
    """Docker's timestamp format (Go's RFC3339Nano, UTC); 0 is Go's zero time."""
    if not epoch:
        return "0001-01-01T00:00:00Z"
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    fraction = stamp.strftime("%f").rstrip("0")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def process_start(pid):
    """(state letter, start time) of PID from /proc, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def alive(pid, start):
    """Whether PID is still the process that was started at START (not a zombie, not recycled)."""
    info = process_start(pid) if pid else None
    return info is not None and info[1] == start and info[0] not in "ZX"


def read_state(cdir):
    """The container's state; if its shim died without recording the end, it reads as exited."""
    path = os.path.join(cdir, "state.json")
    state = read_json(path, {"status": "created"})
    for key, value in (("pid", 0), ("started_at", 0), ("finished_at", 0), ("exit_code", 0),
                       ("error", ""), ("restart_count", 0), ("health", None)):
        state.setdefault(key, value)
    if state["status"] in ("running", "restarting") and not alive(
            state.get("shim_pid"), state.get("shim_start")):
        if state["status"] == "running":
            state["exit_code"] = 137
            state["finished_at"] = os.path.getmtime(path)
        state["status"] = "exited"
    return state


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_leftovers(state):
    """SIGKILL what is left of the main process of a container whose shim is gone."""
    if state["status"] not in ("running", "restarting") and alive(state["pid"], state.get("pid_start")):
        kill_group(state["pid"])


def view_argv(cfg, argv, cwd="/", main=False, cdir=None):
    """ARGV as run in the container's view: a private mount namespace with cfg["view"]'s binds.

    Containers without binds (everything but the database) run in the site as it is. A container
    with a network of its own (``docker run``: cfg["netns"]) gets it when its MAIN process starts
    (loopback up, as docker's bridge network has it); exec and healthchecks join that one."""
    if not cfg["view"]:
        return argv
    binds = []
    for target, source in cfg["view"].items():
        os.makedirs(os.path.realpath(target), exist_ok=True)  # the mount point, on the site's fs
        binds += [source, target]
    script, flags = VIEW_SCRIPT, ["--mount"]
    if cfg.get("netns") and main:
        script, flags = "ip link set lo up || exit 125; " + VIEW_SCRIPT, ["--mount", "--net"]
    wrapped = ["unshare", *flags, "--propagation", "private", "/bin/sh", "-c", script, "view", cwd, *binds, "--", *argv]
    if cfg.get("netns") and not main:
        wrapped = ["nsenter", f"--net=/proc/{read_state(cdir)['pid']}/ns/net", "--", *wrapped]
    return wrapped


def process_env(cfg):
    """The environment a container's processes get: the image's and compose's, nothing of ours."""
    return {"HOSTNAME": cfg["id"][:12], "HOME": "/root", **cfg["env"], **cfg["extra_env"]}


class Shim:
    """Runs one container's main process until docker stop, restarting it per the policy."""

    def __init__(self, cdir):
        self.cdir = cdir
        self.cfg = read_json(os.path.join(cdir, "config.json"))
        self.state = read_state(cdir)
        self.lock = threading.Lock()
        self.log_file = open(os.path.join(cdir, "log"), "ab")
        self.stop_requested = False
        # Signals only wake the main loop (self-pipe), which does the work outside the handler.
        self.wake, wake_w = os.pipe()
        os.set_blocking(self.wake, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # A container never inherits the docker client's ignored signals (a shell's background job
        # ignores SIGINT, PostgreSQL's stop signal): start its processes with the defaults.
        for sig in (signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)

    def on_stop(self, *_):
        self.stop_requested = True

    def update(self, **changes):
        with self.lock:
            self.state.update(changes)
            write_json(os.path.join(self.cdir, "state.json"), self.state)

    def record_health(self, done, code, output, begin, counts):
        """Fold one check's result into State.Health, unless that run of the process is over."""
        check = self.cfg["healthcheck"]
        with self.lock:
            if done.is_set():
                return
            health = dict(self.state["health"])
            if code == 0:
                health.update(Status="healthy", FailingStreak=0)
            elif counts:
                health["FailingStreak"] += 1
                if health["FailingStreak"] >= check["retries"]:
                    health["Status"] = "unhealthy"
            entry = {"Start": rfc3339(begin), "End": rfc3339(time.time()), "ExitCode": code, "Output": output}
            health["Log"] = (health["Log"] + [entry])[-HEALTH_LOG_KEEP:]
            self.state["health"] = health
            write_json(os.path.join(self.cdir, "state.json"), self.state)

    def log(self, stream, line):
        stamp = time.time_ns()
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp // 10**9))
        with self.lock:
            self.log_file.write(f"{text}.{stamp % 10**9:09d}Z {stream} ".encode() + line)
            self.log_file.flush()

    def pause(self, seconds):
        """Sleep up to SECONDS, waking early on any signal; True if a stop was requested."""
        select.select([self.wake], [], [], seconds)
        try:
            while os.read(self.wake, 512):
                pass
        except BlockingIOError:
            pass
        return self.stop_requested

    def run(self):
        try:
            self.supervise_runs()
        finally:
            if self.cfg.get("auto_remove"):  # docker run --rm: the container (and its anonymous volume) goes
                shutil.rmtree(self.cdir, ignore_errors=True)

    def supervise_runs(self):
        self.update(shim_pid=os.getpid(), shim_start=process_start(os.getpid())[1])
        backoff = 0
        while True:
            child = self.start_child()
            if child is None:
                return
            started = time.monotonic()
            code = self.supervise(child)
            self.update(status="exited", exit_code=code, finished_at=time.time(), pid=0)
            if self.stop_requested or not self.restarts(code):
                return
            backoff = 1 if time.monotonic() - started >= STEADY_RUN else min(max(2 * backoff, 1), BACKOFF_CAP)
            self.update(status="restarting")
            if self.pause(backoff):
                self.update(status="exited")
                return
            self.update(restart_count=self.state["restart_count"] + 1)

    def restarts(self, code):
        policy = self.cfg["restart"]
        return policy in ("always", "unless-stopped") or (policy.startswith("on-failure") and code != 0)

    def start_child(self):
        """Start the main process, or record the failure to start it as docker does (exit 127)."""
        program = self.cfg["program"]
        if not os.path.exists(program):
            error = f'exec: "{program}": stat {program}: no such file or directory'
            self.log("stderr", f"{error}\n".encode())
            self.update(status="exited", exit_code=127, error=error, finished_at=time.time(), pid=0)
            return None
        # pdeathsig: if this shim is killed, the container's processes die with it.
        argv = ["setpriv", "--pdeathsig", "KILL", "--", *view_argv(self.cfg, self.cfg["argv"], main=True)]
        child = subprocess.Popen(argv, cwd=self.cfg["cwd"], env=process_env(self.cfg),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
        health = None
        if self.cfg["healthcheck"]:
            health = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.update(status="running", pid=child.pid, pid_start=process_start(child.pid)[1],
                    started_at=time.time(), error="", health=health)
        return child

    def supervise(self, child):
        """Wait for the main process, pumping its output; stop it on request. Returns docker's exit code."""
        done = threading.Event()
        threads = [threading.Thread(target=self.pump, args=(child.stdout, "stdout")),
                   threading.Thread(target=self.pump, args=(child.stderr, "stderr"))]
        if self.cfg["healthcheck"]:
            threads.append(threading.Thread(target=self.check_health, args=(done,), daemon=True))
        for thread in threads:
            thread.start()
        deadline = None
        while child.poll() is None:
            if self.stop_requested and deadline is None:
                child.send_signal(signal.Signals[self.cfg["stop_signal"]])
                deadline = time.monotonic() + STOP_GRACE
            if deadline is not None and time.monotonic() >= deadline:
                kill_group(child.pid)
            self.pause(1 if deadline is None else max(0.05, deadline - time.monotonic()))
        done.set()
        kill_group(child.pid)  # as when a container's PID 1 exits: the rest of it dies too
        for thread in threads[:2]:
            thread.join(5)
        return child.returncode if child.returncode >= 0 else 128 - child.returncode

    def pump(self, pipe, stream):
        for line in iter(pipe.readline, b""):
            self.log(stream, line if line.endswith(b"\n") else line + b"\n")
        pipe.close()

    def check_health(self, done):
        """Run the healthcheck every interval while this run of the main process lasts."""
        check = self.cfg["healthcheck"]
        started = time.monotonic()
        while not done.wait(check["interval"]):
            begin = time.time()
            try:
                result = subprocess.run(view_argv(self.cfg, check["argv"], cdir=self.cdir), env=process_env(self.cfg),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, timeout=check["timeout"])
                code, output = result.returncode, result.stdout[:HEALTH_OUTPUT_MAX].decode(errors="replace")
            except subprocess.TimeoutExpired:
                code, output = -1, f"Health check exceeded timeout ({check['timeout']:g}s)"
            # Failures in the start period do not count, as docker's start_period says.
            counts = time.monotonic() - started >= check["start_period"]
            self.record_health(done, code, output, begin, counts)


def daemonise():
    """Detach like containerd-shim: own session, no terminal, stdio on /dev/null, cwd /."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def main(cdir):
    daemonise()
    try:
        Shim(cdir).run()
    except Exception:  # the container then reads as exited (see read_state); say why somewhere
        with open(os.path.join(cdir, "shim.err"), "a") as f:
            traceback.print_exc(file=f)
        raise


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
