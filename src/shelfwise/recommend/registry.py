"""Models by name, and ``model_from_config``: a JSON-able config (pydantic, ``extra="forbid"``) in,
an unfitted model out. Other families (SASRec, two-tower, the hybrid ranker) join with
``register_model`` from their own module; ``load`` finds them again through the saved config.

    >>> model = model_from_config({"model": "itemknn", "neighbours": 50})
    >>> type(model).__name__, model.config.neighbours
    ('ItemKNNRecommender', 50)
    >>> model_from_config({"model": "trending"}).config.mode
    'trending'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from shelfwise.recommend.base import ModelConfig, ModelError, Recommender, install_model_factory
from shelfwise.recommend.bundles import BoughtTogetherRecommender
from shelfwise.recommend.content import ContentEmbedRecommender, ContentRecommender
from shelfwise.recommend.ease import EASERecommender
from shelfwise.recommend.factorization import ALSRecommender, BPRRecommender
from shelfwise.recommend.neighbours import ItemKNNRecommender, UserKNNRecommender
from shelfwise.recommend.popularity import PopularityRecommender

# name → (class, preset config values). Presets let one class serve several named variants.
_MODELS: dict[str, tuple[type[Recommender], dict[str, Any]]] = {}
# names whose class lives in a module imported only when asked for (heavy optional deps)
_LAZY: dict[str, Callable[[], None]] = {}


def register_model(name: str, cls: type[Recommender], **preset: Any) -> None:
    """Make ``name`` known to ``model_from_config`` (and so to the CLI and the benchmarks)."""
    _MODELS[name] = (cls, preset)


def register_lazy(name: str, importer: Callable[[], None]) -> None:
    """Register a model whose module is imported (and calls ``register_model``) on first use."""
    _LAZY[name] = importer


register_model("popular", PopularityRecommender, mode="overall")
register_model("popular-category", PopularityRecommender, mode="category")
register_model("popular-decay", PopularityRecommender, mode="decay")
register_model("trending", PopularityRecommender, mode="trending")
register_model("itemknn", ItemKNNRecommender)
register_model("userknn", UserKNNRecommender)
register_model("ease", EASERecommender)
register_model("als", ALSRecommender)
register_model("bpr", BPRRecommender)
register_model("bought-together", BoughtTogetherRecommender)
register_model("content-tfidf", ContentRecommender)
register_model("content-embed", ContentEmbedRecommender)  # PyTorch loads only when one is fitted


def _import(module: str) -> Callable[[], None]:
    """An importer for ``register_lazy``: the module registers its models when imported."""

    def load() -> None:
        importlib.import_module(module)

    return load


# PyTorch models: torch is imported only when one of these is asked for
register_lazy("sasrec", _import("shelfwise.recommend.sequential"))
register_lazy("two-tower", _import("shelfwise.recommend.neural"))
register_lazy("hybrid", _import("shelfwise.recommend.hybrid"))  # LightGBM, imported when asked for


def model_names() -> list[str]:
    return sorted({*_MODELS, *_LAZY})


def _lookup(name: str) -> tuple[type[Recommender], dict[str, Any]]:
    if name not in _MODELS and name in _LAZY:
        _LAZY[name]()
    try:
        return _MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}", hint=f"known models: {', '.join(model_names())}"
        ) from None


def model_from_config(config: dict[str, Any] | ModelConfig) -> Recommender:
    """An unfitted model from a config: ``{"model": NAME, ...settings}``."""
    if isinstance(config, ModelConfig):
        config = config.model_dump()
    values = dict(config)
    name = values.get("model")
    if not isinstance(name, str):
        raise ModelError(
            "a model config needs a 'model' name", hint=f"known models: {', '.join(model_names())}"
        )
    cls, preset = _lookup(name)
    # a saved config carries the class's own name (e.g. "popular" with mode="trending")
    merged = {**preset, **values, "model": cls.name}
    try:
        cfg = cls.Config(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"invalid config for model {name!r}: {where}: {first['msg']}") from None
    return cls(cfg)


def make_model(name: str, **settings: Any) -> Recommender:
    return model_from_config({"model": name, **settings})


install_model_factory(model_from_config)  # ``Recommender.load`` builds saved models with it
