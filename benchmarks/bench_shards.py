"""Sharded search index at 1M (and, with SHELFWISE_SHARD_SIZES, more) synthetic items (issue 19 item 4).

Catalogue: item ``sku-<i>`` gets a title of 4-10 words drawn from the word frequencies of the 20k
Flipkart titles (``/work/shared/data/flipkart_products``), a brand drawn from their brands, and a
category from their titles' last words (the product noun), each draw a hash of (i, position), so an
item is the same whichever shard makes it; shards make their own items in their own process (the
parent never holds the catalogue). Vectors are synthetic and reduced: ``DIM`` dimensions (not the
model's 384), a category centroid plus per-item noise, unit length, float32; the 384-d figures are
projected from them (vector bytes scale with dim, the graph's links do not).

Per shard count S (each in its own process, ``WORKERS`` build processes): build time (partition +
two passes + HNSW), peak resident memory (the parent and the largest build worker), bytes per item
(keyword and vector, on disk and in memory), load time, single-query p50/p99 (keyword top-10 and
dense top-10, scatter-gather over a thread pool, sequential queries) and the top-10 overlap with
the unsharded (S=1) index: keyword must be 1.000 (global BM25 statistics), dense is HNSW
(approximate) per shard, so it also gets recall@10 against exact search.

    python -m benchmarks.run shards
    SHELFWISE_SHARD_SIZES=1000000,10000000 SHELFWISE_SHARD_COUNTS=1,2,4,8 python -m benchmarks.run shards
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/flipkart_products/flipkart_com-ecommerce_sample.csv.gz")
DIM = int(os.environ.get("SHELFWISE_SHARD_DIM", "64"))
# HNSW links per node and build candidate list (the engine's defaults: 16, 100)
HNSW = (16, int(os.environ.get("SHELFWISE_SHARD_EFC", "100")), 128)
WORKERS = 2
QUERIES = 300
SIZES = [int(x) for x in os.environ.get("SHELFWISE_SHARD_SIZES", "1000000").split(",")]
COUNTS = [int(x) for x in os.environ.get("SHELFWISE_SHARD_COUNTS", "1,2,4,8").split(",")]
CELL_TIMEOUT = float(os.environ.get("SHELFWISE_SHARD_TIMEOUT", "1500"))
_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64: a uint64 hash, vectorised."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(slots: np.ndarray, j: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = _mix(slots.astype(np.uint64) * np.uint64(1_000_003) + np.uint64(j))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Vocabulary:
    """Word, brand and category frequencies of the Flipkart titles."""

    def __init__(self) -> None:
        words: Counter[str] = Counter()
        brands: Counter[str] = Counter()
        cats: Counter[str] = Counter()
        with gzip.open(DATA, "rt", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                title = row["product_name"].split()
                words.update(w for w in title if w.isascii())
                if row.get("brand"):
                    brands[row["brand"]] += 1
                if title:
                    cats[title[-1].lower()] += 1
        self.words, self.wcdf = self._table(words)
        self.brands, self.bcdf = self._table(brands)
        self.cats, self.ccdf = self._table(cats)

    @staticmethod
    def _table(c: Counter[str]) -> tuple[np.ndarray, np.ndarray]:
        keys, counts = zip(*c.most_common(), strict=True)
        cdf = np.cumsum(np.asarray(counts, dtype=np.float64))
        return np.asarray(keys, dtype=object), cdf / cdf[-1]


class SyntheticPart:
    """One shard's items, made in the shard's process (``ShardSource``)."""

    def __init__(self, vocab: Vocabulary, slots: np.ndarray, dim: int) -> None:
        self.vocab, self.slots, self.dim = vocab, slots, dim

    def part(self, shard: int, shards: int) -> tuple[np.ndarray, list[dict[str, str]], np.ndarray | None]:
        docs, _ = make_docs(self.vocab, self.slots)
        return self.slots, docs, make_vectors(self.vocab, self.slots, self.dim)


def make_docs(vocab: Vocabulary, slots: np.ndarray) -> tuple[list[dict[str, str]], np.ndarray]:
    length = 4 + (_uniform(slots, 0) * 7).astype(np.int64)
    cols = [np.searchsorted(vocab.wcdf, _uniform(slots, 1 + j)) for j in range(10)]
    words = np.stack([vocab.words[np.minimum(c, len(vocab.words) - 1)] for c in cols], axis=1)
    brand = vocab.brands[np.minimum(np.searchsorted(vocab.bcdf, _uniform(slots, 50)), len(vocab.brands) - 1)]
    cat_ix = np.minimum(np.searchsorted(vocab.ccdf, _uniform(slots, 60)), len(vocab.cats) - 1)
    docs = [
        {"title": f"{b} {' '.join(w[:n])} {vocab.cats[c]}", "brand": b, "category": f"home > {vocab.cats[c]}"}
        for b, w, n, c in zip(brand, words, length.tolist(), cat_ix.tolist(), strict=True)
    ]
    return docs, cat_ix


def make_vectors(vocab: Vocabulary, slots: np.ndarray, dim: int) -> np.ndarray:
    cat_ix = np.minimum(np.searchsorted(vocab.ccdf, _uniform(slots, 60)), len(vocab.cats) - 1)
    centroids = np.random.default_rng(0).standard_normal((len(vocab.cats), dim)).astype(np.float32)
    u1 = np.stack([_uniform(slots, 100 + d) for d in range(dim)], axis=1)
    u2 = np.stack([_uniform(slots, 300 + d) for d in range(dim)], axis=1)
    noise = np.sqrt(-2 * np.log(np.maximum(u1, 1e-12))) * np.cos(2 * np.pi * u2)  # Box-Muller
    v = centroids[cat_ix] + 1.5 * noise.astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _queries(vocab: Vocabulary, n_items: int) -> tuple[list[str], np.ndarray]:
    """Keyword queries: 2-3 words of a random item's title (its brand or category word kept
    half the time); dense queries: a random item's vector plus noise."""
    picks = (_uniform(np.arange(QUERIES, dtype=np.int64) + 7_777_777, 0) * n_items).astype(np.int64)
    docs, _ = make_docs(vocab, picks)
    texts = []
    for i, d in enumerate(docs):
        words = d["title"].split()
        start = 0 if i % 2 else 1
        texts.append(" ".join(words[start : start + 2 + i % 2]))
    vecs = make_vectors(vocab, picks, DIM)
    noise = make_vectors(vocab, picks + 10 * n_items, DIM)
    q = vecs + 0.5 * noise
    return texts, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cell(n_items: int, shards: int, out_dir: Path, exact: bool) -> dict[str, Any]:
    """Build, load and query one (catalogue size, shard count); runs in its own process."""
    from shelfwise.features.text import AnalyzerConfig
    from shelfwise.search.analysis import make_analyzer
    from shelfwise.search.shards import assign, build_shards, load_shards

    weights = {"title": 3.0, "brand": 1.0, "category": 1.5}
    analyzer_cfg = AnalyzerConfig(product_terms=True)
    vocab = Vocabulary()
    work = Path(tempfile.mkdtemp(prefix=f"shards-{n_items}-{shards}-", dir=out_dir))
    try:
        started = time.perf_counter()
        ids = (f"sku-{i:09d}" for i in range(n_items))
        owner = assign(ids, shards)
        parts = [SyntheticPart(vocab, np.flatnonzero(owner == s), DIM) for s in range(shards)]
        partition_s = time.perf_counter() - started
        with _TreeSampler() as tree:
            report = build_shards(
                work,
                parts,
                n_items=n_items,
                weights=weights,
                analyzer=analyzer_cfg,
                workers=WORKERS,
                hnsw=HNSW,
            )
        build_s = time.perf_counter() - started
        # CPU seconds of the build (this process and its build workers, which are the forkserver's
        # children, so sampled rather than counted by getrusage): less at the mercy of the load
        mine = resource.getrusage(resource.RUSAGE_SELF)
        build_cpu_s = tree.cpu_seconds + mine.ru_utime + mine.ru_stime
        del parts, owner
        kw_disk = sum(_dir_bytes(p / "keyword") for p in (work / "shards").iterdir())
        dense_disk = sum(_dir_bytes(p / "dense") for p in (work / "shards").iterdir())
        t0 = time.perf_counter()
        keyword, dense = load_shards(
            work, weights=weights, analyzer=make_analyzer(analyzer_cfg), k1=1.2, b=0.75, threads=WORKERS
        )
        load_s = time.perf_counter() - t0
        assert dense is not None
        texts, qvecs = _queries(vocab, n_items)
        tokens = [keyword.analyzer.tokens(t) for t in texts]
        for t in tokens[:10]:  # compile and warm up
            keyword.top(t, 10)
            dense.search(qvecs[0], 10)
        kw_ms, kw_top, d_ms, d_top = [], [], [], []
        for t in tokens:
            t0 = time.perf_counter()
            slots, _ = keyword.top(t, 10)
            kw_ms.append((time.perf_counter() - t0) * 1000)
            kw_top.append(np.pad(slots, (0, 10 - len(slots)), constant_values=-1))
        for q in qvecs:
            t0 = time.perf_counter()
            slots, _ = dense.search(q, 10)
            d_ms.append((time.perf_counter() - t0) * 1000)
            d_top.append(np.pad(slots, (0, 10 - len(slots)), constant_values=-1))
        np.save(out_dir / f"top-{n_items}-{shards}-kw.npy", np.stack(kw_top))
        np.save(out_dir / f"top-{n_items}-{shards}-dense.npy", np.stack(d_top))
        if exact:  # brute force over every vector, in blocks: the dense ground truth
            best = np.full((len(qvecs), 10), -1, dtype=np.int64)
            best_s = np.full((len(qvecs), 10), -np.inf, dtype=np.float32)
            for s, part in enumerate(dense.parts):
                sims = qvecs @ part.vectors.T
                top = np.argpartition(-sims, 10, axis=1)[:, :10]
                cand = np.concatenate([best, dense.layout.slots[s][top]], axis=1)
                cand_s = np.concatenate([best_s, np.take_along_axis(sims, top, axis=1)], axis=1)
                keep = np.argsort(-cand_s, axis=1)[:, :10]
                best, best_s = (
                    np.take_along_axis(cand, keep, axis=1),
                    np.take_along_axis(cand_s, keep, axis=1),
                )
            np.save(out_dir / f"top-{n_items}-exact.npy", best)
        kw_mem, dense_mem = keyword.nbytes(), dense.memory_bytes()
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self_rss, child_rss = me.ru_maxrss * 1024, max(kids.ru_maxrss * 1024, tree.peak_rss)
        return {
            "items": n_items,
            "shards": shards,
            "counts": [len(p) for p in dense.layout.slots],
            "build_s": round(build_s, 1),
            "build_cpu_s": round(build_cpu_s, 1),
            "partition_s": round(partition_s, 1),
            "build": {k: v for k, v in report.items() if k != "seconds"},
            "load_s": round(load_s, 1),
            "keyword_bytes_per_item_disk": round(kw_disk / n_items, 1),
            "keyword_bytes_per_item_memory": round(kw_mem / n_items, 1),
            "dense_bytes_per_item_disk": round(dense_disk / n_items, 1),
            "dense_bytes_per_item_memory": round(dense_mem / n_items, 1),
            "dim": DIM,
            "hnsw_m_efc_efs": list(HNSW),
            "keyword_p50_ms": round(float(np.percentile(kw_ms, 50)), 3),
            "keyword_p99_ms": round(float(np.percentile(kw_ms, 99)), 3),
            "dense_p50_ms": round(float(np.percentile(d_ms, 50)), 3),
            "dense_p99_ms": round(float(np.percentile(d_ms, 99)), 3),
            "peak_rss_parent_gb": round(self_rss / 1e9, 2),
            "peak_rss_worker_gb": round(child_rss / 1e9, 2),
            "load_average": os.getloadavg(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _TreeSampler:
    """CPU seconds and peak RSS of this process's descendants, sampled every ``every`` s.

    The build workers start from a forkserver (a child of this process), so they are grandchildren:
    ``getrusage(RUSAGE_CHILDREN)`` never counts them. Each descendant's last-seen CPU time is kept
    after it exits (a worker's final ``every`` seconds can be missed: a small undercount)."""

    def __init__(self, every: float = 0.25) -> None:
        import threading

        self.every, self.cpu, self.peak_rss = every, {}, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            for proc in me.children(recursive=True):
                try:
                    t = proc.cpu_times()
                    self.cpu[proc.pid] = t.user + t.system
                    self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                except psutil.Error:
                    continue
            if self._stop.wait(self.every):
                return

    @property
    def cpu_seconds(self) -> float:
        return float(sum(self.cpu.values()))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of b's top-10 (real slots) that a's top-10 holds."""
    shares = []
    for x, y in zip(a, b, strict=True):
        ys = set(y[y >= 0].tolist())
        if ys:
            shares.append(len(set(x[x >= 0].tolist()) & ys) / len(ys))
    return float(np.mean(shares)) if shares else 1.0


def _projected_384(row: dict[str, Any]) -> float:
    """Dense bytes per item in memory at the model's 384 dims: the vectors (ours and hnswlib's copy)
    grow with the dimension, the links do not."""
    return round(row["dense_bytes_per_item_memory"] + 2 * 4 * (384 - row["dim"]), 1)


def run() -> dict[str, Any]:
    out_dir = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    rows: list[dict[str, Any]] = []
    try:
        for n in SIZES:
            for s in COUNTS:
                cmd = [sys.executable, "-m", "benchmarks.bench_shards", str(n), str(s), str(out_dir)]
                cmd.append("exact" if s == COUNTS[0] else "-")
                env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
                print(f"   {n:,} items, {s} shards", file=sys.stderr, flush=True)
                try:
                    proc = subprocess.run(
                        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CELL_TIMEOUT
                    )
                except subprocess.TimeoutExpired:
                    rows.append({"items": n, "shards": s, "error": f"timed out after {CELL_TIMEOUT:.0f} s"})
                    continue
                if proc.returncode != 0:
                    rows.append({"items": n, "shards": s, "error": proc.stderr.strip().splitlines()[-1:]})
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["dense_bytes_per_item_memory_384d_projected"] = _projected_384(row)
                rows.append(row)
            for row in rows:
                if "error" in row:
                    continue
                n, s = row["items"], row["shards"]
                kw, dn = out_dir / f"top-{n}-{s}-kw.npy", out_dir / f"top-{n}-{s}-dense.npy"
                base = out_dir / f"top-{n}-1"
                if Path(f"{base}-kw.npy").exists():  # the unsharded index ran
                    row["keyword_top10_same_as_unsharded"] = _overlap(np.load(kw), np.load(f"{base}-kw.npy"))
                    row["dense_top10_overlap_unsharded"] = round(
                        _overlap(np.load(dn), np.load(f"{base}-dense.npy")), 4
                    )
                exact = out_dir / f"top-{n}-exact.npy"
                if exact.exists():
                    row["dense_recall10_exact"] = round(_overlap(np.load(dn), np.load(exact)), 4)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    header = (
        "| items | shards | build s (CPU s) | peak RSS parent / worker GB | kw B/item mem (disk) "
        f"| dense B/item mem (disk), {DIM}-d, M {HNSW[0]}, efc {HNSW[1]} | 384-d projected "
        "| kw p50 / p99 ms | dense p50 / p99 ms "
        "| kw top-10 = unsharded | dense overlap unsharded | dense recall@10 exact | load |"
    )
    lines = [header, "|" + "---|" * 13]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['items']:,} | {r['shards']} | {r['error']} |" + " |" * 10)
            continue
        cells = [
            f"{r['items']:,}",
            str(r["shards"]),
            f"{r['build_s']} ({r['build_cpu_s']})",
            f"{r['peak_rss_parent_gb']} / {r['peak_rss_worker_gb']}",
            f"{r['keyword_bytes_per_item_memory']} ({r['keyword_bytes_per_item_disk']})",
            f"{r['dense_bytes_per_item_memory']} ({r['dense_bytes_per_item_disk']})",
            str(r["dense_bytes_per_item_memory_384d_projected"]),
            f"{r['keyword_p50_ms']} / {r['keyword_p99_ms']}",
            f"{r['dense_p50_ms']} / {r['dense_p99_ms']}",
            f"{r.get('keyword_top10_same_as_unsharded', float('nan')):.3f}",
            f"{r.get('dense_top10_overlap_unsharded', float('nan')):.3f}",
            f"{r.get('dense_recall10_exact', float('nan')):.3f}",
            f"{r['load_average'][0]:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return {
        "name": "shards",
        "rows": rows,
        "dim": DIM,
        "workers": WORKERS,
        "queries": QUERIES,
        "timed_on_loaded_machine": max((r.get("load_average", [0])[0] for r in rows), default=0) > 3,
        "table": "\n".join(lines),
    }


if __name__ == "__main__":
    n_items, n_shards, where, exact_flag = sys.argv[1:5]
    result = cell(int(n_items), int(n_shards), Path(where), exact_flag == "exact")
    print(json.dumps(result))
