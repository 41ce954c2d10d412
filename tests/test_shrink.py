"""The shrunk copy that travels to a GPU machine: same names, smaller images, the same files skipped."""
from __future__ import annotations

import shutil
import tarfile

import numpy as np
import pytest
from conftest import make_dataset
from PIL import Image
from safetensors.torch import load_file, save_file

from train.card import _copies
from train.data import ImageCache, fingerprint, scan
from train.shrink import MARKER, copy_of, shrink


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_shrink_keeps_names_skips_and_duplicates(tmp_path, fmt):
    src = make_dataset(tmp_path / "src", {"train": 4, "val": 2, "test": 2})
    shutil.copy(src / "val" / "fractured" / "0.jpg", src / "test" / "fractured" / "copy_of_val_0.jpg")
    tar_path = tmp_path / "data.tar"
    distinct = shrink(str(src), str(tar_path), size=64, fmt=fmt, prefix="d")
    with tarfile.open(tar_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        tar.extractall(tmp_path / "out", filter="tar")
    original = scan(src)
    assert set(members) == {f"d/{s.rel}" for s in original} | {f"d/{MARKER}"}
    made = copy_of(tmp_path / "out" / "d")  # what a model trained on the copy records, and its card says
    assert made["size"] == 64 and made["format"] == fmt.lower() and made["original_fingerprint"] == fingerprint(original)
    assert copy_of(src) is None and _copies({"x": {"copy": None}}) == ""
    assert "`x` at 64 px" in _copies({"x": {"copy": made}})
    assert members["d/test/fractured/copy_of_val_0.jpg"].islnk()
    assert distinct == len(original) - 1

    before, after = ImageCache(64).load(original), ImageCache(64).load(scan(tmp_path / "out" / "d"))
    assert before.skipped.keys() == after.skipped.keys() and before.skipped
    for name in before.skipped:  # unreadable files travel without their bytes
        assert members[f"d/{name}"].size == 0
    img = Image.open(tmp_path / "out" / "d" / "train" / "fractured" / "1.jpg")
    assert (img.format, img.size) == (fmt, (64, 64))  # WebP has no grey mode: decoded as RGB, trained as grey
    assert [s.rel for s in after.samples] == [s.rel for s in before.samples]
    diff = np.abs(after.images.astype(float) - before.images.astype(float)).mean()
    assert diff < 3, f"the copy decodes {diff:.1f} grey levels away from the original"


def test_shrunk_weights_drop_the_classifier_and_keep_the_features(tmp_path):
    import timm
    import torch

    from fracture_demo import create_model
    from train.shrink import shrink_weights
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    full = timm.create_model("tf_mobilenetv3_small_100", num_classes=1000)  # as ImageNet files are: 1,000 classes
    save_file(full.state_dict(), src / "tf_mobilenetv3_small_100.safetensors")
    assert shrink_weights(src, out) == ["tf_mobilenetv3_small_100.safetensors"]
    slim = load_file(out / "tf_mobilenetv3_small_100.safetensors")
    assert not any(k.startswith("classifier.") for k in slim) and slim["conv_stem.weight"].dtype == torch.float16
    x = torch.rand(1, 3, 96, 96)
    a, b = (create_model("mobilenetv3", d / "tf_mobilenetv3_small_100.safetensors").eval() for d in (src, out))
    with torch.no_grad():
        fa, fb = a.forward_features(x), b.forward_features(x)
    assert ((fa - fb).abs().max() / fa.abs().max()) < 0.01
