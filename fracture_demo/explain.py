"""Where the model looked: CAMs from pytorch-grad-cam, and attention rollout for ViT.

Small pieces in pytorch-grad-cam's own style: a method name -> CAM class, the registry's
target layer and reshape transform, and a binary target. Hooks live only inside one call.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, ScoreCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

from .registry import get_spec, reshape_transform

CAM_CLASSES = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}


class DecidedTarget:
    """A binary target (pytorch-grad-cam style) whose class is decided from the first output it sees.

    With ``decide`` = "the class the model predicts", one forward pass yields both the prediction and
    the map of its evidence; a fixed class is ``DecidedTarget(lambda _: k)``.
    """

    def __init__(self, decide: Callable[[torch.Tensor], int]) -> None:
        self.decide, self.category = decide, None

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if self.category is None:
            self.category = int(self.decide(output.detach()))
        return output if self.category == 1 else -output


def cam_map(model: nn.Module, arch: str, x: torch.Tensor, method: str,
            target: DecidedTarget) -> tuple[np.ndarray, torch.Tensor]:
    """A [0,1] heatmap at the input's resolution for the first image of ``x`` (Nx3xHxW), and the logits of all N.

    Further images (e.g. flipped views) ride along in the same forward pass; their maps explain the first
    image's class and are dropped. Not thread-safe: hooks go on the shared module for the call
    (``FractureClassifier`` lends each call its own copy of the modules).
    """
    if method == "attention_rollout":
        with _attention_probs(model) as probs, torch.no_grad():
            logits = model(x)
        target(logits[0])
        return _rollout(probs, model, x.shape[-2:]), logits
    if method not in get_spec(arch).explain_methods:
        raise ValueError(f"{method!r} is not available for {arch}; choose one of {list(get_spec(arch).explain_methods)}")
    if method == "scorecam":  # its targets only ever see masked inputs: decide on the whole image first
        with torch.no_grad():
            target(model(x)[0])
    layer = get_spec(arch).cam_layer(model)
    with torch.enable_grad(), _gradient_starts_at(layer), \
            CAM_CLASSES[method](model=model, target_layers=[layer], reshape_transform=reshape_transform(arch, model)) as cam:
        if method == "scorecam":
            cam.batch_size = 32
        followers = [DecidedTarget(lambda _logit: target.category) for _ in range(len(x) - 1)]  # asked after it
        heat = cam(input_tensor=x, targets=[target, *followers])[0]
        logits = cam.outputs.detach()
    if target.category is None:  # EigenCAM never asks its target
        target(logits[0])
    return np.nan_to_num(heat.astype(np.float32)), logits


@contextmanager
def _gradient_starts_at(layer: nn.Module) -> Iterator[None]:
    """Make ``layer``'s output a leaf that requires grad (registered before the CAM's own hooks, which see it).

    A CAM needs gradients at its target layer only: backward then runs through the layers after it and
    never into the trunk or the (shared, frozen) weights before it.
    """
    handle = layer.register_forward_hook(lambda _m, _i, out: out.detach().requires_grad_(True))
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _attention_probs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Capture every block's softmaxed attention; timm's fused attention hides it, so unfuse briefly."""
    captured: list[torch.Tensor] = []
    attns = [blk.attn for blk in model.blocks]
    fused = [a.fused_attn for a in attns]
    handles = [a.attn_drop.register_forward_hook(lambda _m, _i, out: captured.append(out.detach())) for a in attns]
    for a in attns:
        a.fused_attn = False
    try:
        yield captured
    finally:
        for a, f in zip(attns, fused):
            a.fused_attn = f
        for h in handles:
            h.remove()


def _rollout(probs: list[torch.Tensor], model: nn.Module, size: tuple[int, int], discard_ratio: float = 0.0) -> np.ndarray:
    """Abnar & Zuidema's rollout: multiply head-averaged attention (+identity) through the layers."""
    n = probs[0].size(-1)
    rollout = torch.eye(n)
    for a in probs:
        a = a[0].float().mean(0)
        if discard_ratio:
            flat = a.flatten()
            flat[flat.argsort()[: int(flat.numel() * discard_ratio)]] = 0
        a = a + torch.eye(n)
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    prefix = model.num_prefix_tokens
    h, w = model.patch_embed.grid_size
    heat = rollout[0, prefix:].reshape(1, 1, h, w)
    heat = torch.nn.functional.interpolate(heat, size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    heat = heat - heat.min()
    return (heat / heat.max().clamp_min(1e-8)).numpy().astype(np.float32)


def resize_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stretch a heatmap to an image's (width, height)."""
    img = Image.fromarray(heat.astype(np.float32), mode="F").resize(size, Image.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0, 1)


def overlay(image: Image.Image, heat: np.ndarray, opacity: float = 0.5) -> Image.Image:
    """Colour the heatmap (jet) over the radiograph; ``heat`` must already match its size."""
    # the radiograph in grey, broadcast over the colours: the same sums as its RGB copy, in a third of the work
    grey = np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0
    opacity = float(np.clip(opacity, 0.0, 1.0))
    return Image.fromarray(show_cam_on_image(grey, heat, use_rgb=True, image_weight=1.0 - opacity))


def heatmap_image(heat: np.ndarray) -> Image.Image:
    """The raw heatmap as a colour image (no radiograph underneath)."""
    return Image.fromarray(show_cam_on_image(np.zeros((*heat.shape, 3), np.float32), heat, use_rgb=True, image_weight=0.0))
