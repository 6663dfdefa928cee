"""Layer 7: fault-injection drills measuring RTO and RPO."""
