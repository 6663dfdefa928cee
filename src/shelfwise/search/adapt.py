"""Adapting the bi-encoder to one shop's catalogue without labels.

all-MiniLM-L6-v2 was trained on general sentence pairs; a shop's product vocabulary (its brands,
kinds of product, how its titles are written) is new to it. At index build time this module makes
contrastive pairs from the catalogue itself — a short query-like *view* of an item (a node of its
category path, a few consecutive title words, the start of its description, its attributes)
against the text the index embeds for the item — and fine-tunes the top transformer layers for a
bounded time with in-batch negatives (the multiple-negatives ranking loss of Henderson et al.
2017, as sentence-transformers' ``MultipleNegativesRankingLoss``). No judgments, no clicks and no
download: the trained layers are saved with the index (``safetensors``) and loaded over the
packaged model.

    adapted, report = adapt_encoder(Encoder(), items, AdaptConfig())
    report["seconds"], report["pairs"], report["loss_first"], report["loss_last"]
"""

from __future__ import annotations

import copy
import json
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shelfwise.core.errors import ConfigError
from shelfwise.core.logging import get_logger
from shelfwise.data.schemas import Item
from shelfwise.search.dense import MODEL_NAME, Encoder
from shelfwise.search.documents import attributes_text, embedding_text

log = get_logger(__name__)

View = Literal["category", "title_span", "description", "attributes"]
WEIGHTS_FILE: Final = "adapted.safetensors"
META_FILE: Final = "adapted.json"
_WORD: Final = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


class AdaptConfig(BaseModel):
    """How the bi-encoder is adapted to a catalogue at build time (saved with the index)."""

    model_config = ConfigDict(extra="forbid")

    views: list[View] = Field(
        default_factory=lambda: ["category", "title_span", "description", "attributes"],
        description="the query-like views of an item a pair may use (one drawn per item)",
    )
    max_pairs: int = Field(20_000, ge=1, description="pairs per epoch (one per item, items sampled)")
    epochs: int = Field(1, ge=1)
    layers: int = Field(2, ge=1, le=6, description="top transformer layers trained (the rest frozen)")
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, ge=2, description="in-batch negatives per pair: batch_size - 1")
    scale: float = Field(20.0, gt=0, description="cosine similarity multiplier in the softmax")
    max_length: int = Field(48, ge=8, description="tokens per text while training")
    seconds: float = Field(600.0, gt=0, description="training stops after this long (bounded build time)")
    seed: int = 0


def _words(text: str) -> list[str]:
    return _WORD.findall(text or "")


def item_views(item: Item, rng: random.Random) -> dict[str, str]:
    """Every query-like view the item has (an empty view is left out)."""
    out: dict[str, str] = {}
    if item.category:
        nodes = [n.strip() for n in item.category.split(" > ") if n.strip()]
        # the root ("clothing") says little; a deeper node is what a shopper types
        deeper = nodes[1:] or nodes
        if deeper:
            out["category"] = rng.choice(deeper)
    title = _words(item.title or "")
    if len(title) >= 3:
        span = rng.randint(2, min(4, len(title) - 1))
        start = rng.randint(0, len(title) - span)
        out["title_span"] = " ".join(title[start : start + span])
    description = _words(item.description or "")
    if len(description) >= 4:
        out["description"] = " ".join(description[:32])
    attrs = attributes_text(item)
    if attrs.strip():
        out["attributes"] = " ".join(_words(attrs)[:32])
    return out


