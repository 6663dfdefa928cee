"""The release gate: a candidate goes live only if it is at least as good as the active model on
the *same* held-out set.

Metrics recorded by two versions trained at different times come from different test periods and
cannot be compared. So the gate refits the active version's config on the candidate's training
part and evaluates both on the candidate's held-out part; only then are the numbers comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shelfwise.registry.versions import GateRefusedError


@dataclass(frozen=True)
class GateDecision:
    metric: str
    candidate: float
    active: float | None  # None: nothing active, the candidate passes
    active_version: str | None
    tolerance: float = 0.0

    @property
    def passed(self) -> bool:
        return self.active is None or self.candidate >= self.active - self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "candidate": self.candidate,
            "active": self.active,
            "active_version": self.active_version,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }

    def raise_if_refused(self, candidate_version: str) -> None:
        if self.passed:
            return
        raise GateRefusedError(
            f"release gate refused {candidate_version}: held-out {self.metric} {self.candidate:.4f} is worse "
            f"than the active {self.active_version} ({self.active:.4f}) on the same split",
            hint="the version stays registered but inactive; pass force=True (--force) to activate anyway",
        )
