"""VGG19-BN feature stack with a global-average-pool head.

torchvision's VGG19 spends 120M of its 140M parameters on the 4096-wide classifier, which
would not ship as a bundled model (< 50 MB) nor train on a CPU. This keeps the 16-conv VGG19
layout (torchvision's own ``make_layers``) and replaces the classifier by GAP + one Linear.
``width`` scales every stage; the bundled model uses 0.5 (see its model card).
"""
from __future__ import annotations

from torch import nn
from torchvision.models.vgg import cfgs, make_layers


def vgg19_bn_gap(num_classes: int = 1, width: float = 1.0, dropout: float = 0.3) -> nn.Sequential:
    cfg = [v if v == "M" else max(8, int(v * width)) for v in cfgs["E"]]
    features = make_layers(cfg, batch_norm=True)
    last = [v for v in cfg if v != "M"][-1]
    return nn.Sequential(
        features,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Dropout(dropout),
        nn.Linear(last, num_classes),
    )
