"""Online A/B experiments over the impression log: create, assign, read, stop.

An experiment owns a slice ``[traffic_from, traffic_to)`` of a placement's traffic (a shopper's
slice position is a salted hash of their id and the placement, the same for every experiment on
it) and splits that slice into arms by its own salt. Two running experiments on one placement
whose slices and time ranges overlap would see the same shoppers, so the second is refused.

``status`` reads everything from the store: the sample-ratio-mismatch check on units per arm,
each arm's metrics with delta-method intervals, each treatment's relative lift over control,
an always-valid mixture-SPRT p-value on the primary metric (its running minimum is kept in the
store, so reading status as often as one likes never inflates false positives), CUPED on the
primary metric's per-shopper numerator when shoppers have pre-period events, and guardrails.

    >>> svc = ExperimentService(store)                                           # doctest: +SKIP
    >>> svc.create(ExperimentSpec(name="ranker-v2", placement="home", arms=[
    ...     Arm(name="control", share=0.5, version="v1"), Arm(name="v2", share=0.5, version="v2")]))
    >>> svc.assignment("home", "user-1")                                          # doctest: +SKIP
    Assignment(experiment='ranker-v2', arm='v2', version='v2', index_version=None)
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shelfwise.core.clock import now_ms
from shelfwise.core.errors import ShelfwiseError
from shelfwise.core.polled import Polled
from shelfwise.evaluation.experiments import MixtureSPRT, assign, bucket, cuped, relative_lift_ci, srm_test
from shelfwise.evaluation.online_metrics import METRICS, metrics_of, unit_sums
from shelfwise.store.base import Store
from shelfwise.store.experiments import (
    ExperimentRow,
    get_experiment,
    insert_experiment,
    list_experiments,
    pre_period_totals,
    update_experiment,
)

MetricName = Literal["ctr", "add_to_cart_rate", "conversion", "revenue_per_session"]
TRAFFIC_SALT = "placement-traffic-v1"
DAY_MS = 86_400_000
# the event type (and whether revenue) a metric's numerator counts: CUPED's pre-period covariate
COVARIATE = {
    "ctr": ("click", False),
    "add_to_cart_rate": ("cart", False),
    "conversion": ("purchase", False),
    "revenue_per_session": ("purchase", True),
}
NUMERATOR = {name: num for name, (num, _) in METRICS.items()}


class ExperimentError(ShelfwiseError):
    """An experiment cannot be created, read or stopped as asked."""

    exit_code = 2


INTERLEAVE_EXAM_SLOTS = 200  # an examination curve's longest length (slots deeper keep the last value)
Curve = list[float]  # P(a shopper looks at slot r), r = 1, 2, … (``ExperimentService.list`` hides ``list``)


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    share: float = Field(gt=0, le=1, description="share of the experiment's traffic")
    version: str | None = Field(None, max_length=128, description="model version this arm serves")
    index_version: str | None = Field(
        None, max_length=128, description="search index version this arm serves"
    )
    search_mode: Literal["bm25", "dense", "hybrid", "rrf", "ltr"] | None = Field(
        None, description="search mode this arm serves (the index version's own when none)"
    )


class Guardrail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    max_drop: float = Field(0.0, ge=0, lt=1, description="relative drop tolerated before it is breached")


class ExperimentSpec(BaseModel):
    """What an experiment is. The first arm is the control."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    placement: str = Field(min_length=1, max_length=64)
    kind: Literal["ab", "interleaving"] = Field(
        "ab",
        description="ab: each shopper sees one arm; interleaving: each answer is a team draft of the "
        "two arms' lists (model versions; on search, index versions or search modes) and clicks are "
        "credited to the arm whose pick they were",
    )
    arms: list[Arm] = Field(min_length=2, max_length=10)
    salt: str = Field(default_factory=lambda: secrets.token_hex(8), min_length=1, max_length=64)
    traffic_from: float = Field(0.0, ge=0, lt=1)
    traffic_to: float = Field(1.0, gt=0, le=1)
    primary_metric: MetricName = "ctr"
    guardrails: list[Guardrail] = Field(default_factory=list)
    start_ts: int | None = Field(None, description="ms; default now")
    end_ts: int | None = Field(None, description="ms; default open-ended (until stopped)")
    alpha: float = Field(0.05, gt=0, lt=0.5)
    tau_relative: float = Field(
        0.05, gt=0, le=1, description="mixture SPRT spread: the relative effect size one expects"
    )
    cuped_days: float = Field(14.0, ge=0, le=365, description="pre-period length for CUPED (0: off)")
    examination: list[float] | None = Field(
        None,
        min_length=1,
        max_length=INTERLEAVE_EXAM_SLOTS,
        description="interleaving: P(a shopper looks at slot r), r = 1, 2, …, which the inverse-propensity "
        "credit divides by (the last value holds deeper down); None: 1/log2(r + 1)",
    )
    examination_source: str | None = Field(
        None, max_length=300, description="where the examination curve came from (shown with the status)"
    )

    @field_validator("arms")
    @classmethod
    def _arms(cls, arms: list[Arm]) -> list[Arm]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ: {names}")
        total = sum(a.share for a in arms)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm shares must add up to 1, they add up to {total:g}")
        return arms

    @model_validator(mode="after")
    def _ranges(self) -> ExperimentSpec:
        if self.traffic_to <= self.traffic_from:
            raise ValueError(
                f"traffic_to ({self.traffic_to}) must be above traffic_from ({self.traffic_from})"
            )
        if self.start_ts is not None and self.end_ts is not None and self.end_ts <= self.start_ts:
            raise ValueError("end_ts must be after start_ts")
        if self.kind == "interleaving":
            if len(self.arms) != 2:
                raise ValueError(f"an interleaving experiment compares two arms, not {len(self.arms)}")
            a, b = self.arms
            if self.placement == "search":
                if a.version or b.version:
                    raise ValueError(
                        "a search interleaving experiment's arms name index versions and search modes, "
                        "not model versions"
                    )
                if (a.index_version, a.search_mode) == (b.index_version, b.search_mode):
                    raise ValueError(
                        "a search interleaving experiment's two arms must differ in index version or "
                        "search mode"
                    )
            else:
                if any(arm.index_version or arm.search_mode for arm in self.arms):
                    raise ValueError(
                        "index versions and search modes are for the search placement; an interleaving "
                        f"experiment on {self.placement!r} compares model versions"
                    )
                if (a.version or None) == (b.version or None):
                    raise ValueError(
                        "an interleaving experiment's two arms must serve different model versions"
                    )
        if self.examination is not None:
            if self.kind != "interleaving":
                raise ValueError(
                    "an examination curve is for interleaving experiments (their credits divide by it)"
                )
            bad = [x for x in self.examination if not 0 < x <= 1]
            if bad:
                raise ValueError(f"examination probabilities must be in (0, 1]; got {bad[0]:g}")
        return self


