"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "shelfwise_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "shelfwise_http_request_seconds",
            "request duration",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "shelfwise_recommend_fallbacks",
            "a recommendation stage failed or had nothing, and the next one answered",
            ["stage", "cause"],
            registry=r,
        )
        self.model_errors = Counter(
            "shelfwise_model_errors", "model calls that raised or timed out", ["cause"], registry=r
        )
        self.served = Counter(
            "shelfwise_recommendations_served",
            "answers by the stage that produced them",
            ["source", "role"],
            registry=r,
        )
        self.cache = Counter(
            "shelfwise_result_cache", "per-user result cache lookups", ["result"], registry=r
        )
        self.shadow_overlap = Histogram(
            "shelfwise_shadow_top10_overlap",
            "top-10 overlap between the active model and the shadow candidate",
            buckets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=r,
        )
        self.events = Counter("shelfwise_events", "events received", ["result"], registry=r)
        self.deletions = Counter("shelfwise_user_deletions", "users deleted", registry=r)
        self.deletion_seconds = Histogram(
            "shelfwise_user_deletion_seconds", "time to delete a user everywhere", registry=r
        )
        self.catalogue_log_failures = Counter(
            "shelfwise_catalogue_log_failures",
            "item writes stored but not logged for the other workers (the registry's catalogue log failed)",
            registry=r,
        )
        self.active = Gauge(
            "shelfwise_active_model", "1 for the active model version", ["version"], registry=r
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def set_active(self, version: str | None) -> None:
        self.active.clear()
        if version:
            self.active.labels(version).set(1)
