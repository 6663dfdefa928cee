"""The drill's topology on loopback: HAProxy in front of API replicas (separate uvicorn processes),
a PostgreSQL database of its own on the shared server, Redis with a key prefix of its own, and a
trained, activated model in a temporary registry. The replicas reach PostgreSQL and Redis through
``TcpProxy``s so a drill can take them away from the replicas without touching the shared servers.

Everything started here is stopped by ``Topology.close()`` (process groups, SIGKILL after a grace
period), which ``with Topology.start(...)`` calls also when the drill fails.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shelfwise.drills.processes import DrillError, free_port
from shelfwise.drills.processes import kill_group as _kill_group
from shelfwise.drills.proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[3]
ONLINE_RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
PG_ADMIN = os.environ.get("SHELFWISE_DRILL_PG", "postgresql://127.0.0.1:5432/postgres")
REDIS = os.environ.get("SHELFWISE_DRILL_REDIS", "redis://127.0.0.1:6379/0")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
Say = Callable[[str], None]
# a replica's boot: an idle one takes ~6 CPU seconds (imports, the model, the search index)
BOOT_CPU_BUDGET = 90.0
BOOT_STALL = 60.0
BOOT_CEILING = 900.0


def slice_csv(out: Path, lines: int) -> Path:
    """The header and the first ``lines`` invoice lines of the vendored Online Retail file."""
    with gzip.open(ONLINE_RETAIL, "rb") as src, out.open("wb") as dst:
        for n, line in enumerate(src):
            if n > lines:
                break
            dst.write(line)
    return out


# --- PostgreSQL ----------------------------------------------------------------------------------
def _conninfo(url: str) -> str:
    """libpq's conninfo for a SQLAlchemy URL, also a multi-host one (``?host=h:p&host=h:p``)."""
    import sqlalchemy as sa

    u = sa.make_url(url)
    query = dict(u.query)
    hosts = query.pop("host", None)
    if hosts:
        pairs = [h.partition(":") for h in ([hosts] if isinstance(hosts, str) else hosts)]
        info = f"host={','.join(h for h, _, _ in pairs)} port={','.join(p or '5432' for _, _, p in pairs)}"
    else:
        info = f"host={u.host or '127.0.0.1'} port={u.port or 5432}"
    info += f" dbname={u.database}" + (f" user={u.username}" if u.username else "")
    return info + "".join(f" {k}={v}" for k, v in query.items() if isinstance(v, str))


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_conninfo(PG_ADMIN), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_conninfo(PG_ADMIN), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def db_url(name: str, *, port: int | None = None) -> str:
    import sqlalchemy as sa

    admin = sa.make_url(PG_ADMIN)
    return admin.set(database=name, port=port or admin.port or 5432).render_as_string(hide_password=False)


