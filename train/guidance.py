"""Box guidance: teach a CNN's map to point at the fracture that annotators drew (``--box-weight``).

On a network that ends in average pooling and one linear unit, Grad-CAM at the last layer is, up to a
ReLU and a scale, the class-activation map: the head applied at every position of the last feature map
(Zhou et al. 2016). That map can be trained directly. On training radiographs with drawn boxes
(FracAtlas's fractures), a softmax over the map's positions should put its mass inside the boxes, grown
by the pointing game's tolerance; the loss is -log(mass inside). Images without boxes add nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Sample
from .localize import TOLERANCE, box_mask, read_boxes


class CamHead(nn.Module):
    """A CNN whose forward gives its logits and its class-activation map (N x 1 x h x w) in one pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if not isinstance(head, nn.Linear) or not hasattr(model, "forward_features"):
            raise ValueError(f"box guidance needs a timm CNN ending in pooling and a linear head, not {type(model).__name__}")
        self.model, self.head = model, head
        was_training = model.training
        model.eval()
        try:  # pooling + linear only: the map's mean is the logit; anything between (or no 2-D map) breaks that
            with torch.no_grad():
                size = getattr(model, "default_cfg", {}).get("input_size", (3, 64, 64))[-1]
                logits, cam = self(torch.rand(1, 3, size, size, device=next(model.parameters()).device))
            matches = torch.allclose(cam.mean(dim=(2, 3)), logits, atol=1e-4)
        except (RuntimeError, ValueError, AssertionError):
            matches = False
        finally:
            model.train(was_training)
        if not matches:
            raise ValueError(f"box guidance needs a head that is average pooling then one linear layer; "
                             f"{type(model).__name__}'s map does not average to its logit")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.forward_features(x)
        cam = torch.einsum("nchw,oc->nohw", feats, self.head.weight.to(feats.dtype))
        if self.head.bias is not None:
            cam = cam + self.head.bias.to(feats.dtype).view(1, -1, 1, 1)
        return self.model.forward_head(feats), cam


def box_loss(cam: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean -log of the share of each map's softmax mass inside its mask (N x 1 x S x S in [0, 1])."""
    inside = F.adaptive_avg_pool2d(masks.float(), cam.shape[-2:]).flatten(1)
    p = torch.softmax(cam.float().flatten(1), dim=1)
    return -torch.log((p * inside).sum(1).clamp_min(1e-6)).mean()


def box_masks(samples: list[Sample], annotations: str | Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of the drawn boxes (grown by the pointing game's tolerance) of the fractured samples that have them.

    Returns ``row`` (one per sample: its index in ``masks``, -1 for none) and ``masks`` (K x 1 x size x size, uint8).
    Boxes are joined on file name as ``train.localize`` does and scaled from the annotated image's size (COCO
    ``width``/``height``, so a shrunk copy of the files gets the same masks) to the training size.
    """
    boxes = read_boxes(annotations)
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in json.loads(Path(annotations).read_text())["images"]}
    row, masks = np.full(len(samples), -1, np.int64), []
    for i, s in enumerate(samples):
        if s.label != 1 or s.path.name not in boxes:
            continue
        w, h = sizes[s.path.name]
        row[i] = len(masks)
        masks.append(box_mask((size, size), boxes[s.path.name], (size / w, size / h), TOLERANCE * size))
    stack = np.stack(masks)[:, None].astype(np.uint8) if masks else np.zeros((0, 1, size, size), np.uint8)
    return torch.from_numpy(row), torch.from_numpy(stack)
