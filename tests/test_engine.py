"""The inference runtime gives torch's numbers: probabilities, Grad-CAM / HiResCAM maps and guard verdicts to 1e-4
(in f32; in bf16, as the app serves the families that gain from it, probabilities to 0.02 and maps to 0.1)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from fracture_demo import FractureClassifier, decode_image, engine, get_spec, load
from fracture_demo.zoo import BUNDLED_DIR
from tests.real_images import real_radiographs

BACKENDS = engine.BACKENDS
# one bundled model per family whose map comes from the forward pass (mobilenetv2: none bundled, built below);
# VGG19's class at half width (the bundled full-width vgg19, the same VggGap, takes half a minute per runtime here)
FAST = ["efficientnet_lite0_fracatlas", "efficientnet_lite0_fusion", "regnet", "wide_resnet", "vgg19_official"]
EXAMPLES = BUNDLED_DIR.parent / "examples"


def radiographs() -> list:
    """Two of each data set: real files from ../shared where present, else the bundled examples."""
    real = real_radiographs()
    fracatlas = [p for p in real if "fracatlas" in str(p)][:2] or sorted((EXAMPLES / "fracatlas").glob("*.jpg"))[:2]
    multi = [p for p in real if "multi-region" in str(p)][:2] or sorted(EXAMPLES.glob("*.jpg"))[:2]
    return [decode_image(p, draft_side=1024) for p in fracatlas + multi]


def loaded(folder, backend: str, monkeypatch) -> FractureClassifier:
    monkeypatch.setenv(engine.ENGINE_ENV, backend)
    return load(folder)


@pytest.fixture(scope="module")
def images():
    return radiographs()


@pytest.fixture(scope="module")
def mobilenetv2_folder(tmp_path_factory):
    torch.manual_seed(0)
    clf = FractureClassifier.new("mobilenetv2")
    clf.model.get_classifier().weight.data.normal_(0, 0.05)  # a fresh head is zero: no map to compare
    return clf.save_pretrained(tmp_path_factory.mktemp("mobilenetv2"))


def assert_same(a: FractureClassifier, b: FractureClassifier, images, methods=("gradcam", "hirescam")) -> None:
    for img in images:
        pa, pb = a.predict(img), b.predict(img)
        assert abs(pa.probability - pb.probability) < 1e-4 and pa.radiograph == pb.radiograph
        assert np.allclose(a.flip_probabilities(img), b.flip_probabilities(img), atol=1e-4)
        for method in methods:
            for target in (None, "not fractured")[: 2 if method == methods[0] else 1]:  # each sign of the map once
                ea, eb = a.explain(img, method, target=target), b.explain(img, method, target=target)
                assert ea.target == eb.target
                assert abs(ea.prediction.probability - eb.prediction.probability) < 1e-4
                assert np.abs(ea.heatmap - eb.heatmap).max() < 1e-4, (method, target)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FAST + ["mobilenetv2"])
def test_runtime_equals_torch_on_real_radiographs(name, backend, images, mobilenetv2_folder, monkeypatch):
    folder = mobilenetv2_folder if name == "mobilenetv2" else BUNDLED_DIR / name
    reference = loaded(folder, "torch", monkeypatch)
    fast = loaded(folder, backend, monkeypatch)
    assert reference.compiled is None and fast.compiled is not None and fast.compiled.has_cam
    assert_same(reference, fast, images)
    assert np.abs(fast.explain(images[0]).heatmap).max() > 0.5  # a real map, not two empty ones
    if backend == "openvino":  # as the app serves (app.serving_zoo): bf16 where the family gains from it, close to f32
        served = load(folder, precision="auto")
        assert served.compiled.precision == ("bf16" if get_spec(served.arch).serve_bf16 else "f32")
        for img in images:
            ea, eb = reference.explain(img, "gradcam"), served.explain(img, "gradcam")
            assert abs(ea.prediction.probability - eb.prediction.probability) < 0.02
            assert ea.prediction.radiograph == eb.prediction.radiograph
            assert np.abs(ea.heatmap - eb.heatmap).max() < 0.1


def test_the_families_that_need_gradients_stay_in_torch(monkeypatch):
    monkeypatch.setenv(engine.ENGINE_ENV, BACKENDS[0])
    for name in ("custom_cnn_official", "vit_official", "swin_hybrid", "mobilenetv3_fusion"):
        assert load(BUNDLED_DIR / name).compiled is None, name  # an MLP, attention or a conv after the map


def test_methods_that_need_gradients_take_the_torch_path(images, monkeypatch):
    folder = BUNDLED_DIR / "regnet"
    reference, fast = loaded(folder, "torch", monkeypatch), loaded(folder, BACKENDS[0], monkeypatch)
    calls = []
    fast.compiled._run = (lambda run: lambda x: calls.append(1) or run(x))(fast.compiled._run)
    assert_same(reference, fast, images[:1], methods=("gradcam++",))
    assert np.allclose(fast.explain(images[0], "gradcam++").heatmap, reference.explain(images[0], "gradcam++").heatmap)
    before = len(calls)
    fast.explain(images[0], "gradcam")
    assert len(calls) == before + 1  # one runtime pass gives both the probability and the map


def test_guard_flags_a_photo_in_both(monkeypatch):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), "RGB")
    folder = BUNDLED_DIR / "efficientnet_lite0_fusion"
    reference, fast = loaded(folder, "torch", monkeypatch), loaded(folder, BACKENDS[0], monkeypatch)
    assert reference.predict(photo).radiograph is False and fast.predict(photo).radiograph is False
    assert reference.radiograph_warning(photo) == fast.radiograph_warning(photo)


def test_graph_is_exported_once_per_weights(tmp_path, monkeypatch, mobilenetv2_folder):
    monkeypatch.setenv(engine.CACHE_ENV, str(tmp_path))
    loaded(mobilenetv2_folder, BACKENDS[0], monkeypatch)
    graphs = sorted((tmp_path / "graphs").glob("*"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    loaded(mobilenetv2_folder, BACKENDS[1], monkeypatch)  # another backend reads the same graph
    assert graphs[0].stat().st_mtime_ns == stamp and len(list((tmp_path / "graphs").glob("*"))) == 1
    clf = load(mobilenetv2_folder)
    clf.model.get_classifier().bias.data += 1.0
    clf.save_pretrained(tmp_path / "changed")
    assert load(tmp_path / "changed").compiled is not None
    assert len(list((tmp_path / "graphs").glob("*.onnx"))) == 2  # new weights, a new graph


def test_engine_choice(monkeypatch):
    monkeypatch.setenv(engine.ENGINE_ENV, "torch")
    assert engine.backend() is None and load(BUNDLED_DIR / "regnet").compiled is None
    monkeypatch.setenv(engine.ENGINE_ENV, "tensorrt")
    with pytest.raises(ValueError, match="openvino"):
        engine.backend()


@pytest.mark.parametrize("backend", ["torch", BACKENDS[0]])
def test_compare_runs_only_the_views_it_needs(backend, images, monkeypatch):
    for name in ("regnet", "efficientnet_lite0_fusion"):  # one view; four
        clf = loaded(BUNDLED_DIR / name, backend, monkeypatch)
        full, needed = clf.explain(images[0]), clf.explain(images[0], spread=False)
        assert len(full.flip_probabilities) == 4 and len(needed.flip_probabilities) == clf.views
        assert abs(full.prediction.probability - needed.prediction.probability) < 1e-4
        assert np.abs(full.heatmap - needed.heatmap).max() < 1e-4


def test_models_load_side_by_side_with_nothing_exported_yet(tmp_path, monkeypatch):
    """Compare loads models in parallel threads; torch.onnx keeps global state (two exports at once crashed)."""
    monkeypatch.setenv(engine.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(engine.ENGINE_ENV, BACKENDS[0])
    names = ["regnet", "regnet_official", "wide_resnet", "wide_resnet_official"]
    with ThreadPoolExecutor(len(names)) as pool:
        models = list(pool.map(lambda n: load(BUNDLED_DIR / n), names))
    assert all(m.compiled is not None for m in models)
    assert len(list((tmp_path / "graphs").glob("*.onnx"))) == len(names)


def test_a_model_the_runtime_cannot_take_is_served_by_torch(tmp_path, monkeypatch, images, caplog):
    monkeypatch.setenv(engine.CACHE_ENV, str(tmp_path))
    reference = loaded(BUNDLED_DIR / "regnet", "torch", monkeypatch)
    monkeypatch.setattr(engine, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no symbolic")))
    fallback = loaded(BUNDLED_DIR / "regnet", BACKENDS[0], monkeypatch)
    assert fallback.compiled is None and "torch serves it" in caplog.text
    assert fallback.predict(images[0]).probability == reference.predict(images[0]).probability


def test_the_app_serves_bf16_where_the_family_gains_and_f32_when_asked(monkeypatch):
    from app import PRECISION_ENV, serving_zoo
    monkeypatch.setenv(engine.ENGINE_ENV, "openvino")
    threads = torch.get_num_threads()  # serving_zoo sets the process's threads, as the app does
    try:
        zoo = serving_zoo()
        assert zoo.get("wide_resnet").compiled.precision == "bf16"
        assert zoo.get("efficientnet_lite0_fracatlas").compiled.precision == "f32"  # depthwise: f32 at "auto"
        monkeypatch.setenv(PRECISION_ENV, "f32")
        assert serving_zoo().get("wide_resnet").compiled.precision == "f32"
    finally:
        torch.set_num_threads(threads)
