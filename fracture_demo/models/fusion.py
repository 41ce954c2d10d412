"""A fine-tuned CNN beside a frozen ImageNet CNN with a linear probe: one model, one logit.

Why: the probe on frozen ImageNet features (``train.probe``) keeps what fine-tuning on two hospitals forgets, and
their calibrated logits mixed on validation data rank another hospital's radiographs better than either alone
(``python -m train.fuse``). Both branches see the same input in one forward pass, so the flips, calibration,
thresholds, CAMs and the guard of :class:`fracture_demo.FractureClassifier` work on it unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def floor_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """The frozen branch's input: the normalised image resized to its own size (antialiased, as a photo is shrunk)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def probe_features(floor: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """What the probe reads: the floor's pooled features of a feature map, L2-normalised (``train.probe`` fits on
    the same)."""
    return F.normalize(floor.forward_head(fmap, pre_logits=True).float(), dim=1)


class Fusion(nn.Module):
    """``scales[0] * tuned(x) + scales[1] * probe(floor(x at floor_size)) + shift``.

    The probe is ``floor``'s own one-logit classifier applied to its L2-normalised pooled features, as
    ``train.probe`` fitted it; ``floor_scale`` and ``floor_shift`` map the tuned branch's normalised input to the
    floor's normalisation; ``scales`` and ``shift`` hold each branch's calibration and the mixing weight (set by
    ``train.fuse``). The tuned branch's CAM is the fusion's: the mixed logit's gradient reaches it scaled by
    ``scales[0]`` (> 0), which a Grad-CAM map normalises away.
    """

    def __init__(self, tuned: nn.Module, floor: nn.Module, floor_size: int, tuned_arch: str) -> None:
        super().__init__()
        self.tuned, self.floor, self.floor_size = tuned, floor, floor_size
        self.tuned_arch = tuned_arch  # its registry name: the fusion's CAM layer is the tuned branch's
        self.floor.requires_grad_(False)  # frozen: ImageNet features and a probe fitted on them
        self.register_buffer("scales", torch.tensor([1.0, 0.0]))
        self.register_buffer("shift", torch.zeros(()))
        # x_floor = floor_scale * x + floor_shift per channel: the tuned branch's normalisation to the floor's
        self.register_buffer("floor_scale", torch.ones(1, 3, 1, 1))
        self.register_buffer("floor_shift", torch.zeros(1, 3, 1, 1))

    def floor_logit(self, x: torch.Tensor) -> torch.Tensor:
        x = floor_input(x * self.floor_scale + self.floor_shift, self.floor_size)
        return self.floor.get_classifier()(probe_features(self.floor, self.floor.forward_features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scales[0] * self.tuned(x) + self.scales[1] * self.floor_logit(x) + self.shift
