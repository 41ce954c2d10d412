"""A small, varied set of real radiographs from both data sets in ``../shared`` (for load and concurrency checks).

Varied on purpose: the app once crashed under concurrent requests for some real files and not for
the bundled example. Returns [] where the shared data is absent.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("FRACTURE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _rows(source: str) -> list[dict]:
    manifest = SHARED_DATA / source / "manifest.csv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh))


def _blob(source: str, row: dict) -> Path:
    return SHARED_DATA / source / "blobs" / (row["sha256"] + (Path(row["file"]).suffix.lower() or ".bin"))


def real_radiographs() -> list[Path]:
    """FracAtlas: an RGB and a greyscale JPEG (the two of the crash report), a truncated file, one per body
    region; Multi-Region: a JPEG, a PNG and a rotated copy, from each label."""
    out: list[Path] = []
    fa = _rows("fracatlas")
    by_file = {r["file"]: r for r in fa}
    picks = [by_file.get("IMG0000000.jpg"), by_file.get("IMG0000058.jpg"),
             next((r for r in fa if r["truncated"] == "1"), None)]
    for region in ("hand", "leg", "hip", "shoulder"):
        picks.append(next((r for r in fa if r[region] == "1" and r["split"] == "test"), None))
    out += [_blob("fracatlas", r) for r in picks if r]
    mr = _rows("bone-fracture-multi-region")
    for label in ("fractured", "not fractured"):
        mine = [r for r in mr if r["label"] == label and r["split"] == "test"]
        picks = [next((r for r in mine if r["file"].lower().endswith(ext)), None) for ext in (".jpg", ".png")]
        picks.append(next((r for r in mine if "rotated" in r["file"]), None))
        out += [_blob("bone-fracture-multi-region", r) for r in picks if r]
    return [p for p in dict.fromkeys(out) if p.is_file()]


def sample_radiographs(per_source: int, seed: int = 0) -> list[Path]:
    """``per_source`` test radiographs drawn at random from each data set (both labels, any body part)."""
    import random
    rng = random.Random(seed)
    out: list[Path] = []
    for source in ("fracatlas", "bone-fracture-multi-region"):
        rows = [r for r in _rows(source) if r["split"] == "test"]
        out += [_blob(source, r) for r in rng.sample(rows, min(per_source, len(rows)))]
    return [p for p in out if p.is_file()]
