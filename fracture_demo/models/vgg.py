"""VGG19 conv stacks with a global-average-pool head, and VGG19's ImageNet start from VGG16's trunk.

torchvision's VGG19 spends 120M of its 140M parameters on the 4096-wide classifier, which would not ship as a
bundled model nor train on a CPU. :class:`VggGap` keeps the 16-conv VGG19 layout (torchvision's own
``make_layers``) and replaces the classifier by GAP + one Linear, so Grad-CAM reads its last conv. ``width`` scales
every stage (the bundled half-width VGG19-BN); :func:`deepen_vgg16` gives the plain full-width one its ImageNet
start where only VGG16's trunk exists (Net2Net deepening).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers


class VggGap(nn.Sequential):
    """features, pool, flatten, dropout, one linear logit; timm's head API (``forward_features``,
    ``forward_head``, ``get_classifier``, ``reset_classifier``) so that probes, guards and LP-FT treat it alike."""

    def __init__(self, num_classes: int = 1, width: float = 1.0, dropout: float = 0.3, batch_norm: bool = True) -> None:
        cfg = [v if v == "M" else max(8, int(v * width)) for v in cfgs["E"]]
        self.num_features = [v for v in cfg if v != "M"][-1]
        super().__init__(make_layers(cfg, batch_norm=batch_norm), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Dropout(dropout), nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self[0](x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self[3](self[2](self[1](x)))
        return x if pre_logits else self[4](x)

    def get_classifier(self) -> nn.Module:
        return self[4]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self[4] = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def vgg19_bn_gap(num_classes: int = 1, width: float = 1.0, dropout: float = 0.3) -> VggGap:
    return VggGap(num_classes, width, dropout, batch_norm=True)


def deepen_vgg16(vgg16: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VGG19's ``features.*`` state from VGG16's (Net2Net deepening, Chen et al. 2016).

    VGG19 holds VGG16's 13 convolutions: blocks 1-2 alike, and in each of blocks 3-5 three of its four. Those take
    VGG16's weights; each block's fourth starts as an identity (a Dirac kernel, zero bias): its input is a ReLU's,
    non-negative, so conv + ReLU pass it through and the untrained VGG19 computes VGG16's features exactly."""
    convs16 = _conv_indices(cfgs["D"])
    out, taken = {}, 0
    for block, (convs19, n16) in enumerate(zip(_blocks(cfgs["E"]), (2, 2, 3, 3, 3))):
        for k, i19 in enumerate(convs19):
            if k < n16:
                i16 = convs16[taken]
                taken += 1
                out[f"{i19}.weight"] = vgg16[f"features.{i16}.weight"].float()
                out[f"{i19}.bias"] = vgg16[f"features.{i16}.bias"].float()
            else:
                w = torch.zeros_like(out[f"{convs19[k - 1]}.weight"])
                nn.init.dirac_(w)
                out[f"{i19}.weight"], out[f"{i19}.bias"] = w, torch.zeros(w.shape[0])
    return out


def _conv_indices(cfg: list) -> list[int]:
    """Module index of each convolution in ``make_layers(cfg, batch_norm=False)`` (conv, ReLU; pool)."""
    idx, i = [], 0
    for v in cfg:
        if v == "M":
            i += 1
        else:
            idx.append(i)
            i += 2
    return idx


def _blocks(cfg: list) -> list[list[int]]:
    """The convolutions' module indices, block by block (a block ends at a pool)."""
    convs, blocks, current = iter(_conv_indices(cfg)), [], []
    for v in cfg:
        if v == "M":
            blocks.append(current)
            current = []
        else:
            current.append(next(convs))
    return blocks
