"""A two-tower (NeuralCF-style) model: a user tower that pools the embeddings of the shopper's
items (mean, or attention weights learned per item) through a small MLP, and an item tower of an
id embedding plus category and brand embeddings. The score is their dot product.

The user tower reads only the items, never a user id, so a new shopper folds in without
retraining, and an item unseen in training still gets a vector from its category and brand.

Training predicts every item of a shopper's sequence from the items before it (all prefixes at
once, by cumulative sums), with cross-entropy over the batch's targets (``loss="in-batch"``, the
default, with the log-frequency correction: its cost does not grow with the catalogue) or over
all items (``loss="softmax"``), for a fixed number of epochs within ``max_train_seconds``.

    >>> model = model_from_config({"model": "two-tower", "epochs": 10}).fit(train)   # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from shelfwise.core.logging import get_logger
from shelfwise.features.dataset import NO_CODE, Dataset
from shelfwise.recommend.base import ModelConfig, Recommender
from shelfwise.recommend.memory import MatrixShape
from shelfwise.recommend.registry import register_model
from shelfwise.recommend.sequential import _threads, load_state, state_arrays

log = get_logger(__name__)


class TwoTowerConfig(ModelConfig):
    hidden: int = Field(default=64, ge=4, description="embedding size of both towers")
    pooling: Literal["mean", "attention"] = Field(
        default="attention", description="how the user tower pools the shopper's item embeddings"
    )
    attributes: bool = Field(default=True, description="add category and brand embeddings to items")
    loss: Literal["softmax", "in-batch"] = Field(
        default="in-batch", description="over the batch's targets (cheap at any catalogue size) or all items"
    )
    dropout: float = Field(default=0.2, ge=0, lt=1)
    max_len: int = Field(default=50, ge=2, description="training: most recent items per sequence")
    batch_size: int = Field(default=128, ge=2)
    lr: float = Field(default=3e-3, gt=0)
    epochs: int = Field(default=30, ge=1)
    max_train_seconds: float = Field(default=600.0, gt=0)
    threads: int = Field(default=1, ge=1, le=2, description="torch threads (1: best on a busy machine)")
    seed: int = 0


class _Towers(nn.Module):
    def __init__(self, n_items: int, n_categories: int, n_brands: int, cfg: TwoTowerConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.n_items = n_items
        self.history = nn.Embedding(n_items + 1, d, padding_idx=0)  # user-tower inputs; 0 pads
        self.gate = nn.Linear(d, 1)  # attention pooling: one learned weight per history item
        self.user_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, d))
        self.item_id = nn.Embedding(n_items, d)
        self.category = nn.Embedding(n_categories + 1, d)  # row 0: no category
        self.brand = nn.Embedding(n_brands + 1, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.attention = cfg.pooling == "attention"
        self.attributes = cfg.attributes
        for emb in (self.history, self.item_id, self.category, self.brand):
            nn.init.normal_(emb.weight, std=d**-0.5)
        with torch.no_grad():
            self.history.weight[0].zero_()
        self.register_buffer("item_category", torch.zeros(n_items, dtype=torch.long))
        self.register_buffer("item_brand", torch.zeros(n_items, dtype=torch.long))

    def item_vectors(self) -> torch.Tensor:
        v = self.item_id.weight
        if self.attributes:
            v = v + self.category(self.item_category) + self.brand(self.item_brand)
        return v

    def _weights(self, e: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if not self.attention:
            return real.float()
        return torch.exp(self.gate(e).squeeze(-1).clamp(-8, 8)) * real

    def prefix_users(self, seq: torch.Tensor) -> torch.Tensor:
        """User vectors after each prefix of right-padded sequences (batch × length × hidden)."""
        real = seq != 0
        e = self.drop(self.history(seq))
        w = self._weights(e, real)
        pooled = torch.cumsum(w[..., None] * e, 1) / torch.cumsum(w, 1).clamp_min(1e-6)[..., None]
        return pooled + self.user_mlp(pooled)

    def users_from_sets(self, histories: sp.csr_matrix) -> torch.Tensor:
        """User vectors from history rows (order does not matter to this tower)."""
        idx = torch.from_numpy(histories.indices.astype(np.int64) + 1)
        e = self.history.weight[idx]
        w = self._weights(e, torch.ones(len(idx), dtype=torch.bool))
        rows = torch.repeat_interleave(
            torch.arange(histories.shape[0]), torch.from_numpy(np.diff(histories.indptr))
        )
        num = torch.zeros(histories.shape[0], e.shape[1]).index_add_(0, rows, w[:, None] * e)
        den = torch.zeros(histories.shape[0]).index_add_(0, rows, w).clamp_min(1e-6)
        pooled = num / den[:, None]
        return pooled + self.user_mlp(pooled)


class TwoTowerRecommender(Recommender):
    name = "two-tower"
    Config = TwoTowerConfig
    config: TwoTowerConfig
    reason_default = "matches your taste"

    net: _Towers

    def _build(self, n_items: int, category: np.ndarray, brand: np.ndarray) -> None:
        cat = np.where(category == NO_CODE, 0, category.astype(np.int64) + 1)
        br = np.where(brand == NO_CODE, 0, brand.astype(np.int64) + 1)
        self.net = _Towers(n_items, int(cat.max(initial=0)), int(br.max(initial=0)), self.config)
        self.net.item_category.copy_(torch.from_numpy(cat))
        self.net.item_brand.copy_(torch.from_numpy(br))

    def _fit_bytes(self, shape: MatrixShape) -> int:
        c = self.config
        outputs = shape.n_items if c.loss == "softmax" else c.batch_size
        params = 2 * (shape.n_items + 1) * c.hidden * 4 * 4  # history and item-id embeddings, grads, Adam
        return params + 16 * shape.nnz + c.batch_size * outputs * 4 * 4 + 200_000_000

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        cfg = self.config
        _threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        attrs = dataset.item_attributes
        self._build(dataset.n_items, attrs.category, attrs.brand)
        seqs = [h[-cfg.max_len - 1 :].astype(np.int64) + 1 for h in dataset.histories() if len(h) >= 2]
        counts = np.bincount(dataset.items, minlength=dataset.n_items).astype(np.float64)
        self._log_q = torch.from_numpy(np.log((counts + 1) / (counts + 1).sum())).float()
        self.fit_log: list[dict[str, float]] = []
        if seqs:
            self._train(seqs, rng)
        self.net.eval()

    def _loss(self, seq: torch.Tensor) -> torch.Tensor:
        users = self.net.prefix_users(seq[:, :-1])
        target = seq[:, 1:]
        keep = target != 0
        u, t = users[keep], target[keep] - 1
        items = self.net.item_vectors()
        if self.config.loss == "softmax":
            return F.cross_entropy(u @ items.T, t)
        uniq, inverse = torch.unique(t, return_inverse=True)
        logits = u @ items[uniq].T - self._log_q[uniq][None, :]  # sampled by frequency: correct for it
        return F.cross_entropy(logits, inverse)

    def _train(self, seqs: list[np.ndarray], rng: np.random.Generator) -> None:
        cfg = self.config
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        started = time.perf_counter()
        bs = cfg.batch_size
        for epoch in range(cfg.epochs):
            self.net.train()
            order = rng.permutation(len(seqs))
            total = 0.0
            for lo in range(0, len(order), bs):
                batch = [seqs[i] for i in order[lo : lo + bs]]
                length = max(len(s) for s in batch)
                x = np.zeros((len(batch), length), np.int64)  # right padding: prefixes by cumsum
                for r, s in enumerate(batch):
                    x[r, : len(s)] = s
                loss = self._loss(torch.from_numpy(x))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
            elapsed = time.perf_counter() - started
            entry = {"epoch": epoch + 1, "loss": total / len(seqs), "seconds": round(elapsed, 1)}
            self.fit_log.append(entry)
            log.info("two-tower epoch", **entry)
            if elapsed + elapsed / (epoch + 1) > cfg.max_train_seconds:
                break

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        _threads(self.config.threads)
        with torch.no_grad():  # the net is kept in eval mode outside _train
            u = self.net.users_from_sets(sp.csr_matrix(histories))
            return (u @ self.net.item_vectors().T).numpy()

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            v = F.normalize(self.net.item_vectors(), dim=1)
            return (v[torch.as_tensor(items, dtype=torch.long)] @ v.T).numpy()

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history) or not len(items):
            return [self.reason_default] * len(items)
        with torch.no_grad():
            v = self.net.item_vectors()
            hist = F.normalize(v[torch.as_tensor(history, dtype=torch.long)], dim=1)
            block = (hist @ F.normalize(v[torch.as_tensor(items, dtype=torch.long)], dim=1).T).numpy()
        best = block.argmax(axis=0)
        return [
            f"similar to {self._label(history[b])}" if block[b, j] > 0 else self.reason_default
            for j, b in enumerate(best)
        ]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"n_items": np.array([self.net.n_items], np.int64), **state_arrays(self.net)}

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        n_items = int(a["n_items"][0])
        n_cat = a["net__category__weight"].shape[0] - 1
        n_br = a["net__brand__weight"].shape[0] - 1
        self.net = _Towers(n_items, n_cat, n_br, self.config)
        load_state(self.net, {k: v for k, v in a.items() if k.startswith("net__")})
        self.net.eval()


register_model("two-tower", TwoTowerRecommender)
