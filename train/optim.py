"""The optimizer: AdamW with weight decay on weights only, optionally with layer-wise learning-rate decay.

Layer-wise decay (``--layer-decay D``, BEiT / timm's ``param_groups_layer_decay``) gives the head the full rate
and each earlier block D times the rate of the one after it: ImageNet's early features (edges, textures) move
little while the head and the late blocks learn fractures. The schedule multiplies each group's rate by its
``lr_scale`` (:func:`apply_lr`).
"""
from __future__ import annotations

import torch
from timm.optim import param_groups_layer_decay
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW's groups; a bad ``layer_decay`` fails here, before minutes of decoding (the groups hold the
    parameters themselves, which moving the model to a device or to channels-last keeps)."""
    if layer_decay is None:
        return [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": weight_decay},
                {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    if not 0 < layer_decay <= 1:
        raise ValueError(f"--layer-decay must be in (0, 1], not {layer_decay}")
    if not hasattr(model, "group_matcher"):  # timm's fallback would put every parameter in one layer
        raise ValueError(f"--layer-decay needs a timm model that names its layers (group_matcher); "
                         f"{type(model).__name__} does not")
    return param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay)


def apply_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the scheduled rate, scaled per group where layer-wise decay gave the group a scale."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