def catalogue_pairs(items: Sequence[Item], config: AdaptConfig) -> list[tuple[str, str]]:
    """``(view, item text)`` pairs: one per sampled item, its view drawn from ``config.views``."""
    rng = random.Random(config.seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    pairs: list[tuple[str, str]] = []
    for i in order:
        item = items[i]
        views = {k: v for k, v in item_views(item, rng).items() if k in config.views}
        target = embedding_text(item)
        if not views or not target:
            continue
        view = views[rng.choice(sorted(views))]
        if view.lower() != target.lower():
            pairs.append((view, target))
        if len(pairs) >= config.max_pairs:
            break
    return pairs


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - a declared dependency of the dense extra
        raise ConfigError("adapting the encoder needs torch", hint="pip install torch") from exc
    return torch


def _trainable(transformer: Any, layers: int) -> dict[str, Any]:
    """The parameters of the top ``layers`` encoder layers (name → parameter); the rest frozen."""
    n_layers = len(transformer.encoder.layer)
    first = n_layers - layers
    keep = {f"encoder.layer.{i}." for i in range(first, n_layers)}
    out = {}
    for name, param in transformer.named_parameters():
        train = any(name.startswith(k) for k in keep)
        param.requires_grad_(train)
        if train:
            out[name] = param
    return out


class _Split:
    """The transformer cut below its top ``layers``: item texts run through the frozen lower layers
    once (their states kept, float16, unpadded), so training and re-embedding the catalogue after it
    only run the top layers. Checked against the whole model on a few texts at the start; when the
    cut does not reproduce it (another transformers version) every pass runs the whole model."""

    def __init__(self, transformer: Any, tokenizer: Any, layers: int, max_length: int) -> None:
        self.torch = _torch()
        self.transformer, self.tokenizer, self.max_length = transformer, tokenizer, max_length
        self.cut = len(transformer.encoder.layer) - layers
        self.exact = False

    def tokens(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def lower(self, texts: Sequence[str]) -> list[Any]:
        """Each text's hidden states below the cut (no gradient), one unpadded tensor a text."""
        torch = self.torch
        encoder = self.transformer.encoder
        full = encoder.layer
        out: list[Any] = []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        states: dict[int, Any] = {}
        try:
            encoder.layer = full[: self.cut]
            with torch.inference_mode():
                for start in range(0, len(order), 64):
                    idx = order[start : start + 64]
                    batch = self.tokens([texts[i] for i in idx])
                    hidden = self.transformer(**batch).last_hidden_state
                    lengths = batch["attention_mask"].sum(1).tolist()
                    for j, i in enumerate(idx):
                        states[i] = hidden[j, : lengths[j]].to(torch.float16).clone()
        finally:
            encoder.layer = full
        out = [states[i] for i in range(len(texts))]
        return out

    def upper(self, states: Sequence[Any]) -> Any:
        """Unit vectors from states below the cut, through the top layers (with gradient when training)."""
        torch = self.torch
        from transformers.masking_utils import create_bidirectional_mask

        lengths = [len(s) for s in states]
        width = max(lengths)
        hidden = torch.zeros(len(states), width, states[0].shape[1], dtype=torch.float32)
        mask = torch.zeros(len(states), width, dtype=torch.long)
        for i, s in enumerate(states):
            hidden[i, : len(s)] = s.float()
            mask[i, : len(s)] = 1
        attention = create_bidirectional_mask(
            config=self.transformer.config, inputs_embeds=hidden, attention_mask=mask
        )
        for layer in self.transformer.encoder.layer[self.cut :]:
            hidden = layer(hidden, attention)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return _pool(torch, hidden, mask)

    def whole(self, texts: Sequence[str]) -> Any:
        batch = self.tokens(texts)
        hidden = self.transformer(**batch).last_hidden_state
        return _pool(self.torch, hidden, batch["attention_mask"])

    def check(self, texts: Sequence[str]) -> bool:
        torch = self.torch
        try:
            with torch.inference_mode():
                split = self.upper(self.lower(texts))
                whole = self.whole(texts)
            self.exact = bool(torch.allclose(split, whole, atol=2e-3))
        except Exception as exc:  # an architecture this cut does not fit: run the whole model
            log.warning("encoder cut failed; adapting with the whole model (slower)", error=repr(exc))
            self.exact = False
        return self.exact


def _pool(torch: Any, hidden: Any, mask: Any) -> Any:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1)


def adapt_encoder(
    base: Encoder, items: Sequence[Item], config: AdaptConfig
) -> tuple[Encoder, dict[str, Any], np.ndarray]:
    """A copy of ``base`` fine-tuned on ``items``' own pairs, a report of the run, and the vector of
    every item's ``embedding_text`` under the adapted model (row per item, in order)."""
    torch = _torch()
    model = copy.deepcopy(base.model)
    transformer, tokenizer = model[0].auto_model, model.tokenizer
    pairs = catalogue_pairs(items, config)
    if len(pairs) < config.batch_size:
        raise ConfigError(
            f"{len(pairs)} catalogue pairs are too few to adapt the encoder",
            hint="index more items or turn adaptation off",
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    started = time.perf_counter()
    transformer.eval()
    split = _Split(transformer, tokenizer, config.layers, max(config.max_length, base.max_length))
    texts = [embedding_text(it) for it in items]
    unique: dict[str, int] = {}
    row_of = np.array([unique.setdefault(t, len(unique)) for t in texts], dtype=np.int64)
    uniq = list(unique)
    cached = split.lower(uniq) if split.check(uniq[:8]) else None
    lower_seconds = time.perf_counter() - started
    params = _trainable(transformer, config.layers)
    optimiser = torch.optim.AdamW(params.values(), lr=config.lr)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    losses: list[float] = []
    steps = 0
    stopped_early = False
    transformer.train()
    try:
        for _ in range(config.epochs):
            rng.shuffle(pairs)
            for start in range(0, len(pairs) - config.batch_size + 1, config.batch_size):
                if time.perf_counter() - started - lower_seconds > config.seconds:
                    stopped_early = True
                    break
                batch = pairs[start : start + config.batch_size]
                anchors, positives = [a for a, _ in batch], [p for _, p in batch]
                left = split.whole(anchors)
                if cached is not None:
                    right = split.upper([cached[unique[p]] for p in positives])
                else:
                    right = split.whole(positives)
                logits = left @ right.T * config.scale
                # another item with the same view or the same text is not a negative
                same = np.array(
                    [
                        [
                            i != j and (anchors[i] == anchors[j] or positives[i] == positives[j])
                            for j in range(len(batch))
                        ]
                        for i in range(len(batch))
                    ]
                )
                if same.any():
                    logits = logits.masked_fill(torch.from_numpy(same), float("-inf"))
                loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
                steps += 1
            if stopped_early:
                break
        train_seconds = time.perf_counter() - started - lower_seconds
        transformer.eval()
        for param in transformer.parameters():
            param.requires_grad_(False)
        vectors = np.zeros((len(uniq), 384), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(uniq), 64):
                chunk = range(start, min(start + 64, len(uniq)))
                if cached is not None:
                    out = split.upper([cached[i] for i in chunk])
                else:
                    out = split.whole([uniq[i] for i in chunk])
                vectors[start : start + len(chunk)] = out.numpy()
    finally:
        torch.set_num_threads(threads)
        transformer.eval()
    adapted = _encoder_like(base, model)
    adapted.adapted_state = {k: v.detach().clone() for k, v in params.items()}
    report = {
        "pairs": len(pairs),
        "steps": steps,
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_lower_layers": round(lower_seconds, 1),
        "seconds_training": round(train_seconds, 1),
        "stopped_early": stopped_early,
        "cut": split.exact,
        "loss_first": round(float(np.mean(losses[:20])), 4) if losses else None,
        "loss_last": round(float(np.mean(losses[-20:])), 4) if losses else None,
        "trained_parameters": int(sum(p.numel() for p in params.values())),
    }
    log.info("encoder adapted to the catalogue", **report)
    return adapted, report, vectors[row_of]


def _encoder_like(base: Encoder, model: Any) -> Encoder:
    return Encoder(
        base.path,
        batch_size=base.batch_size,
        max_length=base.max_length,
        query_max_length=base.query_max_length,
        workers=base.workers,
        cache_size=base.cache_size,
        query_threads=base.query_threads,
        model=model,
    )


def save_adapted(encoder: Encoder, directory: Path, *, config: AdaptConfig, report: dict[str, Any]) -> None:
    """The trained layers as ``safetensors`` (no pickle) and what made them, as JSON."""
    from safetensors.torch import save_file

    state = getattr(encoder, "adapted_state", None)
    if not state:
        raise ConfigError("this encoder was not adapted to a catalogue")
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / WEIGHTS_FILE))
    meta = {"base_model": MODEL_NAME, "config": config.model_dump(), "report": report}
    (directory / META_FILE).write_text(json.dumps(meta, indent=1))


def load_adapted(base: Encoder, directory: Path) -> Encoder:
    """``base`` with the trained layers saved in ``directory`` put over a copy of its model."""
    from safetensors.torch import load_file

    meta = json.loads((directory / META_FILE).read_text())
    if meta.get("base_model") != MODEL_NAME:
        raise ConfigError(
            f"{directory}: adapted from {meta.get('base_model')!r}, this version embeds with {MODEL_NAME}"
        )
    state = load_file(str(directory / WEIGHTS_FILE))
    model = copy.deepcopy(base.model)
    transformer = model[0].auto_model
    own = dict(transformer.named_parameters())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ConfigError(f"{directory}: adapted weights name unknown parameters {unknown[:3]}")
    _torch()
    import torch

    with torch.no_grad():
        for name, value in state.items():
            own[name].copy_(value)
    transformer.eval()
    adapted = _encoder_like(base, model)
    adapted.adapted_state = state
    return adapted


def adapted_exists(directory: Path) -> bool:
    return (directory / WEIGHTS_FILE).exists() and (directory / META_FILE).exists()
