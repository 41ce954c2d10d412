"""The original study's CNN must match its published summary row for row."""
import torch
from torch import nn

from fracture_demo import create_model

PUBLISHED = [
    ("Conv2d", [-1, 128, 226, 226], 3584), ("BatchNorm2d", [-1, 128, 75, 75], 256),
    ("Conv2d", [-1, 256, 77, 77], 295168), ("BatchNorm2d", [-1, 256, 25, 25], 512),
    ("Conv2d", [-1, 256, 27, 27], 590080), ("BatchNorm2d", [-1, 256, 9, 9], 512),
    ("Linear", [-1, 256], 5308672), ("Linear", [-1, 256], 65792), ("Linear", [-1, 256], 65792),
    ("Linear", [-1, 256], 65792), ("Linear", [-1, 1], 257),
]


def summary(model: nn.Module, size: int = 224) -> list[tuple[str, list[int], int]]:
    """torchsummary-style rows in execution order: (layer type, output shape, parameters)."""
    rows, hooks = [], []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            hooks.append(m.register_forward_hook(
                lambda mod, _i, out: rows.append((type(mod).__name__, [-1, *out.shape[1:]],
                                                  sum(p.numel() for p in mod.parameters())))))
    model.eval()(torch.zeros(2, 3, size, size))
    for h in hooks:
        h.remove()
    return rows


def test_custom_cnn_matches_published_summary():
    model = create_model("custom_cnn")
    assert summary(model) == PUBLISHED
    assert sum(p.numel() for p in model.parameters()) == 6_396_417
