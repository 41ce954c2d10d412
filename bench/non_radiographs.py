"""Images that are not bone radiographs, for measuring the radiograph guard; all offline, all public.

Sources (credited): scikit-image's sample data (``skimage.data``: public domain or CC0/CC BY as its
documentation lists per image, e.g. the astronaut photo by NASA, the retina by Häggström CC0, the
Shepp-Logan CT phantom), matplotlib's sample data (Grace Hopper's portrait, public domain; an MRI
slice ``s1045.ima``), and images this module draws itself (documents, screenshots, drawings).
Each source image also enters as a centre crop and a greyscale version, as users upload both.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = {
    "photo": ["astronaut", "camera", "cat", "chelsea", "coffee", "rocket", "clock", "coins", "moon", "brick", "grass",
              "gravel", "hubble_deep_field", "mpl:grace_hopper.jpg", "mpl:Minduka_Present_Blue_Pack.png"],
    "document": ["page", "text"],
    "drawing": ["horse", "logo", "colorwheel", "checkerboard", "binary_blobs", "mpl:logo2.png"],
    "other modality": ["retina", "microaneurysms", "cell", "immunohistochemistry", "shepp_logan_phantom", "mpl:s1045.ima.gz"],
}


def _to_image(arr: np.ndarray) -> Image.Image:
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = ((arr - arr.min()) / max(float(np.ptp(arr)), 1e-8) * 255).astype(np.uint8)
    return Image.fromarray(arr)


def _sample(name: str) -> Image.Image:
    if name.startswith("mpl:"):
        from matplotlib import cbook
        path = Path(cbook.get_sample_data(name[4:], asfileobj=False))
        if path.suffix == ".gz":  # s1045.ima: a 256x256 16-bit MRI slice, big-endian
            return _to_image(np.frombuffer(gzip.open(path).read(), ">u2").reshape(256, 256).astype(np.float32))
        return Image.open(path).convert("RGB")
    import skimage.data
    return _to_image(getattr(skimage.data, name)())


def _drawn(rng: np.random.Generator, kind: str, size=(640, 480)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    if kind == "document":
        for y in range(30, size[1] - 20, 18):
            d.text((30, y), " ".join("".join(chr(97 + rng.integers(26)) for _ in range(rng.integers(2, 9)))
                                     for _ in range(10)), fill="black")
    elif kind == "screenshot":
        d.rectangle((0, 0, size[0], 28), fill=(60, 60, 70))
        for i in range(int(rng.integers(3, 7))):
            x, y = int(rng.integers(10, size[0] - 200)), int(rng.integers(40, size[1] - 80))
            d.rectangle((x, y, x + 180, y + 60), outline=(90, 90, 90), fill=tuple(int(c) for c in rng.integers(180, 255, 3)))
            d.text((x + 8, y + 8), f"Button {i}", fill="black")
    else:  # a drawing: random strokes and shapes
        for _ in range(12):
            box = sorted(rng.integers(0, size[0], 2).tolist()), sorted(rng.integers(0, size[1], 2).tolist())
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            (d.ellipse if rng.random() < 0.5 else d.line)((box[0][0], box[1][0], box[0][1], box[1][1]), fill=colour, width=4)
    return img


def non_radiographs(out_dir: str | Path, drawn_per_kind: int = 6, seed: int = 0) -> list[tuple[Path, str]]:
    """Write the set under ``out_dir``; returns (file, category) pairs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items: list[tuple[Image.Image, str, str]] = []
    for category, names in CATEGORIES.items():
        for name in names:
            img = _sample(name)
            w, h = img.size
            crop = img.crop((w // 6, h // 6, w - w // 6, h - h // 6))
            items += [(img, category, name), (crop, category, name + "-crop"), (img.convert("L"), category, name + "-grey")]
    rng = np.random.default_rng(seed)
    for kind, category in (("document", "document"), ("screenshot", "screenshot"), ("drawing", "drawing")):
        items += [(_drawn(rng, kind), category, f"drawn-{kind}-{i}") for i in range(drawn_per_kind)]
    out = []
    for img, category, name in items:
        path = out_dir / f"{name.replace(':', '_').replace('.', '_')}.png"
        img.save(path)
        out.append((path, category))
    return out
