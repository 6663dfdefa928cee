"""The search engine: an incremental catalogue index, keyword + semantic retrieval, query understanding,
filters, facets, sorting and personal re-ranking.

    engine = SearchEngine.build(items, SearchConfig(dense=False))
    result = engine.search("red shoes under 500", k=10)
    result.hits[0].item_id, result.corrected, result.facets["brand"]

Every stored item version has a *slot* (a dense integer). Updating an item retires its old slot
and appends a new one; removing retires it. New slots live in the keyword index's delta segment
and are appended to the vector index, so changes are searchable at once; ``compact()`` rebuilds
the keyword segment from the live slots (automatic once the delta passes ``compact_fraction``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shelfwise.core.errors import ConfigError, ShelfwiseError
from shelfwise.data.schemas import Item, validate_item
from shelfwise.features.retrieval import Candidates
from shelfwise.features.text import AnalyzerConfig
from shelfwise.search.adapt import AdaptConfig
from shelfwise.search.analysis import make_analyzer
from shelfwise.search.dense import DenseIndex, Encoder
from shelfwise.search.documents import document_fields, embedding_text, popularity
from shelfwise.search.facets import ATTRIBUTE_FACETS, FacetIndex, price_buckets
from shelfwise.search.keyword import DEFAULT_WEIGHTS, KeywordIndex
from shelfwise.search.personal import UserAffinity
from shelfwise.search.query import ParsedQuery, QueryUnderstanding
from shelfwise.search.stages import DenseRetriever, FusionRanker, KeywordRetriever, SearchQuery, together

Mode = Literal["bm25", "dense", "hybrid", "rrf", "ltr"]
Sort = Literal["relevance", "price_asc", "price_desc", "popularity"]
MODES: tuple[str, ...] = ("bm25", "dense", "hybrid", "rrf", "ltr")
FORMAT_VERSION = 1


class SearchError(ShelfwiseError):
    """A search request the engine cannot serve as asked."""

    exit_code = 2


class SearchConfig(BaseModel):
    """How the index is built and queries are scored; saved with the index as JSON."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    k1: float = 1.2
    b: float = 0.75
    # BM25F: measured on both labelled sets, own BM25 nDCG@10 0.6869 -> 0.7077 (Flipkart) and
    # 0.7417 -> 0.7502 (Crowdflower), above SQLite FTS5 and tantivy on both (bench_search_transfer)
    scoring: Literal["fields", "bm25f"] = Field(
        "bm25f",
        description="keyword: one saturation over the weighted, length-normalised fields (bm25f) or "
        "a sum of per-field BM25 scores (fields, the format before)",
    )
    analyzer: AnalyzerConfig = Field(default_factory=lambda: AnalyzerConfig(product_terms=True))
    dense: bool = True
    adapt: AdaptConfig | None = Field(
        None,
        description="dense: fine-tune the encoder's top layers on the catalogue's own pairs at build "
        "time (no labels; minutes on 2 cores); None: the packaged model as it is",
    )
    # The keyword share per query class (model numbers, short, medium; long queries and fixed fusion
    # use alpha): the procedure "choose one share per class with >= 10 queries on the labelled sets"
    # beat "choose one share" out of sample (leave-one-set-out nDCG@10 Flipkart 0.7533 -> 0.7710,
    # Crowdflower 0.7904 either way); these values are that procedure refitted on both sets, each set
    # weighing the same (bench_search_transfer; the earlier single share was 0.3).
    alpha: float = Field(0.2, ge=0, le=1, description="hybrid blend: share of the keyword score")
    feedback: int = Field(
        10, ge=0, description="hybrid: items of the first pass whose mean vector moves the query (0: off)"
    )
    feedback_weight: float = Field(2.0, ge=0, description="hybrid: weight of that mean against the query")
    # Adaptive fusion = the catalogue-level trust below (``calibrate``) plus optional per-query rules.
    # The per-query rules are off by default: measured on both labelled sets they cost nDCG@10
    # (model-number queries at >= 70% keyword: Crowdflower's 20 such queries 0.747 -> 0.675; the
    # low-agreement back-off: Flipkart 0.780 -> 0.763), while the catalogue-level trust costs nothing
    # on either and turns a semantic side that knows nothing of the shop into plain keyword search.
    fusion: Literal["adaptive", "fixed"] = Field(
        "adaptive", description="hybrid: keyword share per query and catalogue (adaptive) or alpha (fixed)"
    )
    model_alpha: float = Field(
        0.0, ge=0, le=1, description="adaptive: least keyword share for model numbers/sizes (0: off)"
    )
    long_shift: float = Field(0.0, ge=-1, le=1, description="adaptive: keyword share change, 5+ word queries")
    low_agreement: float = Field(
        0.0,
        ge=0,
        le=1,
        description="adaptive: one query's top-10 overlap below which to doubt dense (0: off)",
    )
    class_alpha: dict[str, float] = Field(
        default_factory=lambda: {"model": 0.35, "short": 0.3, "medium": 0.5},
        description="adaptive: keyword share per query class (model, short, medium, long) instead of alpha",
    )
    low_confidence: float = Field(0.45, description="adaptive: best cosine below which dense is doubted")
    backoff_alpha: float = Field(0.8, ge=0, le=1, description="adaptive: least keyword share when doubted")
    calibration_probes: int = Field(
        200,
        ge=0,
        description="adaptive: catalogue phrases run at build time to measure how far the "
        "semantic retriever agrees with keyword on this shop (0: off)",
    )
    trusted_agreement: float = Field(
        0.15,
        gt=0,
        le=1,
        description="adaptive: mean probe agreement at and above which dense is fully trusted",
    )
    # Keyword-side feedback (RM3-style): nDCG@10 Flipkart 0.7557 -> 0.7709, Crowdflower 0.7915 -> 0.7932
    # with 5 words from the best 5 items at weight 0.5 (chosen while looking at both sets; the
    # leave-one-out rows of bench_search_transfer choose on/off on the other set)
    term_feedback: int = Field(
        5, ge=0, description="hybrid: expansion words taken from the first pass's best items (0: off)"
    )
    term_feedback_docs: int = Field(5, ge=1, description="hybrid: items those words are taken from")
    term_feedback_weight: float = Field(
        0.5, ge=0, description="hybrid: weight of the expansion words against the query's own"
    )
    dense_floor: float = Field(
        0.0, ge=0, lt=1, description="hybrid: cosine counted as unrelated when scaling semantic scores"
    )
    rrf_k: int = 60
    candidates: int = Field(100, ge=10, description="per retriever, before fusion and re-ranking")
    min_similarity: float = Field(0.3, description="a dense-only hit below this cosine is not a match")
    hnsw_m: int = Field(16, ge=4, description="HNSW links per node")
    hnsw_ef_construction: int = Field(100, ge=8, description="HNSW candidate list while building")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW candidate list while searching (at least k)")
    compact_fraction: float = 0.1
    spelling: bool = True
    brand_filter: bool = True
    boost: float = Field(0.15, description="per recognised colour/category/gender/size term the item has")
    annotate: bool = Field(
        False, description="add brand/colour/material/size/gender found in titles to items before indexing"
    )