# --- processes -----------------------------------------------------------------------------------
@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[Any] | None = None
    starts: int = 0
    boot_cpu_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "shelfwise.api.app:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "2",
        ]
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.log.parent,
        )
        fh.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def cpu_seconds(self) -> float:
        """CPU time the replica's process has used (user + system)."""
        import psutil

        if self.proc is None:
            return 0.0
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def wait_healthy(
        self, *, cpu_budget: float = BOOT_CPU_BUDGET, stall: float = BOOT_STALL, ceiling: float = BOOT_CEILING
    ) -> float:
        """Until ``/healthz`` answers; the wall seconds that took (also in ``boot_cpu_seconds``).

        A boot is judged by the work the replica does, not by the wall clock, which a busy machine
        stretches (on 2 cores shared with other jobs a boot took 174 s where an idle one takes 6):
        it fails when the process exits, spends more than ``cpu_budget`` CPU seconds without
        answering, makes no CPU progress for ``stall`` seconds (hung), or after ``ceiling``."""
        started = time.monotonic()
        cpu0 = self.cpu_seconds()
        last_cpu, progressed = cpu0, started
        while True:
            if self.healthy():
                self.boot_cpu_seconds = round(self.cpu_seconds() - cpu0, 2)
                return time.monotonic() - started
            if not self.alive():
                tail = self.log.read_text(errors="replace")[-2000:]
                raise DrillError(f"replica {self.name} exited while starting:\n{tail}")
            now, cpu = time.monotonic(), self.cpu_seconds()
            if cpu > last_cpu:
                last_cpu, progressed = cpu, now
            why = None
            if cpu - cpu0 > cpu_budget:
                why = f"used {cpu - cpu0:.0f} CPU seconds (budget {cpu_budget:.0f})"
            elif now - progressed > stall:
                why = f"made no progress for {stall:.0f} s (hung)"
            elif now - started > ceiling:
                why = f"still starting after {ceiling:.0f} s"
            if why:
                raise DrillError(f"replica {self.name} not healthy: {why}", hint=str(self.log))
            time.sleep(0.1)

    def kill9(self) -> None:
        """SIGKILL the replica (the fault): the whole process group, no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)


HAPROXY_CFG = """\
global
    maxconn 2000
    # every request with its server, timings and termination state (haproxy.log in the drill's
    # directory, kept with SHELFWISE_DRILL_KEEP=1): how a request with no answer was found
    log stderr format short local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 30s
    timeout server 10s
    # a killed replica is seen at once (connection refused, whatever this is); the check timeout
    # only has to tell a hung replica from a slow answer on a busy machine: at 500 ms, a healthy
    # replica on 2 loaded cores was marked DOWN with the other one booting (no server left: 503s)
    timeout check 5s
    retries 3
    option redispatch 1
    # a connection refused or reset by a killed replica is retried on another one; POSTs only
    # when they carry an Idempotency-Key (the API stores such an event once)
    retry-on conn-failure empty-response response-timeout 502 503
    # a request is retried only when HAProxy holds all of it: without this, a POST whose body came
    # after its headers was streamed to the replica, and when that replica was SIGKILLed before
    # answering, HAProxy could not resend it: it closed the client's connection without an answer
    # and without a log line (its rule for a reused client connection), while the GETs in flight
    # were redispatched ("+1" in the log). Measured under load (server time 0.4-0.9 s, so the kill
    # often caught an event POST in flight): 2 events failed this way in 1 kill out of 3
    option http-buffer-request
    # keep-alive to the clients, a new connection to a replica per request: a request sent on an
    # idle connection to a replica killed meanwhile was not retried — HAProxy closed the client's
    # connection without an answer and without a log line ("Server disconnected without sending a
    # response" in the drill's load, right after the SIGKILL); a fresh connect is refused at once
    # and retried on the other replica
    option http-server-close
    # the replicas rate-limit anonymous callers by this address (SHELFWISE_TRUSTED_PROXIES)
    option forwardfor

frontend api
    bind 127.0.0.1:{port}
    http-request disable-l7-retry if METH_POST !{{ req.hdr(idempotency-key) -m found }}
    default_backend replicas

frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
    stats refresh 1s

