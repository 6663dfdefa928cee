"""Layer 5: recommendation models behind the small Recommender protocol."""
