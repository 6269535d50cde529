"""Shared by the end-to-end tests: run `fab` as a user would, and read the server back over SSH
(psql through the site's docker, HTTP, files) — never trust what the tool printed alone."""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import signal
import subprocess
import time
from pathlib import Path

from fabfile import rehearse as rh

ROOT = Path(__file__).resolve().parents[2]
FAB = ROOT / ".venv/bin/fab"
AUDIT_DIR = ROOT / "logs"
PSQL = "docker exec -i netmon-db psql -U netmon -X -tA -v ON_ERROR_STOP=1"


def _fab_argv_env(lab, site: str, args, env: dict | None, ssh_config: Path | None) -> tuple[list[str], dict]:
    full_env = {**os.environ, "NETMON_INVENTORY": str(lab.inventory), "NETMON_AUDIT_DIR": str(AUDIT_DIR)}
    full_env.pop("NETMON_ADMIN_PASSWORD", None)
    full_env.update(env or {})
    return [str(FAB), "-S", str(ssh_config or lab.ssh_config), "-H", site, *args], full_env


def fab(lab, site: str, *args: str, env: dict | None = None, timeout: float = 600,
        ssh_config: Path | None = None) -> subprocess.CompletedProcess:
    """`fab -S ssh_config -H site ARGS` from the checkout, no terminal, the lab's inventory."""
    argv, full_env = _fab_argv_env(lab, site, args, env, ssh_config)
    return subprocess.run(argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def fab_start(lab, site: str, *args: str, env: dict | None = None, ssh_config: Path | None = None) -> subprocess.Popen:
    """`fab` as :func:`fab` runs it, in the background (to act on the site while it works)."""
    argv, full_env = _fab_argv_env(lab, site, args, env, ssh_config)
    return subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


class AtPrompt:
    """`fab` run as an operator at a terminal, stopped at the "Type 'yes'" question: the run holds the
    server's lock (taken before the plan is shown) for as long as the question waits, so a test can
    meet it with a second run without racing a run that may already be over."""

    PROMPT = "Type 'yes' to go on: "

    def __init__(self, lab, site: str, *args: str, timeout: float = 120):
        argv, env = _fab_argv_env(lab, site, args, None, None)
        self.tty, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=slave, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        os.close(slave)
        self.head = ""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while self.PROMPT not in self.head:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 65536).decode(errors="replace") if ready else ""
            if not chunk:  # the run ended (or the bound passed) before it asked
                self.proc.kill()
                raise AssertionError(f"fab never asked to go on within {timeout:.0f}s:\n{self.head[-2000:]}"
                                     f"{self.proc.communicate()[1]}")
            self.head += chunk

    @property
    def pid(self) -> int:
        return self.proc.pid

    def answer(self, text: str, timeout: float = 300) -> tuple[int, str, str]:
        """Type TEXT and Enter; the exit status and the whole output once the run ends."""
        os.write(self.tty, text.encode() + b"\n")
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            os.close(self.tty)
        return self.proc.returncode, self.head + out, err


