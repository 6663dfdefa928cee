"""shelfwise: search, recommendations and shopper-behaviour analytics for an online shop."""

__version__ = "0.1.0"
