"""Which training files an epoch draws, and how often: ``--balance none|radiograph|source``.

The Multi-Region training side is ~525 radiographs in ~7,300 files (a few in 150-220 rotated
copies); FracAtlas's is ~2,350 radiographs in as many files. Drawn file by file, the copies of a
handful of radiographs fill most of an epoch.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .audit import radiograph_key
from .data import Sample

BALANCE = ("none", "radiograph", "source")


def balanced_weights(samples: list[Sample]) -> np.ndarray:
    """Sampling weights under which every radiograph counts once however many copies it has, and
    both labels weigh half: the grouped training side is ~300 radiographs, a few in 150-220 copies."""
    keys = [radiograph_key(s) for s in samples]
    copies = Counter(keys)
    per_label = Counter(k[0] for k in copies)  # distinct radiographs per label
    w = np.array([1.0 / (copies[k] * per_label[k[0]] * len(per_label)) for k in keys])
    return w / w.sum()


def source_weights(samples: list[Sample]) -> np.ndarray:
    """Every source weighs the same, and within it every radiograph once however many copies it has;
    labels as they come (the loss's positive weight evens them)."""
    keys = [(s.source, radiograph_key(s)) for s in samples]
    copies = Counter(keys)
    per_source = Counter(k[0] for k in copies)  # distinct radiographs per source
    w = np.array([1.0 / (copies[k] * per_source[k[0]] * len(per_source)) for k in keys])
    return w / w.sum()


def sample_weights(samples: list[Sample], mode: str) -> np.ndarray | None:
    """Per-file draw probabilities for ``mode``; None = every file once per epoch."""
    if mode not in BALANCE:
        raise ValueError(f"balance must be one of {', '.join(BALANCE)}, not {mode!r}")
    return {"none": lambda s: None, "radiograph": balanced_weights, "source": source_weights}[mode](samples)
