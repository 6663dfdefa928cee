"""SASRec (Kang & McAuley 2018): a causal Transformer over the shopper's items in time order,
predicting the next item at every position, with the item embeddings shared between input and
output. Trained with cross-entropy at every position (Klenitskiy & Vasilev, RecSys 2023: it beats
the original one-negative BCE loss by a wide margin), either over *all* items (``loss="softmax"``)
or over ``negatives`` items drawn uniformly per batch (``loss="sampled"``). The default
``loss="auto"`` takes the full softmax up to ``softmax_max_items`` items and the sampled loss
above: on Amazon Beauty (12k items; validation split, chosen there once) the full softmax scored
NDCG@10 0.0569 against 0.0545 for 1,024 sampled negatives within the same budget, though an
epoch costs about four times the CPU (the output layer dominates and grows with the catalogue, so
large catalogues keep the sampled loss). The 16,384 cut-off is a cost guard, not a tuned value.

``layer="ligr"`` swaps in eSASRec's blocks (Tikhonovich et al., RecSys 2025, arXiv 2508.06450): LiGR
layers, whose attention and SwiGLU feed-forward outputs pass a learned sigmoid gate before they join
the residual stream (``sequence_layers``). The classic block stays the default: on Beauty within the
290 core-second budget LiGR + ``ema`` scored NDCG@10 0.0492 against 0.0543 (see bench_sequence).
Negatives are uniform draws, optionally joined by the batch's own targets with a logQ correction
(``in_batch_negatives``); ``ema`` validates and keeps a moving average of the weights.

Known users are scored from their training sequence (kept with the model); a new shopper's
session is read in the order it happened (``_score_sessions``), so fold-in needs no retraining.
Positions are counted from the end of the sequence (the last item is position 0), the same as
SASRec's left padding, which lets a batch be as short as its longest sequence.

Early stopping never looks at test items: ``valid_users`` users (a random sample) have their
last *training* item held out; training stops when their NDCG@10 (full ranking) has not
improved for ``patience`` epochs, or at ``max_train_seconds``, and keeps the best epoch.

PyTorch is imported here only: the registry registers this module lazily.

    >>> model = model_from_config({"model": "sasrec", "epochs": 5}).fit(train)   # doctest: +SKIP
    >>> model.recommend_for_events(["i1", "i7", "i3"], k=10)                      # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from shelfwise.core.logging import get_logger
from shelfwise.features.dataset import Dataset
from shelfwise.recommend.base import ModelConfig, ModelError, Recommender
from shelfwise.recommend.memory import MatrixShape
from shelfwise.recommend.registry import register_model
from shelfwise.recommend.sequence_layers import PAD, Layer, SequenceNet

log = get_logger(__name__)

Augmentation = Literal["crop", "mask", "reorder"]


class SASRecConfig(ModelConfig):
    hidden: int = Field(default=64, ge=4, description="embedding and hidden size")
    blocks: int = Field(default=2, ge=1, description="Transformer blocks")
    heads: int = Field(default=1, ge=1, description="attention heads (must divide hidden)")
    dropout: float = Field(default=0.3, ge=0, lt=1)
    layer: Layer = Field(
        default="sasrec",
        description="sasrec: classic block; ligr: gated blocks, SwiGLU feed-forward (eSASRec)",
    )
    ff_mult: int = Field(default=4, ge=1, description="ligr: feed-forward width as a multiple of hidden")
    max_len: int = Field(default=50, ge=2, description="items of history read (the most recent)")
    loss: Literal["auto", "softmax", "sampled"] = Field(
        default="auto",
        description="cross-entropy over all items (softmax), over `negatives` sampled ones (sampled), "
        "or auto: softmax up to `softmax_max_items` items, sampled above",
    )
    softmax_max_items: int = Field(
        default=16_384,
        ge=1,
        description="loss=auto: the largest catalogue trained with the full softmax (its cost grows with it)",
    )
    negatives: int = Field(default=1024, ge=1, description="sampled softmax: uniform negatives per batch")
    in_batch_negatives: bool = Field(
        default=False,
        description="sampled softmax: the batch's own targets are negatives too (logQ-corrected)",
    )
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    ema: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="decay of an exponential moving average of the weights (0: off)",
    )
    epochs: int = Field(default=200, ge=1, description="upper bound; early stopping usually ends sooner")
    patience: int = Field(default=5, ge=1, description="epochs without validation gain before stopping")
    valid_users: int = Field(
        default=2000, ge=0, description="users whose last training item is held out for early stopping"
    )
    max_train_seconds: float = Field(
        default=290.0,
        gt=0,
        description="budget in core-seconds (CPU time / threads): no epoch starts that would end past it",
    )
    augment: list[Augmentation] = Field(
        default_factory=list, description="sequence augmentations drawn from (CoSeRec-style)"
    )
    augment_prob: float = Field(default=0.3, ge=0, le=1, description="share of sequences augmented")
    crop_keep: float = Field(default=0.8, gt=0, le=1, description="crop: share of the sequence kept")
    mask_rate: float = Field(default=0.2, ge=0, le=1, description="mask: share of input items masked")
    reorder_rate: float = Field(default=0.2, ge=0, le=1, description="reorder: share of the window shuffled")
    threads: int = Field(default=1, ge=1, le=2, description="torch threads (1: best on a busy machine)")
    seed: int = 0


# --- sequence augmentation (pure NumPy, one sequence at a time) -----------------------------------
def crop(seq: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """A random contiguous window of ``ceil(keep·len)`` items (at least two when there are two)."""
    n = len(seq)
    size = min(n, max(2, math.ceil(keep * n)))
    start = int(rng.integers(0, n - size + 1))
    return seq[start : start + size]


def mask_items(inputs: np.ndarray, rate: float, token: int, rng: np.random.Generator) -> np.ndarray:
    """Inputs with a share ``rate`` of the real (non-padding) items replaced by ``token``."""
    out = inputs.copy()
    real = np.flatnonzero(out != PAD)
    n = round(rate * len(real))
    if n:
        out[rng.choice(real, n, replace=False)] = token
    return out


def reorder(seq: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The sequence with a random window of ``ceil(rate·len)`` items shuffled in place."""
    n = len(seq)
    size = min(n, max(2, math.ceil(rate * n)))
    if n < 2:
        return seq.copy()
    start = int(rng.integers(0, n - size + 1))
    out = seq.copy()
    out[start : start + size] = rng.permutation(out[start : start + size])
    return out


