"""Replicated stores the drill starts on 127.0.0.1 from Debian's binaries, never touching the
shared servers:

- ``PgCluster``: a PostgreSQL primary and a streaming standby made with ``pg_basebackup``, with
  synchronous replication (``synchronous_commit = on`` and the standby named in
  ``synchronous_standby_names``), so a commit is acknowledged only once the standby has the WAL
  on disk. The drill plays the failover manager: ``kill_primary()`` (SIGKILL to the postmaster
  and its backends), then ``promote()`` (``pg_ctl promote``). Clients connect with a multi-host URL
  and ``target_session_attrs=read-write``, so they follow whichever node is the primary.
- ``SentinelGroup``: a Redis primary, a replica and three Sentinels (quorum 2); clients connect
  through the Sentinels (``redis+sentinel://`` URLs, see ``shelfwise.serving.state``).

PostgreSQL's binaries refuse to run as root: when the drill runs as root they run as the
``postgres`` OS user (``runuser``), with their data directories in a temporary directory that user
owns. Every process is stopped by ``close()``, also when starting failed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shelfwise.drills.processes import DrillError, free_port
from shelfwise.drills.processes import kill_group as _kill_group

Say = Callable[[str], None]
PG_USER = os.environ.get("SHELFWISE_DRILL_PG_USER", "postgres")
STANDBY_NAME = "drill_standby"
SENTINEL_SERVICE = "shelfwise-drill"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def pg_bin() -> Path:
    """The newest Debian PostgreSQL's bin directory (``SHELFWISE_DRILL_PG_BIN`` overrides)."""
    given = os.environ.get("SHELFWISE_DRILL_PG_BIN")
    if given:
        return Path(given)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise DrillError(
            "PostgreSQL's server binaries are not installed", hint="`make system` installs postgresql"
        )
    return found[-1].parent