class Filters(BaseModel):
    """Explicit filters (a shop's facet clicks); query phrases add to these."""

    model_config = ConfigDict(extra="forbid")

    price_min: float | None = None
    price_max: float | None = None
    brands: list[str] = Field(default_factory=list)
    category: str | None = Field(
        None, description="a category path prefix, e.g. 'footwear > womens footwear'"
    )
    available: bool | None = None
    attributes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="annotated attribute values to keep, e.g. {'colour': ['red'], 'product_type': ['mug']}",
    )

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - set(ATTRIBUTE_FACETS))
        if unknown:
            raise ValueError(f"no attribute facet {unknown[0]!r}; facets: {', '.join(ATTRIBUTE_FACETS)}")
        return v


@dataclass
class Hit:
    item_id: str
    score: float
    item: Item
    sources: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"item_id": self.item_id, "score": round(self.score, 6), "sources": self.sources}
        out["title"], out["brand"], out["price"] = self.item.title, self.item.brand, self.item.price
        out["category"], out["available"] = self.item.category, self.item.available
        return out


@dataclass
class SearchResult:
    query: ParsedQuery
    hits: list[Hit]
    total: int
    facets: dict[str, Any]
    took_ms: float
    applied_filters: dict[str, Any]

    @property
    def corrected(self) -> str | None:
        """The "showing results for …" text when spelling correction changed the query."""
        return self.query.corrected

    @property
    def item_ids(self) -> list[str]:
        return [h.item_id for h in self.hits]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query.to_dict(),
            "showing_results_for": self.corrected,
            "total": self.total,
            "hits": [h.to_dict() for h in self.hits],
            "facets": self.facets,
            "filters": self.applied_filters,
            "took_ms": round(self.took_ms, 3),
        }


