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


# --- online: an experiment's result -----------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentGateDecision:
    """Whether an online experiment lets ``arm`` go live: ``require="win"`` needs the always-valid
    test to reject with the arm ahead on the primary metric; ``"no-loss"`` only needs it not to be
    credibly behind. Either way the experiment must be trustworthy (no sample-ratio mismatch) and no
    guardrail breached."""

    experiment: str
    arm: str
    require: str
    passed: bool
    reasons: tuple[str, ...]
    metric: str | None = None
    lift: float | None = None
    p: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "arm": self.arm,
            "require": self.require,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "metric": self.metric,
            "lift": self.lift,
            "p": self.p,
        }

    def raise_if_refused(self, candidate_version: str) -> None:
        if self.passed:
            return
        raise GateRefusedError(
            f"release gate refused {candidate_version}: experiment {self.experiment!r} arm {self.arm!r}: "
            + "; ".join(self.reasons),
            hint="let the experiment run longer, or pass force=True (--force) to activate anyway",
        )


def experiment_gate(
    status: dict[str, Any], *, arm: str | None = None, require: str = "win"
) -> ExperimentGateDecision:
    """Judge ``status`` (``ExperimentService.status``) for ``arm`` (default: the only treatment)."""
    if require not in ("win", "no-loss"):
        raise ValueError(f"require must be 'win' or 'no-loss', got {require!r}")
    if status.get("kind") == "interleaving":
        return _interleaving_gate(status, arm=arm, require=require)
    comparisons = {c["arm"]: c for c in status.get("comparisons", [])}
    if arm is None:
        if len(comparisons) != 1:
            raise ValueError(f"name the arm to gate on: {sorted(comparisons)}")
        arm = next(iter(comparisons))
    name = str(status.get("name"))
    c = comparisons.get(arm)
    if c is None:
        return ExperimentGateDecision(name, arm, require, False, (f"no treatment arm {arm!r}",))
    reasons = []
    if not status.get("trustworthy", False):
        reasons.append("sample-ratio mismatch: the split is broken, results cannot be read")
    seq = c.get("sequential")
    if seq is None:
        reasons.append(c.get("note", "no result yet"))
        return ExperimentGateDecision(name, arm, require, False, tuple(reasons))
    lift = c["lifts"].get(seq["metric"], {}).get("lift")
    ahead = seq["diff"] > 0
    if require == "win" and not (seq["reject"] and ahead):
        reasons.append(f"{seq['metric']} is not yet credibly better (always-valid p = {seq['p']:.3g})")
    if seq["reject"] and not ahead:
        reasons.append(f"{seq['metric']} is credibly worse (always-valid p = {seq['p']:.3g})")
    breached = [g["metric"] for g in c.get("guardrails", []) if g["verdict"] == "breached"]
    if breached:
        reasons.append(f"guardrail breached: {', '.join(breached)}")
    return ExperimentGateDecision(
        name, arm, require, not reasons, tuple(reasons), seq["metric"], lift, seq["p"]
    )


def _interleaving_gate(status: dict[str, Any], *, arm: str | None, require: str) -> ExperimentGateDecision:
    """An interleaving experiment judged for arm B (the challenger; naming A asks whether A holds):
    its primary credit's always-valid test must prefer the arm ("win"), or not prefer the other
    ("no-loss")."""
    names = [a["arm"] for a in status["arms"]]
    arm = names[1] if arm is None else arm
    name = str(status.get("name"))
    if arm not in names:
        return ExperimentGateDecision(name, arm, require, False, (f"no arm {arm!r}: arms are {names}",))
    result = status["credit"][status["primary_credit"]]
    sign = 1.0 if arm == names[0] else -1.0  # the credit is A minus B
    ahead = sign * result["mean"] > 0
    p = float(result["sequential_p"])
    reasons = []
    if require == "win" and not (result["sequential_reject"] and ahead):
        reasons.append(f"interleaving does not yet credibly prefer {arm} (always-valid p = {p:.3g})")
    if result["sequential_reject"] and not ahead:
        reasons.append(f"interleaving credibly prefers the other arm (always-valid p = {p:.3g})")
    metric = f"interleaving credit ({status['primary_credit']})"
    return ExperimentGateDecision(name, arm, require, not reasons, tuple(reasons), metric, None, p)
