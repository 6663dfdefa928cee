"""Statistics for online experiments you can trust: salted assignment, a sample-ratio-mismatch check,
delta-method intervals for ratio metrics, CUPED, an always-valid sequential test and team-draft
interleaving. Pure functions over arrays; nothing here touches a store or HTTP.

References: Kohavi, Tang & Xu, *Trustworthy Online Controlled Experiments* (2020) for SRM and the
delta method; Deng et al., "Improving the sensitivity of online controlled experiments by utilizing
pre-experiment data" (WSDM 2013) for CUPED; Johari et al., "Peeking at A/B tests" (KDD 2017) for the
mixture SPRT; Radlinski, Kurup & Joachims, "How does clickthrough data reflect retrieval quality?"
(CIKM 2008) for team-draft interleaving.

    >>> assign("user-1", "hero-banner", "s1", ("control", "treatment")) == assign(
    ...     "user-1", "hero-banner", "s1", ("control", "treatment"))
    True
    >>> srm_test([10_400, 9_600], [0.5, 0.5])["flagged"]
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _stats() -> Any:
    """scipy.stats, imported on first use: it costs seconds, and every API worker imports this
    module (the guardrail) at start while few ever run a test."""
    from scipy import stats

    return stats


# --- assignment ---------------------------------------------------------------------------------


def bucket(unit_id: str, experiment: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by the unit, the experiment and its salt.

    Including the experiment and salt decorrelates experiments: the same users are not always the
    ones in the first arm. sha256's first 8 bytes give 2**64 buckets, far finer than any weight.
    """
    digest = hashlib.sha256(f"{salt}\x1f{experiment}\x1f{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(
    unit_id: str,
    experiment: str,
    salt: str,
    arms: Sequence[str],
    weights: Sequence[float] | None = None,
) -> str:
    """The arm a unit sees: deterministic (same inputs, same arm, on every replica), salted.

    ``weights`` default to equal; they need not sum to one (they are normalised) but must be >= 0.
    """
    if not arms:
        raise ValueError("an experiment needs at least one arm")
    w = np.ones(len(arms)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(arms),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(arms)} non-negative numbers, not all zero; got {weights!r}")
    edges = np.cumsum(w / w.sum())
    idx = int(np.searchsorted(edges, bucket(unit_id, experiment, salt), side="right"))
    return arms[min(idx, len(arms) - 1)]


# --- sample ratio mismatch ----------------------------------------------------------------------


def srm_test(counts: Sequence[int], weights: Sequence[float], *, alpha: float = 0.001) -> dict[str, Any]:
    """Pearson chi-square of observed arm sizes against the intended split.

    A small p-value means the assignment or the logging is broken and the experiment's results must
    not be read. The threshold is strict (0.001 by default) because the check runs on every
    experiment, every day (Kohavi et al. 2020, ch. 21).
    """
    obs = np.asarray(counts, np.float64)
    w = np.asarray(weights, np.float64)
    if obs.shape != w.shape or obs.size < 2:
        raise ValueError("srm_test needs one count and one weight per arm, at least two arms")
    total = obs.sum()
    if total <= 0:
        return {"chi2": 0.0, "p": 1.0, "flagged": False, "n": 0}
    expected = total * w / w.sum()
    chi2, p = _stats().chisquare(obs, expected)
    return {"chi2": float(chi2), "p": float(p), "flagged": bool(p < alpha), "n": int(total)}


# --- delta method -------------------------------------------------------------------------------


def _ratio_and_variance(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Ratio of means and its delta-method variance, units (e.g. users) being i.i.d."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    n = num.size
    mx, my = num.mean(), den.mean()
    if n < 2 or my == 0:
        raise ValueError("a ratio metric needs at least two units and a non-zero denominator")
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] / my**2 - 2 * mx * cov[0, 1] / my**3 + mx**2 * cov[1, 1] / my**4) / n
    return float(mx / my), float(var)


def ratio_ci(num: np.ndarray, den: np.ndarray, *, confidence: float = 0.95) -> dict[str, float]:
    """A ratio metric (e.g. clicks per impression, units being users) with its delta-method
    interval: ``{"value", "se", "low", "high", "n"}``; NaN when it is undefined (fewer than two
    units, or a zero denominator)."""
    n = int(np.asarray(num).size)
    try:
        value, var = _ratio_and_variance(num, den)
    except ValueError:
        total = float(np.sum(den))
        value = float(np.sum(num) / total) if total else float("nan")
        return {"value": value, "se": float("nan"), "low": float("nan"), "high": float("nan"), "n": n}
    se = float(np.sqrt(max(var, 0.0)))
    z = float(_stats().norm.ppf(0.5 + confidence / 2))
    return {"value": value, "se": se, "low": value - z * se, "high": value + z * se, "n": n}


