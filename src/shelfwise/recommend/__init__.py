"""Recommendation models behind one small protocol (``Recommender``); see ``base`` and ``registry``."""

from shelfwise.recommend.base import Filters, ModelConfig, ModelError, Recommendation, Recommender
from shelfwise.recommend.registry import make_model, model_from_config, model_names, register_model

__all__ = [
    "Filters",
    "ModelConfig",
    "ModelError",
    "Recommendation",
    "Recommender",
    "make_model",
    "model_from_config",
    "model_names",
    "register_model",
]
