"""Layer 7: the pipeline's steps on an engine — in this process, or on a Ray cluster.

>>> with open_engine("ray") as engine:                                     # doctest: +SKIP
...     outcome, scoring = train(engine, Dataset.from_store(store), ModelRegistry("var/models"))
"""

from shelfwise.distributed.engine import ADDRESS_ENV, Engine, LocalEngine, RayEngine, open_engine
from shelfwise.distributed.pipeline import embed, fit_and_evaluate, ingest_events, score_all, train

__all__ = [
    "ADDRESS_ENV",
    "Engine",
    "LocalEngine",
    "RayEngine",
    "embed",
    "fit_and_evaluate",
    "ingest_events",
    "open_engine",
    "score_all",
    "train",
]