def invoke(inventory: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`invoke ARGS --inventory INVENTORY` from the checkout, no terminal (the fleet's tasks)."""
    return subprocess.run([str(ROOT / ".venv/bin/invoke"), *args, "--inventory", str(inventory)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NETMON_AUDIT_DIR": str(AUDIT_DIR)})


def ssh(lab, site: str, command: str, stdin: str | None = None, check: bool = True) -> str:
    out = subprocess.run(["ssh", "-F", str(lab.ssh_config), site, command], input=stdin, capture_output=True,
                         text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"{site}: {command!r} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip()


def sql(lab, site: str, query: str, db: str = "netmon") -> str:
    """One query's result (psql -tA) on the site; a SQL error fails the test."""
    return ssh(lab, site, f"{PSQL} -d {db}", stdin=query + "\n")


def http_code(lab, site: str, path: str) -> str:
    return ssh(lab, site, f"curl -s -o /dev/null -m 10 -w '%{{http_code}}' http://localhost:8000{path}", check=False)


def login_and_stats(lab, site: str) -> tuple[str, str]:
    """(login status, /api/flows/stats status) with the lab's admin account; the password goes on stdin."""
    body = json.dumps({"username": "admin", "password": lab.admin_password_file.read_text().strip()})
    out = ssh(lab, site, "curl -s -m 10 -X POST -H 'Content-Type: application/json' --data-binary @- "
                         "-w '\\n%{http_code}' http://localhost:8000/api/auth/login", stdin=body, check=False)
    text, _, login = out.rpartition("\n")
    if login != "200":
        return login, "-"
    header = f"Authorization: Bearer {json.loads(text)['access_token']}\n"
    stats = ssh(lab, site, "curl -s -m 10 -H @- -o /dev/null -w '%{http_code}' "
                           "'http://localhost:8000/api/flows/stats?hours=1'", stdin=header, check=False)
    return login, stats


def dumps_on(lab, site: str) -> str:
    """Every dump in /root with its sha256 (the server's own view)."""
    return ssh(lab, site, "cd /root && sha256sum netmon_*.dump 2>/dev/null; ls -1a /root | grep -c partial || true")


def snapshot(lab, site: str) -> dict:
    """What a failed or refused command must leave exactly as it was."""
    return {
        "dbs": sql(lab, site, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database", db="postgres"),
        "ext": {db: sql(lab, site, "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'", db=db)
                for db in ("netmon", "template1", "postgres")},
        # still chunked, not how many: the backend's ingestion opens chunks and the lab's policies drop them meanwhile
        "chunked": sql(lab, site, "SELECT count(*) > 0 FROM pg_inherits WHERE inhparent='flow_records'::regclass"),
        "preload": sql(lab, site, "SHOW shared_preload_libraries"),
        "files": ssh(lab, site, "cd /root/netmon && sha256sum docker-compose.yml scripts/init.sql backend/requirements.txt "
                                "backend/app/main.py backend/app/services/flow_rollup.py && "
                                "(git rev-parse HEAD 2>/dev/null; git status --porcelain 2>/dev/null; true)"),
        "containers": ssh(lab, site, "docker inspect --format '{{.Name}} {{.Config.Image}} {{.State.StartedAt}}' "
                                     "netmon-db netmon-redis netmon-backend netmon-frontend netmon-nginx", check=False),
        "dumps": dumps_on(lab, site),
    }


def dump_flows(lab, site: str, path: str) -> tuple[int, int]:
    """(rows, max id) of flow_records in a dump on the server, read from its data block."""
    awk = r"""/^COPY public.flow_records /{c=1; next} c && /^\\\.$/{c=0} c{n++; if ($1+0 > m) m = $1+0} END{print n+0, m+0}"""
    out = ssh(lab, site, f"docker exec -i netmon-db pg_restore -f - < {path} | awk '{awk}'")
    rows, max_id = out.split()
    return int(rows), int(max_id)


def wait_for_new_flows(lab, site: str, timeout: float = 30) -> bool:
    first = int(sql(lab, site, "SELECT count(*) FROM flow_records"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(sql(lab, site, "SELECT count(*) FROM flow_records")) > first:
            return True
        time.sleep(1)
    return False


def assert_rolled_back(lab, site: str) -> None:
    """The runbook's end state, read from the server: plain PostgreSQL everywhere, the app up."""
    for db in ("netmon", "template1", "postgres"):
        assert sql(lab, site, "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'", db=db) == "0", db
    for table in ("flow_records", "flow_summary_5m"):
        assert sql(lab, site, f"SELECT relkind FROM pg_class WHERE oid='{table}'::regclass") == "r", table  # noqa: S608
        assert sql(lab, site, f"SELECT count(*) FROM pg_inherits WHERE inhparent='{table}'::regclass") == "0", table  # noqa: S608
    assert "timescaledb" not in sql(lab, site, "SHOW shared_preload_libraries")
    assert sql(lab, site, "SELECT count(*) FROM information_schema.tables WHERE table_schema='public' "
                          "AND table_type='BASE TABLE'") == "32"
    assert not [d for d in sql(lab, site, "SELECT datname FROM pg_database", db="postgres").split()
                if d.startswith(("netmon_old_", "netmon_restore_"))]
    compose = ssh(lab, site, "cd /root/netmon && docker compose config --images")
    assert "postgres:16-alpine" in compose.split() and "timescale" not in compose
    assert ssh(lab, site, "docker inspect --format '{{.Config.Image}} {{.State.Status}}' netmon-db") == \
        "postgres:16-alpine running"
    assert http_code(lab, site, "/api/health") == "200"
    assert login_and_stats(lab, site) == ("200", "200")
    assert wait_for_new_flows(lab, site), "no new flows after the rollback"


def audit_text(since: float, directory: Path = AUDIT_DIR) -> str:
    """Every audit log line written in ``directory`` since ``since`` (epoch seconds). The shared
    AUDIT_DIR also gets other test processes' lines (pytest -n): a test that must see only its own
    run's lines gives that run a directory of its own."""
    return "".join(p.read_text() for p in directory.glob("audit_*.jsonl") if p.stat().st_mtime >= since)


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def site_sql(lab, site: str, query: str, db: str = "netmon") -> str:
    """A query run on the site's console (nsenter, no SSH): usable while SSH sessions are being killed."""
    out = lab.site(site).run(f"{PSQL} -d {db}", input=query + "\n", check=False)
    return out.stdout.strip()


def ssh_session_pids(lab, site: str) -> list[int]:
    """The sshd processes serving the site's open connections: every sshd below its listener."""
    listener = int((lab.site(site).dir / "ssh/sshd.pid").read_text())
    parent: dict[int, int] = {}
    comm: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        head, _, rest = stat.rpartition(")")
        pid = int(entry.name)
        comm[pid] = head.partition("(")[2]
        parent[pid] = int(rest.split()[1])

    def below(pid: int) -> bool:
        seen = set()
        while pid in parent and pid not in seen:
            seen.add(pid)
            pid = parent[pid]
            if pid == listener:
                return True
        return False

    return sorted(p for p in parent if p != listener and comm[p].startswith("sshd") and below(p))


def kill_ssh_sessions(lab, site: str) -> list[int]:
    """Cut every SSH connection to the site as a dying link would (the listener stays): SIGKILL the
    per-connection sshd processes, so the client's socket closes under a running command."""
    pids = ssh_session_pids(lab, site)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


class PlainServer:
    """A throwaway container of the plain image (PostgreSQL 15's own binaries, no TimescaleDB library)
    on the site, where the test itself restores a copy with pg_restore alone."""

    def __init__(self, lab, site: str):
        self.lab, self.site, self.name = lab, site, f"t-plain-{secrets.token_hex(3)}"
        ssh(lab, site, f"docker run -d --rm --name {self.name} -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16-alpine")
        assert wait_until(lambda: ssh(lab, site, f"docker exec {self.name} pg_isready -h 127.0.0.1 -U postgres",
                                      check=False).endswith("accepting connections"), timeout=60)

    def restore(self, path: str) -> str:
        """pg_restore's output (it must exit 0) into a new database ``restored``."""
        ssh(self.lab, self.site, f"docker exec {self.name} createdb -U postgres -T template0 restored")
        out = ssh(self.lab, self.site, f"docker exec -i {self.name} pg_restore -U postgres -d restored --no-owner "
                                       f"--no-privileges < {path} 2>&1; echo \"exit=$?\"")
        assert out.endswith("exit=0"), out
        return out

    def sql(self, query: str) -> str:
        return ssh(self.lab, self.site, f"docker exec -i {self.name} psql -U postgres -d restored -X -tA "
                                        "-v ON_ERROR_STOP=1", stdin=query + "\n")

    def close(self) -> None:
        ssh(self.lab, self.site, f"docker rm -f {self.name}", check=False)


# --- what a rehearsal must leave as it was --------------------------------------------------

# md5 of every row of every table in public; flow_records up to the id given (the backend keeps
# inserting), flow_summary_5m left out (the rollup rewrites its current bucket)
CHECKSUMS = r"""SELECT string_agg(format('%s=%s', c.relname, (xpath('/row/h/text()', query_to_xml(format(
  'SELECT md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) AS h FROM public.%I t %s', ',', '', c.relname,
  CASE WHEN c.relname = 'flow_records' THEN 'WHERE id <= MAX_ID' ELSE '' END), false, true, '')))[1]::text), ' '
  ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'flow_summary_5m'"""
#: the rehearsal's throwaway container, its volume, its scratch directory: how many are there
LEFTOVERS = (f"docker ps -a --format '{{{{.Names}}}}' | grep -c {rh.CONTAINER}; docker volume ls -q | grep -c {rh.VOLUME}; "
             "ls -d /root/netmon_rehearse 2>/dev/null | wc -l")


#: the live server's settings and files beyond the rows: per-database and per-role settings, TimescaleDB's
#: jobs and whether each is scheduled, the config files in the data directory, the app's tree (modes, contents;
#: .git aside: `git status` may refresh its index — HEAD and the status are compared by snapshot())
SERVER = [
    f"{PSQL} -d postgres -c 'SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 1, 2'",
    f"{PSQL} -d netmon -c 'SELECT job_id, scheduled FROM timescaledb_information.jobs ORDER BY 1' 2>/dev/null "
    "|| echo 'no jobs view'",
    *(f"c=$(docker exec netmon-db cat /var/lib/postgresql/data/{name}) || exit 1; printf '%s' \"$c\" | sha256sum"
      for name in rh.CONF_FILES),
    "cd /root/netmon && find . -path ./.git -prune -o -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum && "
    "find . -path ./.git -prune -o -printf '%p %y %m\\n' | sort | sha256sum",
]


def live(lab, site: str, max_id: int | None = None) -> dict:
    """Everything a rehearsal must leave as it was on the live site (the run's lock file aside: the
    lock every run takes, empty once the run ends)."""
    max_id = max_id if max_id is not None else int(ssh(lab, site, f'{PSQL} -d netmon -c "SELECT max(id) FROM flow_records"'))
    rows, root, images, volumes, containers = ssh(lab, site, " ; echo @@; ".join([
        f"{PSQL} -d netmon", "ls -A /root | grep -v '^.netmon-rollback.lock$'",
        "docker images --format '{{.Repository}}:{{.Tag}} {{.ID}}' | sort", "docker volume ls -q | sort",
        "docker ps -a --format '{{.Names}} {{.Image}} {{.Status}}' | sort"]),
        stdin=CHECKSUMS.replace("MAX_ID", str(max_id)) + ";\n").split("@@")
    settings, jobs, conf, auto_conf, tree = (part.strip() for part in ssh(lab, site, " ; echo @@; ".join(SERVER),
                                                                                      stdin="").split("@@"))
    return {**snapshot(lab, site), "max_id": max_id, "rows": rows.strip(), "root": root.strip(), "images": images.strip(),
            "volumes": volumes.strip(), "all containers": containers.strip(), "db role settings": settings,
            "jobs": jobs, "postgresql.conf": conf, "postgresql.auto.conf": auto_conf, "app tree": tree}


def unchanged(lab, site: str, before: dict) -> None:
    after = live(lab, site, before["max_id"])
    assert {k: v for k, v in after.items() if k != "all containers"} == \
        {k: v for k, v in before.items() if k != "all containers"}
    strip = re.compile(r" (Up|Exited) .*$")  # the status text counts the minutes
    assert [strip.sub("", ln) for ln in after["all containers"].splitlines()] == \
        [strip.sub("", ln) for ln in before["all containers"].splitlines()]
    assert ssh(lab, site, LEFTOVERS).split() == ["0", "0", "0"]