INTERLEAVED = "interleaved"  # the arm label of an interleaving experiment's answers
DEFAULT_EXAMINATION = "assumed: 1/log2(r + 1)"


@dataclass(frozen=True)
class Assignment:
    experiment: str
    arm: str
    version: str | None
    index_version: str | None
    search_mode: str | None = None
    # interleaving: ``version`` (``index_version``, ``search_mode``) is arm A's (None: the active
    # one, its own mode), ``partner`` (``partner_index_version``, ``partner_search_mode``) arm B's
    kind: str = "ab"
    partner: str | None = None
    partner_index_version: str | None = None
    partner_search_mode: str | None = None
    examination: tuple[float, ...] | None = None  # interleaving: the credits' examination curve


def traffic_position(unit_id: str, placement: str) -> float:
    """Where a shopper falls in a placement's traffic, in [0, 1): the same for every experiment."""
    return bucket(unit_id, placement, TRAFFIC_SALT)


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _times(spec: dict[str, Any], start: int, end: int | None) -> tuple[float, float]:
    return float(start), float("inf") if end is None else float(end)


_ByPlacement = dict[str, list[ExperimentRow]]  # the running experiments of each placement


class ExperimentService:
    """Experiments of one store. ``assignment`` is what the request path calls per answer: it
    keeps the running experiments in memory for ``cache_seconds``."""

    def __init__(
        self, store: Store, *, cache_seconds: float = 5.0, wait_at_most: float | None = None
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        # read outside any lock by one caller per poll (the others keep the list last read); a list
        # never read, or dropped by create/stop, is waited for; a list read before a create/stop is
        # not kept; a failed read is raised to the request that made it
        self._running: Polled[_ByPlacement] = Polled(
            self._read_running,
            every=cache_seconds,
            wait_for_first=True,
            wait_at_most=wait_at_most,
            name="running experiments",
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def create(self, spec: ExperimentSpec) -> ExperimentRow:
        if get_experiment(self.store, spec.name) is not None:
            raise ExperimentError(
                f"an experiment named {spec.name!r} exists already", hint="choose another --name"
            )
        start = spec.start_ts if spec.start_ts is not None else now_ms()
        mine = (spec.traffic_from, spec.traffic_to)

        def refuse_overlap(running: list[ExperimentRow]) -> None:
            for other in running:
                o = other.spec
                theirs = (float(o["traffic_from"]), float(o["traffic_to"]))
                if _overlap(mine, theirs) and _overlap(
                    _times(spec.model_dump(), start, spec.end_ts), _times(o, other.start_ts, other.end_ts)
                ):
                    raise ExperimentError(
                        f"experiment {spec.name!r} would share traffic with running experiment "
                        f"{other.name!r} on placement {spec.placement!r}: "
                        f"its traffic [{mine[0]:g}, {mine[1]:g}) overlaps "
                        f"[{theirs[0]:g}, {theirs[1]:g})",
                        hint=f"stop {other.name!r} first, or give a traffic range outside "
                        f"[{theirs[0]:g}, {theirs[1]:g})",
                    )

        row = insert_experiment(
            self.store,
            name=spec.name,
            placement=spec.placement,
            spec={**spec.model_dump(), "start_ts": start},
            start_ts=start,
            end_ts=spec.end_ts,
            check=refuse_overlap,
        )
        self._running.drop()
        return row

    def get(self, name: str) -> ExperimentRow:
        row = get_experiment(self.store, name)
        if row is None:
            raise ExperimentError(
                f"no experiment named {name!r}", hint="`shelfwise experiment list` shows them"
            )
        return row

    def list(self, *, placement: str | None = None, status: str | None = None) -> list[ExperimentRow]:
        return list_experiments(self.store, placement=placement, status=status)

    def stop(self, name: str, *, reason: str = "stopped") -> ExperimentRow:
        row = self.get(name)
        if row.status != "running":
            raise ExperimentError(f"experiment {name!r} is already {row.status}")
        update_experiment(
            self.store,
            name,
            status="stopped",
            stopped_at=now_ms(),
            state={**row.state, "stop_reason": reason},
        )
        self._running.drop()
        return self.get(name)

    # --- the request path -----------------------------------------------------------------------
    def assignment(self, placement: str, unit_id: str | None, *, now: int | None = None) -> Assignment | None:
        """The running experiment and arm that serve ``unit_id`` on ``placement``, or None (no
        experiment covers it, or no unit id: a request without a user or session is not assigned)."""
        if not unit_id:
            return None
        now = now_ms() if now is None else now
        rows = (self._running.get() or {}).get(placement)
        if not rows:  # no experiment runs here: no hash to compute (every request asks)
            return None
        position = traffic_position(unit_id, placement)
        for row in rows:
            s = row.spec
            if not (s["traffic_from"] <= position < s["traffic_to"]):
                continue
            if now < row.start_ts or (row.end_ts is not None and now >= row.end_ts):
                continue
            arms = s["arms"]
            if s.get("kind") == "interleaving":
                return Assignment(
                    row.name,
                    INTERLEAVED,
                    arms[0].get("version"),
                    arms[0].get("index_version"),
                    arms[0].get("search_mode"),
                    kind="interleaving",
                    partner=arms[1].get("version"),
                    partner_index_version=arms[1].get("index_version"),
                    partner_search_mode=arms[1].get("search_mode"),
                    examination=tuple(s["examination"]) if s.get("examination") else None,
                )
            name = assign(unit_id, row.name, s["salt"], [a["name"] for a in arms], [a["share"] for a in arms])
            arm = next(a for a in arms if a["name"] == name)
            return Assignment(
                row.name, name, arm.get("version"), arm.get("index_version"), arm.get("search_mode")
            )
        return None

    def fitted_examination(
        self,
        placement: str,
        *,
        days: float = 30.0,
        k: int = 10,
        min_lists: int = 1_000,
        min_clicks: int = 100,
    ) -> tuple[Curve, str]:
        """The chance a shopper looks at each slot of ``placement``, for an interleaving
        experiment's credits: the position-based click model (Chuklin et al. 2015) fitted by EM on
        the placement's lists of the last ``days`` whose order had chance in it (an exploration
        slot or an interleaving draft: a fixed ranker always puts the same item in the same slot,
        which cannot tell an item's pull from its slot's) and their attributed clicks; scaled so
        slot 1 is 1. Slots past ``k`` follow 1/log2(r + 1) from slot ``k``'s value. Returns the
        curve and a line saying where it came from; an error when too few lists or clicks."""
        from shelfwise.evaluation.click_models import fit_position, logged_click_log

        log = logged_click_log(
            self.store,
            k=k,
            placement=placement,
            since=now_ms() - int(days * 86_400_000),
            keep=lambda imp: imp.propensities is not None or bool(imp.interleaving),
        )
        clicks = int(log.clicks.sum())
        if len(log) < min_lists or clicks < min_clicks:
            raise ExperimentError(
                f"placement {placement!r} has {len(log):,} randomised lists of {k} or more with "
                f"{clicks:,} attributed clicks in the last {days:g} days; fitting the examination "
                f"curve needs {min_lists:,} and {min_clicks:,}",
                hint="run an exploration slot or an interleaving experiment there first, or give "
                "the curve (--examination 1,0.6,0.45,…)",
            )
        gamma = np.asarray(fit_position(log).gamma, np.float64)
        head = np.clip(gamma / max(float(gamma[0]), 1e-9), 0.01, 1.0)
        deeper = np.arange(k + 1, INTERLEAVE_EXAM_SLOTS + 1, dtype=np.float64)
        tail = head[-1] * np.log2(k + 1.0) / np.log2(deeper + 1.0)
        curve = [round(float(x), 4) for x in np.concatenate([head, np.clip(tail, 0.01, 1.0)])]
        source = (
            f"fitted: position model on {len(log):,} randomised lists ({clicks:,} clicks) of "
            f"{placement!r}, last {days:g} days; slots past {k} follow 1/log2(r + 1)"
        )
        return curve, source

    def _read_running(self, _last: _ByPlacement | None) -> _ByPlacement:
        """The running experiments by placement, from the store."""
        found: _ByPlacement = {}
        for row in list_experiments(self.store, status="running"):
            found.setdefault(row.placement, []).append(row)
        return found

    # --- reading --------------------------------------------------------------------------------
    def status(self, name: str, *, persist: bool = True) -> dict[str, Any]:
        """Everything about one experiment's results (see the module's docstring)."""
        row = self.get(name)
        spec = row.spec
        if spec.get("kind") == "interleaving":
            return self._interleaving_status(row, persist=persist)
        arm_names = [a["name"] for a in spec["arms"]]
        shares = [float(a["share"]) for a in spec["arms"]]
        sums = unit_sums(self.store, experiment=name, by=("arm",))
        per_arm = {arm: sums.get((arm,)) for arm in arm_names}
        counts = [0 if s is None else int(s["impressions"].size) for s in per_arm.values()]
        stray = sorted(str(k[0]) for k in sums if k[0] not in arm_names)
        srm = (
            srm_test(counts, shares) if sum(counts) > 0 else {"flagged": False, "p": 1.0, "chi2": 0.0, "n": 0}
        )
        out: dict[str, Any] = {
            "name": name,
            "placement": row.placement,
            "status": row.status,
            "start_ts": row.start_ts,
            "end_ts": row.end_ts,
            "stopped_at": row.stopped_at,
            "primary_metric": spec["primary_metric"],
            "arms": [],
            "srm": {**srm, "counts": dict(zip(arm_names, counts, strict=True)), "expected_shares": shares},
            "comparisons": [],
        }
        if stray:
            out["srm"]["unknown_arms"] = stray
        for arm, s in per_arm.items():
            out["arms"].append(
                {
                    "arm": arm,
                    "units": 0 if s is None else int(s["impressions"].size),
                    "totals": {}
                    if s is None
                    else {
                        k: float(s[k].sum())
                        for k in ("impressions", "sessions", "clicks", "carts", "purchases", "revenue")
                    },
                    "metrics": {} if s is None or s["impressions"].size == 0 else metrics_of(s),
                }
            )
        control = per_arm[arm_names[0]]
        state = dict(row.state)
        msprt_min = dict(state.get("msprt_min_p", {}))
        for arm in arm_names[1:]:
            treat = per_arm[arm]
            comparison: dict[str, Any] = {"arm": arm, "control": arm_names[0]}
            if (
                control is None
                or treat is None
                or control["impressions"].size < 2
                or treat["impressions"].size < 2
            ):
                comparison["note"] = "not enough units in both arms yet"
                out["comparisons"].append(comparison)
                continue
            lifts: dict[str, Any] = {}
            for metric, (num, den) in METRICS.items():
                try:
                    lifts[metric] = relative_lift_ci(control[num], control[den], treat[num], treat[den])
                except ValueError as exc:
                    lifts[metric] = {"note": str(exc)}
            comparison["lifts"] = lifts
            comparison["sequential"] = self._sequential(spec, control, treat, msprt_min.get(arm, 1.0))
            msprt_min[arm] = comparison["sequential"]["p"]
            comparison["cuped"] = self._cuped(row, control, treat)
            comparison["guardrails"] = [_guardrail(g, lifts.get(g["metric"], {})) for g in spec["guardrails"]]
            out["comparisons"].append(comparison)
        out["guardrails_breached"] = sorted(
            {
                g["metric"]
                for c in out["comparisons"]
                for g in c.get("guardrails", [])
                if g["verdict"] == "breached"
            }
        )
        out["trustworthy"] = not srm["flagged"] and not stray
        if persist and msprt_min != state.get("msprt_min_p"):
            update_experiment(self.store, name, state={**state, "msprt_min_p": msprt_min})
        return out

    def _interleaving_status(self, row: ExperimentRow, *, persist: bool) -> dict[str, Any]:
        """An interleaving experiment's results: per shopper (the unit), the clicks credited to A
        minus those credited to B over all their answers, tested against zero (a heavy shopper is
        one unit, not many), by each credit (``evaluation.experiments.interleaving_result``)."""
        from shelfwise.evaluation.experiments import interleaving_result
        from shelfwise.store.impressions import clicked_positions, iter_impressions

        spec = row.spec
        arms = [a["name"] for a in spec["arms"]]
        shown = [i for i in iter_impressions(self.store, experiment=row.name) if i.interleaving]
        clicks = clicked_positions(self.store, [i.answer_id for i in shown])
        keys = ("team", "ips")
        # per shopper: credit A minus B, and the credit's size (the mixture's scale)
        per_unit: dict[str, dict[str, float]] = {key: defaultdict(float) for key in keys}
        magnitude: dict[str, dict[str, float]] = {key: defaultdict(float) for key in keys}
        wins = {"a": 0, "b": 0, "tie": 0}
        n_clicks = 0
        for imp in shown:
            unit = imp.user_id or imp.session_id or imp.answer_id
            credits = imp.interleaving or {}
            got = dict.fromkeys(keys, 0.0)
            for pos in clicks.get(imp.answer_id, ()):
                n_clicks += 1
                for key in keys:
                    slots = credits.get(key) or ()
                    if 1 <= pos <= len(slots):
                        got[key] += float(slots[pos - 1])
                        magnitude[key][unit] += abs(float(slots[pos - 1]))
            for key in keys:
                per_unit[key][unit] += got[key]  # a shopper without clicks counts, at zero
            wins["a" if got["team"] > 0 else "b" if got["team"] < 0 else "tie"] += 1
        units = list(per_unit["team"])
        state = dict(row.state)
        p_min = dict(state.get("msprt_min_p", {}))
        results = {}
        for key in ("ips", "team"):
            size = [magnitude[key][u] for u in units]
            results[key] = interleaving_result(
                np.array([per_unit[key][u] for u in units]),
                tau=float(spec["tau_relative"]) * float(np.mean(size)) if units else 0.0,
                alpha=float(spec["alpha"]),
                p_min=float(p_min.get(key, 1.0)),
            )
            p_min[key] = results[key]["sequential_p"]
        head = results["ips"]  # every served answer carries its propensity credits
        out: dict[str, Any] = {
            "name": row.name,
            "kind": "interleaving",
            "placement": row.placement,
            "status": row.status,
            "start_ts": row.start_ts,
            "end_ts": row.end_ts,
            "stopped_at": row.stopped_at,
            "arms": [
                {
                    "arm": name,
                    "role": role,
                    "version": arm.get("version"),
                    "index_version": arm.get("index_version"),
                    "search_mode": arm.get("search_mode"),
                }
                for name, role, arm in zip(arms, "AB", spec["arms"], strict=True)
            ],
            "units": len(units),
            "impressions": len(shown),
            "clicks": n_clicks,
            "impression_wins": {arms[0]: wins["a"], arms[1]: wins["b"], "tie": wins["tie"]},
            "credit": {"inverse_propensity": results["ips"], "team_draft": results["team"]},
            "primary_credit": "inverse_propensity",
            "examination": spec.get("examination"),
            "examination_source": spec.get("examination_source") or DEFAULT_EXAMINATION,
            "preferred": (arms[0] if head["mean"] > 0 else arms[1]) if head["sequential_reject"] else None,
            "trustworthy": True,
        }
        if persist and p_min != state.get("msprt_min_p"):
            update_experiment(self.store, row.name, state={**state, "msprt_min_p": p_min})
        return out

    def _sequential(
        self, spec: dict[str, Any], control: dict[str, np.ndarray], treat: dict[str, np.ndarray], p_min: float
    ) -> dict[str, Any]:
        from shelfwise.evaluation.experiments import ratio_ci

        num, den = METRICS[spec["primary_metric"]]
        c = ratio_ci(control[num], control[den])
        t = ratio_ci(treat[num], treat[den])
        diff = t["value"] - c["value"]
        variance = t["se"] ** 2 + c["se"] ** 2
        # the mixture's spread in the metric's units: the expected relative effect × the control's
        # level (the level is read from control only, never from the difference being tested)
        tau = max(float(spec["tau_relative"]) * abs(c["value"]), 1e-12)
        test = MixtureSPRT(tau=tau, alpha=float(spec["alpha"]), p_value=float(p_min))
        r = (
            test.update_estimate(float(diff), float(variance))
            if np.isfinite(variance)
            else {"p": p_min, "reject": p_min < spec["alpha"], "diff": diff}
        )
        return {
            "metric": spec["primary_metric"],
            "diff": float(diff),
            "tau": tau,
            "p": float(r["p"]),
            "reject": bool(r["reject"]),
            "alpha": float(spec["alpha"]),
        }

    def _cuped(
        self, row: ExperimentRow, control: dict[str, np.ndarray], treat: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        spec = row.spec
        days = float(spec.get("cuped_days", 0.0))
        metric = spec["primary_metric"]
        if days <= 0:
            return {"applied": False, "reason": "cuped_days is 0"}
        event_type, revenue = COVARIATE[metric]
        units = [str(u) for u in np.concatenate([control["unit"], treat["unit"]])]
        pre = pre_period_totals(
            self.store,
            units,
            event_type=event_type,
            since=row.start_ts - int(days * DAY_MS),
            until=row.start_ts,
            revenue=revenue,
        )
        if not pre:
            return {"applied": False, "reason": "no shopper in the experiment has pre-period events"}
        num = NUMERATOR[metric]
        y = np.concatenate([control[num], treat[num]])
        x = np.array([pre.get(u, 0.0) for u in units])
        adjusted, theta = cuped(y, x)
        n_c = control[num].size
        ones_c, ones_t = np.ones(n_c), np.ones(y.size - n_c)
        try:
            raw = relative_lift_ci(y[:n_c], ones_c, y[n_c:], ones_t)
            adj = relative_lift_ci(adjusted[:n_c], ones_c, adjusted[n_c:], ones_t)
        except ValueError as exc:
            return {"applied": False, "reason": str(exc)}
        reduction = 1 - float(np.var(adjusted, ddof=1) / np.var(y, ddof=1)) if np.var(y) > 0 else 0.0

        def se_diff(v: np.ndarray) -> float:
            return float(np.sqrt(np.var(v[:n_c], ddof=1) / n_c + np.var(v[n_c:], ddof=1) / (v.size - n_c)))

        return {
            "applied": True,
            "metric": f"{num} per unit",
            "covariate": f"{event_type} {'revenue' if revenue else 'events'} "
            f"in the {days:g} days before the start",
            "theta": theta,
            "units_with_pre_period": len(pre),
            "variance_reduction": reduction,
            "lift": adj,
            "lift_unadjusted": raw,
            "diff_se": se_diff(adjusted),
            "diff_se_unadjusted": se_diff(y),
        }


def _guardrail(g: dict[str, Any], lift: dict[str, Any]) -> dict[str, Any]:
    """``breached``: significantly worse than control and by more than ``max_drop``; ``ok``: the
    interval's low end is above ``-max_drop`` (non-inferior); else ``inconclusive``."""
    out = {"metric": g["metric"], "max_drop": g["max_drop"]}
    if "lift" not in lift:
        return {**out, "verdict": "inconclusive", "note": lift.get("note", "no data")}
    low, high, point = lift["low"], lift["high"], lift["lift"]
    if high < 0 and point < -g["max_drop"]:
        verdict = "breached"
    elif low > -g["max_drop"] or (g["max_drop"] == 0 and low >= 0):
        verdict = "ok"
    else:
        verdict = "inconclusive"
    return {**out, "verdict": verdict, "lift": point, "low": low, "high": high}
