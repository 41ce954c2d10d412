"""Does contrast normalisation carry a model across hospitals? Frozen ImageNet features of each radiograph as
decoded, histogram-equalised, or CLAHE-equalised, a linear probe fitted on one source's train files (or both),
scored on every source's validation files: the cross-hospital cells are where a normalisation should pay.

    python bench/equalize.py --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv --json runs/equalize.json

  none    the uint8 image as the app decodes it
  global  histogram equalisation (every grey level spread to an equal share of pixels)
  clahe   contrast-limited adaptive equalisation (scikit-image, 8x8 tiles, clip 0.01): local contrast, so a
          dark film and a bright one look alike without one bright implant flattening the rest
Features: EfficientNet-Lite0 (ImageNet, frozen) at 224 px, the mean over four flips, as the fusion's floor computes
them (``train.features.floor_features``); the probe is ``train.probe.fit`` (C chosen on the pooled validation
files). ROC AUC with a 95% interval by group. ``--split test`` scores test files instead (after a choice).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.data import ImageCache  # noqa: E402
from train.evaluate import bootstrap_ci, paired_auc_gain_ci  # noqa: E402
from train.features import equalised, floor_features  # noqa: E402
from train.probe import fit  # noqa: E402
from train.sources import Source, group_ids, split_sources  # noqa: E402

SIZE = 224


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--how", default="none,global,clahe")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sources = [Source.parse(d) for d in args.data]
    splits, _ = split_sources(sources)
    cache = ImageCache(SIZE)
    sets = {(s.name, part): cache.load([x for x in splits[part] if x.source == s.name])
            for s in sources for part in ("train", "val", args.split)}
    out: dict = {"split": args.split, "features": f"efficientnet_lite0 ImageNet, {SIZE} px, mean of 4 flips", "cells": []}
    logits: dict[tuple[str, str, str], np.ndarray] = {}
    for how in args.how.split(","):
        feats = {k: floor_features(equalised(v.images, how), "efficientnet_lite0", SIZE)["avg"] for k, v in sets.items()}
        for fitted_on in [[s.name] for s in sources] + [[s.name for s in sources]]:
            x = {"train": np.concatenate([feats[(n, "train")] for n in fitted_on]),
                 "val": np.concatenate([feats[(s.name, "val")] for s in sources])}
            y = {"train": np.concatenate([sets[(n, "train")].labels for n in fitted_on]),
                 "val": np.concatenate([sets[(s.name, "val")].labels for s in sources])}
            res = fit(x, y)
            for s in sources:
                logits[(how, "+".join(fitted_on), s.name)] = feats[(s.name, args.split)] @ res["weight"] + res["bias"]
    base = args.how.split(",")[0]
    for (how, fitted_on, scored_on), z in logits.items():
        scored = sets[(scored_on, args.split)]
        y, groups = scored.labels, group_ids(scored.samples, sources)
        cell = {"how": how, "fitted_on": fitted_on, "scored_on": scored_on, "n": len(y), "roc_auc": roc_auc_score(y, z),
                "roc_auc_ci95": bootstrap_ci(y, z, groups, 0.0, args.bootstrap, keys=("roc_auc",))["roc_auc"]}
        if how != base:  # paired: the same resampled groups score both
            z0 = logits[(base, fitted_on, scored_on)]
            cell[f"minus_{base}"] = cell["roc_auc"] - roc_auc_score(y, z0)
            cell[f"minus_{base}_ci95"] = paired_auc_gain_ci(y, z0, z, groups, args.bootstrap)
        cell = {k: float(v) if isinstance(v, np.floating) else v for k, v in cell.items()}
        out["cells"].append(cell)
        print(json.dumps(cell), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
