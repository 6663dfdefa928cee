"""Each shard of a sharded search index held and queried in a process of its own: one Ray actor
per shard (``SHELFWISE_SHARD_ENGINE=ray``; the default, ``threads``, holds them in the serving
process).

An actor is named by the index's content and its shard number (``shelfwise-shard-<key>-<s>`` in
the ``shelfwise`` namespace, ``key`` = the first 16 hex digits of the sha256 of ``shards.json``,
which holds the sha256 of every shard file). The first process to load a version creates its actors
(``get_if_exists``, so processes loading at once create each actor once); every later one, another
API worker or a replica on the same cluster, finds them by name and shares them instead of loading
its own copies. Actors are detached: they outlive the process that created them and stay until
``stop_actors`` (or the cluster) ends them. An actor takes no CPU from Ray's scheduler (``num_cpus=0``:
it waits for queries), answers several callers at once (``max_concurrency``; the scoring kernels
and hnswlib release the GIL), and loads its shard from the index's directory, which must be
readable at the same path on every node (shared storage on a cluster of several machines).

A query is scattered to every shard at once and gathered with one ``ray.get``; each shard answers
in global slots exactly what ``ThreadShards`` answers in-process (the same ``Shard`` methods), and
``ShardedKeyword`` / ``ShardedDense`` merge both the same way, so the two engines give the same
results. A shard whose actor died (killed, its node lost, restarts used up) is created again and
asked once more; if that fails too, or a shard does not answer in ``timeout_s``, the query fails
with ``ShardUnavailableError`` (HTTP 503 with the message, never a bare 500).

    >>> keyword, dense = load_shards(path, engine="ray", ...)            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shelfwise.core.errors import UnavailableError
from shelfwise.core.ray_cluster import connect, ray_module
from shelfwise.search.shards import SHARDS_FILE, Shard

log = logging.getLogger(__name__)

NAMESPACE = "shelfwise"
PREFIX = "shelfwise-shard-"
TIMEOUT_S = 30.0  # one query's wait for its shards
LOAD_TIMEOUT_S = 600.0  # a shard's actor loading its files (a 1M-item shard: seconds to a minute)
MAX_CONCURRENCY = 8
STOP_WAIT_S = 30.0  # stop_actors' wait for the actors it ended to be gone
WHAT = "SHELFWISE_SHARD_ENGINE=ray"


class ShardUnavailableError(UnavailableError):
    """A shard of the search index does not answer (its actor died and could not be created again,
    or it is too slow)."""


class ShardActor:
    """One shard in its own worker process: a ``Shard`` and a door to its methods."""

    def __init__(self, directory: str, shard: int, dense: bool) -> None:
        self.shard = Shard(directory, shard, dense=dense)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.shard, method)(*args)


_remote_class: Any = None


def _actor_class() -> Any:
    global _remote_class
    if _remote_class is None:
        _remote_class = ray_module(WHAT).remote(ShardActor)
    return _remote_class


def index_key(directory: Path) -> str:
    """The index's identity: the sha256 of ``shards.json`` (every shard file's sha256 is in it)."""
    return hashlib.sha256((directory / SHARDS_FILE).read_bytes()).hexdigest()[:16]


def actor_name(key: str, shard: int) -> str:
    return f"{PREFIX}{key}-{shard}"


class RayShards:
    """A sharded index's shards as Ray actors (see the module docstring); ``ShardBackend``'s methods."""

    engine = "ray"

    def __init__(
        self,
        directory: Path,
        shards: int,
        *,
        dense: bool,
        timeout_s: float = TIMEOUT_S,
        load_timeout_s: float = LOAD_TIMEOUT_S,
    ) -> None:
        self.ray = ray_module(WHAT)
        self.started_cluster = connect(what=WHAT)
        self.directory, self.shards, self.dense = Path(directory).resolve(), shards, dense
        self.timeout_s, self.load_timeout_s = timeout_s, load_timeout_s
        self.key = index_key(self.directory)
        self.actors = [self._actor(s) for s in range(shards)]

    @classmethod
    def open(cls, directory: Path, shards: int, *, dense: bool) -> RayShards:
        """The actors of ``directory``'s shards, created if absent, once every one has loaded."""
        out = cls(directory, shards, dense=dense)
        out.call_some("info", dict.fromkeys(range(shards), ()), timeout_s=out.load_timeout_s)
        return out

    def _actor(self, shard: int) -> Any:
        return (
            _actor_class()
            .options(
                name=actor_name(self.key, shard),
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                max_concurrency=MAX_CONCURRENCY,
                max_restarts=2,  # a crashed worker: Ray starts the actor again from the same files
                max_task_retries=1,  # and a query caught by the crash is asked again (queries only read)
            )
            .remote(str(self.directory), shard, self.dense)
        )

    def scatter(self, method: str, *args: Any) -> list[Any]:
        found = self.call_some(method, dict.fromkeys(range(self.shards), args))
        return [found[s] for s in range(self.shards)]

    def call_some(
        self, method: str, calls: Mapping[int, tuple[Any, ...]], *, timeout_s: float | None = None
    ) -> dict[int, Any]:
        """``method`` on each shard of ``calls`` with its arguments, all at once; shards whose actor
        died are created again and asked once more."""
        ray = self.ray
        order = sorted(calls)
        refs = [self.actors[s].call.remote(method, *calls[s]) for s in order]
        try:
            return dict(zip(order, ray.get(refs, timeout=timeout_s or self.timeout_s), strict=True))
        except ray.exceptions.GetTimeoutError as exc:
            raise self._unavailable(order, f"no answer in {timeout_s or self.timeout_s:.0f} s") from exc
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            pass  # which shards: below
        out: dict[int, Any] = {}
        for s, ref in zip(order, refs, strict=True):
            try:
                out[s] = ray.get(ref, timeout=timeout_s or self.timeout_s)
                continue
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                log.warning("search shard %s of index %s died (%s); starting it again", s, self.key, exc)
            except ray.exceptions.GetTimeoutError as exc:
                raise self._unavailable([s], f"no answer in {timeout_s or self.timeout_s:.0f} s") from exc
            try:
                self.actors[s] = self._actor(s)
                out[s] = ray.get(self.actors[s].call.remote(method, *calls[s]), timeout=self.load_timeout_s)
            except ray.exceptions.RayError as exc:
                raise self._unavailable([s], f"its actor died and could not be started again: {exc}") from exc
        return out

    def _unavailable(self, shards: list[int], why: str) -> ShardUnavailableError:
        names = ", ".join(str(s) for s in shards)
        return ShardUnavailableError(
            f"search index {self.key} (held by Ray actors): shard {names} does not answer: {why}",
            hint="retry; if it persists, check the Ray cluster (`ray status`) and the index files, "
            "or serve with SHELFWISE_SHARD_ENGINE=threads",
        )

    def pids(self) -> list[int]:
        """The process of each shard's actor."""
        return [int(i["pid"]) for i in self.scatter("info")]

    def close(self) -> None:
        """Nothing to close here: the actors are shared (``stop_actors`` ends them)."""


