"""Batched inference over decoded images: the one loop every pass over a data set uses."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fracture_demo.classifier import FractureClassifier


@torch.no_grad()
def for_batches(images: np.ndarray | torch.Tensor, batch: int, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> torch.Tensor:
    """``fn`` on each batch of ``images`` (a uint8 array or tensor, N first), without gradients; the batches'
    results concatenated (an empty tensor where ``fn`` returns nothing: a pass for its side effects)."""
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        y = fn(torch.from_numpy(x) if isinstance(x, np.ndarray) else x)
        if y is not None:
            out.append(y)
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def predict_logits(clf: FractureClassifier, images: np.ndarray, batch_size: int | None = None,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Raw logits for a uint8 N x 1 x S x S array (S = the model's input size); for a model with 4 views, each
    image's mean logit over its flips (a batch then holds a quarter of the images).

    ``batch_size`` defaults to 16 on a CPU, where throughput no longer grows beyond it and a larger batch only
    raises the peak heap that the kernel first faults in page by page (bench/cpu_time.py: batch 64 at 320 px,
    9-13% of CPU time in the kernel and 4 GB; batch 16, 5% and 2 GB, same wall time); 64 on a GPU.
    """
    kind = torch.device(device).type
    batch_size = max(1, (batch_size or (16 if kind == "cpu" else 64)) // clf.views)
    model = clf.model.to(device).eval()

    def logits(x: torch.Tensor) -> torch.Tensor:
        x = clf.normalize(x.to(device))
        if clf.views > 1:  # the model's own test-time views, as its predict() sees them
            x = clf.with_flips(x)
        with torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=kind == "cuda"):
            return clf.view_mean(model(x), len(x) // clf.views).float().cpu()
    return for_batches(images, batch_size, logits).numpy().astype(np.float32, copy=False)


def predict_probabilities(clf: FractureClassifier, images: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Calibrated P(fractured) for decoded images, as the model's own ``predict`` gives it (views, temperature, bias)."""
    return clf.probability(torch.from_numpy(predict_logits(clf, images, device=device))).numpy()
