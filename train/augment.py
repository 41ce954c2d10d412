"""Batch augmentation on uint8 tensors, on whatever device the batch lives (CPU or GPU).

Flips as in the original study, plus what the data itself shows: radiographs appear at any
rotation and zoom. One affine warp per image, drawn from a seeded generator (reproducible).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(batch: torch.Tensor, gen: torch.Generator, strength: str = "strong",
            masks: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """uint8 N x 1 x S x S -> float [0,1], randomly flipped / rotated / zoomed / contrast-jittered.

    ``masks`` (N x 1 x S x S, e.g. drawn fracture boxes) are moved with their images and returned beside them;
    they draw no random numbers, so the images are the same with or without them.
    """
    x = batch.float() / 255.0
    n = x.size(0)
    r = lambda *shape: torch.rand(*shape, generator=gen).to(x.device)  # noqa: E731
    flip_h = torch.where(r(n) < 0.5, -1.0, 1.0)
    flip_v = torch.where(r(n) < 0.5, -1.0, 1.0)
    if strength == "flip":
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 1, 1] = flip_h, flip_v
        x, m = _warp(x, theta, masks)
        return x if masks is None else (x, m)
    angle = (r(n) * 2 - 1) * math.pi  # any angle: the data holds copies at any angle
    scale = 0.8 + r(n) * 0.45
    shift = (r(n, 2) * 2 - 1) * 0.1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip_h, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip_h * flip_v, cos * flip_v, shift[:, 1]], 1)], 1)
    x, m = _warp(x, theta, masks)
    contrast = (0.75 + r(n) * 0.5).view(n, 1, 1, 1)
    bright = ((r(n) * 2 - 1) * 0.1).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + bright).clamp(0, 1)
    return x if masks is None else (x, m)


def _warp(x: torch.Tensor, theta: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    m = None if masks is None else F.grid_sample(masks.to(x.device, torch.float32), grid, align_corners=False)
    return F.grid_sample(x, grid, align_corners=False), m
