"""Inference-time choices that cost no training, measured on validation data (where choices are made).

    python bench/inference_choices.py --model assets/models/efficientnet_lite0_fusion --model assets/models/regnet \
        --model assets/models/mobilenetv3_fusion --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv

ROC AUC, pooled and per source, of
  flips       each model's first view against the mean logit of four (as is, left-right, upside down, both):
              the app computes all four in one pass already (the spread it shows), so using their mean is free;
  ensembles   the mean calibrated P(fractured) of every subset of the models, as the app's Compare tab shows it;
  wise        (``--interpolate 1,0.8,0.6``) the first model's weights moved back toward its ImageNet start,
              (1 - a) x start + a x fine-tuned (WiSE-FT, Wortsman et al. 2022: robustness to other hospitals?),
              BatchNorm recounted for each a (a = 1: the recount alone) as training does (train.batchnorm);
  sizes       (``--sizes 384,448``) each model's own prediction from its input at other sizes (a CNN takes any), alone
              and averaged with its own size's: multi-scale test-time inputs (a fusion's frozen branch keeps its size).
``--split test`` scores the same choices on test, for the one validation picked (not to pick one).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load  # noqa: E402
from train.data import ImageCache  # noqa: E402
from fracture_demo import FractureClassifier  # noqa: E402
from train.batchnorm import precise_batch_stats  # noqa: E402
from train.evaluate import model_labels, predict_logits  # noqa: E402
from train.sources import Source, split_sources  # noqa: E402


def flip_logits(clf: FractureClassifier, images: np.ndarray) -> np.ndarray:
    """4 x N logits of each view alone, in ``with_flips``' order (uint8 N x 1 x S x S), whatever views ``clf`` predicts from."""
    one_view = FractureClassifier(clf.model, {**clf.config, "views": 1})
    return predict_logits(one_view, clf.with_flips(torch.from_numpy(images)).numpy()).reshape(4, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="model folder (repeat)")
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--flips", action=argparse.BooleanOptionalAction, default=True, help="score the flip means (4x the work)")
    ap.add_argument("--interpolate", default="", help="comma-separated a: the first model's weights toward its start")
    ap.add_argument("--sizes", default="", help="comma-separated input sizes to score each CNN's prediction at")
    args = ap.parse_args()
    splits, _ = split_sources([Source.parse(d) for d in args.data])
    probs, y, origin = {}, None, None
    out = {"split": args.split, "flips": {}, "ensembles": {}, "wise": {}, "sizes": {}}

    def aucs(score: np.ndarray) -> dict:
        rows = {"pooled": np.arange(len(y))} | {str(n): np.flatnonzero(origin == n) for n in dict.fromkeys(origin)}
        return {k: round(float(roc_auc_score(y[i], score[i])), 4) for k, i in rows.items()}

    for folder, name in zip(args.model, model_labels(args.model)):
        clf = load(folder)
        data = ImageCache(clf.image_size).load(splits[args.split])
        if y is not None and not np.array_equal(y, data.labels):
            raise SystemExit("the models' files differ (a file decodes at one size and not another?)")
        y, origin = data.labels, np.array([s.source for s in data.samples])
        if args.flips:
            logits = flip_logits(clf, data.images)
            own = clf.view_mean(torch.from_numpy(logits), len(data.images)).numpy()  # the model's own prediction
            out["flips"][name] = {"one_view": aucs(logits[0]), "mean_of_4": aucs(logits.mean(0))}
        else:
            own = predict_logits(clf, data.images)
            out["flips"][name] = {"own_prediction": aucs(own)}
        probs[name] = clf.probability(torch.from_numpy(own)).numpy()
        print(name, out["flips"][name], file=sys.stderr, flush=True)
        for size in (int(x) for x in args.sizes.split(",") if x):
            other = ImageCache(size).load(splits[args.split])
            if other.hashes != data.hashes:
                raise SystemExit(f"a file decodes at {clf.image_size} px and not at {size}")
            z = predict_logits(clf, other.images)
            out["sizes"][f"{name} at {size}"] = {"alone": aucs(z), f"mean with {clf.image_size}": aucs((z + own) / 2)}
            print(size, out["sizes"][f"{name} at {size}"], file=sys.stderr, flush=True)
    for k in range(2, len(probs) + 1):
        for combo in itertools.combinations(probs, k):
            out["ensembles"][" + ".join(combo)] = aucs(np.mean([probs[c] for c in combo], 0))
    if out["ensembles"]:
        out["best_ensemble"] = max(out["ensembles"], key=lambda k: out["ensembles"][k]["pooled"])
    if args.interpolate:
        first = load(args.model[0])
        fine = {k: v.clone() for k, v in first.model.state_dict().items()}
        start = FractureClassifier.new(first.arch, "local", first.image_size).model.state_dict()
        cache = ImageCache(first.image_size)
        train_images, scored = torch.from_numpy(cache.load(splits["train"]).images), cache.load(splits[args.split]).images
        for a in (float(x) for x in args.interpolate.split(",")):
            first.model.load_state_dict({k: (1 - a) * start[k].to(v) + a * v if v.is_floating_point() else v
                                         for k, v in fine.items()})
            precise_batch_stats(first.model, train_images, first.config["mean"], first.config["std"], None, False)
            out["wise"][str(a)] = aucs(predict_logits(first, scored))
            print("a", a, out["wise"][str(a)], file=sys.stderr, flush=True)
    out["n"] = len(y)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
