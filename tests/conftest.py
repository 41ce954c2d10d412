"""A tiny synthetic data set in Kaggle's layout, with the odd and broken files real data has.

Class depends on a bright square ("fracture") placed at a random spot on a noisy grey image,
so a model can learn it in a few steps and its explanation should peak on the square.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# exported inference graphs (fracture_demo.engine) go to a folder of the tests', not the user's cache
os.environ.setdefault("FRACTURE_CACHE", str(Path(tempfile.gettempdir()) / "fracture_demo_tests"))

from train.sources import Source  # noqa: E402  (after the environment: the Hub client reads it on import)

if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per xdist worker: as many threads as the -n workers
    import torch  # noqa: E402

    torch.set_num_threads(1)


def synthetic_xray(rng: np.random.Generator, fractured: bool, size: int = 96) -> tuple[Image.Image, tuple[int, int]]:
    img = rng.normal(60, 12, (size, size)).clip(0, 255)
    yy, xx = np.mgrid[:size, :size]
    img += 50 * np.exp(-(((xx - size / 2) / (size / 4)) ** 2))  # a "bone"
    cy, cx = rng.integers(size // 5, size - size // 5, 2)
    if fractured:
        img[cy - size // 10:cy + size // 10, cx - size // 10:cx + size // 10] = 250
    return Image.fromarray(img.clip(0, 255).astype(np.uint8), "L"), (int(cy), int(cx))


def make_dataset(root: Path, per_class: dict[str, int], seed: int = 0, bad_files: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for label in ("fractured", "not fractured"):
            d = root / split / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img, _ = synthetic_xray(rng, label == "fractured")
                mode = i % 4
                if mode == 1:
                    img = img.convert("RGB")
                if mode == 2:
                    img.convert("RGBA").save(d / f"{i}.png")
                    continue
                if mode == 3:
                    img.convert("P").save(d / f"{i}.png")
                    continue
                img.save(d / f"{i}.jpg", quality=90)
    if bad_files:
        tr = root / "train" / "not fractured"
        buf = io.BytesIO()
        synthetic_xray(rng, False)[0].save(buf, "JPEG")
        (tr / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        (tr / "empty.jpg").write_bytes(b"")
        (tr / "notes.jpg").write_text("this is not an image")
        buf = io.BytesIO()
        synthetic_xray(rng, False)[0].save(buf, "PNG")
        (tr / "png_inside.jpg").write_bytes(buf.getvalue())
        arr16 = (np.asarray(synthetic_xray(rng, True)[0], np.uint16) * 200)
        Image.fromarray(arr16).save(root / "train" / "fractured" / "sixteen.png")  # uint16: Pillow reads it as "I;16"
    return root


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), {"train": 24, "val": 8, "test": 8})


@pytest.fixture(scope="session")
def two_sources(dataset, tmp_path_factory):
    """Source A = the shared synthetic set; source B = another one, plus a byte copy of one of A's
    training files put in B's test split and in B's val split."""
    b = make_dataset(tmp_path_factory.mktemp("b"), {"train": 12, "val": 6, "test": 6}, seed=7, bad_files=False)
    src = dataset / "train" / "fractured" / "0.jpg"
    shutil.copy(src, b / "test" / "fractured" / "copy_of_a.jpg")
    shutil.copy(src, b / "val" / "fractured" / "copy_of_a.jpg")
    split = b / "split.csv"  # B's own split file, one group per run of 4 files
    with open(split, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "official_split", "group", "split"])
        for p in sorted(b.glob("*/*/*")):
            rel = p.relative_to(b).as_posix()
            digits = "".join(c for c in p.stem if c.isdigit())
            w.writerow([rel, int("/fractured/" in f"/{rel}"), rel.split("/")[0], f"g{int(digits or 0) // 4}", rel.split("/")[0]])
    return [Source("a", dataset), Source("b", b, split)]
