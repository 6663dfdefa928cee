"""Layer 7: disaster-recovery drills. ``run_drill`` starts a real topology on loopback (HAProxy,
API replicas as separate processes, PostgreSQL, Redis), drives a bounded load over HTTP, injects
faults and measures RTO, RPO, error rate and latency; see ``shelfwise drill``."""

from shelfwise.drills.run import run_drill
from shelfwise.drills.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "run_drill"]
