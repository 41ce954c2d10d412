"""Explainable bone-fracture X-ray classification: model zoo, preprocessing, inference, Hub I/O.

    >>> import fracture_demo as fd
    >>> fd.list_models()
    >>> clf = fd.load("assets/models/regnet")
    >>> clf.predict("xray.jpg").probability
    >>> clf.explain("xray.jpg", method="gradcam").overlay
"""
from . import runtime  # noqa: F401  (first: allocator and thread settings must precede torch)
from .classifier import LABELS, Explanation, FractureClassifier, Prediction, load, threshold_range
from .imaging import Decoded, ImageError, decode_image
from .prevalence import at_prevalence
from .registry import count_parameters, create_model, data_config, family, get_spec, list_models

__all__ = [
    "LABELS", "Decoded", "Explanation", "FractureClassifier", "ImageError", "Prediction", "at_prevalence",
    "count_parameters", "create_model", "data_config", "decode_image", "family", "get_spec", "list_models", "load",
    "threshold_range",
]