def relative_lift_ci(
    num_control: np.ndarray,
    den_control: np.ndarray,
    num_treatment: np.ndarray,
    den_treatment: np.ndarray,
    *,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Relative lift of a ratio metric (e.g. clicks per session, per user) with its delta-method CI.

    The unit of randomisation (the user) is the unit of analysis: treating sessions as independent
    would understate the variance. ``lift = R_t / R_c - 1``, its variance the first-order expansion
    ``Var(R_t)/R_c^2 + R_t^2 Var(R_c)/R_c^4`` (the arms are independent).
    """
    rc, vc = _ratio_and_variance(num_control, den_control)
    rt, vt = _ratio_and_variance(num_treatment, den_treatment)
    if rc == 0:
        raise ValueError("the control ratio is zero; a relative lift is undefined")
    lift = rt / rc - 1
    se = float(np.sqrt(vt / rc**2 + rt**2 * vc / rc**4))
    z = float(_stats().norm.ppf(0.5 + confidence / 2))
    p = float(2 * _stats().norm.sf(abs(lift) / se)) if se > 0 else float(lift == 0)
    return {
        "control": rc,
        "treatment": rt,
        "lift": lift,
        "se": se,
        "low": lift - z * se,
        "high": lift + z * se,
        "p": p,
    }


# --- CUPED --------------------------------------------------------------------------------------


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """``y - theta (x - mean x)`` with ``theta = cov(x, y) / var(x)``: the same mean, less variance
    when the pre-period covariate ``x`` correlates with ``y`` (Deng et al. 2013).

    Pass the metric and covariate pooled over all arms, then split the adjusted values by arm:
    one theta for all arms keeps the difference of means unbiased.
    """
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    if y.shape != x.shape:
        raise ValueError(f"cuped needs one covariate per unit: {y.shape} vs {x.shape}")
    vx = float(np.var(x, ddof=1)) if x.size > 1 else 0.0
    theta = float(np.cov(x, y, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    return y - theta * (x - x.mean()), theta


# --- always-valid sequential test ---------------------------------------------------------------


@dataclass
class MixtureSPRT:
    """Mixture sequential probability ratio test for a difference in means (Johari et al. 2017).

    Call :meth:`update` with everything observed so far, as often as you like; the always-valid
    p-value never rises, and rejecting when it falls below alpha keeps the false-positive rate at
    most alpha however often one peeks. ``tau`` is the spread of the normal mixture over effects:
    choose it near the effect sizes you expect (in the metric's units).
    """

    tau: float
    alpha: float = 0.05
    p_value: float = 1.0

    def update(self, control: np.ndarray, treatment: np.ndarray) -> dict[str, Any]:
        c = np.asarray(control, np.float64)
        t = np.asarray(treatment, np.float64)
        if c.size < 2 or t.size < 2:
            return {"p": self.p_value, "reject": False, "diff": float("nan")}
        diff = float(t.mean() - c.mean())
        v = float(t.var(ddof=1) / t.size + c.var(ddof=1) / c.size)
        return self.update_estimate(diff, v)

    def update_estimate(self, diff: float, variance: float) -> dict[str, Any]:
        """The same test given an estimated difference and its variance (e.g. of a ratio metric,
        by the delta method): the normal approximation the mixture SPRT rests on anyway."""
        if variance > 0 and np.isfinite(diff):
            tau2 = self.tau**2
            log_lr = 0.5 * np.log(variance / (variance + tau2)) + diff**2 * tau2 / (
                2 * variance * (variance + tau2)
            )
            self.p_value = min(self.p_value, float(np.exp(-log_lr)) if log_lr > 0 else 1.0)
        return {"p": self.p_value, "reject": self.p_value < self.alpha, "diff": diff}


# --- team-draft interleaving --------------------------------------------------------------------


def team_draft(
    ranking_a: Sequence[Any], ranking_b: Sequence[Any], k: int, rng: np.random.Generator
) -> tuple[list[Any], list[int]]:
    """Interleave two rankings (Radlinski et al. 2008): the team with fewer picks so far (a coin
    decides ties) adds its best item not yet shown. Returns the list and each slot's team (0 = A,
    1 = B)."""
    shown, teams, _ = _draft(ranking_a, ranking_b, k, lambda: bool(rng.random() < 0.5))
    return shown, teams


def _turn(rankings: tuple[Sequence[Any], Sequence[Any]], ptr: list[int], side: int, shown: Any) -> int:
    """Team draft's pick rule, one step: move both pointers past items already ``shown`` and say
    which side picks (``side``, or the other when this one has nothing left)."""
    for x in (0, 1):
        while ptr[x] < len(rankings[x]) and rankings[x][ptr[x]] in shown:
            ptr[x] += 1
    return side if ptr[side] < len(rankings[side]) else 1 - side


def _draft(
    ranking_a: Sequence[Any], ranking_b: Sequence[Any], k: int, coin: Any
) -> tuple[list[Any], list[int], list[bool]]:
    """One team draft with the coin flips ``coin()`` gives (True: A picks first this round). Also
    returns, per slot, whether the pick was *shared*: a round's first pick when both teams' best
    item not yet shown was that same item, so the coin alone chose its team."""
    shown: list[Any] = []
    teams: list[int] = []
    shared: list[bool] = []
    seen: set[Any] = set()
    ptr = [0, 0]
    rankings = (ranking_a, ranking_b)
    picks = [0, 0]
    pool = len(set(ranking_a) | set(ranking_b))
    while len(shown) < min(k, pool):
        tie = picks[0] == picks[1]
        side = _turn(rankings, ptr, 0 if picks[0] < picks[1] or (tie and coin()) else 1, seen)
        ia, ib = ptr
        same = tie and ia < len(ranking_a) and ib < len(ranking_b) and ranking_a[ia] == ranking_b[ib]
        item = rankings[side][ptr[side]]
        shown.append(item)
        teams.append(side)
        shared.append(bool(same))
        seen.add(item)
        picks[side] += 1
        ptr[side] += 1
    return shown, teams, shared


def shown_propensities(
    ranking_a: Sequence[Any], ranking_b: Sequence[Any], k: int, examination: Sequence[float]
) -> dict[Any, float]:
    """``q(d)`` for every item team draft can show: the sum over slots of P(team draft puts ``d``
    there) × ``examination``[slot], exactly, over every coin sequence. A dynamic programme over
    the draft's states: after each pick the shown items are the prefixes ``A[:ia] ∪ B[:ib]`` of the
    two rankings (an item a pointer passed was picked or already shown), so the pointers and the
    teams' pick difference are the whole state, and a coin splits the mass only at a tie."""
    pool = len(set(ranking_a) | set(ranking_b))
    rankings = (ranking_a, ranking_b)
    q: dict[Any, float] = {}
    # state: (pointer into A, pointer into B, picks of A minus picks of B) -> (probability, shown)
    states: dict[tuple[int, int, int], tuple[float, frozenset[Any]]] = {(0, 0, 0): (1.0, frozenset())}
    for slot in range(min(k, pool)):
        nxt: dict[tuple[int, int, int], tuple[float, frozenset[Any]]] = {}
        for (ia, ib, diff), (prob, shown) in states.items():
            sides = ((0, 0.5), (1, 0.5)) if diff == 0 else (((0 if diff < 0 else 1), 1.0),)
            for turn, share in sides:
                ptr = [ia, ib]
                side = _turn(rankings, ptr, turn, shown)
                item = rankings[side][ptr[side]]
                mass = prob * share
                q[item] = q.get(item, 0.0) + mass * float(examination[slot])
                ptr[side] += 1
                key = (ptr[0], ptr[1], diff + (1 if side == 0 else -1))
                before = nxt.get(key)
                nxt[key] = (mass + (before[0] if before else 0.0), shown | {item})
        states = nxt
    return q


@dataclass(frozen=True)
class Interleaved:
    """A team-draft list and each slot's credit for a click there (positive favours A).

    ``team``: +1 for A's pick, -1 for B's, 0 for a shared pick (the coin alone chose its team, so
    its credit would be noise with mean zero). ``ips``: inverse-propensity credit, ``(g_A(d) -
    g_B(d)) / q(d)`` for the item ``d`` in the slot, where ``g_X`` is the DCG discount
    ``1/log2(rank + 1)`` of ``d`` in X's top k (0 outside) and ``q(d)`` the chance, over every
    coin sequence, that team draft shows ``d`` times the chance a shopper examines its slot
    (:func:`shown_propensities`); so under the position-based click model a click's expected
    credit is the two rankings' DCG difference over the items team draft can show.
    """

    items: list[Any]
    team: list[int]
    ips: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"team": self.team, "ips": self.ips}


