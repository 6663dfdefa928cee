"""Layer 4: interaction matrices with id maps, time splits, user/item profiles, text analysis, embeddings."""
