"""A search index partitioned into shards, queried by scatter-gather.

Items go to shard ``blake2b(item_id) mod S`` (stable across processes, versions and machines).
Each shard is a full keyword (BM25F term matrix) and vector (HNSW graph) index over its items,
built in its own process; a query goes to every shard and the shards' best answers are merged.

Keyword scores are comparable across shards because every shard is scored with the *whole
catalogue's* statistics: the build runs in two passes, (1) each shard tokenises its items and
reports its field lengths and document frequencies, (2) the sums (``n``, mean field length, ``df``
per term) go back to every shard, which computes its BM25F weights with them. So a sharded index
scores every item exactly as the unsharded one does (the same float64 arithmetic, the same
float32 weights) and returns the same top-k; the equality is tested on keyword, dense and hybrid
search (``tests/unit/search/test_shards.py``). Dense search merges the shards' nearest neighbours
by cosine; it is exact where the unsharded index is exact (few allowed items), and approximate
(HNSW) beyond, where a shard's graph is smaller than the whole one.

Layout under a saved engine's directory (``SearchEngine.save``'s files, keyword/ and dense/ replaced)::

    shards.json                       S, counts, global statistics, sha256 of every shard file
    shards/<s>/slots.npy              the global slots (positions in items.jsonl) of shard s
    shards/<s>/keyword/bm25f_*.npy    the shard's BM25F matrix (term-major CSR) and terms
    shards/<s>/dense/                 the shard's vectors and its saved HNSW graph

``SearchEngine.load`` reads it (``ShardedKeyword``/``ShardedDense`` stand in for the engine's
keyword and vector index). Each shard's queries are answered by a ``Shard``, held where the
``ShardBackend`` keeps it: in this process, queried by a thread pool (``ThreadShards``, the default;
the scoring kernels release the GIL, hnswlib does too), or in a Ray actor process of its own,
shared by every process serving the version (``RayShards``, ``shelfwise.search.shard_actors``);
both merge the same answers the same way. A loaded sharded engine answers every mode but
``ltr``; items added or changed after the build go to an in-process delta (keyword postings scored
with the catalogue's statistics, a small HNSW graph) until the next version is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from shelfwise.core.errors import ConfigError
from shelfwise.features.text import AnalyzerConfig
from shelfwise.search.analysis import make_analyzer
from shelfwise.search.dense import DenseIndex
from shelfwise.search.keyword import KeywordIndex, bm25f_matrix
from shelfwise.search.scoring import TermMatrix, top_k

log = logging.getLogger(__name__)

SHARDS_FILE = "shards.json"
FORMAT = 1
T = TypeVar("T")


def shard_of(item_id: str, shards: int) -> int:
    """The shard of an item: the first 8 bytes of blake2b of its id, modulo ``shards``."""
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def assign(item_ids: Iterable[str], shards: int) -> np.ndarray:
    return np.fromiter((shard_of(i, shards) for i in item_ids), dtype=np.int32)


class ShardSource(Protocol):
    """Where one shard's documents come from when they are made inside the shard's process (a
    generated catalogue too big to hold in the parent): its global slots, each slot's text fields,
    and its vectors (None: keyword only)."""

    def part(self, shard: int, shards: int) -> tuple[np.ndarray, list[dict[str, str]], np.ndarray | None]: ...


# --- building ---------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_pass(args: tuple[Any, ...]) -> dict[str, Any]:
    """Tokenise one shard (tokens kept on disk for the second pass), build and save its HNSW graph;
    return its statistics."""
    directory, shard, shards, payload, weights, analyzer_cfg, hnsw = args
    started = time.perf_counter()
    slots, docs, vectors = payload.part(shard, shards) if hasattr(payload, "part") else payload
    out = Path(directory) / "shards" / str(shard)
    (out / "tokens").mkdir(parents=True, exist_ok=True)
    np.save(out / "slots.npy", np.asarray(slots, dtype=np.int64), allow_pickle=False)
    analyzer = make_analyzer(AnalyzerConfig(**analyzer_cfg))
    n = len(docs)
    lengths: dict[str, int] = {}
    union: dict[str, int] = {}  # the weighted fields' terms
    pairs = []  # term * n + doc for every weighted-field token: df counts a document once
    for field, weight in weights.items():
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in analyzer.tokens(d.get(field, ""))] for d in docs]
        lengths[field] = sum(len(d) for d in ids)
        if not lengths[field]:
            continue
        flat = np.fromiter((t for d in ids for t in d), dtype=np.int32, count=lengths[field])
        offsets = np.cumsum([0] + [len(d) for d in ids], dtype=np.int64)
        del ids
        np.save(out / "tokens" / f"{field}.ids.npy", flat, allow_pickle=False)
        np.save(out / "tokens" / f"{field}.offsets.npy", offsets, allow_pickle=False)
        terms = sorted(vocab, key=vocab.__getitem__)
        (out / "tokens" / f"{field}.terms.json").write_text(json.dumps(terms, ensure_ascii=False))
        if weight > 0:
            to_union = np.fromiter((union.setdefault(t, len(union)) for t in terms), np.int64, len(terms))
            doc_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
            pairs.append(np.unique(to_union[flat] * n + doc_of))
    df: dict[str, int] = {}
    if pairs:
        term_ids, counts = np.unique(np.unique(np.concatenate(pairs)) // n, return_counts=True)
        names = sorted(union, key=union.__getitem__)
        df = {names[t]: c for t, c in zip(term_ids.tolist(), counts.tolist(), strict=True)}
    del pairs
    tokenised = time.perf_counter() - started
    dense_s = 0.0
    if vectors is not None:
        t0 = time.perf_counter()
        m, efc, efs = hnsw
        index = DenseIndex(m=m, ef_construction=efc, ef_search=efs)
        index.threads = 1  # one process per shard: the shards are the parallelism
        index.build(np.asarray(vectors, dtype=np.float32))
        index.save(out / "dense", graph=True)
        dense_s = time.perf_counter() - t0
        del index
    return {"shard": shard, "n": n, "lengths": lengths, "df": df, "tokenise_s": tokenised, "dense_s": dense_s}


def _second_pass(args: tuple[Any, ...]) -> dict[str, Any]:
    """One shard's BM25F matrix with the catalogue's statistics, saved; its tokens removed."""
    directory, shard, weights, k1, b, avgdl, n_total, df = args
    started = time.perf_counter()
    out = Path(directory) / "shards" / str(shard)
    n = len(np.load(out / "slots.npy", allow_pickle=False))
    field_ids: dict[str, tuple[dict[str, int], list[list[int]]]] = {}
    for field in weights:
        terms_file = out / "tokens" / f"{field}.terms.json"
        if not terms_file.exists():
            continue
        terms = json.loads(terms_file.read_text())
        flat = np.load(out / "tokens" / f"{field}.ids.npy", allow_pickle=False).tolist()
        offsets = np.load(out / "tokens" / f"{field}.offsets.npy", allow_pickle=False).tolist()
        ids = [flat[offsets[i] : offsets[i + 1]] for i in range(n)]
        field_ids[field] = ({t: i for i, t in enumerate(terms)}, ids)
    matrix = bm25f_matrix(field_ids, weights, avgdl, k1=k1, b=b, n=n_total, df=df, n_docs=n)
    del field_ids
    _save_matrix(matrix, out / "keyword")
    shutil.rmtree(out / "tokens")
    return {"shard": shard, "score_s": time.perf_counter() - started}


def _save_matrix(m: TermMatrix, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("indptr", "indices", "data"):
        np.save(directory / f"bm25f_{name}.npy", getattr(m, name), allow_pickle=False)
    terms = sorted(m.vocab, key=m.vocab.__getitem__)
    (directory / "bm25f_terms.json").write_text(json.dumps(terms, ensure_ascii=False))


def _load_matrix(directory: Path, n: int) -> TermMatrix:
    terms = json.loads((directory / "bm25f_terms.json").read_text())
    indptr, indices, data = (
        np.load(directory / f"bm25f_{k}.npy", allow_pickle=False) for k in ("indptr", "indices", "data")
    )
    return TermMatrix({t: i for i, t in enumerate(terms)}, indptr, indices, data, n)


class _InProcess(Executor):
    """The one-worker "pool": runs each call here, in order (no process to start)."""

    def map(self, fn: Any, *iterables: Any, timeout: float | None = None, chunksize: int = 1) -> Any:
        return map(fn, *iterables)


def _build_pool(workers: int) -> Executor:
    """Worker processes for the shard build, started from a fresh interpreter ("forkserver"), not
    forked from this one: forking a large process (a server, a test run with torch loaded) can be
    refused by the kernel's overcommit check (ENOMEM) though the workers need little. One worker:
    the shards are built here, one after another."""
    if workers <= 1:
        return _InProcess()
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_end_with,
        initargs=(os.getpid(),),
    )


def _end_with(builder: int, every: float = 1.0) -> None:
    """In a build worker: end this process when the one that asked for the build is gone. A worker
    is the forkserver's child, not the builder's, so nothing else ends it: a killed build (a command
    stopped, a time box) left workers building a shard for half an hour, with nobody to read it."""

    def watch() -> None:
        while True:
            time.sleep(every)
            try:
                os.kill(builder, 0)
            except (ProcessLookupError, PermissionError):  # gone (or its pid taken by another user's)
                os._exit(1)

    threading.Thread(target=watch, name="shelfwise-shard-build-watch", daemon=True).start()


def build_shards(
    directory: Path,
    parts: Sequence[Any],
    *,
    n_items: int,
    weights: Mapping[str, float],
    analyzer: AnalyzerConfig,
    k1: float = 1.2,
    b: float = 0.75,
    hnsw: tuple[int, int, int] = (16, 100, 128),
    workers: int | None = None,
) -> dict[str, Any]:
    """Build ``len(parts)`` shards under ``directory`` (two passes, ``workers`` processes) and write
    ``shards.json``. ``parts[s]``: shard s's (global slots, text fields, vectors or None), or a
    ``ShardSource`` that makes them in the shard's process. Returns the build report."""
    shards = len(parts)
    if shards < 1:
        raise ConfigError("a sharded index needs at least one shard")
    workers = workers or min(shards, os.cpu_count() or 1)
    args = (directory, parts, n_items, weights, analyzer, k1, b, hnsw)
    try:
        return _build(*args, workers=workers)
    except (OSError, BrokenProcessPool) as exc:  # no worker could start: same result, one core
        if workers <= 1:
            raise
        log.warning("shard build: worker processes failed (%s); building in this process", exc)
        return _build(*args, workers=1)


