"""eSASRec's gated (LiGR) blocks on a synthetic sequence only attention can read: two interleaved
chains, where the next item follows from the item two steps back, never from the last one. A model
whose blocks work learns it; the very same model with its gates shut (blocks pass their input
through) cannot. Save/load keeps every score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shelfwise.features.dataset import Dataset
from shelfwise.recommend import make_model
from shelfwise.recommend.sequence_layers import LiGRBlock, SASRecBlock
from shelfwise.recommend.sequential import SASRecRecommender

CHAIN = 20  # items a0..a19 and b0..b19; a_k is followed (two steps later) by a_(k+1)


def _interleaved(n: int, length: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.integers(0, CHAIN, 2)
        seq = []
        for k in range(length // 2):
            seq += [f"a{(a + k) % CHAIN}", f"b{(b + k) % CHAIN}"]
        out.append(seq)
    return out


def _dataset(seqs: list[list[str]]) -> Dataset:
    users = [f"u{u}" for u, s in enumerate(seqs) for _ in s]
    items = [i for s in seqs for i in s]
    return Dataset.from_events(users=users, items=items, ts=list(range(len(items))))


def _accuracy(model: SASRecRecommender, seqs: list[list[str]]) -> float:
    """Share of fresh sessions whose top-scored item is the true next one."""
    sessions = [model.item_map.to_internal(s[:-1]) for s in seqs]
    top = model._score_sessions(sessions).argmax(axis=1)
    return float(
        np.mean([model.item_map.to_external([t])[0] == s[-1] for t, s in zip(top, seqs, strict=True)])
    )


@pytest.fixture(scope="module")
def trained() -> SASRecRecommender:
    model = make_model(
        "sasrec",
        layer="ligr",
        hidden=32,
        blocks=1,
        dropout=0.0,
        negatives=16,
        epochs=40,
        batch_size=32,
        lr=3e-3,
        valid_users=0,
        threads=1,
        seed=0,
    ).fit(_dataset(_interleaved(400, 12, seed=0)))
    assert isinstance(model, SASRecRecommender)
    return model


def test_gated_blocks_learn_what_only_attention_can_see(trained: SASRecRecommender) -> None:
    assert all(isinstance(b, LiGRBlock) for b in trained.net.blocks)
    fresh = _interleaved(300, 11, seed=1)  # odd length: the next item is an "a", two steps back
    assert _accuracy(trained, fresh) >= 0.8
    saved = {k: v.clone() for k, v in trained.net.state_dict().items()}
    with torch.no_grad():  # shut every gate: each block now passes its input through unchanged
        for block in trained.net.blocks:
            for gate in (block.gate1, block.gate2):
                gate.weight.zero_()
                gate.bias.fill_(-50.0)
    try:
        assert _accuracy(trained, fresh) <= 0.3  # the last item alone says nothing of the next
    finally:
        trained.net.load_state_dict(saved)


def test_save_load_round_trip_keeps_every_score(tmp_path: Path) -> None:
    seqs = _interleaved(60, 8, seed=2)
    model = make_model(
        "sasrec", layer="ligr", ema=0.9, hidden=16, blocks=2, epochs=2, valid_users=0, threads=1, negatives=8
    )
    model.fit(_dataset(seqs))
    model.save(tmp_path)
    loaded = SASRecRecommender.load(tmp_path)
    assert loaded.config.layer == "ligr" and loaded.config.ff_mult == model.config.ff_mult
    sessions = [model.item_map.to_internal(s[:5]) for s in seqs[:10]]
    np.testing.assert_array_equal(loaded._score_sessions(sessions), model._score_sessions(sessions))
    assert {n for n, _ in loaded.net.named_parameters()} == {n for n, _ in model.net.named_parameters()}


def test_the_classic_block_stays_available() -> None:
    model = make_model("sasrec", layer="sasrec", hidden=16, blocks=1, epochs=1, valid_users=0, negatives=8)
    model.fit(_dataset(_interleaved(30, 6, seed=3)))
    assert all(isinstance(b, SASRecBlock) for b in model.net.blocks)  # type: ignore[attr-defined]
