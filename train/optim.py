"""The optimizer and its schedule, from timm's factories: AdamW without weight decay on biases and norms
(``param_groups_weight_decay``, ``create_optimizer_v2``), optionally with layer-wise rate decay, and a cosine schedule with linear warm-up
(``CosineLRScheduler``) that can run out with the minutes as well as with the steps.

``--train-from MODULE`` freezes every parameter registered before that module (issue 38: VGG19's ImageNet blocks
1-4 stay as they came, and their backward pass, most of a step's work on 2 CPU cores, is never computed).

Layer-wise decay (``--layer-decay D``, BEiT / timm's ``param_groups_layer_decay``) gives the head the full rate
and each earlier block D times the rate of the one after it: ImageNet's early features (edges, textures) move
little while the head and the late blocks learn fractures (timm's scheduler applies each group's ``lr_scale``).
"""
from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2, param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn


def create_optimizer(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None,
                     train_from: str | None = None) -> torch.optim.Optimizer:
    """AdamW over ``model``'s learning parameters; a bad ``layer_decay`` or ``train_from`` fails here, before minutes
    of decoding (the groups hold the parameters themselves, which moving the model to a device or to channels-last keeps)."""
    if train_from is not None:
        freeze_before(model, train_from)
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ValueError(f"--layer-decay must be in (0, 1], not {layer_decay}")
    if layer_decay is not None and not hasattr(model, "group_matcher"):  # timm would put every parameter in one layer
        raise ValueError(f"--layer-decay needs a timm model that names its layers (group_matcher); "
                         f"{type(model).__name__} does not")
    # timm's groups with an empty no-decay list: a ViT's position table and class token keep their weight decay, as
    # every bundled model trained (exempted, as create_optimizer_v2 does by default, the ViT's Grad-CAM found the
    # mark of tests/test_explain.py in 3 of 8 images instead of 6 or more)
    groups = (param_groups_weight_decay(model, weight_decay, no_weight_decay_list=()) if layer_decay is None else
              param_groups_layer_decay(model, weight_decay, no_weight_decay_list=(), layer_decay=layer_decay))
    return create_optimizer_v2(groups, "adamw", lr=lr)


def freeze_before(model: nn.Module, first: str) -> int:
    """Stop gradients to every parameter registered before module ``first`` (a dotted name from
    ``model.named_modules()``, e.g. ``0.28``: VGG19's block 5); returns how many tensors stay frozen."""
    named = list(model.named_parameters())
    start = next((i for i, (n, _) in enumerate(named) if n.startswith(first + ".")), None)
    if start is None:
        raise ValueError(f"--train-from {first}: no module of that name holds parameters "
                         f"(the model's first: {', '.join(n for n, _ in named[:3])})")
    for _, p in named[:start]:
        p.requires_grad_(False)
    return start


class Schedule:
    """Warm-up then cosine to zero over ``total_steps``; :meth:`at` sets the rate for a fraction of the run
    (steps or minutes, whichever is further), so that a time budget ends the schedule with its minutes."""

    def __init__(self, opt: torch.optim.Optimizer, total_steps: int, warmup: float) -> None:
        self.total = max(1, total_steps)
        warm = int(round(warmup * self.total))
        base = opt.defaults["lr"]  # timm keeps each group at the base rate and scales it when it sets it
        self.scheduler = CosineLRScheduler(opt, t_initial=max(1, self.total - warm), warmup_t=warm, warmup_prefix=True,
                                           warmup_lr_init=base * 1e-3, lr_min=0.0, t_in_epochs=False)
        self.opt = opt

    def at(self, progress: float) -> float:
        """Set every group's rate for ``progress`` (0 to 1) of the run; returns the unscaled rate."""
        self.scheduler.step_update(min(self.total, int(progress * self.total)))
        g = self.opt.param_groups[0]
        return g["lr"] / g.get("lr_scale", 1.0)
