"""Guardrails on a canary: each evaluation window, compare the canary's conversion with the active
model's and roll the canary back as soon as it is credibly worse.

Two always-valid mixture SPRTs (Johari et al. 2017) run side by side, each at half of ``alpha``:
one on everything since the canary started (finds a small, steady drop), one on the latest window
alone (finds a sudden drop at once, however long the canary ran healthy before; its half of alpha
is split over ``max_windows`` windows, Bonferroni). A test that rejects with the canary below
control rolls it back; reading them every window never inflates false rollbacks.

    >>> guard = CanaryGuardrail(CanaryConfig())                                   # doctest: +SKIP
    >>> decision = guard.observe(WindowCounts(10_000, 700, 2_000, 95))            # doctest: +SKIP
    >>> if decision["decision"] == "rollback": stop_canary(registry)              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shelfwise.evaluation.experiments import MixtureSPRT
from shelfwise.evaluation.online_metrics import unit_sums
from shelfwise.registry.versions import ModelRegistry, Pointer
from shelfwise.store.base import Store


class CanaryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=0.5, description="false-rollback rate over the whole canary")
    tau_relative: float = Field(
        0.2, gt=0, le=1, description="mixture spread: the relative conversion drop worth catching"
    )
    max_windows: int = Field(24, ge=1, description="windows the canary runs before it is judged complete")
    min_sessions: int = Field(200, ge=2, description="per arm, before any test is read")


@dataclass(frozen=True)
class WindowCounts:
    """Sessions served and sessions that converted, per arm, in one evaluation window."""

    control_sessions: int
    control_conversions: int
    canary_sessions: int
    canary_conversions: int


def _diff_and_variance(cs: float, cc: float, ks: float, kc: float) -> tuple[float, float, float]:
    pc, pk = cc / cs, kc / ks
    return pk - pc, pc * (1 - pc) / cs + pk * (1 - pk) / ks, pc


@dataclass
class CanaryGuardrail:
    config: CanaryConfig
    timeline: list[dict[str, Any]] = field(default_factory=list)
    _total: np.ndarray = field(default_factory=lambda: np.zeros(4))
    _cumulative: MixtureSPRT | None = None
    decision: str = "continue"

    def observe(self, window: WindowCounts) -> dict[str, Any]:
        """Add one window's counts; the window's row of the timeline, with the decision
        (``continue``, ``rollback`` or ``complete``). After a rollback nothing changes."""
        if self.decision != "continue":
            return self.timeline[-1]
        c = self.config
        counts = np.array(
            [
                window.control_sessions,
                window.control_conversions,
                window.canary_sessions,
                window.canary_conversions,
            ],
            np.float64,
        )
        self._total += counts
        row: dict[str, Any] = {
            "window": len(self.timeline) + 1,
            "control": {"sessions": int(counts[0]), "conversions": int(counts[1])},
            "canary": {"sessions": int(counts[2]), "conversions": int(counts[3])},
        }
        reasons = []
        for scope, data, alpha in (
            ("cumulative_test", self._total, c.alpha / 2),
            ("window_test", counts, c.alpha / 2 / c.max_windows),
        ):
            if data[0] < c.min_sessions or data[2] < c.min_sessions:
                row[scope] = {"note": f"fewer than {c.min_sessions} sessions in an arm"}
                continue
            diff, var, level = _diff_and_variance(*data)
            tau = max(c.tau_relative * level, 1e-9)
            if scope == "cumulative_test":
                if self._cumulative is None:
                    self._cumulative = MixtureSPRT(tau=tau, alpha=alpha)
                test = self._cumulative
            else:
                test = MixtureSPRT(tau=tau, alpha=alpha)
            r = test.update_estimate(diff, var)
            z = diff / np.sqrt(var) if var > 0 else 0.0
            row[scope] = {
                "control_conversion": level,
                "canary_conversion": level + diff,
                "relative_diff": diff / level if level else float("nan"),
                "z": float(z),
                "p_always_valid": float(r["p"]),
                "alpha": alpha,
            }
            if r["reject"] and diff < 0:
                reasons.append(scope.removesuffix("_test"))
        if reasons:
            self.decision = "rollback"
            row["reason"] = f"canary conversion credibly below control ({', '.join(reasons)} test)"
        elif len(self.timeline) + 1 >= c.max_windows:
            self.decision = "complete"
        row["decision"] = self.decision
        self.timeline.append(row)
        return row


def window_counts(
    store: Store,
    *,
    placement: str | None,
    control_version: str,
    canary_version: str,
    since: int,
    until: int,
) -> WindowCounts:
    """Sessions and converted sessions of the two versions on ``placement`` (None: every
    placement) in ``[since, until)``, from the impression log and the attribution rows."""
    sums = unit_sums(store, placement=placement, since=since, until=until, by=("version",))

    def of(version: str) -> tuple[int, int]:
        s = sums.get((version,))
        return (0, 0) if s is None else (int(s["sessions"].sum()), int(s["converted_sessions"].sum()))

    (cs, cc), (ks, kc) = of(control_version), of(canary_version)
    return WindowCounts(cs, cc, ks, kc)


def stop_canary(registry: ModelRegistry) -> Pointer:
    """Roll a canary back: its traffic returns to the active version (the version stays registered)."""
    return registry.set_candidate(None)
