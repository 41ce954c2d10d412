"""The fusion model kind: one forward pass is the mixed calibrated logits of its two branches, the probe's logit
is the one ``train.probe`` fitted (on L2-normalised pooled features, in the floor's own normalisation), and
``python -m train.fuse`` writes a calibrated model folder that loads, predicts and explains like any other."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import fracture_demo as fd
from fracture_demo.imaging import normalize
from train.__main__ import main as train_main
from train.backbone import main as backbone_main
from train.card import backbone_command
from train.fuse import WEIGHTS, build, choose_weight
from train.fuse import main as fuse_main


def test_fused_logit_is_the_mix_of_calibrated_branch_logits():
    torch.manual_seed(0)
    tuned = fd.FractureClassifier.new("regnet", image_size=64)  # ImageNet normalisation; the floor's is (0.5, 0.5)
    tuned.config.update(temperature=2.0, bias=0.3)
    dim = fd.create_model("efficientnet_lite0").num_features
    probe = {"weight": np.random.default_rng(0).normal(size=dim), "bias": 0.1, "temperature": 1.5}
    w = 0.25
    fused = build(tuned, "efficientnet_lite0", 48, probe, w, pretrained="none")
    assert fused.arch == "fusion" and fused.image_size == 64 and fused.config["temperature"] == 1.0

    raw = torch.rand(3, 1, 64, 64)
    x = fused.normalize(raw)
    features = copy.deepcopy(fused.model.floor)
    features.reset_classifier(0)  # the probe's features, as train.features computes them
    floor_in = F.interpolate(normalize(raw, (0.5,) * 3, (0.5,) * 3), size=(48, 48), mode="bilinear", antialias=True)
    with torch.no_grad():
        probe_logit = F.normalize(features(floor_in), dim=1).double() @ torch.from_numpy(probe["weight"]) + probe["bias"]
        expected = (1 - w) * (tuned.model.eval()(x).flatten() / 2.0 + 0.3) + w * probe_logit.float() / 1.5
        got = fused.model(x).flatten()
    assert torch.allclose(got, expected, atol=1e-4)
    assert not any(p.requires_grad for p in fused.model.floor.parameters()), "the floor stays frozen"


def test_choose_weight_takes_the_best_and_the_smaller_of_ties():
    y = np.array([0, 0, 1, 1])
    model, probe = np.array([0.0, 1.0, 0.5, 2.0]), np.array([0.0, 0.1, 1.0, 1.1])  # probe ranks perfectly
    w, sweep = choose_weight(y, model, probe)
    assert set(sweep) == {str(k) for k in WEIGHTS} and sweep["1.0"] == 1.0 and sweep["0.0"] == 0.75
    assert w == min(k for k in WEIGHTS if sweep[str(k)] == 1.0)


def test_fuse_writes_a_calibrated_folder_that_loads_predicts_and_explains(two_sources, tmp_path, capsys):
    data = [s.arg() for s in two_sources]
    tuned = tmp_path / "tuned"
    assert train_main(["--model", "mobilenetv3", "--batch-size", "8", "--image-size", "64", "--bootstrap", "0",
                       "--workers", "1", "--epochs", "1", "--output-dir", str(tuned)] + sum([["--data", d] for d in data], [])) == 0
    out = tmp_path / "fused"
    args = ["--model", str(tuned), "--floor", "mobilenetv3", "--floor-size", "48", "--pretrained", "none",
            "--probe-sources", "b", "--choose-on", "b", "--min-sensitivity", "0.9", "--out", str(out)]
    assert fuse_main(args + sum([["--data", d] for d in data], [])) == 0
    printed = json.loads(capsys.readouterr().out)
    clf = fd.load(out)
    assert clf.arch == "fusion" and clf.config["fusion"]["w"] in WEIGHTS and printed["fusion"]["probe_sources"] == ["b"]
    assert clf.family == "mobilenetv3", "compared within its tuned branch's family (report, card, the zoo test)"
    assert set(clf.operating_points) == {"screen", "balanced", "confirm"} and clf.operating_point == "screen"
    assert set(clf.operating_points["screen"]["validation"]) == {"a", "b"}, "calibrated on every source's validation files"
    assert {"val", "a val", "b val"} <= set(clf.config["metrics"]), "scored on validation: what the app's default is chosen by"
    card = (out / "README.md").read_text()
    assert "Not a medical device" in card and "python -m train.fuse" in card and "| b val |" in card
    assert "# Bone-fracture X-ray classifier: MobileNetV3 in a fusion (`fusion`)" in card
    lo, hi = clf.config["fusion"]["gain_ci95"]
    assert lo <= hi and f"95% interval by group {lo:+.3f} to {hi:+.3f}" in card, "the choice's gain, with its noise"
    assert clf.config["data"] == fd.load(tuned).config["data"], "it answers for the tuned model's training data"
    tuned_state = fd.load(tuned).model.state_dict()
    assert all(torch.allclose(v.float(), tuned_state[k].float(), atol=1e-2)
               for k, v in clf.model.tuned.state_dict().items()), "the tuned branch is the tuned model"
    img = next((two_sources[1].root / "test" / "fractured").glob("*.jpg"))
    ex = clf.explain(img, "gradcam")
    assert ex.prediction.probability == pytest.approx(clf.predict(img).probability, abs=1e-5)
    assert ex.heatmap.shape[::-1] == ex.image.size and np.isfinite(ex.heatmap).all()
    assert fuse_main(args[:-2] + ["--out", str(tmp_path / "x"), "--data", data[0]]) == 2, "probe sources must be --data"


def test_paired_gain_interval_resamples_whole_groups():
    """The interval train.fuse records for a choice: zero for no change, above zero for a gain spread over many
    groups, and not above zero when the whole gain sits in one group of related images."""
    from train.metrics import paired_auc_gain_ci
    rng = np.random.default_rng(0)
    y = np.tile([0.0, 1.0], 200)
    base = y + rng.normal(0, 1.0, len(y))
    singles = [str(i) for i in range(len(y))]
    assert paired_auc_gain_ci(y, base, base, singles, n=200) == [0.0, 0.0]
    lo, hi = paired_auc_gain_ci(y, base, y + rng.normal(0, 0.5, len(y)), singles, n=200)
    assert 0 < lo < hi
    one_group = base.copy()
    one_group[:40] = 10 * (2 * y[:40] - 1)  # sure and right on 40 files only
    assert paired_auc_gain_ci(y, base, one_group, singles, n=200)[0] > 0, "40 independent files: a gain"
    lo, hi = paired_auc_gain_ci(y, base, one_group, ["copies"] * 40 + singles[40:], n=200)
    assert lo <= 0 < hi, "the same 40 as copies of one radiograph: no evidence"


def test_backbone_file_starts_a_hybrid_stem_from_the_fusions_tuned_branch(two_sources, tmp_path):
    """``python -m train.backbone`` writes a fusion's tuned CNN (not its frozen floor) as the file ``--pretrained``
    loads: a hybrid built from it starts with those weights, block for block, and a run started from it records where
    the file came from, so its card prints the command that writes it."""
    torch.manual_seed(0)
    tuned = fd.FractureClassifier.new("efficientnet_lite0", image_size=64)
    probe = {"weight": np.zeros(fd.create_model("efficientnet_lite0").num_features), "bias": 0.0, "temperature": 1.0}
    build(tuned, "efficientnet_lite0", 48, probe, 0.25, pretrained="none").save_pretrained(tmp_path / "fused")
    out = tmp_path / "stem.safetensors"
    backbone_main(["--model", str(tmp_path / "fused"), "--out", str(out)])
    stem = fd.create_model("vit_hybrid", pretrained=str(out)).patch_embed.backbone
    assert torch.equal(stem[0].weight, tuned.model.conv_stem.weight)
    assert torch.equal(stem[-1][-1].conv_pwl.weight, tuned.model.blocks[4][-1].conv_pwl.weight)
    assert not torch.equal(stem[0].weight, fd.load(tmp_path / "fused").model.floor.conv_stem.weight)
    label = fd.registry.resolve_pretrained("vit_hybrid", str(out))[1]
    assert label == f"file:stem.safetensors (efficientnet_lite0 from {tmp_path / 'fused'})", "the card names the stem's source"
    origin = fd.registry.weights_origin(out)
    assert origin == {"architecture": "efficientnet_lite0", "source": str(tmp_path / "fused")}, "what the config records"
    run = tmp_path / "from_stem"
    assert train_main(["--model", "efficientnet_lite0", "--pretrained", str(out), "--batch-size", "8", "--image-size", "64",
                       "--bootstrap", "0", "--workers", "1", "--epochs", "1", "--output-dir", str(run)]
                      + sum([["--data", s.arg()] for s in two_sources], [])) == 0
    assert fd.load(run).config["pretrained_from"] == origin, "training records the file's origin"
    assert f"python -m train.backbone --model {tmp_path / 'fused'} --out {out}\n" in (run / "README.md").read_text()
    imagenet = tmp_path / "imagenet.safetensors"
    save_file({"w": torch.zeros(1)}, str(imagenet))
    assert fd.registry.weights_origin(imagenet) is None and fd.registry.weights_origin("hub") is None
    assert backbone_command({"pretrained_from": None}) == ""