def replicated_available() -> str | None:
    """Why the replicated scenarios cannot run here (None: they can)."""
    try:
        pg_bin()
    except DrillError as exc:
        return str(exc)
    if not Path(REDIS_SERVER).exists():
        return "redis-server is not installed (`make system`)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} OS user to run PostgreSQL as"
    return None


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@dataclass
class PgNode:
    name: str
    port: int
    data: Path
    log: Path

    def postmaster_pid(self) -> int | None:
        """The running postmaster of this data directory (None: not running; a stale
        ``postmaster.pid`` left by a killed one is checked against the process's command line)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.data).encode() in cmdline else None


class PgCluster:
    """A primary and a synchronous streaming standby; see the module's docstring."""

    def __init__(self, root: Path, *, say: Say | None = None) -> None:
        self.say = say or (lambda _m: None)
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=root))
        self.root.chmod(0o700)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            # the postgres user must reach its directory through the drill's root
            root.chmod(0o711)
        self.primary = PgNode("pg-primary", free_port(), self.root / "primary", self.root / "primary.log")
        self.standby = PgNode("pg-standby", free_port(), self.root / "standby", self.root / "standby.log")
        self.promoted = False
        self.timings: dict[str, float] = {}

    # --- addresses -------------------------------------------------------------------------------
    def url(self, database: str) -> str:
        """A SQLAlchemy URL that reaches whichever node accepts writes (libpq's multi-host)."""
        hosts = "&".join(f"host=127.0.0.1:{n.port}" for n in (self.primary, self.standby))
        return f"postgresql://{PG_USER}@/{database}?{hosts}&target_session_attrs=read-write"

    def node_url(self, node: PgNode, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{node.port}/{database}"

    # --- life ------------------------------------------------------------------------------------
    def _run(self, cmd: list[str], what: str, *, timeout: float = 120.0, log: Path | None = None) -> None:
        try:
            out = subprocess.run(
                _as_pg_user(cmd), capture_output=True, text=True, timeout=timeout, cwd=self.root
            )
        except subprocess.TimeoutExpired as exc:
            raise DrillError(f"{what} did not finish within {timeout:.0f} s") from exc
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip()[-800:]
            raise DrillError(f"{what} failed: {detail}\n{_tail(log) if log else ''}".strip())

    def _options(self, node: PgNode, *extra: str) -> str:
        opts = [
            "listen_addresses=127.0.0.1",
            f"port={node.port}",
            f"unix_socket_directories={self.root}",
            "shared_buffers=32MB",
            "max_connections=60",
            "wal_level=replica",
            "max_wal_senders=4",
            "wal_keep_size=128MB",
            "fsync=on",
            *extra,
        ]
        return " ".join(f"-c {o}" for o in opts)

    def _start_node(self, node: PgNode, *extra: str) -> None:
        self._run(
            [
                str(self.bin / "pg_ctl"), "-D", str(node.data), "-l", str(node.log), "-w", "-t", "120",
                "-o", self._options(node, *extra), "start",
            ],
            f"starting {node.name}",
            timeout=150,
            log=node.log,
        )  # fmt: skip

    def start(self) -> PgCluster:
        t0 = time.monotonic()
        self.say(f"starting a PostgreSQL primary (:{self.primary.port}) and a synchronous standby")
        self._run(
            [
                str(self.bin / "initdb"), "-D", str(self.primary.data), "-A", "trust", "-U", PG_USER,
                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            ],
            "initdb",
        )  # fmt: skip
        self._start_node(self.primary, f"synchronous_standby_names={STANDBY_NAME}", "synchronous_commit=on")
        self._run(
            [
                str(self.bin / "pg_basebackup"), "-D", str(self.standby.data), "-X", "stream", "-c", "fast",
                "-R", "-d",
                f"host=127.0.0.1 port={self.primary.port} user={PG_USER} application_name={STANDBY_NAME}",
            ],
            "pg_basebackup",
        )  # fmt: skip
        self._start_node(self.standby, "hot_standby=on")
        self.wait_sync()
        self.timings["pg_cluster_start_seconds"] = round(time.monotonic() - t0, 2)
        return self

    def replication(self) -> list[tuple[str, str, str]]:
        """The primary's ``pg_stat_replication``: (application_name, state, sync_state)."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.primary.port} user={PG_USER} dbname=postgres", connect_timeout=3
        ) as conn:
            rows = conn.execute(
                "SELECT application_name, state, sync_state FROM pg_stat_replication"
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def wait_sync(self, timeout: float = 120.0) -> float:
        """Until the standby streams and is the synchronous one (a condition, not a fixed sleep)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(Exception):
                if (STANDBY_NAME, "streaming", "sync") in self.replication():
                    return time.monotonic() - started
            time.sleep(0.1)
        raise DrillError(
            f"the standby did not become synchronous within {timeout:.0f} s", hint=str(self.standby.log)
        )

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.primary.port} user={PG_USER} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    # --- the fault and the recovery --------------------------------------------------------------
    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend (no shutdown, no checkpoint)."""
        pid = self.primary.postmaster_pid()
        if pid is None:
            raise DrillError("the primary is not running")
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for p in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)

    def primary_down(self) -> bool:
        """The failover manager's probe: the primary refuses connections."""
        import psycopg

        try:
            with psycopg.connect(
                f"host=127.0.0.1 port={self.primary.port} user={PG_USER} dbname=postgres", connect_timeout=2
            ) as conn:
                conn.execute("SELECT 1")
            return False
        except psycopg.OperationalError:
            return True

    def promote(self) -> None:
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.standby.data), "-w", "-t", "60", "promote"],
            "pg_ctl promote",
            timeout=90,
            log=self.standby.log,
        )
        self.promoted = True

    def close(self) -> None:
        for node in (self.standby, self.primary):
            if node.postmaster_pid() is None:
                continue
            with contextlib.suppress(Exception):
                subprocess.run(
                    _as_pg_user(
                        [
                            str(self.bin / "pg_ctl"),
                            "-D",
                            str(node.data),
                            "-m",
                            "immediate",
                            "-w",
                            "-t",
                            "20",
                            "stop",
                        ]
                    ),
                    capture_output=True,
                    timeout=30,
                    cwd=self.root,
                )
            pid = node.postmaster_pid()  # still there: kill it
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


