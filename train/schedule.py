"""The learning-rate schedule: linear warm-up, then cosine to zero, over epochs or minutes."""
from __future__ import annotations

import numpy as np


def lr_at(progress: float, warmup: float, base: float) -> float:
    """Linear warm-up, then cosine to zero; ``progress`` and ``warmup`` are fractions of the run."""
    if progress < warmup:
        return base * max(progress / warmup, 1e-3)
    t = (progress - warmup) / max(1e-9, 1 - warmup)
    return base * 0.5 * (1 + np.cos(np.pi * min(1.0, t)))