def _build(
    directory: Path,
    parts: Sequence[Any],
    n_items: int,
    weights: Mapping[str, float],
    analyzer: AnalyzerConfig,
    k1: float,
    b: float,
    hnsw: tuple[int, int, int],
    *,
    workers: int,
) -> dict[str, Any]:
    shards = len(parts)
    started = time.perf_counter()
    cfg = analyzer.model_dump()
    with _build_pool(workers) as pool:
        first = list(
            pool.map(
                _first_pass,
                [(str(directory), s, shards, parts[s], dict(weights), cfg, hnsw) for s in range(shards)],
            )
        )
        counted = sum(r["n"] for r in first)
        if counted != n_items:
            raise ConfigError(f"the shards hold {counted} items, the catalogue {n_items}")
        lengths = {f: sum(r["lengths"].get(f, 0) for r in first) for f in weights}
        # what KeywordIndex.build computes over the whole catalogue: mean length per field with tokens
        avgdl = {f: max(total / n_items, 1e-9) for f, total in lengths.items() if total}
        df: dict[str, int] = {}
        for r in first:
            for term, c in r["df"].items():
                df[term] = df.get(term, 0) + c
        first_s = time.perf_counter() - started
        second = list(
            pool.map(
                _second_pass,
                [
                    (
                        str(directory),
                        r["shard"],
                        dict(weights),
                        k1,
                        b,
                        avgdl,
                        n_items,
                        {t: df[t] for t in r["df"]},
                    )
                    for r in first
                ],
            )
        )
    files = {
        str(p.relative_to(directory)): _sha256(p)
        for p in sorted((directory / "shards").rglob("*"))
        if p.is_file()
    }
    meta = {
        "format": FORMAT,
        "shards": shards,
        "partition": "blake2b-64(item_id) mod shards",
        "items": n_items,
        "counts": [r["n"] for r in first],
        "avgdl": avgdl,
        "terms": len(df),
        "dense": bool(first and (directory / "shards" / "0" / "dense").exists()),
        "files": files,
    }
    (directory / SHARDS_FILE).write_text(json.dumps(meta, indent=1))
    return {
        "seconds": time.perf_counter() - started,
        "first_pass_s": first_s,
        "shard_tokenise_s": [round(r["tokenise_s"], 2) for r in first],
        "shard_dense_s": [round(r["dense_s"], 2) for r in first],
        "shard_score_s": [round(r["score_s"], 2) for r in second],
        "workers": workers,
    }


