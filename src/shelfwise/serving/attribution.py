"""The request path's side of the feedback loop: answer ids, impressions, attribution, experiments.

Every recommendation and search answer gets an id (``rec_id`` / ``search_id``, ``core.ids.answer_id``)
and is queued as an impression (placement, served version, experiment arm, the shopper's pseudonym,
the items in order). One writer thread logs the queue in batches (``store.impressions.log_impressions``),
off the request's critical path; the queue is bounded (``impression_queue_size``): when the store
falls behind, answers are still served and the impressions that do not fit are dropped and counted
(``shelfwise_impressions_total{result="dropped"}``).

Events that cite an answer (``rec_id`` or ``search_id`` with ``position``) and carts or purchases
(carried over to the last attributed click) are handed over by the event writer after their commit;
the same thread credits them (``evaluation.attribution.attribute_events``) after logging every
impression queued before them, so an answer is always in the log before an event citing it is
judged. Each verdict counts in ``shelfwise_attributions_total{status}``.

    feedback = Feedback(store, live, metrics, settings)
    dep, arm = feedback.route(dep, placement="home", unit=pseudonym)   # an experiment's version
    rec_id = feedback.served("rec", placement="home", items=[...], version=v, user_id=pseudonym, arm=arm)
    feedback.flush()                                                   # tests: wait for the writer
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from shelfwise.core.clock import now_ms
from shelfwise.core.ids import answer_id
from shelfwise.core.logging import get_logger
from shelfwise.core.settings import Settings
from shelfwise.data.normalize import clean_id
from shelfwise.data.schemas import Event
from shelfwise.evaluation.attribution import CARRIED, AttributionConfig, attribute_events, citation
from shelfwise.evaluation.experiment_service import Assignment, ExperimentService
from shelfwise.evaluation.online_metrics import GROUPS, OnlineMetricsCollector, online_metrics
from shelfwise.registry.versions import LoadedVersion
from shelfwise.serving.deployment import Deployment, LiveModels
from shelfwise.serving.exploring import Explored
from shelfwise.serving.metrics import Metrics
from shelfwise.store import Store
from shelfwise.store.impressions import Impression, log_impressions

log = get_logger(__name__)

STATUSES = ("attributed", "unknown", "foreign", "late", "bad_position")
DAY_MS = 86_400_000
CHUNK = 1_000  # impressions per transaction
RETRY_LOAD_S = 60.0  # an arm's version that failed to load is tried again after this


def logged_version(version: str | None, interleaving: dict[str, Any] | None) -> str | None:
    """The version an impression is logged under: an interleaved answer's is both arms' versions
    (``A+B``), so per-version online metrics never count it as one version's answer."""
    if interleaving is None or not interleaving.get("versions"):
        return version
    both = "+".join(str(v) for v in interleaving["versions"])
    return both if len(both) <= 128 else version  # the column's width


def session_of(session_id: str | None) -> str | None:
    """A client's session id as the event gate stores it (so an event's session matches)."""
    if session_id is None:
        return None
    return clean_id(session_id) or None


CITING_FIELDS = ("rec_id", "search_id", "position")


def citing_in_context(fields: dict[str, Any]) -> dict[str, Any]:
    """An event's fields with ``rec_id`` / ``search_id`` / ``position`` moved into its context,
    where attribution reads them (top-level fields win over the same keys already in context)."""
    cited = {k: fields.pop(k) for k in CITING_FIELDS if k in fields}
    if cited:
        fields["context"] = {**(fields.get("context") or {}), **cited}
    return fields


