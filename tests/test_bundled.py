"""The bundled models: every study family present, loadable, small enough, and predicting exactly
what was recorded for them (assets/models/reference_predictions.json, written by train.report)."""
import json
from pathlib import Path

import pytest

import fracture_demo as fd
from fracture_demo.zoo import ModelZoo, discover

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models"
REFS = json.loads((MODELS / "reference_predictions.json").read_text()) if (MODELS / "reference_predictions.json").is_file() else None
STUDY_FAMILIES = {"custom_cnn", "vgg19", "mobilenetv3", "regnet", "wide_resnet", "vit", "swin"}

pytestmark = pytest.mark.skipif(REFS is None, reason="no bundled models")


def test_every_study_family_is_bundled_within_size_limits():
    folders = {p.parent.name: p.parent for p in MODELS.glob("*/config.json")}
    assert STUDY_FAMILIES <= set(folders)
    assert {f"{f}_official" for f in STUDY_FAMILIES} <= set(folders), "each family's official-split twin"
    sizes = {n: (f / "model.safetensors").stat().st_size for n, f in folders.items()}
    assert max(sizes.values()) <= 50 * 2**20 and sum(sizes.values()) <= 150 * 2**20
    for f in folders.values():
        assert not list(f.glob("*.bin")) and not list(f.glob("*.pt")) and not (f / ".train_state").exists()
        card = (f / "README.md").read_text()
        assert "ODC-By" in card and "Not a medical device" in card


@pytest.mark.parametrize("name", sorted(REFS["probabilities"]) if REFS else [])
def test_bundled_model_reproduces_recorded_prediction(name):
    clf = fd.load(MODELS / name)
    p = clf.predict(ROOT / "assets" / "examples" / REFS["image"]).probability
    assert p == pytest.approx(REFS["probabilities"][name], abs=1e-4)
    expected = {"val", "official test"} | ({"grouped test"} if clf.config["data"]["split_mode"] == "grouped" else set())
    assert set(clf.config["metrics"]) >= expected


def test_app_lists_every_bundled_model_and_defaults_to_best_grouped():
    zoo = ModelZoo(discover())
    assert set(zoo.names) == set(REFS["probabilities"])
    best = max(zoo.entries.values(), key=lambda e: e.score() or -1.0)
    assert best.score() is not None, "the default was scored on the grouped split"
    assert zoo.default == best.name
