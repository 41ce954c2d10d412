"""Does this look like a bone radiograph at all? Distance to training radiographs in the model's feature space.

A classifier answers "fractured or not" for anything, a portrait photo included. The guard measures
the Mahalanobis distance (Lee et al., 2018) of the model's pooled features at one layer (see
:func:`guard_features`) to those of its training radiographs (mean and shrunk covariance, Ledoit-Wolf), and flags inputs beyond a
threshold chosen on validation radiographs. It lives in the model folder as ``guard.safetensors``
(fitted by ``python -m train.guard``), so it travels with the model to the Hub.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

GUARD_NAME = "guard.safetensors"
NOT_A_RADIOGRAPH = "this image does not look like a radiograph"


@contextmanager
def guard_features(model: nn.Module, arch: str, layer: str | None = None) -> Iterator[list[torch.Tensor]]:
    """Capture, in any forward pass inside, the spatial mean of a layer's output: the module named ``layer``
    (``model.get_submodule``), or by default the input of the model's CAM target layer.

    Which layer separates best is measured per model (``bench/ood.py --layers``): for the bundled
    Multi-Region EfficientNet-Lite0 the CAM layer's input (96% of non-radiographs flagged; 57% one
    BatchNorm and ReLU6 later, at the classifier's input); for the both-source default at 320 px the
    output of ``blocks.5`` (98%; 94% at the CAM layer's input). A middle layer still describes the
    image, where the last ones describe mostly the fracture question.
    """
    from .registry import get_spec, reshape_transform
    captured: list[torch.Tensor] = []
    to_map = reshape_transform(arch, model) or (lambda t: t)

    def pool(t: torch.Tensor) -> None:
        captured.append(to_map(t.detach()).float().mean((2, 3)))

    handle = (model.get_submodule(layer).register_forward_hook(lambda _m, _args, out: pool(out)) if layer else
              get_spec(arch).cam_layer(model).register_forward_pre_hook(lambda _m, args: pool(args[0])))
    try:
        yield captured
    finally:
        handle.remove()


@dataclass
class RadiographGuard:
    mean: torch.Tensor  # D
    precision: torch.Tensor  # D x D (inverse of the shrunk covariance)
    threshold: float  # distances above it are flagged
    info: dict  # what it was fitted and thresholded on
    layer: str | None = None  # whose output is pooled (guard_features); None: the CAM layer's input

    @classmethod
    def fit(cls, features: np.ndarray, info: dict | None = None, layer: str | None = None) -> "RadiographGuard":
        from sklearn.covariance import LedoitWolf
        lw = LedoitWolf().fit(features.astype(np.float64))
        return cls(torch.from_numpy(lw.location_).float(), torch.from_numpy(lw.precision_).float(), float("inf"),
                   dict(info or {}), layer)

    def distance(self, features: torch.Tensor) -> torch.Tensor:
        d = features.float() - self.mean
        return ((d @ self.precision) * d).sum(-1).clamp_min(0).sqrt()

    def flags(self, features: torch.Tensor) -> torch.Tensor:
        """True for each row of ``features`` that is too far from the training radiographs."""
        return self.distance(features) > self.threshold

    def warning(self, features: torch.Tensor) -> str | None:
        """The warning for one image's features, or None if it looks like the training radiographs."""
        d = float(self.distance(features.reshape(1, -1))[0])
        if d <= self.threshold:
            return None
        return (f"{NOT_A_RADIOGRAPH} (feature distance {d:.0f} to the training radiographs, beyond {self.threshold:.0f}, "
                "which 99.5% of validation radiographs stay within): the probability is not meaningful")

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / GUARD_NAME
        save_file({"mean": self.mean.contiguous(), "precision": self.precision.contiguous()}, path,
                  metadata={"threshold": repr(self.threshold), "info": json.dumps(self.info), "layer": self.layer or ""})
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "RadiographGuard | None":
        path = Path(folder) / GUARD_NAME
        if not path.is_file():
            return None
        from safetensors import safe_open
        with safe_open(path, "pt") as fh:
            meta = fh.metadata()
        tensors = load_file(path)
        return cls(tensors["mean"], tensors["precision"], float(meta["threshold"]), json.loads(meta["info"]),
                   meta.get("layer") or None)
