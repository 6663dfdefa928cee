"""A canary release played against the shopper simulator, where the truth is known: the guardrail
(``registry.guardrail``) must roll back a canary whose conversion drops within one evaluation
window of the drop, and must leave a healthy canary alone.

The active model ranks each shopper's retrieved candidates by the true attraction seen through
noise (as ranker A of the interleaving scenario). The canary ranks the same way until
``drop_at_window``; from then on it is broken: it orders the candidates at random (a feature
that silently went missing). A session converts when one of its clicks leads to a purchase; the
true conversion of each arm comes from the simulator's probabilities, the observed one from drawn
clicks and purchases.

Sessions are drawn from a population of ``pool`` simulated shoppers (their candidates retrieved
once); the broken canary's drop is a property of the simulator, not a number put in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shelfwise.evaluation.simulator import ShopperSimulator, examination
from shelfwise.registry.guardrail import CanaryConfig, CanaryGuardrail, WindowCounts


def _session_conversion(
    sim: ShopperSimulator, shoppers: Any, cand: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """P(a session converts) for each shopper: 1 - prod over slots of (1 - P(click) P(buy | click))."""
    rows = np.arange(len(shoppers))[:, None]
    k = order.shape[1]
    p_click = examination(np.arange(1, k + 1))[None, :] * sim.attraction(shoppers, cand[rows, order])
    return 1 - np.prod(1 - p_click * sim.config.conversion, axis=1)


def canary_rollback_scenario(
    sim: ShopperSimulator,
    *,
    windows: int = 8,
    sessions_per_window: int = 20_000,
    canary_share: float = 0.2,
    drop_at_window: int = 3,
    candidates: int = 30,
    k: int = 10,
    pool: int = 20_000,
    config: CanaryConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run a broken canary (random order from ``drop_at_window`` on) and a healthy one (the same
    ranker throughout) through the guardrail, window by window; returns both timelines."""
    config = config or CanaryConfig(max_windows=windows)
    out: dict[str, Any] = {
        "windows": windows,
        "sessions_per_window": sessions_per_window,
        "canary_share": canary_share,
        "drop_at_window": drop_at_window,
        "k": k,
        "config": config.model_dump(),
    }
    # a population of shoppers with their retrieved candidates, drawn once; each window's sessions
    # are drawn from it (the simulator's retrieval over the whole catalogue is the slow part)
    rng = np.random.default_rng(seed)
    shoppers = sim.sample_shoppers(pool, rng)
    cand = sim.candidates(shoppers, candidates, rng)
    logits = sim.attraction_logits(shoppers, cand)
    ranked = np.argsort(-(logits + rng.normal(size=cand.shape)), axis=1)[:, :k]
    shuffled = np.argsort(rng.random(cand.shape), axis=1)[:, :k]
    p_good = _session_conversion(sim, shoppers, cand, ranked)
    p_broken = _session_conversion(sim, shoppers, cand, shuffled)
    out["population"] = pool
    for name, broken in (("broken_canary", True), ("healthy_canary", False)):
        rng = np.random.default_rng(seed + 1)
        guard = CanaryGuardrail(config)
        rolled_back_at = None
        for w in range(1, windows + 1):
            who = rng.integers(0, pool, sessions_per_window)
            canary = rng.random(sessions_per_window) < canary_share
            p = p_good[who]
            if broken and w >= drop_at_window:
                p = np.where(canary, p_broken[who], p)
            converted = rng.random(sessions_per_window) < p
            row = guard.observe(
                WindowCounts(
                    int((~canary).sum()),
                    int(converted[~canary].sum()),
                    int(canary.sum()),
                    int(converted[canary].sum()),
                )
            )
            row["truth"] = {
                "control_conversion_true": float(p[~canary].mean()),
                "canary_conversion_true": float(p[canary].mean()),
            }
            if row["decision"] == "rollback":
                rolled_back_at = w
                break
        out[name] = {
            "timeline": guard.timeline,
            "decision": guard.decision,
            "rolled_back_at_window": rolled_back_at,
            "windows_after_drop": (rolled_back_at - drop_at_window + 1)
            if broken and rolled_back_at
            else None,
        }
    broken_run = out["broken_canary"]
    out["rolled_back"] = broken_run["decision"] == "rollback"
    out["rolled_back_within_one_window"] = broken_run["windows_after_drop"] == 1
    out["healthy_canary_kept"] = out["healthy_canary"]["decision"] != "rollback"
    return out


def timeline_markdown(result: dict[str, Any]) -> str:
    """The timelines as a markdown report."""
    lines = [
        "# Canary guardrail against the shopper simulator",
        "",
        f"{result['sessions_per_window']:,} sessions per window, {result['canary_share']:.0%} to the canary; "
        f"the broken canary orders its candidates at random from window {result['drop_at_window']} on.",
        "",
    ]
    for name in ("broken_canary", "healthy_canary"):
        run = result[name]
        lines += [
            f"## {name.replace('_', ' ')}: {run['decision']}"
            + (f" at window {run['rolled_back_at_window']}" if run["rolled_back_at_window"] else ""),
            "",
            "| window | control sessions | control conv. | canary sessions | canary conv. "
            "| true control | true canary | z (window) | p (window) | p (cumulative) | decision |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in run["timeline"]:
            wt, cum = r.get("window_test", {}), r.get("cumulative_test", {})
            nan = float("nan")
            lines.append(
                f"| {r['window']} | {r['control']['sessions']:,} | {r['control']['conversions']:,} "
                f"| {r['canary']['sessions']:,} | {r['canary']['conversions']:,} "
                f"| {r['truth']['control_conversion_true']:.4f} | {r['truth']['canary_conversion_true']:.4f} "
                f"| {wt.get('z', nan):.2f} | {wt.get('p_always_valid', nan):.3g} "
                f"| {cum.get('p_always_valid', nan):.3g} | {r['decision']} |"
            )
        lines.append("")
    return "\n".join(lines)
