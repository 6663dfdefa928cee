"""The Transformer blocks of the sequence models (SASRec and eSASRec), and the network around them.

Two blocks, both pre-norm (normalise the input of each sub-layer, keep an un-normalised stream):

- ``SASRecBlock``: the classic block, ``x + attention(norm(x))`` then ``x + ffn(norm(x))``, with a
  GELU feed-forward as wide as the hidden size.
- ``LiGRBlock``: the LiGR layer (Govind et al. 2025, "From Features to Transformers", arXiv
  2502.03417) that eSASRec (Tikhonovich et al., RecSys 2025, arXiv 2508.06450) puts into SASRec:
  each sub-layer's output passes a learned sigmoid gate computed from the block's input before it
  joins the stream, ``x + σ(W·x) ⊙ attention(norm(x))``, and the feed-forward is a SwiGLU
  ``ff_mult`` times as wide as the hidden size. The gate lets a block pass its input through
  nearly untouched where attention has nothing to add (most of a short Beauty sequence).

Positions are counted from the end of the sequence (the last item is position 0), the same as
SASRec's left padding, so a batch may be as short as its longest sequence.

Dropout (of the embeddings, the sub-layers and the attention weights) draws its masks from the
net's own ``Draws``, for the *whole* batch, and keeps the rows this process holds: a data-parallel
rank training on rows ``rank::world`` of a batch drops exactly what one process training on the
whole batch drops, so the two compute the same gradients (up to float summation order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

PAD = 0  # item index 0 pads; items are 1..n; n+1 is the mask token
Layer = Literal["ligr", "sasrec"]


@dataclass
class Draws:
    """Where dropout masks come from: ``generator`` (None: torch's global one), drawn for a batch
    of ``rows`` rows of which this process holds ``rank::world`` (``rows=0``: all it is given)."""

    generator: torch.Generator | None = None
    rows: int = 0
    rank: int = 0
    world: int = 1


def dropout(x: torch.Tensor, p: float, draws: Draws, training: bool) -> torch.Tensor:
    """``F.dropout`` with the mask drawn for the whole batch and cut to this process's rows."""
    if not training or p <= 0:
        return x
    rows = draws.rows or x.shape[0]
    keep = torch.empty((rows, *x.shape[1:]), dtype=x.dtype).bernoulli_(1 - p, generator=draws.generator)
    if draws.world > 1:
        keep = keep[draws.rank :: draws.world]
    return x * keep.div_(1 - p)


class Dropout(nn.Module):
    """``nn.Dropout`` over ``dropout``: masks from the shared ``Draws``."""

    def __init__(self, p: float, draws: Draws) -> None:
        super().__init__()
        self.p = p
        self.draws = draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.draws, self.training)


def _attention(
    qkv: nn.Linear, heads: int, x: torch.Tensor, mask: torch.Tensor, drop: Dropout
) -> torch.Tensor:
    b, length, d = x.shape
    q, k, v = (t.transpose(1, 2) for t in qkv(x).view(b, length, 3, heads, d // heads).unbind(2))
    if drop.training and drop.p > 0:
        # SDPA's own dropout draws from torch's global generator, batch-shaped: spelled out here so
        # the attention weights' mask comes from the shared draws like every other one
        weights = (q @ k.transpose(-2, -1)) / math.sqrt(d // heads)
        weights = torch.softmax(weights.masked_fill(~mask, float("-inf")), dim=-1)
        out = drop(weights) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, length, d)


class SASRecBlock(nn.Module):
    """Pre-norm attention + GELU feed-forward, each added to the stream (the SASRec block)."""

    def __init__(self, hidden: int, heads: int, dropout: float, draws: Draws | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ff1 = nn.Linear(hidden, hidden)
        self.ff2 = nn.Linear(hidden, hidden)
        self.drop = Dropout(dropout, draws or Draws())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        att = _attention(self.qkv, self.heads, self.norm1(x), mask, self.drop)
        x = x + self.drop(self.proj(att))
        return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.norm2(x))))))


class LiGRBlock(nn.Module):
    """Pre-norm attention + SwiGLU feed-forward, each passing a sigmoid gate of the block's input
    before it joins the stream (the LiGR layer of eSASRec)."""

    def __init__(
        self, hidden: int, heads: int, dropout: float, ff_mult: int, draws: Draws | None = None
    ) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.gate1 = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        width = hidden * ff_mult
        self.ff_in = nn.Linear(hidden, 2 * width)  # SwiGLU: value and gate halves in one matmul
        self.ff_out = nn.Linear(width, hidden)
        self.gate2 = nn.Linear(hidden, hidden)
        self.drop = Dropout(dropout, draws or Draws())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        att = _attention(self.qkv, self.heads, self.norm1(x), mask, self.drop)
        x = x + torch.sigmoid(self.gate1(x)) * self.drop(self.proj(att))
        value, gate = self.ff_in(self.norm2(x)).chunk(2, dim=-1)
        ff = self.ff_out(self.drop(F.silu(gate) * value))
        return x + torch.sigmoid(self.gate2(x)) * self.drop(ff)


class SequenceNet(nn.Module):
    """Item + position embeddings, ``blocks`` causal blocks, a final norm; the item embeddings are
    shared between the input and the output (scores are dot products with them)."""

    def __init__(
        self,
        n_items: int,
        *,
        hidden: int,
        blocks: int,
        heads: int,
        dropout: float,
        max_len: int,
        layer: Layer,
        ff_mult: int,
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.items = nn.Embedding(n_items + 2, hidden, padding_idx=PAD)
        self.positions = nn.Embedding(max_len, hidden)
        self.draws = Draws()  # one for every dropout of the net (the trainer sets its generator and rows)
        self.drop = Dropout(dropout, self.draws)
        self.blocks = nn.ModuleList(
            LiGRBlock(hidden, heads, dropout, ff_mult, self.draws)
            if layer == "ligr"
            else SASRecBlock(hidden, heads, dropout, self.draws)
            for _ in range(blocks)
        )
        self.norm = nn.LayerNorm(hidden)
        self.scale = math.sqrt(hidden)
        nn.init.normal_(self.items.weight, std=hidden**-0.5)
        nn.init.normal_(self.positions.weight, std=hidden**-0.5)
        with torch.no_grad():
            self.items.weight[PAD].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch × length × hidden) for left-padded item indices."""
        length = seq.shape[1]
        real = seq != PAD
        pos = torch.arange(length - 1, -1, -1, device=seq.device)  # 0 = the most recent item
        x = self.items(seq) * self.scale + self.positions(pos)[None]
        x = self.drop(x) * real[..., None]
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        # a padded row may see itself, so no softmax row is all -inf (its output is never used)
        mask = (causal[None] & real[:, None, :]) | torch.eye(length, dtype=torch.bool)[None]
        mask = mask[:, None]  # broadcast over heads
        for block in self.blocks:
            x = block(x, mask) * real[..., None]
        return self.norm(x)

    def item_matrix(self) -> torch.Tensor:
        """Output embeddings of the real items (row j is item j, dense id)."""
        return self.items.weight[1 : self.n_items + 1]
