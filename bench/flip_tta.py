"""Does averaging a model's logits over its four flips (test-time augmentation) rank radiographs better?

    python bench/flip_tta.py --model assets/models/efficientnet_lite0 \
        --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv [--split val]

The app already computes the image, its horizontal, vertical and double flips in one pass (the spread it
shows); using their mean as the prediction would cost nothing there. ROC AUC of the first view against the
mean of four, pooled and per source, on validation data (where such a choice is made; never test).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load  # noqa: E402
from train.data import ImageCache  # noqa: E402
from train.evaluate import predict_logits  # noqa: E402
from train.sources import Source, split_sources  # noqa: E402


def flip_logits(clf, images: np.ndarray) -> np.ndarray:
    """4 x N logits: each image as is, flipped left-right, upside down, and both (uint8 N x 1 x S x S)."""
    views = (images, images[..., ::-1], images[..., ::-1, :], images[..., ::-1, ::-1])
    return np.stack([predict_logits(clf, np.ascontiguousarray(v)) for v in views])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    args = ap.parse_args()
    clf = load(args.model)
    splits, _ = split_sources([Source.parse(d) for d in args.data])
    data = ImageCache(clf.image_size).load(splits[args.split])
    logits = flip_logits(clf, data.images)
    origin = np.array([s.source for s in data.samples])
    rows = {"pooled": np.arange(len(origin))} | {n: np.flatnonzero(origin == n) for n in dict.fromkeys(origin)}
    out = {name: {"n": len(idx), "one_view_roc_auc": round(float(roc_auc_score(data.labels[idx], logits[0, idx])), 4),
                  "mean_of_4_roc_auc": round(float(roc_auc_score(data.labels[idx], logits[:, idx].mean(0))), 4)}
           for name, idx in rows.items()}
    print(json.dumps({"model": args.model, "split": args.split} | out, indent=1))


if __name__ == "__main__":
    main()
