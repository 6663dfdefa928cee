"""Layer 6: leakage-free splits, full-ranking metrics, significance tests, reports."""
