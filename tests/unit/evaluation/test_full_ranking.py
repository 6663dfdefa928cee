"""Full-ranking metrics: right by hand on a tiny case, equal to a brute-force sort on real data,
independent of the batch size (memory bound), and the uncertainty tools behave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shelfwise.evaluation.ranking import evaluate, user_metrics
from shelfwise.evaluation.report import write_report
from shelfwise.evaluation.significance import bootstrap_ci, paired_test
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import leave_one_out, temporal_split
from shelfwise.recommend import make_model
from tests.unit.recommend.slices import retail_purchases, retail_sequences_file


def test_metrics_by_hand() -> None:
    # targets ranked 1st and 4th of 10 candidates, cut-off 3
    m = user_metrics(np.array([3, 0]), n_candidates=10, ks=[3])
    assert m["hr@3"] == 1.0 and m["recall@3"] == 0.5 and m["precision@3"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))
    assert m["map@3"] == pytest.approx(0.5)  # one hit at rank 1, divided by min(2, 3)
    assert m["mrr"] == 1.0
    assert m["auc"] == pytest.approx(1 - (0 + 2) / 2 / 8)


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return temporal_split(retail_purchases(), test_fraction=0.25)


@pytest.fixture(scope="module")
def knn(split):  # type: ignore[no-untyped-def]
    return make_model("itemknn").fit(split.train)


def test_ranks_match_a_brute_force_sort(split, knn) -> None:  # type: ignore[no-untyped-def]
    result = evaluate(knn, split, ks=(10,))
    train = split.train.matrix()
    for j, u in enumerate(result.users[:150]):
        s = knn.score_users(np.array([u]))[0].astype(np.float64)
        s[train[u].indices] = -np.inf
        order = np.lexsort((np.arange(len(s)), -s))  # best first, ties to the lower id
        pos = np.empty(len(s), np.int64)
        pos[order] = np.arange(len(s))
        expected = np.sort(pos[split.test[u].indices])
        assert np.sort(result.ranks[j]).tolist() == expected.tolist()
        hits = np.isin(order[:10], split.test[u].indices).sum()
        assert result.per_user["recall@10"][j] == pytest.approx(hits / split.test[u].nnz)


def test_batch_size_changes_memory_not_results(split, knn) -> None:  # type: ignore[no-untyped-def]
    small = evaluate(knn, split, max_cells=split.test.shape[1] * 7)  # 7 users at a time
    large = evaluate(knn, split)
    for key in ("recall@10", "ndcg@20", "mrr", "auc", "coverage@10", "map@10"):
        assert small.metrics[key] == pytest.approx(large.metrics[key]), key


def test_excluding_training_items_matters(split, knn) -> None:  # type: ignore[no-untyped-def]
    honest = evaluate(knn, split).metrics["recall@10"]
    leaky = evaluate(knn, split, exclude_train=False).metrics["recall@10"]
    assert honest > leaky  # bought items crowd the list when left in (targets are new items)


def test_list_metrics_tell_popularity_from_personalisation(split, knn) -> None:  # type: ignore[no-untyped-def]
    pop = evaluate(make_model("popular").fit(split.train), split).metrics
    ours = evaluate(knn, split).metrics
    assert ours["coverage@10"] > 5 * pop["coverage@10"]
    assert ours["novelty@10"] > pop["novelty@10"]
    assert ours["head_share@10"] < pop["head_share@10"] == pytest.approx(1.0)
    assert 0 < ours["diversity@10"] <= 1


def test_bootstrap_and_paired_test(split, knn) -> None:  # type: ignore[no-untyped-def]
    ours = evaluate(knn, split)
    pop = evaluate(make_model("popular").fit(split.train), split)
    lo, hi = bootstrap_ci(ours.per_user["ndcg@10"])
    assert lo < ours.metrics["ndcg@10"] < hi
    half_lo, half_hi = bootstrap_ci(ours.per_user["ndcg@10"][: len(ours.users) // 4])
    assert (half_hi - half_lo) > (hi - lo)  # fewer users, wider interval
    same = paired_test(ours.per_user["ndcg@10"], ours.per_user["ndcg@10"])
    assert same["p_value"] == 1.0 and same["diff"] == 0
    diff = paired_test(ours.per_user["ndcg@10"], pop.per_user["ndcg@10"])
    assert (diff["p_value"] < 0.05) == (diff["ci_low"] > 0 or diff["ci_high"] < 0)


def test_report_has_table_tests_and_plots(tmp_path: Path) -> None:
    data = retail_purchases()
    split = leave_one_out(data)
    results = [evaluate(make_model(n).fit(split.train), split, name=n) for n in ("popular", "itemknn")]
    paths = write_report(results, tmp_path / "report", title="retail", n_resamples=200)
    text = paths["markdown"].read_text()
    assert "| itemknn |" in text and "Paired tests against popular" in text
    for key in ("metrics_plot", "rank_plot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_agrees_with_implicits_own_evaluation() -> None:
    """The same fitted implicit ALS model, scored by implicit.evaluation and by ours, on one split
    (the retail purchases as sequences: every user has a history before the target, so no user
    is all ties, where the two libraries would break ties differently)."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k
    from threadpoolctl import threadpool_limits

    split = leave_one_out(Dataset.from_file(retail_sequences_file(), "sequences"))
    train = sp.csr_matrix(split.train.matrix())
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=16, iterations=5, random_state=0)
        model.fit(train, show_progress=False)
    theirs = ranking_metrics_at_k(model, train, split.test, K=10, show_progress=False)

    class Scorer:
        def score_users(self, users: np.ndarray) -> np.ndarray:
            return np.asarray(model.user_factors[users] @ model.item_factors.T)

    ours = evaluate(Scorer(), split, ks=(10,)).metrics
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg"], rel=1e-9)
    assert ours["recall@10"] == pytest.approx(theirs["precision"], rel=1e-9)  # one target: same thing
    assert ours["map@10"] == pytest.approx(theirs["map"], rel=1e-9)
