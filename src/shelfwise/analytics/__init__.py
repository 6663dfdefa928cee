"""Layer 5: shopper-behaviour analytics over the event store."""
