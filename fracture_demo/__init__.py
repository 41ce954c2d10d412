"""Explainable bone-fracture X-ray classification: model zoo, preprocessing, inference, Hub I/O.

    >>> import fracture_demo as fd
    >>> fd.list_models()
    >>> clf = fd.load("assets/models/regnet")
    >>> clf.predict("xray.jpg").probability
    >>> clf.explain("xray.jpg", method="gradcam").overlay

Importing the package changes nothing in the host process and loads no torch: its names resolve on first use
(PEP 562), so that an entry point can call ``fracture_demo.runtime.apply()`` before torch loads.
"""
from __future__ import annotations

import importlib
import importlib.util

_HOMES = {
    "classifier": ("LABELS", "Explanation", "FractureClassifier", "Prediction", "load", "threshold_range"),
    "imaging": ("Decoded", "ImageError", "decode_image"),
    "prevalence": ("at_prevalence",),
    "registry": ("count_parameters", "create_model", "data_config", "family", "get_spec", "list_models"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name: str):
    if name in _HOME_OF:
        value = getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule: fd.registry, fd.imaging
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
