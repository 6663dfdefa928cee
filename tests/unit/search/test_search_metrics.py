"""The evaluation arithmetic on rankings whose scores can be worked out by hand."""

from __future__ import annotations

import math

from shelfwise.search.evaluate import evaluate_rankings, mrr_at, ndcg_at, recall_at


def test_perfect_and_reversed_rankings() -> None:
    grades = {"a": 3, "b": 2, "c": 1}
    assert ndcg_at(["a", "b", "c"], grades) == 1.0
    reversed_ = ndcg_at(["c", "b", "a"], grades)
    ideal = 7 + 3 / math.log2(3) + 1 / 2
    assert math.isclose(reversed_, (1 + 3 / math.log2(3) + 7 / 2) / ideal)


def test_mrr_and_recall_count_only_relevant_grades() -> None:
    grades = {"a": 0, "b": 2, "c": 1}
    assert mrr_at(["a", "x", "b"], grades) == 1 / 3
    assert mrr_at(["a", "x", "c", "b"], grades, min_grade=2) == 1 / 4
    assert recall_at(["b", "x"], grades) == 0.5
    assert mrr_at(["x"] * 20 + ["b"], grades) == 0.0


def test_queries_without_relevant_items_are_left_out() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}}
    out = evaluate_rankings({"q1": ["a"], "q2": ["b"]}, qrels)
    assert out["queries"] == 1 and out["ndcg@10"] == 1.0
