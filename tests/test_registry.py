"""Every registry entry builds, trains a step, explains, and survives a save/load round trip."""
import numpy as np
import pytest
import torch

import fracture_demo as fd
from fracture_demo.registry import resolve_pretrained

REQUIRED = {"custom_cnn", "vgg19", "mobilenetv3", "regnet", "wide_resnet", "vit", "swin",
            "efficientnet_lite0", "mobilenetv2"}


def test_required_names_exist():
    assert REQUIRED <= set(fd.list_models())


def test_unknown_model_message():
    with pytest.raises(ValueError, match="unknown model 'resnet9000'"):
        fd.create_model("resnet9000")


@pytest.mark.parametrize("name", fd.list_models())
def test_build_train_step_save_load(name, tmp_path):
    torch.manual_seed(0)
    clf = fd.FractureClassifier.new(name)
    size = clf.image_size
    x = torch.randn(2, 3, size, size)
    out = clf.model.train()(x)
    assert out.shape == (2, 1), "one logit per image"
    before = [p.detach().clone() for p in clf.model.parameters()]
    opt = torch.optim.SGD(clf.model.parameters(), lr=0.1)
    torch.nn.functional.binary_cross_entropy_with_logits(out.flatten(), torch.tensor([0.0, 1.0])).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, clf.model.parameters())), "a step changes weights"
    clf.model.eval()
    clf.save_pretrained(tmp_path / name)
    again = fd.load(tmp_path / name)
    img = (np.random.default_rng(0).random((size + 13, size - 7)) * 255).astype(np.uint8)
    assert again.predict(img).probability == pytest.approx(clf.predict(img).probability, abs=1e-6)
    heat = again.explain(img, "gradcam").heatmap
    assert heat.shape == img.shape and np.isfinite(heat).all()


@pytest.mark.parametrize("name", ["mobilenetv3", "regnet", "efficientnet_lite0", "mobilenetv2"])
def test_offline_pretrained_weights_load(name):
    try:
        source, label = resolve_pretrained(name, "local")
    except FileNotFoundError:
        pytest.skip("../shared/pretrained is not beside this checkout")
    model = fd.create_model(name, pretrained="local")
    assert label.startswith("file:") and fd.data_config(name, "local")["mean"]
    stem = {k: v for k, v in model.state_dict().items() if "conv_stem" in k or "stem.conv" in k}
    fresh = fd.create_model(name).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in stem.items()), "weights came from the file"
    with torch.no_grad():  # a fresh head on ImageNet features: every image starts at P = 0.5
        assert torch.equal(model.eval()(torch.randn(2, 3, 96, 96)), torch.zeros(2, 1))


def test_hub_pretrained_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="could not download"):
        fd.create_model("regnet", pretrained="hub")
    with pytest.raises(ValueError, match="no Hub ImageNet weights"):
        fd.create_model("custom_cnn", pretrained="hub")


def test_fixed_size_model_refuses_other_sizes():
    with pytest.raises(ValueError, match="only works at 224"):
        fd.FractureClassifier.new("custom_cnn", image_size=128)
    vit = fd.FractureClassifier.new("vit", image_size=96)
    assert vit.model(torch.randn(1, 3, 96, 96)).shape == (1, 1)


@pytest.mark.parametrize("name, method", [("vit_hybrid", "attention_rollout"), ("swin_hybrid", "gradcam")])
def test_hybrid_tokens_start_as_imagenet_features_and_count_as_their_family(name, method):
    """A hybrid's stem is EfficientNet-Lite0's ImageNet start (block for block), its tokens form ViT-Ti/16's grid,
    its family's maps explain it, and comparisons file it under the study's family it varies."""
    try:
        resolve_pretrained(name, "local")
    except FileNotFoundError:
        pytest.skip("../shared/pretrained is not beside this checkout")
    hybrid, cnn = fd.create_model(name, pretrained="local"), fd.create_model("efficientnet_lite0", pretrained="local")
    stem = hybrid.patch_embed.backbone
    assert torch.equal(stem[0].weight, cnn.conv_stem.weight)
    assert torch.equal(stem[-1][-1].conv_pwl.weight, cnn.blocks[4][-1].conv_pwl.weight), "the fifth block is ImageNet's"
    assert not torch.equal(fd.create_model(name).patch_embed.backbone[0].weight, cnn.conv_stem.weight)
    assert tuple(hybrid.patch_embed.grid_size) == (14, 14)
    assert fd.family({"architecture": name}) == name.removesuffix("_hybrid") and fd.family({"architecture": "regnet"}) == "regnet"
    clf = fd.FractureClassifier.new(name, image_size=112)
    assert tuple(clf.model.patch_embed.grid_size) == (7, 7)
    img = (np.random.default_rng(1).random((150, 170)) * 255).astype(np.uint8)
    heat = clf.explain(img, method).heatmap
    assert heat.shape == img.shape and np.isfinite(heat).all() and heat.min() >= 0


def test_vgg19_starts_from_vgg16s_trunk_computing_its_features():
    """Net2Net deepening: VGG16's 13 convolutions where VGG19 has them, an identity for each block's fourth, so the
    untrained VGG19 computes VGG16's ImageNet features on a radiograph."""
    from safetensors.torch import load_file
    from torchvision.models.vgg import cfgs, make_layers

    from fracture_demo.imaging import normalize
    try:
        source, label = resolve_pretrained("vgg19_imagenet", "local")
    except FileNotFoundError:
        pytest.skip("../shared/pretrained is not beside this checkout")
    vgg16 = make_layers(cfgs["D"], batch_norm=False).eval()
    vgg16.load_state_dict({k.removeprefix("features."): v.float() for k, v in load_file(source).items()})
    vgg19 = fd.create_model("vgg19_imagenet", "local").eval()
    assert label == "file:vgg16_features.safetensors" and len(vgg19[0]) == 37, "16 convolutions, 16 ReLUs, 5 pools"
    cfg = fd.data_config("vgg19_imagenet", "local")
    assert cfg["std"][0] == pytest.approx(1 / 255), "Caffe's input: 0-255 less the mean"
    img = fd.decode_image("assets/examples/fractured_hand.jpg").image.convert("L").resize((224, 224))
    x = normalize(torch.from_numpy(np.asarray(img))[None, None], cfg["mean"], cfg["std"])
    with torch.no_grad():
        f16, f19 = vgg16(x), vgg19.forward_features(x)
        assert f19.shape == f16.shape == (1, 512, 7, 7) and f16.abs().max() > 1
        torch.testing.assert_close(f19, f16, rtol=1e-5, atol=1e-4)
        assert torch.equal(vgg19(x), torch.zeros(1, 1)), "a fresh head: P = 0.5 before any training"
    extra = vgg19[0][_conv_index(vgg19, 7)]  # block 3's fourth convolution: not in VGG16
    assert torch.equal(extra.bias, torch.zeros(256)) and extra.weight[:, :, 1, 1].diagonal().eq(1).all()


def _conv_index(model, k: int) -> int:
    """Module index of the k-th convolution (0-based) of a VGG trunk."""
    return [i for i, m in enumerate(model[0]) if isinstance(m, torch.nn.Conv2d)][k]
