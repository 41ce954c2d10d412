"""Sanity of explanations, one per family: a model that learned "a bright mark means fractured"
must put its heatmap peak on the mark (Adebayo et al.'s point: a map must depend on what was learned)."""
import numpy as np
import pytest

import fracture_demo as fd
from tests.conftest import make_dataset, synthetic_xray
from train.loop import TrainConfig, train

FAMILIES = {  # model, image size, pretrained, epochs, lr, methods to check
    # large enough that the last CNN / Swin stage is 5x5, not a 3x3 grid that cannot point at a mark.
    # The CNN is the default's family; each method hit 8/8 at 1 and 2 threads and on two data seeds
    # (MobileNetV3, the earlier choice: 8/8 on 1 thread, 6/8 or fewer on 2; README "Explanations")
    "cnn": ("efficientnet_lite0", 160, "local", 4, 1e-3, ["gradcam", "hirescam", "gradcam++"]),
    "vit": ("vit", 96, "none", 12, 5e-4, ["gradcam", "attention_rollout"]),
    "swin": ("swin", 160, "none", 5, 5e-4, ["gradcam", "gradcam++"]),
}


@pytest.fixture(scope="module")
def mark_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("marks"), {"train": 96, "val": 16}, seed=3, bad_files=False)


@pytest.mark.parametrize("family", ["cnn", "swin", "vit"])
def test_heatmap_peaks_on_the_mark(family, mark_data, tmp_path):
    name, size, pretrained, epochs, lr, methods = FAMILIES[family]
    try:
        fd.registry.resolve_pretrained(name, pretrained)
    except FileNotFoundError:
        pytest.skip("offline ImageNet weights not beside this checkout")
    out = tmp_path / name
    metrics = train(TrainConfig(model=name, data_dir=str(mark_data), output_dir=str(out), epochs=epochs, batch_size=16,
                                lr=lr, image_size=size, pretrained=pretrained, augment="flip", bootstrap=0, workers=1,
                                warmup_epochs=1, patience=epochs))
    assert metrics["results"]["val"]["accuracy"] >= 0.9, "the model learned the mark"
    clf = fd.load(out)
    rng = np.random.default_rng(123)
    for method in methods:
        hits = 0
        for _ in range(8):
            img, (cy, cx) = synthetic_xray(rng, True)
            heat = clf.explain(img, method, target="fractured").heatmap
            py, px = np.unravel_index(np.argmax(heat), heat.shape)
            hits += abs(py - cy) <= 16 and abs(px - cx) <= 16  # mark half-width 9 px + a patch of slack
        assert hits >= 6, f"{family} {method}: peak on the mark in {hits}/8 images"
