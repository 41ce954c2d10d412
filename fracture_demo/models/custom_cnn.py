"""The original study's own CNN, layer for layer.

Three blocks of 3x3 conv (padding 2) -> ReLU -> 3x3 max-pool -> BatchNorm, then five Linear
layers with ReLU between them and one logit out. For a 224x224 input its summary is exactly
the published one (6,396,417 parameters); ``tests/test_custom_cnn.py`` checks every row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CustomCNN(nn.Module):
    def __init__(self, num_classes: int = 1, in_chans: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        chans = [in_chans, 128, 256, 256]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=2) for a, b in zip(chans, chans[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in chans[1:])
        self.fcs = nn.ModuleList([nn.Linear(256 * 9 * 9, 256)] + [nn.Linear(256, 256) for _ in range(3)])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(256, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = norm(F.max_pool2d(F.relu(conv(x)), 3))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.forward_features(x), 1)
        for fc in self.fcs:
            x = self.dropout(F.relu(fc(x)))
        return self.head(x)
