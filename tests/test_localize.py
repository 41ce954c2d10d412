"""The localisation metrics count hits and misses right (synthetic maps, known boxes)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import train.localize
from train.localize import Case, box_mask, localize, mass_ratio, pointing_hit, read_boxes, score


def peak_at(shape, y, x):
    heat = np.zeros(shape)
    heat[y, x] = 1.0
    return heat


def test_pointing_game_hits_inside_and_within_tolerance_only():
    box = [(40.0, 50.0, 20.0, 10.0)]  # x 40..60, y 50..60
    assert pointing_hit(peak_at((100, 100), 55, 50), box)
    assert pointing_hit(peak_at((100, 100), 55, 64), box, tolerance=0.05)  # 4 px right of the box, 5 px allowed
    assert not pointing_hit(peak_at((100, 100), 55, 64), box, tolerance=0.0)
    assert not pointing_hit(peak_at((100, 100), 10, 10), box)
    # boxes are in the stored file's pixels: a map at half size scales them
    assert pointing_hit(peak_at((50, 50), 27, 25), box, scale=(0.5, 0.5), tolerance=0.0)
    assert not pointing_hit(peak_at((50, 50), 27, 35), box, scale=(0.5, 0.5), tolerance=0.0)


def test_mass_ratio_is_one_for_a_flat_map_and_grows_with_concentration():
    box = [(0.0, 0.0, 10.0, 10.0)]  # a quarter of a 20x20 image
    assert mass_ratio(np.ones((20, 20)), box) == pytest.approx(1.0)
    inside = np.zeros((20, 20))
    inside[:10, :10] = 1
    assert mass_ratio(inside, box) == pytest.approx(4.0)
    assert mass_ratio(1 - inside, box) == pytest.approx(0.0)
    assert np.isnan(mass_ratio(np.zeros((20, 20)), box))
    assert box_mask((20, 20), box, grow=2).sum() == 12 * 12


def test_score_counts_hits_over_cases(tmp_path):
    """A stand-in model whose map peaks at a fixed spot: it hits the cases whose box holds that spot."""
    path = tmp_path / "x.png"
    Image.new("L", (200, 100)).save(path)

    def explain(p, method, target):
        assert target == "fractured"  # the map of the evidence for a fracture, whatever the prediction
        return SimpleNamespace(heatmap=peak_at((50, 100), 10, 20))  # map at half size: peak at (40, 20) stored
    clf = SimpleNamespace(explain=explain)
    cases = [Case(path, [(30.0, 10.0, 20.0, 20.0)], "g1"), Case(path, [(150.0, 60.0, 20.0, 20.0)], "g2"),
             Case(path, [(0.0, 0.0, 45.0, 25.0)], "g3")]
    s = score(clf, cases, "gradcam", bootstrap=50)
    assert (s["n"], s["hits"]) == (3, 2) and s["pointing_game"] == pytest.approx(2 / 3)
    lo, hi = s["pointing_game_ci95"]
    assert 0 <= lo <= 2 / 3 <= hi <= 1


def test_read_boxes_joins_on_file_name(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "IMG1.jpg"}, {"id": 8, "file_name": "IMG2.jpg"}],
            "annotations": [{"image_id": 7, "bbox": [1, 2, 3, 4]}, {"image_id": 7, "bbox": [5, 6, 7, 8]}],
            "categories": []}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    assert read_boxes(tmp_path / "a.json") == {"IMG1.jpg": [(1, 2, 3, 4), (5, 6, 7, 8)]}


def test_localize_keeps_two_models_of_one_folder_name_apart(tmp_path, monkeypatch):
    """An incumbent and its candidate share a folder name; each keeps its own scores (one used to overwrite the other)."""
    path = tmp_path / "x.png"
    Image.new("L", (100, 100)).save(path)
    peaks = {"assets/models/custom_cnn": (55, 50), "runs/d/custom_cnn": (5, 5), "runs/d/vgg19": (55, 50)}

    def load(folder):
        return SimpleNamespace(arch="custom_cnn",
                               explain=lambda p, method, target: SimpleNamespace(heatmap=peak_at((100, 100), *peaks[folder])))
    monkeypatch.setattr(train.localize, "load", load)
    cases = [Case(path, [(40.0, 50.0, 20.0, 10.0)], "g1")]
    scores = localize(list(peaks), cases, ["gradcam"], bootstrap=10)
    assert {k: v["gradcam"]["hits"] for k, v in scores.items()} == {
        "assets/models/custom_cnn": 1, "runs/d/custom_cnn": 0, "vgg19": 1}