ProgressFn = Callable[[str, int, int], None]


def _grow(array: np.ndarray, values: Sequence[Any]) -> np.ndarray:
    return np.concatenate([array, np.asarray(values, dtype=array.dtype)])


class SearchEngine:
    """One catalogue's search index. Build with ``SearchEngine.build(items)``; not thread-safe for writes."""

    def __init__(self, config: SearchConfig | None = None, *, encoder: Encoder | None = None) -> None:
        self.config = config or SearchConfig()
        self.analyzer = make_analyzer(self.config.analyzer)
        self.keyword = KeywordIndex(
            weights=self.config.weights,
            analyzer=self.analyzer,
            k1=self.config.k1,
            b=self.config.b,
            scoring=self.config.scoring,
        )
        self.encoder = encoder if encoder is not None else (Encoder() if self.config.dense else None)
        cfg = self.config
        self.dense: DenseIndex | None = (
            DenseIndex(m=cfg.hnsw_m, ef_construction=cfg.hnsw_ef_construction, ef_search=cfg.hnsw_ef_search)
            if cfg.dense
            else None
        )
        self.understanding = QueryUnderstanding(analyzer=self.analyzer, spelling=self.config.spelling)
        self.ranker: Any = None  # an LTR model (shelfwise.search.ltr.LambdaRanker) once trained
        self._items: list[Item | None] = []
        self._slot: dict[str, int] = {}
        self._alive = np.zeros(0, dtype=bool)
        self._price = np.zeros(0, dtype=np.float64)
        self._available = np.zeros(0, dtype=bool)
        self._popularity = np.zeros(0, dtype=np.float32)
        self._brand = np.zeros(0, dtype=np.int32)
        self._brand_codes: dict[str, int] = {}
        self._buckets: list[tuple[float, float]] = []
        self._facets = FacetIndex()
        self._boost_text: dict[int, str] = {}  # slot -> the lower-cased text boosts look in (a cache)
        self._feedback_tokens: dict[int, list[str]] = {}  # slot -> analysed words (a cache)
        self._annotator: Any = None
        # adaptive fusion: how far dense retrieval agrees with keyword on this catalogue (None: unknown)
        self.dense_agreement: float | None = None
        self.adapt_report: dict[str, Any] | None = None  # how the encoder was adapted, when it was

    # --- building and changing ------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        items: Iterable[Item],
        config: SearchConfig | None = None,
        *,
        encoder: Encoder | None = None,
        progress: ProgressFn | None = None,
        vectors: np.ndarray | None = None,
    ) -> SearchEngine:
        """Index ``items`` (later duplicates of an id win). ``vectors`` reuses embeddings already made."""
        engine = cls(config, encoder=encoder)
        latest: dict[str, Item] = {}
        for item in items:
            latest.pop(item.item_id, None)
            latest[item.item_id] = item
        catalogue = list(latest.values())
        if engine.config.annotate:
            from shelfwise.search.annotate import Annotator, apply_annotations

            engine._annotator = Annotator.from_items(catalogue)
            catalogue = apply_annotations(catalogue, engine._annotator)
        if engine.config.dense and engine.config.adapt is not None and engine.encoder is not None:
            from shelfwise.search.adapt import adapt_encoder

            if progress:
                progress("adapting the encoder", 0, 1)
            # vectors made by the packaged model do not fit the adapted one: these replace them
            engine.encoder, engine.adapt_report, vectors = adapt_encoder(
                engine.encoder, catalogue, engine.config.adapt
            )
            if progress:
                progress("adapting the encoder", 1, 1)
        engine._reset(catalogue, progress=progress, vectors=vectors)
        return engine

    def _reset(
        self, items: list[Item], *, progress: ProgressFn | None = None, vectors: np.ndarray | None = None
    ) -> None:
        self._items = list(items)
        self._slot = {it.item_id: i for i, it in enumerate(items)}
        n = len(items)
        self._alive = np.ones(n, dtype=bool)
        self._price = np.array([np.nan if it.price is None else it.price for it in items], dtype=np.float64)
        self._available = np.array([it.available for it in items], dtype=bool)
        self._popularity = np.array([popularity(it) for it in items], dtype=np.float32)
        self._brand_codes = {}
        self._brand = np.array([self._brand_code(it.brand) for it in items], dtype=np.int32)
        self._facets = FacetIndex()
        self._facets.extend(items)
        self._boost_text = {}
        self._feedback_tokens = {}
        if progress:
            progress("keyword index", 0, n)
        self.keyword.build([document_fields(it) for it in items])
        if progress:
            progress("keyword index", n, n)
        if self.dense is not None:
            if vectors is None:
                assert self.encoder is not None
                texts = [embedding_text(it) for it in items]
                vectors = self.encoder.encode(
                    texts, progress=(lambda d, t: progress("embeddings", d, t)) if progress else None
                )
            if progress:
                progress("vector index", 0, n)
            self.dense.build(vectors)
            if progress:
                progress("vector index", n, n)
        self.understanding.fit(items)
        self._buckets = price_buckets(self._price)
        self.calibrate()

    def calibrate(self) -> float | None:
        """Measure, without labels, how far the semantic retriever agrees with keyword on this
        catalogue: the mean top-10 overlap over the shop's most common two-word title phrases.

        On a shop whose products the embedding model understands, a common phrase's keyword and
        semantic top 10 overlap (mean 0.4-0.5 on Flipkart and Crowdflower); where the vectors say
        nothing about the products the overlap is ~0 (0.00 with the item vectors shuffled). Adaptive
        fusion scales the dense share by this, so such a shop gets keyword search, not worse."""
        cfg = self.config
        self.dense_agreement = None
        ac = self.understanding.autocomplete
        if self.dense is None or self.encoder is None or cfg.calibration_probes <= 0 or ac is None:
            return None
        phrases = sorted(
            (
                p
                for p, c in ac._phrases.items()
                if c >= 3 and p.count(" ") == 1 and p.replace(" ", "").isalpha()
            ),
            key=lambda p: (-ac._phrases[p], p),
        )[: cfg.calibration_probes]
        if len(phrases) < 10:
            return None
        vectors = self.encoder.encode(phrases)
        overlaps = []
        for text, vector in zip(phrases, vectors, strict=True):
            slots, _ = self.keyword.top(self.analyzer.tokens(text), 10)
            if len(slots) == 0:
                continue
            d_slots, _ = self.dense.search(vector, 10, self._alive)
            overlaps.append(len(set(slots.tolist()) & set(d_slots.tolist())) / len(slots))
        self.dense_agreement = float(np.mean(overlaps)) if overlaps else None
        return self.dense_agreement

    def dense_trust(self) -> float:
        """1 when the semantic side is trusted fully on this catalogue, down to 0 (keyword only)."""
        if self.config.fusion != "adaptive" or self.dense_agreement is None:
            return 1.0
        return float(min(1.0, self.dense_agreement / self.config.trusted_agreement))

    def _brand_code(self, brand: str | None) -> int:
        if not brand:
            return -1
        return self._brand_codes.setdefault(brand.lower(), len(self._brand_codes))

    def __len__(self) -> int:
        return int(self._alive.sum())

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._slot

    def get(self, item_id: str) -> Item | None:
        slot = self._slot.get(item_id)
        return None if slot is None else self._items[slot]

    @property
    def item_ids(self) -> list[str]:
        return list(self._slot)

    def item_ids_by_slot(self) -> list[str]:
        """The item id of every slot ('' for retired ones)."""
        return [it.item_id if it is not None else "" for it in self._items]

    def upsert(self, items: Iterable[Item], *, progress: ProgressFn | None = None) -> int:
        """Add or replace items; searchable when this returns. Returns how many were written."""
        batch = list({it.item_id: it for it in items}.values())
        if not batch:
            return 0
        if self._annotator is not None:
            from shelfwise.search.annotate import apply_annotations

            batch = apply_annotations(batch, self._annotator)
        for it in batch:
            old = self._slot.get(it.item_id)
            if old is not None:
                self._retire(old)
        vectors = None
        if self.dense is not None:
            assert self.encoder is not None
            vectors = self.encoder.encode([embedding_text(it) for it in batch])
        start = len(self._items)
        self._items.extend(batch)
        self._alive = _grow(self._alive, [True] * len(batch))
        self._price = _grow(self._price, [np.nan if it.price is None else it.price for it in batch])
        self._available = _grow(self._available, [it.available for it in batch])
        self._popularity = _grow(self._popularity, [popularity(it) for it in batch])
        self._brand = _grow(self._brand, [self._brand_code(it.brand) for it in batch])
        self._facets.extend(batch)
        for offset, it in enumerate(batch):
            slot = start + offset
            self._slot[it.item_id] = slot
            self.keyword.add(slot, document_fields(it))
            if self.dense is not None and vectors is not None:
                self.dense.add(slot, vectors[offset])
        self.understanding.fit(self.live_items())  # new brands, words and titles count at once
        big = len(self.keyword.delta_slots) > self.config.compact_fraction * max(self.keyword.n_main, 1000)
        if big and not self.keyword.read_only:  # a sharded index's delta waits for the next version
            self.compact(progress=progress)
        return len(batch)

    def remove(self, item_ids: Iterable[str]) -> int:
        """Take items out of search at once. Returns how many were there."""
        removed = 0
        for item_id in item_ids:
            slot = self._slot.pop(item_id, None)
            if slot is not None:
                self._retire(slot)
                removed += 1
        return removed

    def _retire(self, slot: int) -> None:
        self._alive[slot] = False
        self._items[slot] = None
        if self.dense is not None:
            self.dense.remove(slot)

    def live_items(self) -> list[Item]:
        return [it for it in self._items if it is not None]

    def compact(self, *, progress: ProgressFn | None = None) -> None:
        """Fold the delta segment and retired slots into a fresh main segment (no re-embedding);
        nothing to do (no rebuild) when there is neither."""
        if not self.keyword.delta_slots and bool(self._alive.all()) and len(self._alive) == len(self._items):
            return
        live = np.flatnonzero(self._alive)
        items = [self._items[i] for i in live]
        vectors = self.dense.vectors[live] if self.dense is not None else None
        self._reset([it for it in items if it is not None], progress=progress, vectors=vectors)

    # --- searching ------------------------------------------------------------------------------

    def _filter_mask(self, parsed: ParsedQuery, filters: Filters | None) -> tuple[np.ndarray, dict[str, Any]]:
        mask = self._alive.copy()
        applied: dict[str, Any] = {}
        low = filters.price_min if filters and filters.price_min is not None else parsed.price_min
        high = filters.price_max if filters and filters.price_max is not None else parsed.price_max
        with np.errstate(invalid="ignore"):
            if low is not None:
                mask &= self._price >= low
                applied["price_min"] = low
            if high is not None:
                mask &= self._price <= high
                applied["price_max"] = high
        brands = list(filters.brands) if filters and filters.brands else []
        if not brands and self.config.brand_filter and parsed.brands:
            brands = parsed.brands
        if brands:
            codes = [self._brand_codes[b.lower()] for b in brands if b.lower() in self._brand_codes]
            brand_mask = mask & np.isin(self._brand, codes)
            if brand_mask.any() or (filters and filters.brands):
                mask = brand_mask
                applied["brands"] = brands
        if filters and filters.category:
            prefix = filters.category.lower()
            cat = np.array(
                [
                    it is not None and bool(it.category) and (it.category or "").startswith(prefix)
                    for it in self._items
                ]
            )
            mask &= cat
            applied["category"] = filters.category
        if filters and filters.available is not None:
            mask &= self._available == filters.available
            applied["available"] = filters.available
        for name, values in (filters.attributes if filters else {}).items():
            if values:
                column, codes = self._facets.attribute_codes(name, values)
                mask &= np.isin(self._facets.attr[: len(mask), column], codes)
                applied[name] = list(values)
        return mask, applied

    def _query_tokens(self, parsed: ParsedQuery) -> list[str]:
        tokens = self.analyzer.tokens(parsed.text)
        for extra in parsed.expansions:
            tokens.extend(t for t in self.analyzer.tokens(extra) if t not in tokens)
        return tokens

    def _candidates(
        self, parsed: ParsedQuery, mask: np.ndarray, mode: str, depth: int, vector: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
        """(slots, scores, per-source score arrays aligned with slots) best first, and every slot
        the keyword index matched (None in dense mode): the stages of ``search.stages``."""
        cfg = self.config
        query = SearchQuery(parsed, [], mask, vector)
        if mode != "dense":
            query = replace(query, tokens=self._query_tokens(parsed))
        if mode == "bm25":
            kw = KeywordRetriever(self.keyword).retrieve(query, depth)
            return kw.ids, kw.scores, {"bm25": kw.scores}, kw.matched
        if self.dense is None or self.encoder is None:
            raise SearchError(f"mode {mode!r} needs the semantic index", hint="build with dense=True")
        encoder, fetch = self.encoder, max(depth, cfg.candidates)
        semantic = DenseRetriever(self.dense, min_similarity=cfg.min_similarity)

        def dense_side(query: SearchQuery = query) -> tuple[SearchQuery, Candidates]:
            if vector is None:
                query = replace(query, vector=encoder.encode_query(parsed.text or parsed.raw))
            return query, semantic.retrieve(query, fetch)

        if mode == "dense":
            _, dense = dense_side()
            return dense.ids[:depth], dense.scores[:depth], {"dense": dense.scores[:depth]}, None
        # the keyword round and (the query's vector, the dense round) do not depend on each other:
        # to remote shards they go out together
        kw_query, depth_kw = query, max(depth, cfg.candidates)
        kw, (query, dense) = together(
            lambda: KeywordRetriever(self.keyword).retrieve(kw_query, depth_kw),
            dense_side,
            overlap=self.keyword.remote and self.dense.remote,
        )
        method: Literal["blend", "rrf"] = "rrf" if mode == "rrf" else "blend"
        trust = self.dense_trust() if method == "blend" else 1.0
        ranker = FusionRanker(
            self.keyword, semantic, cfg, method=method, trust=trust, fetch=fetch, doc_tokens=self._doc_tokens
        )
        ranked = ranker.rank(query, [kw, dense])
        return ranked.ids, ranked.scores, ranked.sources, kw.matched

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: Mode | str = "hybrid",
        filters: Filters | None = None,
        sort: Sort | str = "relevance",
        user: UserAffinity | None = None,
        facets: bool = True,
        vector: np.ndarray | None = None,
        expansions: Sequence[str] = (),
    ) -> SearchResult:
        """The top ``k`` items for ``query``; ``vector`` skips encoding when the caller has it;
        ``expansions``: more text to match as well (the shop's synonyms, managed at run time)."""
        started = time.perf_counter()
        if mode not in MODES:
            raise SearchError(f"unknown search mode {mode!r}", hint=f"one of {', '.join(MODES)}")
        if mode == "ltr" and self.ranker is None:
            raise SearchError("mode 'ltr' needs a trained ranker", hint="train one with shelfwise.search.ltr")
        if not self.config.dense and mode in ("dense", "hybrid", "rrf"):
            raise SearchError(f"mode {mode!r} needs the semantic index", hint="build with dense=True")
        parsed = self.understanding.parse(query)
        parsed.expansions.extend(e for e in expansions if e not in parsed.expansions)
        mask, applied = self._filter_mask(parsed, filters)
        wants_all = sort != "relevance" or facets
        depth = max(k, self.config.candidates if wants_all or user or mode == "ltr" else k)
        retrieval_mode = "bm25" if mode == "ltr" and not self.config.dense else mode
        if mode == "ltr":
            retrieval_mode = "hybrid" if self.config.dense else "bm25"
        slots, scores, sources, matches = self._candidates(parsed, mask, retrieval_mode, depth, vector)
        scores = scores.astype(np.float64)
        if mode == "ltr" and len(slots):
            scores = self.ranker.score(self, parsed, slots, sources, user=user)
            scores = scores - scores.min() + 1e-6  # keep boosts multiplicative on positive scores
        scores = self._boost(parsed, slots, scores, user)
        if sort == "relevance":
            order = np.argsort(-scores, kind="stable")
        elif sort in ("price_asc", "price_desc"):
            price = self._price[slots]
            key = np.where(np.isnan(price), np.inf, price if sort == "price_asc" else -price)
            order = np.lexsort((-scores, key))
        elif sort == "popularity":
            order = np.lexsort((-scores, -self._popularity[slots]))
        else:
            raise SearchError(f"unknown sort {sort!r}", hint="relevance, price_asc, price_desc or popularity")
        hits = []
        top = order[:k]
        columns = {name: arr[top].tolist() for name, arr in sources.items()}
        for j, i in enumerate(top.tolist()):
            item = self._items[int(slots[i])]
            assert item is not None
            hits.append(Hit(item.item_id, float(scores[i]), item, {n: c[j] for n, c in columns.items()}))
        # facets and the total count every item that matched, not only the re-ranked candidates
        if matches is None:
            every = slots
        elif retrieval_mode == "bm25":
            every = matches  # the keyword candidates are a subset of the keyword matches
        else:
            every = np.union1d(slots, matches)
        facet_data = {}
        if facets:
            facet_data = self._facets.counts(
                every, price=self._price, available=self._available, buckets=self._buckets
            )
        return SearchResult(
            query=parsed,
            hits=hits,
            total=len(every),
            facets=facet_data,
            took_ms=(time.perf_counter() - started) * 1000,
            applied_filters=applied,
        )

    def _doc_tokens(self, slot: int) -> list[str]:
        """A slot's analysed title and category words (term feedback reads them; cached)."""
        tokens = self._feedback_tokens.get(slot)
        if tokens is None:
            item = self._items[slot]
            text = "" if item is None else f"{item.title or ''} {(item.category or '').replace(' > ', ' ')}"
            tokens = self.analyzer.tokens(text)
            if len(self._feedback_tokens) > 100_000:
                self._feedback_tokens.clear()
            self._feedback_tokens[slot] = tokens
        return tokens

    def _boost(
        self, parsed: ParsedQuery, slots: np.ndarray, scores: np.ndarray, user: UserAffinity | None
    ) -> np.ndarray:
        terms = [*parsed.colours, *parsed.sizes, *parsed.genders]
        terms += [c for c in parsed.categories if c not in terms]
        if not terms and user is None:
            return scores
        out = scores.copy()
        items, texts, boost = self._items, self._boost_text, self.config.boost
        for i, slot in enumerate(np.asarray(slots).tolist()):
            item = items[slot]
            if item is None:
                continue
            factor = 1.0
            if terms:
                text = texts.get(slot)
                if text is None:
                    text = " ".join(
                        [item.title or "", item.category or "", " ".join(map(str, item.attributes.values()))]
                    ).lower()
                    if len(texts) > 100_000:
                        texts.clear()
                    texts[slot] = text
                found = 0
                for t in terms:
                    if t in text:
                        found += 1
                if found:
                    factor += boost * found
            if user is not None:
                factor *= user.boost(item)
            if factor != 1.0:  # x * 1.0 is x: only boosted items are written
                out[i] *= factor
        return out

    def autocomplete(self, prefix: str, k: int = 8) -> list[str]:
        ac = self.understanding.autocomplete
        return ac.suggest(prefix, k) if ac else []

    def record_query(self, query: str) -> None:
        if self.understanding.autocomplete:
            self.understanding.autocomplete.record(query)

    # --- persistence ----------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """``items.jsonl`` + ``engine.json`` + keyword (``.npy``/JSON) + vectors (``.npy``) and their HNSW
        graph (hnswlib's file); no pickle."""
        self.compact()
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "items.jsonl").open("w", encoding="utf-8") as out:
            for it in self.live_items():
                out.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")
        self.keyword.save(directory / "keyword")
        if self.dense is not None:
            # with its HNSW graph: rebuilding it on load (several threads) would differ from load to load
            self.dense.save(directory / "dense", graph=True)
            if self.encoder is not None and self.encoder.adapted and self.config.adapt is not None:
                from shelfwise.search.adapt import save_adapted

                save_adapted(
                    self.encoder,
                    directory / "dense",
                    config=self.config.adapt,
                    report=self.adapt_report or {},
                )
        meta = {
            "format": FORMAT_VERSION,
            "config": self.config.model_dump(),
            "items": len(self),
            "dense_agreement": self.dense_agreement,
        }
        (directory / "engine.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(
        cls, directory: Path, *, encoder: Encoder | None = None, shard_engine: str = "threads"
    ) -> SearchEngine:
        """A saved engine; a sharded one has its shards held in this process (``shard_engine``
        ``threads``) or by one Ray actor each (``ray``; see ``shelfwise.search.shard_actors``)."""
        meta_path = directory / "engine.json"
        if not meta_path.exists():
            raise ConfigError(f"{directory}: not a saved search index (no engine.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ConfigError(f"{directory}: index format {meta.get('format')}, this version reads 1")
        engine = cls(SearchConfig(**meta["config"]), encoder=encoder)
        with (directory / "items.jsonl").open(encoding="utf-8") as handle:
            items = [validate_item(json.loads(line)) for line in handle if line.strip()]
        engine._items = list(items)
        engine._slot = {it.item_id: i for i, it in enumerate(items)}
        n = len(items)
        engine._alive = np.ones(n, dtype=bool)
        engine._price = np.array([np.nan if it.price is None else it.price for it in items], dtype=np.float64)
        engine._available = np.array([it.available for it in items], dtype=bool)
        engine._popularity = np.array([popularity(it) for it in items], dtype=np.float32)
        engine._brand = np.array([engine._brand_code(it.brand) for it in items], dtype=np.int32)
        engine._facets = FacetIndex()
        engine._facets.extend(items)
        if (directory / "shards.json").exists():  # partitioned: queried by scatter-gather
            from shelfwise.search.shards import load_shards

            cfg = engine.config
            engine.keyword, sharded = load_shards(
                directory,
                weights=cfg.weights,
                analyzer=engine.analyzer,
                k1=cfg.k1,
                b=cfg.b,
                engine=shard_engine,
            )
            engine.dense = sharded if engine.dense is not None else None
        else:
            engine.keyword = KeywordIndex.load(directory / "keyword")
        engine.analyzer = engine.keyword.analyzer
        if engine.dense is not None and not engine.keyword.read_only:
            engine.dense = DenseIndex.load(directory / "dense")
            from shelfwise.search.adapt import adapted_exists, load_adapted

            if adapted_exists(directory / "dense"):
                # the index's vectors came from the adapted encoder: queries must too
                engine.encoder = load_adapted(engine.encoder or Encoder(), directory / "dense")
        engine.understanding.fit(items)
        engine._buckets = price_buckets(engine._price)
        engine.dense_agreement = meta.get("dense_agreement")
        if engine.config.annotate:
            from shelfwise.search.annotate import Annotator

            engine._annotator = Annotator.from_items(items)
        return engine