backend replicas
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 200ms fastinter 200ms downinter 500ms fall 2 rise 2 maxconn 64
{servers}
"""


@dataclass
class Topology:
    root: Path
    db_name: str
    pg_proxy: TcpProxy
    redis_proxy: TcpProxy
    redis_prefix: str
    api_key: str
    pseudonym_key: str
    replicas: list[Replica] = field(default_factory=list)
    haproxy: subprocess.Popen[Any] | None = None
    port: int = 0
    stats_port: int = 0
    say: Say = lambda _m: None
    timings: dict[str, float] = field(default_factory=dict)
    # the replicated variant (``start(replicated=True)``): its own PostgreSQL primary + standby and
    # Redis + Sentinels, which the replicas reach directly (no drill proxy)
    pg_cluster: Any = None
    sentinels: Any = None

    # --- addresses ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def direct_db_url(self) -> str:
        """The drill database, not through the proxy (to count what was stored)."""
        if self.pg_cluster is not None:
            return str(self.pg_cluster.url(self.db_name))
        return db_url(self.db_name)

    @property
    def replicated(self) -> bool:
        return self.pg_cluster is not None

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def settings(self) -> Any:
        from shelfwise.core.settings import Settings

        return Settings(
            var_dir=self.root / "var",
            pseudonym_key=self.pseudonym_key,  # type: ignore[arg-type]
            models_dir=self.models_dir,
            ingest_batch_size=5_000,
        )

    # --- building ----------------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def start(
        cls, *, replicas: int = 2, events: int = 20_000, say: Say | None = None, replicated: bool = False
    ) -> Iterator[Topology]:
        """With ``replicated``, the store is a PostgreSQL primary with a synchronous standby and the
        cache Redis with a replica behind three Sentinels, all started here (``drills.replicated``)."""
        say = say or (lambda _m: None)
        root = Path(tempfile.mkdtemp(prefix="shelfwise-drill-"))
        tag = secrets.token_hex(4)
        pg_target = _host_port(PG_ADMIN, 5432)
        redis_target = _host_port(REDIS, 6379)
        topo = cls(
            root=root,
            db_name=f"shelfwise_drill_{tag}",
            pg_proxy=TcpProxy(pg_target),
            redis_proxy=TcpProxy(redis_target),
            redis_prefix=f"shelfwise-drill-{tag}:",
            api_key=secrets.token_urlsafe(24),
            pseudonym_key=secrets.token_hex(24),
            say=say,
        )
        created = False
        try:
            if replicated:
                from shelfwise.drills.replicated import PgCluster, SentinelGroup

                topo.pg_cluster = PgCluster(root, say=say)
                topo.pg_cluster.start()
                topo.timings.update(topo.pg_cluster.timings)
                topo.pg_cluster.create_database(topo.db_name)
                topo.sentinels = SentinelGroup(root, say=say)  # assigned first: close() stops it
                topo.sentinels.start()
                topo.timings.update(topo.sentinels.timings)
            else:
                create_database(topo.db_name)
                created = True
            topo._load_data(events)
            topo._start_replicas(replicas)
            topo._start_haproxy()
            yield topo
        finally:
            topo.close(drop=created)

    def _load_data(self, events: int) -> None:
        from shelfwise.data.readers import get_format
        from shelfwise.features.dataset import Dataset
        from shelfwise.registry import ModelRegistry, TrainingConfig, train_version
        from shelfwise.store import open_store
        from shelfwise.store.ingest import ingest_events

        t0 = time.monotonic()
        self.say(f"loading {events:,} Online Retail lines into PostgreSQL database {self.db_name}")
        path = slice_csv(self.root / "online_retail_slice.csv", events)
        with open_store(self.direct_db_url) as store:
            ingest_events(store, path, get_format("online-retail"), self.settings())
            ds = Dataset.from_store(store)
        self.timings["load_seconds"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        self.say("training and activating a model (item-kNN)")
        config = TrainingConfig(
            recommender={"model": "itemknn"}, bought_together={"model": "bought-together", "max_rules": 0}
        )
        train_version(ds, ModelRegistry(self.models_dir), config)
        self.timings["train_seconds"] = round(time.monotonic() - t0, 2)

    def replica_env(self, name: str) -> dict[str, str]:
        var = self.root / name
        var.mkdir(exist_ok=True)
        key_hash = hashlib.sha256(self.api_key.encode()).hexdigest()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHELFWISE_")}
        env.update(
            {
                "SHELFWISE_CONFIG": str(self.root / "none.toml"),
                "SHELFWISE_VAR_DIR": str(var),
                "SHELFWISE_DB_URL": self.direct_db_url
                if self.replicated
                else db_url(self.db_name, port=self.pg_proxy.port),
                "SHELFWISE_MODELS_DIR": str(self.models_dir),
                "SHELFWISE_REDIS_URL": self.sentinels.url
                if self.sentinels is not None
                else f"redis://127.0.0.1:{self.redis_proxy.port}/0",
                "SHELFWISE_REDIS_PREFIX": self.redis_prefix,
                "SHELFWISE_PSEUDONYM_KEY": self.pseudonym_key,
                "SHELFWISE_API_KEY_HASHES": f'["{key_hash}"]',
                "SHELFWISE_RATE_LIMIT_PER_SECOND": "0",
                "SHELFWISE_TRUSTED_PROXIES": '["127.0.0.1/32"]',  # HAProxy, which sends X-Forwarded-For
                "SHELFWISE_DASHBOARD_ON_START": "false",
                "SHELFWISE_LOG_LEVEL": "WARNING",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "NUMBA_NUM_THREADS": "1",
            }
        )
        return env

    def _start_replicas(self, n: int) -> None:
        for i in range(n):
            name = f"replica-{i}"
            rep = Replica(
                name=name, port=free_port(), env=self.replica_env(name), log=self.root / f"{name}.log"
            )
            self.replicas.append(rep)
        t0 = time.monotonic()
        self.say(f"starting {n} API replicas")
        for rep in self.replicas:
            rep.start()
        for rep in self.replicas:
            rep.wait_healthy()
        self.timings["replicas_start_seconds"] = round(time.monotonic() - t0, 2)
        self.timings["replica_boot_cpu_seconds"] = max(r.boot_cpu_seconds or 0.0 for r in self.replicas)

    def _start_haproxy(self) -> None:
        self.port, self.stats_port = free_port(), free_port()
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in self.replicas)
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=self.port, stats_port=self.stats_port, servers=servers))
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise DrillError(f"haproxy refused its config: {check.stderr.strip()[:500]}")
        log = (self.root / "haproxy.log").open("ab")
        self.haproxy = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.haproxy.poll() is not None:
                raise DrillError("haproxy exited", hint=str(self.root / "haproxy.log"))
            if all(s == "UP" for s in self.server_states().values()) and self.server_states():
                return
            time.sleep(0.1)
        raise DrillError("haproxy did not see every replica UP within 20 s")

    # --- observing ---------------------------------------------------------------------------
    def server_states(self) -> dict[str, str]:
        """HAProxy's view of each replica: UP, DOWN, ``UP 1/2``…"""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=1).text
        except httpx.HTTPError:
            return {}
        out = {}
        for line in text.splitlines():
            cols = line.split(",")
            if len(cols) > 17 and cols[0] == "replicas" and cols[1] not in ("BACKEND", "FRONTEND"):
                out[cols[1]] = cols[17]
        return out

    def wait_state(self, name: str, want: str, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.server_states().get(name) == want:
                return time.monotonic() - started
            time.sleep(0.05)
        raise DrillError(f"{name} not {want} in HAProxy after {timeout:.0f} s")

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    # --- stopping ----------------------------------------------------------------------------
    def close(self, *, drop: bool = True) -> None:
        if self.haproxy is not None:
            _kill_group(self.haproxy)
        for rep in self.replicas:
            rep.stop()
        self.pg_proxy.close()
        self.redis_proxy.close()
        for own in (self.sentinels, self.pg_cluster):
            if own is not None:
                try:
                    own.close()
                except Exception as exc:  # report, but keep cleaning
                    self.say(f"could not stop {type(own).__name__}: {exc}")
        if self.sentinels is None:
            with contextlib.suppress(Exception):
                _delete_redis_prefix(self.redis_prefix)
        if drop:
            try:
                drop_database(self.db_name)
            except Exception as exc:  # report, but keep cleaning
                self.say(f"could not drop {self.db_name}: {exc}")
        if os.environ.get("SHELFWISE_DRILL_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)


def _host_port(url: str, default: int) -> tuple[str, int]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return (u.hostname or "127.0.0.1", u.port or default)


def _delete_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS, socket_timeout=2)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()