def split(
    item_ids: Sequence[str], docs: Sequence[Mapping[str, str]], vectors: np.ndarray | None, shards: int
) -> list[tuple[np.ndarray, list[Mapping[str, str]], np.ndarray | None]]:
    """A catalogue held in memory, cut into the shards' parts (global slots ascending)."""
    owner = assign(item_ids, shards)
    parts = []
    for s in range(shards):
        slots = np.flatnonzero(owner == s)
        parts.append((slots, [docs[int(i)] for i in slots], None if vectors is None else vectors[slots]))
    return parts


# --- loading and querying -----------------------------------------------------------------------------

ShardEngine = Literal["threads", "ray"]
SHARD_ENGINES: tuple[str, ...] = ("threads", "ray")


class Shard:
    """One shard's keyword matrix and vector index, and the queries a scatter sends it; held in the
    serving process (``threads``) or in a process of its own (``ray``: one actor per shard). Every
    answer is in global slots, so the caller merges the shards' answers without knowing where they ran."""

    def __init__(self, directory: Path | str, shard: int, *, dense: bool) -> None:
        root = Path(directory) / "shards" / str(shard)
        self.slots = np.load(root / "slots.npy", allow_pickle=False).astype(np.int64)
        self.matrix = _load_matrix(root / "keyword", len(self.slots))
        self.dense = DenseIndex.load(root / "dense") if dense else None

    def match(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every item of this shard with a positive BM25F score."""
        local, scores = self.matrix.match(self.matrix.term_ids(tokens))
        return self.slots[local], scores

    def top(self, tokens: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """This shard's best ``k`` (ties by global slot, so the merged top ``k`` is the unsharded one)."""
        slots, scores = self.match(tokens)
        best = top_k(scores, k, ties=slots)
        return slots[best], scores[best]

    def score_slots(self, tokens: Sequence[str], local: np.ndarray) -> np.ndarray:
        return self.matrix.score_slots(self.matrix.term_ids(tokens), local)

    def weighted_score_slots(self, weights: Mapping[str, float], local: np.ndarray) -> np.ndarray:
        """``KeywordIndex.weighted_score_slots`` over this shard's ``local`` slots (the same sums)."""
        out = np.zeros(len(local), dtype=np.float32)
        for token, weight in weights.items():
            out += np.float32(weight) * self.score_slots([token], local)
        return out

    def doc_freq(self, token: str) -> int:
        row = self.matrix.vocab.get(token)
        return 0 if row is None else int(self.matrix.indptr[row + 1] - self.matrix.indptr[row])

    def doc_freqs(self) -> tuple[list[str], np.ndarray]:
        """Every term of the shard and its document frequency (a remote caller's copy of them)."""
        terms = sorted(self.matrix.vocab, key=self.matrix.vocab.__getitem__)
        return terms, np.diff(self.matrix.indptr).astype(np.int64)

    def search(self, query: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The nearest ``k`` of the shard's vectors (``mask``: per local slot, allowed)."""
        assert self.dense is not None
        local, sims = self.dense.search(query, k, mask)
        return self.slots[local], sims

    def search_packed(
        self, query: np.ndarray, k: int, packed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` with the mask sent as bits (``np.packbits``): an eighth of the bytes to ship."""
        mask = None if packed is None else np.unpackbits(packed, count=len(self.slots)).astype(bool)
        return self.search(query, k, mask)

    def similarities(self, query: np.ndarray, local: np.ndarray) -> np.ndarray:
        assert self.dense is not None
        return self.dense.similarities(query, local)

    def rows(self, local: np.ndarray) -> np.ndarray:
        assert self.dense is not None
        return np.asarray(self.dense.vectors[local], dtype=np.float32)

    def remove(self, local: int) -> None:
        if self.dense is not None:
            self.dense.remove(local)

    def info(self) -> dict[str, Any]:
        d = self.dense
        return {
            "items": len(self.slots),
            "nbytes": self.matrix.nbytes(),
            "memory_bytes": 0 if d is None else d.memory_bytes(),
            "dense": None
            if d is None
            else {"dim": d.dim, "m": d.m, "efc": d.ef_construction, "efs": d.ef_search},
            "pid": os.getpid(),
        }


class ShardBackend(Protocol):
    """Where a sharded index's shards are held and how a query reaches them: ``scatter`` calls one
    ``Shard`` method on every shard (the same arguments) and ``call_some`` on some shards (their own
    arguments), both in parallel, answers in shard order."""

    engine: str
    shards: int

    def scatter(self, method: str, *args: Any) -> list[Any]: ...

    def call_some(self, method: str, calls: Mapping[int, tuple[Any, ...]]) -> dict[int, Any]: ...

    def close(self) -> None: ...


class ThreadShards:
    """Every shard in this process, queried by a thread pool (the scoring kernels release the GIL,
    hnswlib does too): the default."""

    engine = "threads"

    def __init__(self, parts: Sequence[Shard], pool: ThreadPoolExecutor | None) -> None:
        self.parts, self.pool = list(parts), pool
        self.shards = len(self.parts)

    @classmethod
    def open(cls, directory: Path, shards: int, *, dense: bool, threads: int | None = None) -> ThreadShards:
        """Load every shard of ``directory`` here, several at once."""
        pool = _thread_pool(shards, threads)
        out = cls([], pool)
        out.shards = shards
        out.parts = out._map(lambda s: Shard(directory, s, dense=dense), range(shards))
        return out

    def _map(self, fn: Callable[[int], T], shards: Iterable[int]) -> list[T]:
        shards = list(shards)
        if self.pool is None or len(shards) < 2:
            return [fn(s) for s in shards]
        return list(self.pool.map(fn, shards))

    def scatter(self, method: str, *args: Any) -> list[Any]:
        return self._map(lambda s: getattr(self.parts[s], method)(*args), range(self.shards))

    def call_some(self, method: str, calls: Mapping[int, tuple[Any, ...]]) -> dict[int, Any]:
        order = sorted(calls)
        found = self._map(lambda s: getattr(self.parts[s], method)(*calls[s]), order)
        return dict(zip(order, found, strict=True))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False)


def _thread_pool(shards: int, threads: int | None) -> ThreadPoolExecutor | None:
    threads = min(shards, threads or os.cpu_count() or 1)
    return (
        ThreadPoolExecutor(threads, thread_name_prefix="shelfwise-shard")
        if shards > 1 and threads > 1
        else None
    )


class _Layout:
    """Which shard and local slot each global slot is (and back)."""

    def __init__(self, slots: Sequence[np.ndarray], n: int) -> None:
        self.slots = [np.asarray(s, dtype=np.int64) for s in slots]
        self.shard = np.full(n, -1, dtype=np.int32)
        self.local = np.zeros(n, dtype=np.int64)
        for s, g in enumerate(self.slots):
            self.shard[g] = s
            self.local[g] = np.arange(len(g))
        if (self.shard < 0).any():
            raise ConfigError("the shards do not cover every item", hint="rebuild the index")

    def by_shard(self, slots: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per shard: (positions in ``slots``, their local slots)."""
        main = slots < len(self.shard)  # later slots: items changed since the build (the delta)
        owner = np.full(len(slots), -1, dtype=np.int32)
        owner[main] = self.shard[slots[main]]
        out = []
        for s in range(len(self.slots)):
            pos = np.flatnonzero(owner == s)
            out.append((pos, self.local[slots[pos]]))
        return out


class ShardedKeyword(KeywordIndex):
    """The keyword side of a sharded index: BM25F over every shard, in global slots."""

    read_only = True  # no compaction in place: changes wait in the delta for the next version

    def __init__(
        self,
        backend: ShardBackend,
        layout: _Layout,
        *,
        avgdl: Mapping[str, float],
        **kw: Any,
    ) -> None:
        super().__init__(scoring="bm25f", **kw)
        self.shard_backend, self.layout = backend, layout
        self.n_main = len(layout.shard)
        self.avgdl = dict(avgdl)  # the catalogue's mean field lengths (the delta is scored with them)
        self._df: dict[str, int] | None = None  # remote shards: the catalogue's df, fetched once

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return self.shard_backend.engine != "threads"

    @property
    def matrices(self) -> list[TermMatrix]:
        """The shards' term matrices, when they are held in this process."""
        if not isinstance(self.shard_backend, ThreadShards):
            raise ConfigError(f"the shards are held by {self.shard_backend.engine}, not in this process")
        return [p.matrix for p in self.shard_backend.parts]

    def _delta_parts(self, tokens: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        if not self.delta_slots:
            return []
        extra = self._delta_match(tokens)
        slots = np.fromiter(extra, dtype=np.int64, count=len(extra))
        return [(slots, np.fromiter(extra.values(), dtype=np.float32, count=len(extra)))]

    def match(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if not tokens:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        found = self.shard_backend.scatter("match", list(tokens)) + self._delta_parts(tokens)
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])

    def top(self, tokens: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each shard's best ``k`` (ties by global slot), merged: the unsharded index's top ``k``."""
        if not tokens:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        found = self.shard_backend.scatter("top", list(tokens), k) + self._delta_parts(tokens)
        slots = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        best = top_k(scores, k, ties=slots)
        return slots[best], scores[best]

    def score_slots(self, tokens: Sequence[str], slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64)
        out = np.zeros(len(slots), dtype=np.float32)
        if not tokens or len(slots) == 0:
            return out
        self._on_shards("score_slots", list(tokens), slots, out)
        if self.delta_slots and (slots >= self.n_main).any():
            extra = self._delta_match(tokens)
            for i in np.flatnonzero(slots >= self.n_main):
                out[i] = extra.get(int(slots[i]), 0.0)
        return out

    def weighted_score_slots(self, weights: Mapping[str, float], slots: np.ndarray) -> np.ndarray:
        """As the unsharded index's (the same sums, element by element), in one call per shard
        rather than one per word: term feedback weighs several words at once."""
        slots = np.asarray(slots, dtype=np.int64)
        out = np.zeros(len(slots), dtype=np.float32)
        if not weights or len(slots) == 0:
            return out
        self._on_shards("weighted_score_slots", dict(weights), slots, out)
        later = np.flatnonzero(slots >= self.n_main)
        if self.delta_slots and len(later):
            extra = np.zeros(len(later), dtype=np.float32)
            for token, weight in weights.items():
                extra += np.float32(weight) * self.score_slots([token], slots[later])
            out[later] = extra
        return out

    def _on_shards(self, method: str, arg: Any, slots: np.ndarray, out: np.ndarray) -> None:
        """``method(arg, local slots)`` on each shard holding some of ``slots`` (one call per shard),
        each answer written into ``out`` at its slots' positions."""
        parts = self.layout.by_shard(slots)
        calls = {s: (arg, local) for s, (pos, local) in enumerate(parts) if len(pos)}
        for s, scores in self.shard_backend.call_some(method, calls).items():
            out[parts[s][0]] = scores

    def _delta_bm25f(self, tokens: Sequence[str]) -> dict[int, float]:
        """BM25F of items changed since the build, with the catalogue's statistics (as the
        unsharded index's delta segment is scored with its main segment's)."""
        n = self.n_main + len(self.delta_slots)
        out: dict[int, float] = {}
        for token in tokens:
            tf: dict[int, float] = {}
            for field, w in self.weights.items():
                hits = self._delta[field].get(token)
                if not hits or w <= 0:
                    continue
                avgdl = self.avgdl.get(field) or max(self._delta_len[field] / len(self.delta_slots), 1e-9)
                for slot, count, dl in hits:
                    tf[slot] = tf.get(slot, 0.0) + w * count / (1 - self.b + self.b * dl / avgdl)
            if not tf:
                continue
            df = len(tf) + self.doc_freq(token)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for slot, value in tf.items():
                out[slot] = out.get(slot, 0.0) + idf * value / (self.k1 + value)
        return out

    def doc_freq(self, token: str) -> int:
        if isinstance(self.shard_backend, ThreadShards):
            return sum(p.doc_freq(token) for p in self.shard_backend.parts)
        if self._df is None:  # one round trip per shard, once, not one per term (term feedback asks many)
            df: dict[str, int] = {}
            for terms, counts in self.shard_backend.scatter("doc_freqs"):
                for term, c in zip(terms, counts.tolist(), strict=True):
                    df[term] = df.get(term, 0) + c
            self._df = df
        return self._df.get(token, 0)

    def field_scores(self, tokens: Sequence[str], slots: np.ndarray) -> dict[str, np.ndarray]:
        raise ConfigError(
            "a sharded index has no per-field scores", hint="learning to rank needs an unsharded index"
        )

    def build(self, docs: Sequence[Mapping[str, str]]) -> None:
        raise ConfigError("a sharded index is built by shelfwise.search.shards.build_sharded")

    def save(self, directory: Path) -> None:
        raise ConfigError("a sharded index is saved when it is built", hint="build_sharded")

    def nbytes(self) -> int:
        return sum(i["nbytes"] for i in self.shard_backend.scatter("info"))


class _Gathered:
    """``vectors[slots]`` of a sharded vector index: the rows gathered from their shards."""

    def __init__(self, owner: ShardedDense) -> None:
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner)

    def __getitem__(self, slots: Any) -> np.ndarray:
        slots = np.atleast_1d(np.arange(len(self))[slots] if isinstance(slots, slice) else np.asarray(slots))
        slots = slots.astype(np.int64)
        out = np.empty((len(slots), self.owner.dim), dtype=np.float32)
        parts = self.owner.layout.by_shard(slots)
        calls = {s: (local,) for s, (pos, local) in enumerate(parts) if len(pos)}
        for s, rows in self.owner.shard_backend.call_some("rows", calls).items():
            out[parts[s][0]] = rows
        n_main = len(self.owner.layout.shard)
        later = np.flatnonzero(slots >= n_main)
        if len(later):
            out[later] = self.owner.delta.vectors[slots[later] - n_main]
        return out


class ShardedDense(DenseIndex):
    """The vector side of a sharded index: every shard's nearest neighbours, merged by cosine."""

    def __init__(self, backend: ShardBackend, layout: _Layout, info: Mapping[str, Any]) -> None:
        super().__init__(m=info["m"], ef_construction=info["efc"], ef_search=info["efs"])
        self.shard_backend, self.layout = backend, layout
        self._dim = int(info["dim"])
        self._n = len(layout.shard)
        self._graph = True
        # items added since the build: one small unsharded index over slots n, n+1, ... (as local 0, 1, ...)
        self.delta = DenseIndex(m=self.m, ef_construction=self.ef_construction, ef_search=self.ef_search)
        self.delta._buffer = np.zeros((0, self.dim), dtype=np.float32)

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return self.shard_backend.engine != "threads"

    @property
    def parts(self) -> list[DenseIndex]:
        """The shards' vector indexes, when they are held in this process."""
        if not isinstance(self.shard_backend, ThreadShards):
            raise ConfigError(f"the shards are held by {self.shard_backend.engine}, not in this process")
        return [p.dense for p in self.shard_backend.parts if p.dense is not None]

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def vectors(self) -> Any:
        return _Gathered(self)

    def __len__(self) -> int:
        return self._n + len(self.delta)

    def search(
        self, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.shard_backend, ThreadShards):
            calls = {
                s: (query, k, None if mask is None else mask[g]) for s, g in enumerate(self.layout.slots)
            }
            found = list(self.shard_backend.call_some("search", calls).values())
        else:  # the mask crosses a process boundary: as bits
            calls = {
                s: (query, k, None if mask is None else np.packbits(mask[g]))
                for s, g in enumerate(self.layout.slots)
            }
            found = list(self.shard_backend.call_some("search_packed", calls).values())
        if len(self.delta):
            n, extra = self._n, len(self.delta)
            local, sims = self.delta.search(query, k, None if mask is None else mask[n : n + extra])
            found.append((local + n, sims))
        slots = np.concatenate([f[0] for f in found])
        sims = np.concatenate([f[1] for f in found]).astype(np.float32)
        best = top_k(sims, k, ties=slots)
        return slots[best], sims[best]

    def similarities(self, query: np.ndarray, slots: np.ndarray) -> np.ndarray:
        if isinstance(self.shard_backend, ThreadShards):
            return self.vectors[slots] @ query  # one matrix, as the unsharded index: the same sums
        # shards in other processes: each computes its rows' cosines (a float each, not a row of
        # vectors, crosses back); a mat-vec over fewer rows may round the last bit differently
        slots = np.asarray(slots, dtype=np.int64)
        out = np.empty(len(slots), dtype=np.float32)
        parts = self.layout.by_shard(slots)
        calls = {s: (query, local) for s, (pos, local) in enumerate(parts) if len(pos)}
        for s, sims in self.shard_backend.call_some("similarities", calls).items():
            out[parts[s][0]] = sims
        later = np.flatnonzero(slots >= self._n)
        if len(later):
            out[later] = self.delta.vectors[slots[later] - self._n] @ query
        return out

    def remove(self, slot: int) -> None:
        if slot >= self._n:
            self.delta.remove(slot - self._n)
            return
        if not isinstance(self.shard_backend, ThreadShards):
            # shards in other processes are shared by every process serving this version, and stay
            # as built: the caller's mask (its live items) keeps a removed item out, and the graph
            # walk treats a masked item as it treats a deleted one
            return
        s, local = int(self.layout.shard[slot]), int(self.layout.local[slot])
        self.shard_backend.call_some("remove", {s: (local,)})

    def add(self, slot: int, vector: np.ndarray) -> None:
        self.delta.add(slot - self._n, vector)

    def memory_bytes(self) -> int:
        return sum(i["memory_bytes"] for i in self.shard_backend.scatter("info")) + self.delta.memory_bytes()

    def build(self, vectors: np.ndarray, alive: np.ndarray | None = None) -> None:
        raise ConfigError("a sharded index is built by shelfwise.search.shards.build_sharded")

    def save(self, directory: Path, *, graph: bool = False) -> None:
        raise ConfigError("a sharded index is saved when it is built", hint="build_sharded")


def verify(directory: Path) -> list[str]:
    """Shard files missing or whose sha256 differs from ``shards.json``'s."""
    meta = json.loads((directory / SHARDS_FILE).read_text())
    problems = []
    for rel, digest in meta["files"].items():
        f = directory / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif _sha256(f) != digest:
            problems.append(f"{rel}: checksum mismatch")
    return problems


def load_shards(
    directory: Path,
    *,
    weights: Mapping[str, float],
    analyzer: Any,
    k1: float,
    b: float,
    threads: int | None = None,
    check: bool = True,
    engine: ShardEngine | str = "threads",
) -> tuple[ShardedKeyword, ShardedDense | None]:
    """The keyword and vector sides of a sharded index saved under ``directory``, its shards held
    in this process (``engine="threads"``) or by one Ray actor each (``"ray"``: see
    ``shelfwise.search.shard_actors``)."""
    if engine not in SHARD_ENGINES:
        raise ConfigError(f"unknown shard engine {engine!r}", hint=f"one of {', '.join(SHARD_ENGINES)}")
    meta = json.loads((directory / SHARDS_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{directory}: shard format {meta.get('format')}, this version reads {FORMAT}")
    if check:
        problems = verify(directory)
        if problems:
            raise ConfigError(
                f"{directory}: sharded index is corrupt: {'; '.join(problems[:5])}", hint="rebuild it"
            )
    shards, dense = int(meta["shards"]), bool(meta.get("dense"))
    root = directory / "shards"
    slots = [np.load(root / str(s) / "slots.npy", allow_pickle=False) for s in range(shards)]
    layout = _Layout(slots, int(meta["items"]))
    backend: ShardBackend
    if engine == "ray":
        from shelfwise.search.shard_actors import RayShards

        backend = RayShards.open(directory, shards, dense=dense)
    else:
        backend = ThreadShards.open(directory, shards, dense=dense, threads=threads)
    keyword = ShardedKeyword(
        backend, layout, avgdl=meta["avgdl"], weights=weights, analyzer=analyzer, k1=k1, b=b
    )
    vectors = None
    if dense:
        info = backend.call_some("info", {0: ()})[0]["dense"]
        vectors = ShardedDense(backend, layout, info)
    return keyword, vectors


def build_sharded(
    items: Iterable[Any],
    directory: Path,
    *,
    shards: int,
    config: Any = None,
    encoder: Any = None,
    vectors: np.ndarray | None = None,
    workers: int | None = None,
) -> Any:
    """Build and save a sharded search index of ``items`` under ``directory`` (the layout of
    ``SearchEngine.save`` with shards for its keyword and vector index) and return it loaded.
    ``vectors`` reuses embeddings already made (one row per distinct item, in order)."""
    from shelfwise.search.documents import document_fields, embedding_text
    from shelfwise.search.engine import FORMAT_VERSION, SearchConfig, SearchEngine

    config = config or SearchConfig()
    if config.scoring != "bm25f":
        raise ConfigError("a sharded index scores keywords with BM25F", hint="scoring='bm25f'")
    if config.annotate or config.adapt is not None:
        raise ConfigError("annotate and adapt need the whole catalogue in one index", hint="shards=1")
    latest: dict[str, Any] = {}
    for item in items:
        latest.pop(item.item_id, None)
        latest[item.item_id] = item
    catalogue = list(latest.values())
    if config.dense and vectors is None:
        encoder = encoder or _encoder()
        vectors = encoder.encode([embedding_text(it) for it in catalogue])
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "items.jsonl").open("w", encoding="utf-8") as out:
        for it in catalogue:
            out.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")
    parts = split(
        [it.item_id for it in catalogue],
        [document_fields(it) for it in catalogue],
        vectors if config.dense else None,
        shards,
    )
    report = build_shards(
        directory,
        parts,
        n_items=len(catalogue),
        weights=config.weights,
        analyzer=config.analyzer,
        k1=config.k1,
        b=config.b,
        hnsw=(config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search),
        workers=workers,
    )
    meta = {
        "format": FORMAT_VERSION,
        "config": config.model_dump(),
        "items": len(catalogue),
        "dense_agreement": None,
    }
    (directory / "engine.json").write_text(json.dumps(meta, indent=1))
    engine = SearchEngine.load(directory, encoder=encoder)
    meta["dense_agreement"] = engine.calibrate()  # as SearchEngine.build does, over every shard
    meta["shards"] = report | {"shards": shards}
    (directory / "engine.json").write_text(json.dumps(meta, indent=1))
    return engine


def _encoder() -> Any:
    from shelfwise.search.dense import Encoder

    return Encoder()