def left_pad(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Rows of ``length`` item indices, each sequence's last ``length`` items at the right end."""
    out = np.zeros((len(seqs), length), np.int64)
    for r, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[r, length - len(s) :] = s
    return out


def _make_net(n_items: int, cfg: SASRecConfig) -> SequenceNet:
    if cfg.hidden % cfg.heads:
        raise ModelError(f"hidden ({cfg.hidden}) must be a multiple of heads ({cfg.heads})")
    return SequenceNet(
        n_items,
        hidden=cfg.hidden,
        blocks=cfg.blocks,
        heads=cfg.heads,
        dropout=cfg.dropout,
        max_len=cfg.max_len,
        layer=cfg.layer,
        ff_mult=cfg.ff_mult,
    )


def _swap_in(params: list[torch.Tensor], values: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
    """Copy ``values`` into the parameters; returns what they held (None and no-op without values)."""
    if values is None:
        return None
    with torch.no_grad():
        held = [p.detach().clone() for p in params]
        torch._foreach_copy_(params, values)
    return held


def _threads(n: int) -> None:
    """At most two torch threads (the machine is shared); set only when it changes (not free)."""
    n = min(n, 2)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _data_parallel() -> tuple[int, int]:
    """(rank, world size) when running under torch.distributed, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_ranks_sum(value: float) -> float:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0])


def _rank0_says(flag: bool) -> bool:
    import torch.distributed as dist

    t = torch.tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t[0])


# --- the model --------------------------------------------------------------------------------------
def state_arrays(net: nn.Module) -> dict[str, np.ndarray]:
    """A module's parameters and buffers as plain arrays (``net__`` + name with dots as ``__``)."""
    return {
        f"net__{k.replace('.', '__')}": v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()
    }


def load_state(net: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """The inverse of ``state_arrays``: every parameter must be there."""
    state = {
        k.removeprefix("net__").replace("__", "."): torch.from_numpy(np.array(v)) for k, v in arrays.items()
    }
    missing = set(net.state_dict()) - set(state)
    if missing:
        raise ModelError(f"saved model lacks parameters {sorted(missing)}")
    net.load_state_dict({k: state[k] for k in net.state_dict()})


class SASRecRecommender(Recommender):
    name = "sasrec"
    Config = SASRecConfig
    config: SASRecConfig
    reason_default = "next in your sequence"

    net: SequenceNet
    seq_items: np.ndarray  # dense item ids of each user's last max_len training items, concatenated
    seq_indptr: np.ndarray  # user u's items: seq_items[seq_indptr[u]:seq_indptr[u+1]]

    # --- fitting ------------------------------------------------------------------------------
    def _full_softmax(self, n_items: int) -> bool:
        """Whether training scores every item (full softmax) rather than sampled negatives."""
        loss = self.config.loss
        return loss == "softmax" or (loss == "auto" and n_items <= self.config.softmax_max_items)

    def _fit_bytes(self, shape: MatrixShape) -> int:
        c = self.config
        # item embeddings with their gradient and Adam's two moments, the sequences, and the logits of
        # one batch (every item under the full softmax: the term that grows with the catalogue)
        outputs = shape.n_items if self._full_softmax(shape.n_items) else c.negatives + 1
        params = (shape.n_items + 2) * c.hidden * 4 * 4
        return params + 16 * shape.nnz + c.batch_size * c.max_len * outputs * 4 * 4 + 200_000_000

    def _memory_note(self, shape: MatrixShape) -> tuple[str, str]:
        if self._full_softmax(shape.n_items):
            return "full-softmax logits over every item", 'use loss="sampled" or a smaller batch_size'
        return "item embeddings and optimiser state", "use als or itemknn for this catalogue"

    def _fit(self, dataset: Dataset, matrix: sp.csr_matrix) -> None:
        cfg = self.config
        _threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        histories = dataset.histories()
        self._keep_sequences(histories)
        self.net = _make_net(dataset.n_items, cfg)
        train, valid = self._train_valid(histories, rng)
        counts = np.bincount(
            np.concatenate([s[1:] - 1 for s in train] or [np.empty(0, np.int64)]), minlength=dataset.n_items
        ).astype(np.float64)
        # log of each item's share of the training targets (in-batch negatives are drawn like that)
        self.item_log_q = torch.from_numpy(np.log((counts + 1.0) / (counts.sum() + dataset.n_items))).float()
        self.fit_log: list[dict[str, float]] = []
        if train:
            self._train(train, valid, rng)
        self.net.eval()

    def _keep_sequences(self, histories: list[np.ndarray]) -> None:
        tails = [h[-self.config.max_len :].astype(np.int32) for h in histories]
        self.seq_indptr = np.concatenate([[0], np.cumsum([len(t) for t in tails])]).astype(np.int64)
        self.seq_items = np.concatenate(tails) if tails else np.empty(0, np.int32)

    def _train_valid(
        self, histories: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Training sequences (1-based item indices, at least two items: one input and one target)
        and, for ``valid_users`` random users with three items or more, the held-out validation
        sequence (its last item is the target, never trained on)."""
        cfg = self.config
        cut = cfg.max_len + 1
        seqs = [h.astype(np.int64) + 1 for h in histories if len(h) >= 2]
        eligible = np.flatnonzero([len(s) >= 3 for s in seqs])
        n_valid = min(cfg.valid_users, len(eligible) // 5)  # never hold out from most users
        chosen = set(rng.choice(eligible, n_valid, replace=False).tolist()) if n_valid else set()
        valid = [seqs[i][-cut:] for i in sorted(chosen)]
        train = [s[:-1] if i in chosen else s for i, s in enumerate(seqs)]
        return train, valid

    def _batches(self, train: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Shuffled batches of sequence indices, each of similar lengths (so padding is short)."""
        bs = self.config.batch_size
        order = rng.permutation(len(train))
        lengths = np.array([min(len(s), self.config.max_len + 1) for s in train])
        group = bs * 32
        batches: list[np.ndarray] = []
        for lo in range(0, len(order), group):
            chunk = order[lo : lo + group]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + bs] for i in range(0, len(chunk), bs))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _augment(self, seq: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """The (maybe) augmented sequence, and whether its inputs should then be masked."""
        cfg = self.config
        if not cfg.augment or len(seq) < 3 or rng.random() >= cfg.augment_prob:
            return seq, False
        kind = cfg.augment[int(rng.integers(len(cfg.augment)))]
        if kind == "crop":
            return crop(seq, cfg.crop_keep, rng), False
        if kind == "reorder":
            return reorder(seq, cfg.reorder_rate, rng), False
        return seq, True

    def _batch_tensors(
        self, seqs: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        cut = cfg.max_len + 1
        inputs, targets, masked = [], [], []
        for s in seqs:
            s, mask = self._augment(s[-cut:], rng)
            inputs.append(s[:-1])
            targets.append(s[1:])
            masked.append(mask)
        length = max(len(s) for s in inputs)
        x, y = left_pad(inputs, length), left_pad(targets, length)
        for r in np.flatnonzero(masked):
            x[r] = mask_items(x[r], cfg.mask_rate, self.net.n_items + 1, rng)
        return torch.from_numpy(x), torch.from_numpy(y)

    def _loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, positions: int) -> torch.Tensor:
        """Cross-entropy summed over the real positions of ``x``, divided by ``positions`` (those
        of the whole batch: a data-parallel rank sees part of it, and the ranks' gradients then add
        up to the whole batch's)."""
        hidden = net(x)
        keep = y != PAD
        h = hidden[keep]  # only real positions reach the (expensive) output layer
        target = y[keep] - 1
        items = self.net.item_matrix()
        if self._full_softmax(self.net.n_items):
            return F.cross_entropy(h @ items.T, target, reduction="sum") / positions
        n_items = self.net.n_items
        # every rank draws the same negatives (a generator of its own, seeded alike)
        neg = torch.randint(0, n_items, (self.config.negatives,), generator=self._negatives)
        pos_logit = (h * items[target]).sum(-1, keepdim=True)
        neg_logit = h @ items[neg].T
        neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], float("-inf"))
        parts = [pos_logit, neg_logit]
        if self.config.in_batch_negatives:
            # logQ correction (Yi et al., RecSys 2019): every logit of a sampled negative is lowered
            # by the log of how often the sampler draws it, so popular items are not over-punished
            # for showing up as other shoppers' targets. Uniform draws all share one constant.
            batch = target.unique()
            q = self.item_log_q[batch] + math.log(len(target))
            in_logit = h @ items[batch].T - q[None, :]
            in_logit = in_logit.masked_fill(batch[None, :] == target[:, None], float("-inf"))
            parts = [pos_logit, neg_logit - math.log(self.config.negatives / n_items), in_logit]
        logits = torch.cat(parts, dim=1)
        return (
            F.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long), reduction="sum") / positions
        )

    def _train(self, train: list[np.ndarray], valid: list[np.ndarray], rng: np.random.Generator) -> None:
        cfg = self.config
        net = self.net
        rank, world = _data_parallel()
        # under torch.distributed (Ray Train's workers) every rank builds the same batches from the
        # same seed and trains on its share of each (rows rank::world), with the dropout masks and
        # negatives one process would draw for the whole batch; DDP sums the shares' gradients, so
        # the ranks take the steps one process takes (up to float summation order)
        model: nn.Module = nn.parallel.DistributedDataParallel(net) if world > 1 else net
        self._negatives = torch.Generator().manual_seed(cfg.seed)
        draws = net.draws
        draws.generator, draws.rank, draws.world = torch.Generator().manual_seed(cfg.seed + 1), rank, world
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        started, started_cpu = time.perf_counter(), time.process_time()
        best, best_state, stale = -1.0, None, 0
        params: list[torch.Tensor] = list(net.parameters())
        # the moving average of the weights is what gets validated and kept (Polyak averaging)
        ema = [p.detach().clone() for p in params] if cfg.ema else None
        steps = 0
        for epoch in range(cfg.epochs):
            net.train()
            total, n = 0.0, 0
            for batch in self._batches(train, rng):
                x, y = self._batch_tensors([train[i] for i in batch], rng)
                positions = max(int((y != PAD).sum()), 1)
                draws.rows = len(x)
                if world > 1:
                    x, y = x[rank::world], y[rank::world]
                loss = self._loss(model, x, y, positions) * world  # DDP averages over the ranks
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    net.items.weight[PAD].zero_()
                    if ema is not None:
                        # a short memory while there are few steps (else the random start lingers)
                        steps += 1
                        decay = min(cfg.ema, (1 + steps) / (10 + steps))
                        torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)
                total += float(loss.detach()) / world * len(batch)
                n += len(batch)
            # the budget counts CPU time per thread, not wall time: on a shared machine the neighbours'
            # load must not change what is learnt (on an idle machine the two are about equal)
            spent = (time.process_time() - started_cpu) / torch.get_num_threads()
            if world > 1:  # the fit's core-seconds: every rank's (one process would have spent them all)
                spent = _all_ranks_sum(spent)
            entry = {
                "epoch": epoch + 1,
                "loss": total / max(n, 1),
                "seconds": round(time.perf_counter() - started, 1),
                "core_seconds": round(spent, 1),
            }
            live = _swap_in(params, ema)
            if valid:
                net.eval()
                score = self._valid_ndcg(valid)
                entry["valid_ndcg@10"] = score
                if score > best:
                    best, stale = score, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
            self.fit_log.append(entry)
            log.info("sasrec epoch", **entry)
            per_epoch = spent / (epoch + 1)
            stop = stale >= cfg.patience or spent + per_epoch > cfg.max_train_seconds
            if world > 1:  # rank 0 decides for all (a rank that stopped alone would hang the others)
                stop = _rank0_says(stop)
            if stop:
                break  # (with an average, the net now holds it)
            if epoch + 1 < cfg.epochs:
                _swap_in(params, live)  # train on from the live weights
        if best_state is not None:
            net.load_state_dict(best_state)
        draws.generator, draws.rows, draws.rank, draws.world = None, 0, 0, 1

    def _valid_ndcg(self, valid: list[np.ndarray]) -> float:
        gains = []
        with torch.no_grad():
            for lo in range(0, len(valid), 1024):
                chunk = valid[lo : lo + 1024]
                scores = self._score_ordered([s[:-1] - 1 for s in chunk])
                for r, s in enumerate(chunk):
                    row = scores[r]
                    target = row[s[-1] - 1]
                    row[s[:-1] - 1] = -np.inf  # the shopper's own items are not candidates
                    rank = int((row > target).sum())
                    gains.append(1.0 / math.log2(rank + 2) if rank < 10 else 0.0)
        return float(np.mean(gains)) if gains else 0.0

    # --- scoring ------------------------------------------------------------------------------
    def _score_ordered(self, sessions: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (rows × n_items) from dense-id sequences in time order; empty ones score 0."""
        cfg = self.config
        _threads(cfg.threads)
        net = self.net  # kept in eval mode outside _train
        out = np.zeros((len(sessions), net.n_items), np.float32)
        rows = [r for r, s in enumerate(sessions) if len(s)]
        with torch.no_grad():
            items = net.item_matrix()
            for lo in range(0, len(rows), 512):
                part = rows[lo : lo + 512]
                seqs = [np.asarray(sessions[r], np.int64)[-cfg.max_len :] + 1 for r in part]
                x = torch.from_numpy(left_pad(seqs, max(len(s) for s in seqs)))
                last = net(x)[:, -1]  # left padding: the most recent item is at the right end
                out[part] = (last @ items.T).numpy()
        return out

    def _score(self, histories: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        histories = sp.csr_matrix(histories)
        users = np.asarray(users, np.int64)
        n_known = len(self.seq_indptr) - 1
        sessions = [
            self.seq_items[self.seq_indptr[u] : self.seq_indptr[u + 1]]
            if 0 <= u < n_known
            else histories.indices[histories.indptr[r] : histories.indptr[r + 1]]  # order unknown
            for r, u in enumerate(users)
        ]
        return self._score_ordered(sessions)

    def _score_sessions(self, sessions: list[np.ndarray]) -> np.ndarray:
        return self._score_ordered(sessions)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        """Item-to-item: cosine between the items' embeddings (what "similar" means to the shopper)."""
        with torch.no_grad():
            emb = F.normalize(self.net.item_matrix(), dim=1)
            return (emb[torch.as_tensor(items, dtype=torch.long)] @ emb.T).numpy()

    def _reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        if not len(history) or not len(items):
            return [self.reason_default] * len(items)
        with torch.no_grad():
            emb = self.net.item_matrix()
            hist = F.normalize(emb[torch.as_tensor(history, dtype=torch.long)], dim=1)
            block = (hist @ F.normalize(emb[torch.as_tensor(items, dtype=torch.long)], dim=1).T).numpy()
        best = block.argmax(axis=0)
        return [
            f"similar to {self._label(history[b])}" if block[b, j] > 0 else self.reason_default
            for j, b in enumerate(best)
        ]

    # --- artifacts ----------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "seq_items": self.seq_items,
            "seq_indptr": self.seq_indptr,
            "n_items": np.array([self.net.n_items], np.int64),
            **state_arrays(self.net),
        }

    def _set_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.seq_items = a["seq_items"]
        self.seq_indptr = a["seq_indptr"]
        self.net = _make_net(int(a["n_items"][0]), self.config)
        load_state(self.net, {k: v for k, v in a.items() if k.startswith("net__")})
        self.net.eval()


register_model("sasrec", SASRecRecommender)
