"""Image classifiers: each normalises its [0, 1] inputs itself, names its CAM layer and records the ``spec`` that
rebuilds it (see ``registry``)."""

from .base import ClassifierShape, ImageClassifier
from .registry import DEFAULT_MODEL, ModelInfo, available_models, build_model

__all__ = ["DEFAULT_MODEL", "ClassifierShape", "ImageClassifier", "ModelInfo", "available_models", "build_model"]