def interleave(
    ranking_a: Sequence[Any],
    ranking_b: Sequence[Any],
    k: int,
    rng: np.random.Generator,
    examination: Sequence[float] | None = None,
) -> Interleaved:
    """A team draft of the two rankings with each slot's credits (see :class:`Interleaved`).
    ``examination``: P(a shopper looks at slot r), r = 1..k; default ``1/log2(r + 1)``."""
    shown, teams, shared = _draft(ranking_a, ranking_b, k, lambda: bool(rng.random() < 0.5))
    team = [0 if s else (1 if t == 0 else -1) for t, s in zip(teams, shared, strict=True)]
    exam = [
        float(examination[min(r, len(examination) - 1)]) if examination else 1.0 / float(np.log2(r + 2.0))
        for r in range(k)
    ]
    q = shown_propensities(ranking_a, ranking_b, k, exam)

    def gain(ranking: Sequence[Any]) -> dict[Any, float]:
        return {item: 1.0 / float(np.log2(r + 2.0)) for r, item in enumerate(ranking[:k])}

    ga, gb = gain(ranking_a), gain(ranking_b)
    ips = [round((ga.get(item, 0.0) - gb.get(item, 0.0)) / q[item], 6) for item in shown]
    return Interleaved(shown, team, ips)


def interleaving_result(
    per_unit: np.ndarray, *, tau: float, alpha: float = 0.05, p_min: float = 1.0
) -> dict[str, Any]:
    """The test of an interleaving experiment on one credit: ``per_unit`` is each unit's credit
    to A minus B summed over its answers; its mean against zero, a 95% interval and a z-test, and
    the always-valid mixture-SPRT p-value (``p_min``: its running minimum so far, ``tau``: the
    mixture's spread in credit units)."""
    x = np.asarray(per_unit, np.float64)
    n = int(x.size)
    if n < 2:
        return {
            "units": n,
            "mean": float(x.mean()) if n else 0.0,
            "se": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "p": 1.0,
            "sequential_p": p_min,
            "sequential_reject": p_min < alpha,
        }
    mean = float(x.mean())
    se = float(x.std(ddof=1) / np.sqrt(n))
    z = mean / se if se > 0 else 0.0
    p = float(2 * _stats().norm.sf(abs(z))) if se > 0 else 1.0
    seq = MixtureSPRT(tau=max(tau, 1e-12), alpha=alpha, p_value=p_min).update_estimate(mean, se * se)
    return {
        "units": n,
        "mean": mean,
        "se": se,
        "low": mean - 1.96 * se,
        "high": mean + 1.96 * se,
        "p": p,
        "sequential_p": float(seq["p"]),
        "sequential_reject": bool(seq["reject"]),
    }