class Feedback:
    """Answer ids, the impression and attribution writer, experiment routing; one per app."""

    def __init__(self, store: Store, live: LiveModels, metrics: Metrics, settings: Settings) -> None:
        self.store = store
        self.live = live
        self.config = AttributionConfig(window_hours=settings.attribution_window_hours)
        # a poll waits no longer than a request waits for the store: then the list last read answers
        self.experiments = ExperimentService(store, wait_at_most=settings.store_request_timeout)
        self.queue_size = settings.impression_queue_size
        self.flush_seconds = settings.impression_flush_ms / 1000
        self._impressions: deque[Impression] = deque()
        self._events: deque[Event] = deque()
        self._cond = threading.Condition()
        self._seq = 0  # items enqueued so far
        self._done = 0  # of those, written (or given up on)
        self._urgent = False
        self._closed = False
        self._warming: dict[str, float] = {}  # arm versions loading (or failed) since
        from prometheus_client import Counter

        r = metrics.registry
        self.attributions = Counter(
            "shelfwise_attributions",
            "events citing an answer (or carried over to one), by verdict",
            ["status"],
            registry=r,
        )
        for status in STATUSES:
            self.attributions.labels(status)
        self.impressions = Counter(
            "shelfwise_impressions",
            "served answers: logged, dropped (queue full) or failed (the store refused the batch)",
            ["result"],
            registry=r,
        )
        self._thread = threading.Thread(target=self._run, name="shelfwise-feedback", daemon=True)
        self._thread.start()
        days = settings.online_metrics_days
        self.online = OnlineMetricsCollector(
            _last_good(lambda: online_metrics(store, since=now_ms() - days * DAY_MS, by=GROUPS)),
            ttl=settings.online_metrics_ttl_seconds,
        )
        r.register(self.online)

    # --- experiments ----------------------------------------------------------------------------
    def route(
        self, dep: Deployment, *, placement: str, unit: str | None
    ) -> tuple[Deployment, Assignment | None]:
        """The deployment that answers ``unit`` on ``placement``, and its experiment arm. A running
        experiment covering the shopper takes precedence over canary routing: its arm's model
        version answers (the active one when the arm names none). An arm whose version is not in
        memory yet is loaded in the background; meanwhile the shopper gets the usual answer and no
        arm (never an arm label on another version's answer)."""
        try:
            arm = self.experiments.assignment(placement, unit)
        except Exception as exc:  # the store is down: serve as if no experiment ran
            log.warning("experiment assignment failed; serving without", error=repr(exc))
            return dep, None
        if arm is None:
            return dep, None
        loaded = self._version(dep, arm.version)
        # interleaving: both arms' versions must be in memory
        if loaded is None or (arm.kind == "interleaving" and self._version(dep, arm.partner) is None):
            return dep, None
        return Deployment(active=loaded), arm

    def partner(self, dep: Deployment, arm: Assignment | None) -> Deployment | None:
        """An interleaving experiment's arm B (the deployment that answers for it); None for any
        other answer, or when B is not in memory (``route`` made sure it is)."""
        if arm is None or arm.kind != "interleaving":
            return None
        loaded = self._version(dep, arm.partner)
        return None if loaded is None else Deployment(active=loaded)

    def _version(self, dep: Deployment, version: str | None) -> LoadedVersion | None:
        """A version in memory (None: the active one); one that is not starts loading."""
        if version is None or version == dep.active.version:
            return dep.active
        loaded = self.live.loaded(version)
        if loaded is None:
            self._warm(version)
        return loaded

    def _warm(self, version: str) -> None:
        with self._cond:
            since = self._warming.get(version)
            if since is not None and time.monotonic() - since < RETRY_LOAD_S:
                return
            self._warming[version] = time.monotonic()

        def load() -> None:
            try:
                self.live.preload(version)
                log.info("experiment arm version loaded", version=version)
            except Exception as exc:
                log.error("experiment arm version cannot load", version=version, error=repr(exc))
                return
            with self._cond:
                self._warming.pop(version, None)

        threading.Thread(target=load, name="shelfwise-arm-load", daemon=True).start()

    # --- answers --------------------------------------------------------------------------------
    def served(
        self,
        kind: str,
        *,
        placement: str,
        items: Sequence[str],
        version: str | None,
        user_id: str | None = None,
        session_id: str | None = None,
        arm: Assignment | None = None,
        query: str | None = None,
        total: int | None = None,
        propensities: Sequence[float] | None = None,
        interleaving: dict[str, Any] | None = None,
    ) -> str:
        """A new answer id for a list just served; its impression is queued (never blocks). A
        search answer also keeps its ``query`` and ``total`` (for the zero-result report).
        ``propensities``: one per position, when an exploration slot chose part of it."""
        ts = now_ms()
        aid = answer_id(ts)
        imp = Impression(
            answer_id=aid,
            kind=kind,
            placement=placement,
            items=tuple(items),
            ts=ts,
            user_id=user_id,
            session_id=session_of(session_id),
            version=version,
            experiment=arm.experiment if arm else None,
            arm=arm.arm if arm else None,
            query=query,
            total=total,
            propensities=tuple(propensities) if propensities is not None else None,
            interleaving=interleaving,
        )
        with self._cond:
            if self._closed or len(self._impressions) >= self.queue_size:
                dropped = True
            else:
                dropped = False
                self._impressions.append(imp)
                self._seq += 1
        if dropped:
            self.impressions.labels("dropped").inc()
        return aid

    def tag(
        self,
        body: dict[str, Any],
        *,
        placement: str,
        user_id: str | None = None,
        session_id: str | None = None,
        arm: Assignment | None = None,
        explored: Explored | None = None,
        interleaving: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A recommendations body (``RecommendationsOut`` as a dict) with its ``rec_id`` and arm,
        and what an exploration slot did (its propensities go with the impression); an interleaved
        answer's slot credits go with it too."""
        body["rec_id"] = self.served(
            "rec",
            placement=placement,
            items=[i["item_id"] for i in body["items"]],
            version=logged_version(body.get("model_version"), interleaving),
            user_id=user_id,
            session_id=session_id,
            arm=arm,
            propensities=explored.propensities if explored is not None else None,
            interleaving=interleaving,
        )
        body["exploration"] = explored.to_dict() if explored is not None else None
        body["experiment"] = arm.experiment if arm else None
        body["arm"] = arm.arm if arm else None
        return body

    # --- events ---------------------------------------------------------------------------------
    def committed(self, events: Sequence[Event]) -> None:
        """Told by the event writer after a commit: the events that may be credited are queued."""
        wanted = [e for e in events if citation(e) is not None or (e.type in CARRIED and e.item_id)]
        if not wanted:
            return
        with self._cond:
            room = max(0, self.queue_size - len(self._events))
            self._events.extend(wanted[:room])
            self._seq += min(room, len(wanted))
            self._urgent = True  # a shop looks at attributions soon after the click
            self._cond.notify()
        if len(wanted) > room:
            log.warning("attribution queue full; events stored but not credited", events=len(wanted) - room)
            self.attributions.labels("dropped").inc(len(wanted) - room)

    # --- the writer -----------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq
            self._urgent = True
            self._cond.notify_all()
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _take(self) -> tuple[list[Impression], list[Event], int] | None:
        with self._cond:
            if not self._closed and not self._urgent:
                self._cond.wait(self.flush_seconds)
            self._urgent = False
            if self._closed and not self._impressions and not self._events:
                return None
            imps, events = list(self._impressions), list(self._events)
            self._impressions.clear()
            self._events.clear()
            return imps, events, self._seq

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            imps, events, seq = taken
            # impressions first: an event can only cite an answer queued before it
            for start in range(0, len(imps), CHUNK):
                batch = imps[start : start + CHUNK]
                try:
                    self.impressions.labels("logged").inc(log_impressions(self.store, batch))
                except Exception as exc:
                    self.impressions.labels("failed").inc(len(batch))
                    log.warning("impressions not logged", answers=len(batch), error=repr(exc))
            if events:
                try:
                    report = attribute_events(self.store, events, config=self.config)
                    for status, n in report.counts.items():
                        self.attributions.labels(status).inc(n)
                except Exception as exc:
                    self.attributions.labels("failed").inc(len(events))
                    log.warning("events not attributed", events=len(events), error=repr(exc))
            with self._cond:
                self._done = seq
                self._cond.notify_all()


def _last_good(compute: Callable[[], list[dict[str, Any]]]) -> Callable[[], list[dict[str, Any]]]:
    """``compute``, answering its last result when it raises (the store down must not make
    ``/metrics`` fail: the other metrics say what is wrong)."""
    last: list[dict[str, Any]] = []

    def safe() -> list[dict[str, Any]]:
        nonlocal last
        try:
            last = compute()
        except Exception as exc:
            log.warning("online metrics not computed; reporting the last ones", error=repr(exc))
        return last

    return safe