SENTINEL_CFG = """\
port {port}
bind 127.0.0.1
protected-mode no
dir {dir}
sentinel monitor {service} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 5000
sentinel parallel-syncs {service} 1
"""


class SentinelGroup:
    """A Redis primary, one replica and three Sentinels (quorum 2) on 127.0.0.1."""

    def __init__(self, root: Path, *, say: Say | None = None) -> None:
        self.say = say or (lambda _m: None)
        self.root = Path(tempfile.mkdtemp(prefix="redis-", dir=root))
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen[Any]] = {}
        self.timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}/0"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [REDIS_SERVER, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root
        )
        log.close()

    def _redis(self, port: int) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    def _wait(self, what: str, ok: Callable[[], bool], timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise DrillError(f"{dead[0]} exited", hint=_tail(self.root / f"{dead[0]}.log", 800))
            with contextlib.suppress(Exception):
                if ok():
                    return time.monotonic() - started
            time.sleep(0.1)
        raise DrillError(f"{what} not within {timeout:.0f} s", hint=str(self.root))

    def start(self) -> SentinelGroup:
        t0 = time.monotonic()
        self.say(f"starting Redis (:{self.primary_port}), a replica and three Sentinels")
        common = ["--bind", "127.0.0.1", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
        self._spawn("redis-primary", ["--port", str(self.primary_port), *common, "--dir", str(self.root)])
        self._spawn(
            "redis-replica",
            [
                "--port", str(self.replica_port), *common, "--dir", str(self.root),
                "--replicaof", "127.0.0.1", str(self.primary_port),
            ],
        )  # fmt: skip
        self._wait(
            "the Redis replica in sync",
            lambda: self._redis(self.replica_port).info("replication").get("master_link_status") == "up",
            60,
        )
        for n, port in enumerate(self.sentinel_ports):
            cfg = self.root / f"sentinel-{n}.conf"
            cfg.write_text(
                SENTINEL_CFG.format(
                    port=port, dir=self.root, service=SENTINEL_SERVICE, primary=self.primary_port
                )
            )
            self._spawn(f"sentinel-{n}", [str(cfg), "--sentinel"])

        def known() -> bool:
            for port in self.sentinel_ports:
                master = self._redis(port).execute_command("SENTINEL", "MASTER", SENTINEL_SERVICE)
                info = (
                    master if isinstance(master, dict) else dict(zip(master[::2], master[1::2], strict=False))
                )
                # every Sentinel sees the replica and the other two Sentinels
                if int(info[b"num-slaves"]) < 1 or int(info[b"num-other-sentinels"]) < 2:
                    return False
            return True

        self._wait("every Sentinel seeing the replica and the others", known, 60)
        self.timings["sentinel_start_seconds"] = round(time.monotonic() - t0, 2)
        return self

    def log_tails(self, n: int = 600) -> str:
        """The end of each Sentinel's log: what they saw and voted (for a failover that did not come)."""
        return "\n".join(
            f"--- sentinel-{i}.log\n{_tail(self.root / f'sentinel-{i}.log', n)}"
            for i in range(len(self.sentinel_ports))
        )

    def master_port(self) -> int | None:
        """The primary the Sentinels name now."""
        for port in self.sentinel_ports:
            with contextlib.suppress(Exception):
                addr = self._redis(port).execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE
                )
                if addr:
                    return int(addr[1])
        return None

    def client(self, port: int) -> Any:
        return self._redis(port)

    def kill_primary(self) -> None:
        proc = self.procs["redis-primary"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)

    def close(self) -> None:
        for proc in self.procs.values():
            _kill_group(proc, grace=2.0)
