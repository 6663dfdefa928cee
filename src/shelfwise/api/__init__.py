"""Layer 8: the FastAPI service."""
