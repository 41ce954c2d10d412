"""The radiograph guard: a photo is not a radiograph, and the app and predict() say so."""
import numpy as np
import pytest
import torch
from matplotlib import cbook

import fracture_demo as fd
from app import FractureApp
from fracture_demo.guard import GUARD_NAME, NOT_A_RADIOGRAPH, RadiographGuard
from fracture_demo.zoo import ModelZoo, ZooEntry
from train.guard import main as guard_main

PHOTO = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # a portrait photograph (matplotlib's sample data)


def test_distance_separates_and_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    guard = RadiographGuard.fit(rng.normal(0, 1, (400, 16)), {"fit_on": "synthetic"})
    guard.threshold = 8.0
    inside, outside = torch.from_numpy(rng.normal(0, 1, (50, 16))), torch.full((1, 16), 6.0, dtype=torch.float64)
    assert (guard.distance(inside) < guard.threshold).all() and guard.distance(outside)[0] > 3 * guard.threshold
    assert guard.warning(inside[0]) is None and NOT_A_RADIOGRAPH in guard.warning(outside[0])
    guard.save(tmp_path)
    again = RadiographGuard.load(tmp_path)
    assert again.threshold == 8.0 and again.info == {"fit_on": "synthetic"}
    assert torch.allclose(again.distance(inside), guard.distance(inside))
    assert RadiographGuard.load(tmp_path / "nothing_here") is None


@pytest.fixture(scope="module")
def guarded(dataset, tmp_path_factory):
    from train.loop import TrainConfig, train
    out = tmp_path_factory.mktemp("guarded") / "m"
    train(TrainConfig(model="mobilenetv3", data_dir=str(dataset), output_dir=str(out), epochs=1, batch_size=8,
                      image_size=64, bootstrap=0, workers=1))
    assert guard_main(["--model", str(out), "--data", str(dataset), "--workers", "1"]) == 0
    return out


def test_fitted_guard_flags_a_photo_not_a_radiograph(guarded, dataset):
    assert (guarded / GUARD_NAME).is_file()
    clf = fd.load(guarded)
    radiograph = clf.predict(dataset / "test" / "fractured" / "0.jpg")
    assert radiograph.radiograph is True and not any(NOT_A_RADIOGRAPH in w for w in radiograph.warnings)
    photo = clf.predict(PHOTO)
    assert photo.radiograph is False and any("does not look like a radiograph" in w for w in photo.warnings)
    assert clf.explain(PHOTO).prediction.radiograph is False  # the map's forward pass is checked too
    # what models without a guard borrow: one pass of the image alone, the same verdict and distance as predict's
    assert clf.radiograph_warning(dataset / "test" / "fractured" / "0.jpg") is None
    assert clf.radiograph_warning(PHOTO) == next(w for w in photo.warnings if NOT_A_RADIOGRAPH in w)


def test_a_guard_at_a_named_layer_pools_that_layer_and_keeps_it(guarded, dataset, tmp_path):
    import shutil
    folder = tmp_path / "layered"
    shutil.copytree(guarded, folder)
    assert guard_main(["--model", str(folder), "--data", str(dataset), "--workers", "1", "--layer", "nope"]) == 2
    assert guard_main(["--model", str(folder), "--data", str(dataset), "--workers", "1", "--layer", "blocks.3"]) == 0
    clf = fd.load(folder)
    channels = []
    clf.unwrapped.get_submodule("blocks.3").register_forward_hook(lambda _m, _i, out: channels.append(out.shape[1]))
    assert clf.guard.layer == "blocks.3" and clf.guard.info["layer"] == "blocks.3"
    assert clf.predict(dataset / "test" / "fractured" / "0.jpg").radiograph is not None
    assert clf.guard.mean.shape == (channels[0],) != fd.load(guarded).guard.mean.shape  # not the CAM layer's width


def test_app_says_not_meaningful_even_for_a_model_without_guard(guarded, dataset, tmp_path):
    import shutil
    bare = tmp_path / "bare"
    shutil.copytree(guarded, bare)
    (bare / GUARD_NAME).unlink()
    cfg = fd.load(guarded).config
    zoo = ModelZoo([ZooEntry(str(guarded), "guarded", {**cfg, "metrics": {"grouped test": {"balanced_accuracy": 1.0}}}),
                    ZooEntry(str(bare), "bare", cfg)])
    app = FractureApp(zoo)
    assert zoo.default == "guarded"
    for model in ("guarded", "bare"):
        label, _, _, details, _ = app.predict(PHOTO, model)
        assert "does not look like a radiograph" in details and "not meaningful" in details, model
        assert "no decision" in details and "decision **" not in details, "no verdict on what is not a radiograph"
        assert label == {"does not look like a radiograph": 1.0}
        radiograph = app.predict(str(dataset / "test" / "fractured" / "0.jpg"), model)[3]
        assert "not meaningful" not in radiograph and "decision **" in radiograph
    table, _, _, text = app.compare(PHOTO, "gradcam", ["bare", "guarded"])
    assert "does not look like a radiograph" in text and {row[3] for row in table} == {"no decision"}


def test_a_default_without_guard_borrows_another_models(guarded, tmp_path):
    """The app's default may have no guard of its own: another bundled model's guard answers for it."""
    import shutil
    bare = tmp_path / "bare2"
    shutil.copytree(guarded, bare)
    (bare / GUARD_NAME).unlink()
    cfg = fd.load(guarded).config
    zoo = ModelZoo([ZooEntry(str(bare), "bare", {**cfg, "metrics": {"grouped test": {"balanced_accuracy": 1.0}}}),
                    ZooEntry(str(guarded), "guarded", cfg)])
    assert zoo.default == "bare" and zoo.guard_model == "guarded"
    assert "does not look like a radiograph" in FractureApp(zoo).predict(PHOTO, "bare")[3]
