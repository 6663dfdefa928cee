"""Layer 5 (engines): merchandising — placements, their rules (pin, boost, bury, block, promotions,
category caps, diversity), query rules and search management, applied to ranked candidates.

Pure engine code (``rules``, ``engine``, ``diversity``, ``search_rules``, ``placements``) plus one
service object, ``service.Merchandising``, that stores versioned documents through ``shelfwise.store``.
"""
