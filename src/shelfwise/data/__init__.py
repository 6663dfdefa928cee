"""Layer 2: record schemas, dataset readers, quality control and privacy."""
