"""Layer 7: the request path — what the API, the pages and the CLI serve through.

Deployments (live models, canary, shadow: ``deployment``), the recommendation chain with its
fallbacks (``recommending``), the search index (``search_service``), sessions and caches in the
process or Redis (``state``), the event writer (``event_writer``), erasure fan-out (``erasure``),
the catalogue follower (``catalogue``) and the files serving processes signal each other with
(``signals``), all built in one place into one typed container (``container.build_services``).
Nothing here knows about HTTP.
"""