def _named(ray: Any) -> list[tuple[str, str, int]]:
    """(actor name, index key, shard) of every shard actor on the cluster."""
    out = []
    for found in ray.util.list_named_actors(all_namespaces=True):
        name, namespace = found["name"], found["namespace"]
        if namespace != NAMESPACE or not name.startswith(PREFIX):
            continue
        key, _, shard = name[len(PREFIX) :].rpartition("-")
        out.append((name, key, int(shard) if shard.isdigit() else -1))
    return out


def list_actors() -> dict[str, list[int]]:
    """Every index held by shard actors on the cluster: its key -> the shards that have an actor.
    Connects as ``RayShards`` does."""
    ray = ray_module(WHAT)
    connect(what=WHAT)
    held: dict[str, list[int]] = {}
    for _, key, shard in _named(ray):
        held.setdefault(key, []).append(shard)
    return {key: sorted(shards) for key, shards in sorted(held.items())}


def stop_actors(*, keep: frozenset[str] = frozenset()) -> list[str]:
    """End every shard actor on the cluster whose index key is not in ``keep`` (the versions still
    served); returns the names ended. Connects as ``RayShards`` does."""
    ray = ray_module(WHAT)
    connect(what=WHAT)
    ended = []
    for name, key, _ in _named(ray):
        if key in keep:
            continue
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:  # ended meanwhile
            continue
        ended.append(name)
    # ray.kill only asks: wait (a while) until the cluster no longer lists them, so what this
    # returns is gone and a listing right after it agrees
    deadline = time.monotonic() + STOP_WAIT_S
    while ended and time.monotonic() < deadline:
        if not {name for name, _, _ in _named(ray)} & set(ended):
            break
        time.sleep(0.1)
    return sorted(ended)


__all__ = ["RayShards", "ShardUnavailableError", "actor_name", "index_key", "list_actors", "stop_actors"]
