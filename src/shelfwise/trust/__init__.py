"""Layer 7: the trust services the request path and the CLI call — a shopper's data export,
consent-aware recommendations, identity stitching into the store, and model cards.

Engines and stores keep the mechanisms (``shelfwise.store.ledger``/``consent``/``identities``/
``retention``, ``shelfwise.analytics.private``, ``shelfwise.evaluation.fairness``/``robustness``,
``shelfwise.recommend.explain``); this package puts them together for one request.
"""