def interleaving_credit(teams: Sequence[int], clicked: Sequence[bool]) -> dict[str, Any]:
    """Clicks credited to each team and the impression's winner ("a", "b" or "tie")."""
    t = np.asarray(teams, np.int64)
    c = np.asarray(clicked, bool)
    a = int((c & (t == 0)).sum())
    b = int((c & (t == 1)).sum())
    return {"a": a, "b": b, "winner": "a" if a > b else "b" if b > a else "tie"}


def interleaving_test(wins_a: int, wins_b: int) -> dict[str, float]:
    """Sign test on impressions with a winner: is the share of A's wins different from one half?"""
    n = wins_a + wins_b
    if n == 0:
        return {"delta": 0.0, "p": 1.0}
    p = float(_stats().binomtest(wins_a, n, 0.5).pvalue)
    return {"delta": (wins_a - wins_b) / n, "p": p}


def users_for_power(effect: float, variance: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Units needed per arm for a two-sided z-test to detect ``effect`` with the given power.

    ``variance`` is the per-unit variance of the statistic (for two arms: the sum of both arms'
    variances, so the figure is per arm). ``n = (z_{1-alpha/2} + z_power)^2 variance / effect^2``.
    """
    if effect == 0:
        return float("inf")
    z = float(_stats().norm.ppf(1 - alpha / 2) + _stats().norm.ppf(power))
    return z**2 * variance / effect**2
