"""Layer 5: product search: indexing, retrieval, query understanding, ranking."""
