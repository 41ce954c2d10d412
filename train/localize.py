"""Do the maps point at the fracture? ``python -m train.localize --model DIR [...] --data DIR``.

On the FracAtlas test fractures (boxes drawn by the data set's annotators), for every model and
explanation method, the map of the evidence for "fractured":
  pointing game   is the map's peak inside a drawn box grown by ``TOLERANCE`` of the image's longer
                  side on every side (15 px at 224 px, the tolerance of Zhang et al.'s pointing game)?
                  Reported as hits / fractures with a 95% interval by group (runs of one patient's views).
  mass ratio      the share of the map's mass inside the boxes divided by the boxes' share of the image
                  area: 1 = no better than a uniform map, higher = concentrated on the fracture.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fracture_demo import get_spec, load
from fracture_demo.classifier import LABELS

from .evaluate import model_labels
from .sources import Source, add_data_arguments, sources_from_args

TOLERANCE = 15 / 224
Box = tuple[float, float, float, float]  # x, y, width, height in the stored image's pixels


def box_mask(shape: tuple[int, int], boxes: list[Box], scale: tuple[float, float] = (1.0, 1.0), grow: float = 0.0) -> np.ndarray:
    """Boolean HxW mask of the union of ``boxes`` (scaled by (sx, sy), grown by ``grow`` pixels)."""
    h, w = shape
    mask = np.zeros(shape, bool)
    for x, y, bw, bh in boxes:
        x0, y0 = int(np.floor(x * scale[0] - grow)), int(np.floor(y * scale[1] - grow))
        x1, y1 = int(np.ceil((x + bw) * scale[0] + grow)), int(np.ceil((y + bh) * scale[1] + grow))
        mask[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    return mask


def pointing_hit(heat: np.ndarray, boxes: list[Box], scale: tuple[float, float] = (1.0, 1.0),
                 tolerance: float = TOLERANCE) -> bool:
    """Is the heatmap's peak inside a box grown by ``tolerance`` x the map's longer side?"""
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(box_mask(heat.shape, boxes, scale, tolerance * max(heat.shape))[peak])


def mass_ratio(heat: np.ndarray, boxes: list[Box], scale: tuple[float, float] = (1.0, 1.0)) -> float:
    """(map mass inside the boxes / all its mass) / (box area / image area); nan for an empty map."""
    mask = box_mask(heat.shape, boxes, scale)
    total = float(heat.sum())
    if total <= 0 or not mask.any():
        return float("nan")
    return float(heat[mask].sum() / total / mask.mean())


def read_boxes(annotations: str | Path) -> dict[str, list[Box]]:
    """File name -> its drawn fracture boxes (COCO ``bbox``), joined on ``file_name``."""
    coco = json.loads(Path(annotations).read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    boxes: dict[str, list[Box]] = defaultdict(list)
    for a in coco["annotations"]:
        boxes[names[a["image_id"]]].append(tuple(a["bbox"]))
    return dict(boxes)


@dataclass
class Case:
    path: Path
    boxes: list[Box]
    group: str


def fracture_cases(source: Source, annotations: str | Path, split: str = "test") -> list[Case]:
    """The fractured files of ``split`` that have drawn boxes."""
    boxes = read_boxes(annotations)
    groups = source.groups()
    return [Case(s.path, boxes[s.path.name], groups.get(s.rel, s.rel)) for s in source.splits()[split]
            if s.label == 1 and s.path.name in boxes]


def _interval(hits: np.ndarray, groups: list[str], n: int = 1000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    draws = [hits[np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])].mean() for _ in range(n)]
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def score(clf, cases: list[Case], method: str, bootstrap: int = 1000) -> dict:
    """Pointing game and mass ratio of one model's ``method`` maps of "fractured" over ``cases``."""
    hits, ratios = [], []
    t0 = time.perf_counter()
    for case in cases:
        e = clf.explain(case.path, method=method, target=LABELS[1])
        with Image.open(case.path) as im:  # boxes are in the stored file's pixels
            stored = im.size
        scale = (e.heatmap.shape[1] / stored[0], e.heatmap.shape[0] / stored[1])
        hits.append(pointing_hit(e.heatmap, case.boxes, scale))
        ratios.append(mass_ratio(e.heatmap, case.boxes, scale))
    h = np.array(hits, float)
    return {"n": len(cases), "hits": int(h.sum()), "pointing_game": float(h.mean()) if len(h) else float("nan"),
            "pointing_game_ci95": _interval(h, [c.group for c in cases], bootstrap) if len(h) else None,
            "mass_ratio": float(np.nanmean(ratios)) if ratios else float("nan"),
            "seconds_per_image": (time.perf_counter() - t0) / max(1, len(cases))}


def localize(models: list[str], cases: list[Case], methods: list[str] | None = None, bootstrap: int = 1000) -> dict:
    """model label (``model_labels``) -> method -> scores; ``methods`` limits each model's own list."""
    out = {}
    for folder, label in zip(models, model_labels(models)):
        clf = load(folder)
        own = get_spec(clf.arch).explain_methods
        out[label] = {m: score(clf, cases, m, bootstrap) for m in own if methods is None or m in methods}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.localize", description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="model folder (repeat)")
    add_data_arguments(ap, default=["fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv"])
    ap.add_argument("--annotations", default="../shared/data/fracatlas/annotations.json", help="COCO boxes, joined on file name")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: every method of each model)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", default=None, help="write the scores here")
    args = ap.parse_args(argv)
    try:
        source = sources_from_args(args)[0]
        cases = fracture_cases(source, args.annotations, args.split)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print(f"error: no fractured {args.split} images with boxes in {source.arg()}", file=sys.stderr)
        return 2
    scores = localize(args.model, cases, args.methods.split(",") if args.methods else None, args.bootstrap)
    for model, by_method in scores.items():
        for method, s in by_method.items():
            lo, hi = s["pointing_game_ci95"]
            print(f"{model:28s} {method:18s} pointing game {s['hits']}/{s['n']} = {s['pointing_game']:.3f} "
                  f"[{lo:.3f}, {hi:.3f}]  mass ratio {s['mass_ratio']:.2f}  {s['seconds_per_image']:.2f} s/img")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": len(cases), "tolerance": TOLERANCE, "scores": scores}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
