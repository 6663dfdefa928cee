"""``model: auto``: the model a shop gets when nobody chose one, by catalogue size and memory.

The families are tried best first (EASE, then ALS, item-KNN, popularity) and the first whose fit
fits the memory budget — and, for EASE, whose n³ time stays in minutes on a few cores — is chosen.
So ``shelfwise serve`` starts for any shop: a 5k-item shop gets EASE, a 37k-item one ALS, and a
machine too small for anything else gets popularity, which needs memory linear in the catalogue.

    >>> from shelfwise.recommend.memory import MatrixShape
    >>> choose_model(MatrixShape(20_000, 5_000, 300_000), budget=8 * 10**9)[0]
    {'model': 'ease'}
    >>> choose_model(MatrixShape(20_000, 37_355, 300_000), budget=8 * 10**9)[0]
    {'model': 'als'}
"""

from __future__ import annotations

from typing import Any

from shelfwise.core.memory import format_bytes, memory_budget
from shelfwise.recommend.ease import AUTO_MAX_ITEMS
from shelfwise.recommend.memory import MatrixShape
from shelfwise.recommend.registry import make_model

AUTO = "auto"
CANDIDATES = ("ease", "als", "itemknn", "popular")


def choose_model(shape: MatrixShape, *, budget: int | None = None) -> tuple[dict[str, Any], str]:
    """The config of the best family that fits, and a sentence saying why."""
    limit = memory_budget() if budget is None else budget
    passed: list[str] = []
    for name in CANDIDATES:
        if name == "ease" and shape.n_items > AUTO_MAX_ITEMS:
            passed.append(f"ease above {AUTO_MAX_ITEMS:,} items (n³ time)")
            continue
        need = make_model(name).fit_bytes(shape)
        if need <= limit or name == CANDIDATES[-1]:
            why = f"{name} for {shape.describe()}: needs ~{format_bytes(need)} of {format_bytes(limit)}"
            return {"model": name}, why + (f"; passed over {', '.join(passed)}" if passed else "")
        passed.append(f"{name} (~{format_bytes(need)})")
    raise AssertionError("unreachable: the last candidate is always chosen")  # pragma: no cover


def resolve_config(config: dict[str, Any], shape: MatrixShape) -> tuple[dict[str, Any], str | None]:
    """``config`` itself, or the chosen model when it says ``{"model": "auto"}``."""
    if config.get("model") != AUTO:
        return config, None
    chosen, why = choose_model(shape)
    return {**chosen, **{k: v for k, v in config.items() if k != "model"}}, why
