"""A bounded load through the load balancer: recommendations, searches and event writes with
idempotency keys, at a fixed total rate, from a few threads. Every request is recorded (time,
kind, status, latency); every event id the API acknowledged (2xx) is kept, to be found in the store.

The client does not retry: what it sees is what a shop's front end without retries would see.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import numpy as np

SEARCH_WORDS = ("heart", "lantern", "bag", "cake", "vintage", "christmas", "mug", "light", "card", "box")


@dataclass(frozen=True, slots=True)
class Record:
    t: float  # monotonic seconds at the request's start
    kind: str  # rec | search | event
    status: int  # HTTP status; 0 when no answer (connection error, timeout)
    ms: float
    journaled: bool = False
    error: str = ""  # when no answer: the client's exception (type: first words)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Load:
    """Run with ``start()``/``stop()`` (or as a context manager); read ``records`` and ``acked``."""

    url: str
    api_key: str
    users: list[str]
    items: list[str]
    rate: float = 30.0
    threads: int = 4
    event_share: float = 0.3
    search_share: float = 0.2
    timeout: float = 5.0
    records: list[Record] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    sent_events: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self) -> Load:
        self._stop.clear()
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), name=f"drill-load-{n}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=self.timeout + 2)
        self._workers.clear()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, n: int) -> None:
        rng = random.Random(n * 7919 + int(time.time()))
        interval = self.threads / self.rate
        next_at = time.monotonic() + rng.random() * interval
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at += interval
                if next_at < time.monotonic() - 1:  # fell behind (a slow answer): do not burst
                    next_at = time.monotonic()
                self._one(client, rng)

    def _one(self, client: httpx.Client, rng: random.Random) -> None:
        roll = rng.random()
        user = rng.choice(self.users)
        t0 = time.monotonic()
        event_id = None
        error = ""
        try:
            if roll < self.event_share:
                kind = "event"
                event_id = f"drill-{uuid.uuid4().hex}"
                with self._lock:
                    self.sent_events.add(event_id)
                resp = client.post(
                    "/v1/events",
                    json={"type": "view", "user_id": user, "item_id": rng.choice(self.items)},
                    headers={"X-API-Key": self.api_key, "Idempotency-Key": event_id},
                )
            elif roll < self.event_share + self.search_share:
                kind = "search"
                resp = client.get("/v1/search", params={"q": rng.choice(SEARCH_WORDS), "size": 10})
            else:
                kind = "rec"
                # a shopper's answers need a read key (the drill's admin key implies it)
                resp = client.get(
                    f"/v1/users/{user}/recommendations", params={"k": 10}, headers={"X-API-Key": self.api_key}
                )
            status = resp.status_code
            journaled = resp.headers.get("x-shelfwise-journaled") == "true"
        except httpx.HTTPError as exc:
            kind = "event" if roll < self.event_share else ("search" if roll < 0.5 else "rec")
            status, journaled = 0, False
            error = f"{type(exc).__name__}: {exc}"[:120]
        rec = Record(t0, kind, status, (time.monotonic() - t0) * 1000, journaled, error)
        with self._lock:
            self.records.append(rec)
            if event_id is not None and rec.ok:
                self.acked.add(event_id)


def summarise(records: list[Record], start: float, end: float) -> dict[str, float | int]:
    """Requests, error rate, latency percentiles and throughput of the records in ``[start, end)``."""
    window = [r for r in records if start <= r.t < end]
    n = len(window)
    errors = sum(1 for r in window if not r.ok)
    ms = np.array([r.ms for r in window if r.ok]) if n else np.array([])
    span = max(end - start, 1e-9)
    return {
        "requests": n,
        "errors": errors,
        "server_errors": sum(1 for r in window if r.status >= 500 or r.status == 0),
        "error_rate": round(errors / n, 6) if n else 0.0,
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else 0.0,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else 0.0,
        "throughput_rps": round(n / span, 2),
        "journaled_events": sum(1 for r in window if r.journaled and r.ok),
    }
