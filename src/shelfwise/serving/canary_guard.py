"""The canary guardrail in serving: every window, compare a live canary's conversion with the active
version's (``registry.guardrail``) and roll the canary back as soon as it is credibly worse.

One guardrail per live canary: a new candidate (or a new active version) starts a new one, whose
first window begins when it is first seen. Each window's counts come from the impression log and
the attribution rows (``window_counts``), so they cover every replica that logs to this store. The
timeline is written after each window to ``var/reports/canary-<candidate>-<start>.{json,md}``; on a
rollback the candidate pointer is cleared (``stop_canary``) and every replica's watcher follows it.
Several replicas each run a guard over the same rows and reach the same verdict; clearing the
pointer twice is harmless. The cumulative state lives in memory: a restart starts a new guard,
which is safe (the per-window test needs no history).

    watch = CanaryWatch(store, live, reports=var / "reports", window_seconds=900)
    watch.start()          # a daemon thread; watch.check(now) runs one step (tests)
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shelfwise.core.clock import now_ms
from shelfwise.core.logging import get_logger
from shelfwise.registry.guardrail import CanaryConfig, CanaryGuardrail, stop_canary, window_counts
from shelfwise.serving.deployment import LiveModels
from shelfwise.store import Store

log = get_logger(__name__)

POLL_S = 5.0  # how soon a new canary is noticed


class CanaryWatch:
    def __init__(
        self,
        store: Store,
        live: LiveModels,
        *,
        reports: Path,
        window_seconds: float,
        placement: str | None = None,
        config: CanaryConfig | None = None,
    ) -> None:
        self.store, self.live, self.reports = store, live, reports
        self.window_ms = int(window_seconds * 1000)
        self.placement = placement
        self.config = config or CanaryConfig()
        self.guard: CanaryGuardrail | None = None
        self.key: tuple[str, str] | None = None  # (active, canary) versions the guard watches
        self.since = 0  # start of the current window (ms)
        self.started = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self, now: int | None = None, *, window_ms: int | None = None) -> dict[str, Any] | None:
        """One step: notice a new canary, or, once a window has passed, judge it. Returns the
        window's timeline row when one was judged."""
        now = now_ms() if now is None else now
        window_ms = self.window_ms if window_ms is None else window_ms
        with self._lock:
            dep = self.live.current
            if dep is None or dep.candidate is None or dep.candidate_mode != "canary":
                self.guard, self.key = None, None
                return None
            key = (dep.active.version, dep.candidate.version)
            if key != self.key or self.guard is None:
                self.guard, self.key, self.since, self.started = CanaryGuardrail(self.config), key, now, now
                log.info("canary guardrail started", active=key[0], canary=key[1])
                return None
            if now - self.since < window_ms or self.guard.decision != "continue":
                return None
            counts = window_counts(
                self.store,
                placement=self.placement,
                control_version=key[0],
                canary_version=key[1],
                since=self.since,
                until=now,
            )
            row = self.guard.observe(counts)
            row["since"], row["until"] = self.since, now
            self.since = now
            self._write(key)
            log.info("canary window judged", canary=key[1], window=row["window"], decision=row["decision"])
            if row["decision"] == "rollback":
                stop_canary(self.live.registry)
                self.live.sync(force=True)
                log.warning("canary rolled back by its guardrail", canary=key[1], reason=row.get("reason"))
            return row

    def report_path(self, key: tuple[str, str] | None = None) -> Path:
        key = key or self.key
        assert key is not None
        stamp = datetime.fromtimestamp(self.started / 1000, UTC).strftime("%Y%m%dT%H%M%S")
        return self.reports / f"canary-{key[1]}-{stamp}"

    def _write(self, key: tuple[str, str]) -> None:
        assert self.guard is not None
        base = self.report_path(key)
        base.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "active": key[0],
            "canary": key[1],
            "placement": self.placement,
            "config": self.config.model_dump(),
            "decision": self.guard.decision,
            "timeline": self.guard.timeline,
        }
        base.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str))
        lines = [
            f"# Canary {key[1]} against {key[0]}: {self.guard.decision}",
            "",
            "| window | until (UTC) | control conv. | canary conv. | window z | cumulative p | decision |",
            "|---:|---|---|---|---:|---:|---|",
        ]
        for row in self.guard.timeline:
            w, cum = row.get("window_test", {}), row.get("cumulative_test", {})
            until = datetime.fromtimestamp(row["until"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            c, k = row["control"], row["canary"]
            lines.append(
                f"| {row['window']} | {until} | {c['conversions']}/{c['sessions']} | "
                f"{k['conversions']}/{k['sessions']} | {w.get('z', float('nan')):.2f} | "
                f"{cum.get('p_always_valid', float('nan')):.3g} | {row['decision']} |"
            )
        if self.guard.timeline and "reason" in self.guard.timeline[-1]:
            lines += ["", f"Rolled back: {self.guard.timeline[-1]['reason']}."]
        base.with_suffix(".md").write_text("\n".join(lines) + "\n")

    # --- the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.window_ms <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(min(POLL_S, self.window_ms / 1000)):
                try:
                    self.check()
                except Exception as exc:  # the store down: the next window tries again
                    log.warning("canary guardrail step failed", error=repr(exc))

        self._thread = threading.Thread(target=loop, name="shelfwise-canary-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
