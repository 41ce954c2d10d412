"""One registry: a short model name -> how to build it, feed it and explain it.

Like timm's ``create_model`` / ``resolve_model_data_config``: callers (training, the app,
the evaluator) never special-case an architecture; everything that differs lives here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import timm
import torch
from safetensors import safe_open
from timm.layers import HybridEmbed
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from . import methods
from .models import CustomCNN, Fusion, VggGap, deepen_vgg16, vgg19_bn_gap

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE = ((0.48502, 0.45796, 0.40760), (1 / 255,) * 3)  # Keras / Caffe VGG input: 0-255 less the ImageNet mean
HALF = (0.5, 0.5, 0.5)
#: Where ``--pretrained local`` looks for the files of ``ModelSpec.local_file``.
PRETRAINED_DIR_ENV = "FRACTURE_PRETRAINED_DIR"
_DEFAULT_PRETRAINED_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "pretrained"


@dataclass(frozen=True)
class ModelSpec:
    """Everything the rest of the code needs to know about one architecture."""

    name: str
    family: str
    description: str
    build: Callable[..., nn.Module]  # build(pretrained_file_or_hub_or_None) -> nn.Module
    image_size: int = 224
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    kind: str = "cnn"  # cnn | vit | swin: decides the reshape and the explanation methods
    cam_layer: Callable[[nn.Module], nn.Module] = lambda m: m
    # w, where the logit's gradient with respect to the CAM layer's output A averages to w / (h w) per channel
    # (global average pooling, then one linear layer): Grad-CAM's weights, so that its map comes from the forward
    # pass (fracture_demo.engine). None: gradients needed.
    cam_weights: Callable[[nn.Module], torch.Tensor | None] = lambda m: None
    # which maps equal that forward-pass map: both where the gradient is w / (h w) at every position (no layer
    # between A and the pooling); Grad-CAM alone after a non-overlapping max-pool (it routes each window's gradient
    # to one position: the mean is unchanged, the positions are not)
    forward_methods: Sequence[str] = ("gradcam", "hirescam")
    hub_weights: str | None = None  # what --pretrained hub downloads (None: nothing exists)
    local_file: str | None = None  # file name of offline ImageNet weights, if any
    local_norm: tuple[Sequence[float], Sequence[float]] | None = None  # norm those weights expect
    explain_methods: Sequence[str] = methods.CNN
    build_kwargs: dict = field(default_factory=dict)
    size_kwarg: str | None = None  # builder argument that sets another input size (None: any size works)
    fixed_size: bool = False  # True: only ``image_size`` works (a flatten into Linear layers)
    cpu_bf16: bool = True  # bf16 autocast trains faster on CPU (measured False for the depthwise-conv nets)
    # served in bfloat16 at precision "auto", the app's (engine.compile_model): the families that bf16 makes much
    # faster while P(fractured) stays close to f32's on real radiographs (python -m bench.precision, docs/speed.md);
    # the depthwise-conv nets gain less and drift further (P(fractured) up to 0.05, maps up to 0.58)
    serve_bf16: bool = False
    variant_of: str | None = None  # the study architecture this one varies: the family it is compared within


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}") from None


def family(config: dict) -> str:
    """The family a saved model is compared within (the study's names): for a model built around another (a fusion,
    ``train.fuse``) the one its config records, for a registered variant (the hybrid ViT) the architecture it
    varies, else its own architecture."""
    arch = config["architecture"]
    return config.get("family") or (_REGISTRY[arch].variant_of if arch in _REGISTRY else None) or arch


def resolve_pretrained(name: str, pretrained: str | os.PathLike | None) -> tuple[str | None, str]:
    """Turn ``hub|none|local|PATH`` into (what the builder loads, a label for the model card).

    A directory is searched for the spec's offline file, so ``--pretrained ../shared/pretrained``
    works for every model that has one.
    """
    spec = get_spec(name)
    if pretrained in (None, "", "none", False):
        return None, "none (random init)"
    if pretrained == "hub":
        if not spec.hub_weights:
            raise ValueError(f"{name}: no Hub ImageNet weights exist for this variant; use --pretrained none")
        return "hub", f"hub:{spec.hub_weights}"
    path = Path(os.environ.get(PRETRAINED_DIR_ENV, _DEFAULT_PRETRAINED_DIR)) if pretrained == "local" else Path(pretrained)
    if path.is_dir():
        if not spec.local_file:
            raise ValueError(f"{name}: no offline weights file is known for this model")
        path = path / spec.local_file
    if not path.is_file():
        raise FileNotFoundError(f"{name}: pretrained weights not found at {path}")
    origin = weights_origin(path)
    return str(path), f"file:{path.name}" + (f" ({origin['architecture']} from {origin['source']})" if origin else "")


def weights_origin(pretrained: str | os.PathLike | None) -> dict | None:
    """``{"architecture", "source"}`` of a file ``train.backbone`` wrote from a zoo model (its safetensors header), so
    the config records what a model started from and its card can print the command that makes the file; None for
    any other start (ImageNet's files, hub, none)."""
    path = Path(pretrained) if pretrained not in (None, "", "hub") else None
    if path is None or path.suffix != ".safetensors" or not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return {k: meta[k] for k in ("architecture", "source")} if {"architecture", "source"} <= meta.keys() else None


def data_config(name: str, pretrained: str | os.PathLike | None = None, image_size: int | None = None) -> dict:
    """Input size, normalisation and build arguments the model expects (the weights' own norm).

    ``image_size`` other than the spec's is passed to the builder where it needs it (ViT, Swin).
    """
    spec = get_spec(name)
    mean, std = spec.mean, spec.std
    source, _ = resolve_pretrained(name, pretrained)
    if source not in (None, "hub") and spec.local_norm:
        mean, std = spec.local_norm
    size = image_size or spec.image_size
    if size != spec.image_size and spec.fixed_size:
        raise ValueError(f"{name} only works at {spec.image_size}x{spec.image_size} (its head is sized for it)")
    kwargs = {spec.size_kwarg: size} if size != spec.image_size and spec.size_kwarg else {}
    return {"image_size": size, "mean": list(mean), "std": list(std), "model_kwargs": kwargs}


def create_model(name: str, pretrained: str | os.PathLike | None = None, **kwargs) -> nn.Module:
    """Build ``name`` with a one-logit head (sigmoid = P(fractured)).

    ``pretrained``: None/"none" (random init), "hub" (download, needs a network), "local"
    (the offline file in ``$FRACTURE_PRETRAINED_DIR``), or a file or folder path.
    """
    spec = get_spec(name)
    source, _ = resolve_pretrained(name, pretrained)
    try:
        return spec.build(source, **{**spec.build_kwargs, **kwargs})
    except (OSError, RuntimeError) as exc:
        if source == "hub":
            raise RuntimeError(f"{name}: could not download ImageNet weights ({exc}); offline, "
                               "pass --pretrained none or a local file") from exc
        raise


def _timm(timm_name: str, **fixed) -> Callable[..., nn.Module]:
    def build(source: str | None, **kwargs) -> nn.Module:
        kw = {**fixed, **kwargs, "num_classes": 1}
        if source is None:
            return timm.create_model(timm_name, pretrained=False, **kw)
        overlay = {} if source == "hub" else {"pretrained_cfg_overlay": {"file": source}}
        return _fresh_head(timm.create_model(timm_name, pretrained=True, **overlay, **kw))
    return build


def _linear_head(model: nn.Module) -> torch.Tensor:
    """The one-logit classifier's weights of a timm-style model whose head is pooling then ``get_classifier()``."""
    return model.get_classifier().weight[0]


def _fresh_head(model: nn.Module) -> nn.Module:
    """Zero the new one-logit head on pretrained features, so every image starts at P = 0.5.

    timm's EfficientNet / MobileNet init draws a Linear layer from U(-r, r) with r = 1/sqrt(fan_out): 1 for one
    output. On ImageNet features that gave logits of standard deviation 8.6 (FracAtlas val), and the first
    epochs of a fine-tune were spent undoing it (train loss 4.0 after one epoch at lr 1e-4).
    """
    head = model.get_classifier()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return model


def _no_pretrained(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def build(source: str | None, **kwargs) -> nn.Module:
        if source is not None:
            raise ValueError("this architecture has no ImageNet weights; use --pretrained none")
        return factory(**kwargs)
    return build


def _wide_resnet(**kwargs) -> nn.Module:
    from timm.models.resnet import Bottleneck, ResNet
    return ResNet(Bottleneck, layers=(1, 1, 1, 1), base_width=128, channels=(32, 64, 128, 256), num_classes=1, **kwargs)


register(ModelSpec(
    "custom_cnn", "Custom CNN", "The original study's own 3-conv, 5-linear CNN (6.4M parameters).",
    _no_pretrained(lambda **kw: CustomCNN(**kw)), cam_layer=lambda m: m.convs[-1], fixed_size=True))
register(ModelSpec(
    "vgg19", "VGG19", "VGG19-BN conv stack at half width with a global-average-pool head (5.0M).",
    _no_pretrained(lambda **kw: vgg19_bn_gap(**{"width": 0.5, **kw})), cam_layer=lambda m: m[0][-2],
    cam_weights=_linear_head, forward_methods=("gradcam",), serve_bf16=True))


def _vgg19_imagenet(source: str | None, **kwargs) -> nn.Module:
    """Full-width plain VGG19 (torchvision's ``vgg19`` convolutions) with a GAP head. Its ImageNet start: the Hub's
    ``vgg19.tv_in1k`` trunk, or a local file holding a VGG19 trunk or VGG16's (deepened, :func:`deepen_vgg16`)."""
    model = VggGap(batch_norm=False, **kwargs)
    if source is None:
        return model
    if source == "hub":
        trunk = {k.removeprefix("features."): v for k, v in timm.create_model("vgg19.tv_in1k", pretrained=True)
                 .state_dict().items() if k.startswith("features.")}
    else:
        from safetensors.torch import load_file
        weights = load_file(source)
        trunk = deepen_vgg16(weights) if len(weights) == 26 else {k.removeprefix("features."): v.float()
                                                                    for k, v in weights.items()}
    model[0].load_state_dict(trunk)
    return _fresh_head(model)


register(ModelSpec(
    "mobilenetv3", "MobileNetV3", "timm tf_mobilenetv3_small_100 (1.5M), ImageNet start from a local file.",
    _timm("tf_mobilenetv3_small_100"), mean=HALF, std=HALF, cam_layer=lambda m: m.blocks[-1],
    hub_weights="tf_mobilenetv3_small_100.in1k", local_file="tf_mobilenetv3_small_100.safetensors",
    local_norm=(HALF, HALF), cpu_bf16=False))  # 2 CPU cores, 384 images x 2 epochs: fp32 160 vs bf16 131 img/s
register(ModelSpec(
    "regnet", "RegNet", "timm regnetx_002 (RegNetX-200MF, 2.3M), ImageNet start from a local file.",
    _timm("regnetx_002"), cam_layer=lambda m: m.s4, cam_weights=_linear_head,
    hub_weights="regnetx_002.pycls_in1k", local_file="regnetx_002.safetensors", serve_bf16=True))
register(ModelSpec(
    "vgg19_imagenet", "VGG19", "VGG19 (plain, full width, 20.0M) with a global-average-pool head; its ImageNet start "
    "from the Hub, or here from VGG16's trunk with each extra convolution an identity (Net2Net).",
    _vgg19_imagenet, cam_layer=lambda m: m[0][-2], cam_weights=_linear_head, forward_methods=("gradcam",),
    hub_weights="vgg19.tv_in1k", local_file="vgg16_features.safetensors",
    local_norm=CAFFE, variant_of="vgg19", serve_bf16=True))
register(ModelSpec(
    "wide_resnet", "Wide ResNet", "Bottleneck ResNet-14 at width x2 (WRN-14-2), half channels (4.9M).",
    _no_pretrained(_wide_resnet), cam_layer=lambda m: m.layer4, cam_weights=_linear_head, serve_bf16=True))
register(ModelSpec(
    "vit", "Vision Transformer", "timm vit_tiny_patch16_224 (ViT-Ti/16, 5.5M).",
    _timm("vit_tiny_patch16_224"), mean=HALF, std=HALF, kind="vit", cam_layer=lambda m: m.blocks[-1].norm1,
    hub_weights="vit_tiny_patch16_224.augreg_in21k_ft_in1k", explain_methods=methods.VIT, size_kwarg="img_size"))


def _lite0_stem(source: str | None) -> nn.Module:
    """EfficientNet-Lite0's stem and first five blocks (stride 16, 112 channels): the hybrids' patch embedding.

    Why: no ImageNet ViT or Swin weights exist offline, and a transformer trained from scratch on a few thousand
    radiographs stays near chance on another hospital's; over this stem its tokens start as ImageNet features.
    ``source`` loads the CNN's ImageNet weights; without it the stem starts random, as the transformer always does.
    """
    cnn_kw = {} if source is None else {"pretrained": True, **({} if source == "hub" else {"pretrained_cfg_overlay": {"file": source}})}
    cnn = timm.create_model("tf_efficientnet_lite0", num_classes=0, **cnn_kw)
    return nn.Sequential(cnn.conv_stem, cnn.bn1, *cnn.blocks[:5])


def _hybrid_embed(stem: nn.Module) -> Callable[..., nn.Module]:
    """timm's ``HybridEmbed`` over ``stem``, taking (and ignoring: the stem ends in BatchNorm) the norm Swin passes."""
    def embed(norm_layer=None, **kwargs) -> nn.Module:
        return HybridEmbed(backbone=stem, **kwargs)
    return embed


def _vit_hybrid(source: str | None, img_size: int = 224, depth: int = 6, **kwargs) -> nn.Module:
    """The ViT paper's hybrid (Dosovitskiy et al., section 3.1): ViT-Ti's width and heads over ``_lite0_stem``,
    a 14 x 14 token grid at 224 px, as ViT-Ti/16's."""
    return VisionTransformer(img_size=img_size, patch_size=1, embed_layer=_hybrid_embed(_lite0_stem(source)),
                             embed_dim=192, depth=depth, num_heads=3, num_classes=1, **kwargs)


def _swin_hybrid(source: str | None, img_size: int = 224, **kwargs) -> nn.Module:
    """The same for Swin: the bundled Swin's last two stages (6 blocks at 192 wide, 8 heads; 2 at 384, 16 heads;
    window 7) over ``_lite0_stem`` in place of its first two, which see stride 4 and 8."""
    return SwinTransformer(img_size=img_size, patch_size=1, embed_layer=_hybrid_embed(_lite0_stem(source)),
                           embed_dim=192, depths=(6, 2), num_heads=(8, 16), window_size=7, num_classes=1, **kwargs)


register(ModelSpec(
    "vit_hybrid", "Vision Transformer", "ViT-Ti width (192, 3 heads), 6 blocks, over EfficientNet-Lite0's first five "
    "blocks (stride 16) from a local ImageNet file: the ViT paper's hybrid (3.4M).",
    _vit_hybrid, mean=HALF, std=HALF, kind="vit", cam_layer=lambda m: m.blocks[-1].norm1,
    hub_weights="tf_efficientnet_lite0.in1k", local_file="tf_efficientnet_lite0.safetensors", local_norm=(HALF, HALF),
    explain_methods=methods.VIT, size_kwarg="img_size", variant_of="vit"))
register(ModelSpec(
    "swin_hybrid", "Swin Transformer", "The bundled Swin's last two stages (depths 6-2, dims 192-384, window 7) over "
    "EfficientNet-Lite0's first five blocks (stride 16) from a local ImageNet file, in place of its first two.",
    _swin_hybrid, mean=HALF, std=HALF, kind="swin", cam_layer=lambda m: m.layers[-1].blocks[-1].norm1,
    hub_weights="tf_efficientnet_lite0.in1k", local_file="tf_efficientnet_lite0.safetensors", local_norm=(HALF, HALF),
    explain_methods=methods.SWIN, size_kwarg="img_size", variant_of="swin"))
register(ModelSpec(
    "swin", "Swin Transformer", "Swin-T layout (depths 2-2-6-2, window 7) at embed dim 48 (6.9M).",
    _timm("swin_tiny_patch4_window7_224", embed_dim=48, num_heads=(2, 4, 8, 16)), kind="swin",
    cam_layer=lambda m: m.layers[-1].blocks[-1].norm1, explain_methods=methods.SWIN, size_kwarg="img_size"))
register(ModelSpec(
    "efficientnet_lite0", "EfficientNet", "timm tf_efficientnet_lite0 (3.4M), ImageNet start from a local file.",
    _timm("tf_efficientnet_lite0"), mean=HALF, std=HALF, cam_layer=lambda m: m.bn2, cam_weights=_linear_head,
    hub_weights="tf_efficientnet_lite0.in1k", local_file="tf_efficientnet_lite0.safetensors",
    local_norm=(HALF, HALF), cpu_bf16=False))  # fp32 43.3 vs bf16 41.7 img/s (medians of 3, same bench)
register(ModelSpec(
    "mobilenetv2", "MobileNetV2", "timm mobilenetv2_100 with TF 'same' padding (2.2M), local ImageNet start.",
    _timm("mobilenetv2_100", pad_type="same"), cam_layer=lambda m: m.bn2, cam_weights=_linear_head,
    hub_weights="mobilenetv2_100.ra_in1k", local_file="mobilenetv2_100.safetensors", local_norm=(HALF, HALF)))


def _fusion(source: str | None, tuned: str = "efficientnet_lite0", floor: str = "efficientnet_lite0",
            floor_size: int = 224, tuned_kwargs: dict | None = None) -> nn.Module:
    """A fine-tuned CNN and a frozen one with a probe (``train.fuse`` fills their weights; both are CNNs, so
    the fusion's CAM layer is the tuned branch's)."""
    if source is not None:
        raise ValueError("a fusion starts from a fine-tuned model and a probe: build it with python -m train.fuse")
    for name in (tuned, floor):
        if get_spec(name).kind != "cnn":
            raise ValueError(f"fusion branches must be CNNs; {name} is a {get_spec(name).kind}")
    return Fusion(create_model(tuned, **(tuned_kwargs or {})), create_model(floor), floor_size, tuned)


def _fusion_cam_weights(model: Fusion) -> torch.Tensor | None:
    """The tuned branch's, times its scale in the mix (the frozen branch does not read the CAM layer), where
    both maps come from its forward pass (the fusion's spec cannot know which branch it will hold)."""
    tuned = get_spec(model.tuned_arch)
    weights = tuned.cam_weights(model.tuned) if set(tuned.forward_methods) == {"gradcam", "hirescam"} else None
    return None if weights is None else model.scales[0] * weights


register(ModelSpec(
    "fusion", "Fusion", "A fine-tuned CNN plus a frozen ImageNet CNN's linear probe, their calibrated logits mixed "
    "(python -m train.fuse).", _fusion, image_size=320, mean=HALF, std=HALF,
    cam_layer=lambda m: get_spec(m.tuned_arch).cam_layer(m.tuned), cam_weights=_fusion_cam_weights, cpu_bf16=False))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reshape_transform(name: str, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Turn a transformer layer's token output into an NCHW map for pytorch-grad-cam."""
    kind = get_spec(name).kind
    if kind == "vit":
        prefix = model.num_prefix_tokens
        h, w = model.patch_embed.grid_size

        def vit(t: torch.Tensor) -> torch.Tensor:
            t = t[:, prefix:, :]
            return t.reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)
        return vit
    if kind == "swin":  # timm Swin blocks work in NHWC
        return lambda t: t.permute(0, 3, 1, 2)
    return None
