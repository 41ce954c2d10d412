"""Does the frozen-feature floor add to a fine-tuned model? Chosen on validation, then scored once on test.

    python bench/fusion.py --model assets/models/efficientnet_lite0 \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv

The floor (``train.probe``: a logistic regression on frozen ImageNet features, fitted on the sources' train
files) and the model each give a calibrated logit per file; the fusion is ``w x probe + (1 - w) x model``.
``w`` is chosen on validation ROC AUC of the first source (the other hospital's question), the threshold on
validation too (maximum balanced accuracy); only then is test scored (the model alone, the fusion, the floor
alone), with 95% intervals by group. Nothing here is bundled: it says whether a second, frozen backbone is
worth its milliseconds and megabytes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load  # noqa: E402
from train.data import ImageCache  # noqa: E402
from train.evaluate import bootstrap_ci, choose_threshold, compute_metrics, headline, predict_logits  # noqa: E402
from train.probe import features, fit  # noqa: E402
from train.sources import Source, group_ids, split_sources  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="fine-tuned model folder")
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--backbones", default="efficientnet_lite0", help="the probe's frozen backbones (comma-separated)")
    ap.add_argument("--probe-size", type=int, default=224)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    sources = [Source.parse(d) for d in args.data]
    splits, _ = split_sources(sources)
    small = {k: ImageCache(args.probe_size).load(v) for k, v in splits.items()}
    per = [features(small, m, "local") for m in args.backbones.split(",")]
    x = {k: np.concatenate([f[k] for f in per], 1) for k in small}
    probe = fit(x, {k: s.labels for k, s in small.items()})
    print("probe C", probe["C"], file=sys.stderr, flush=True)

    clf = load(args.model)
    scored = {}
    for part in ("val", "test"):
        data = ImageCache(clf.image_size).load(splits[part])
        if [s.path for s in data.samples] != [s.path for s in small[part].samples]:
            raise SystemExit("a file decodes at one size and not the other")
        p_model = clf.probability(torch.from_numpy(predict_logits(clf, data.images))).numpy()
        scored[part] = (data, logit(p_model), logit(probe["prob"][part]))

    first = sources[0].name
    val, lm, lp = scored["val"]
    on_first = np.array([s.source == first for s in val.samples])
    out = {"model": args.model, "backbones": args.backbones, "probe_size": args.probe_size, "probe_C": probe["C"],
           "chosen_on": f"{first} val ROC AUC", "val": {}, "test": {}}
    for w in WEIGHTS:
        fused = w * lp + (1 - w) * lm
        out["val"][str(w)] = {"pooled": float(roc_auc_score(val.labels, fused)),
                              first: float(roc_auc_score(val.labels[on_first], fused[on_first]))}
    w = max(WEIGHTS, key=lambda k: out["val"][str(k)][first])
    out["chosen_w"] = w
    test, tm, tp = scored["test"]
    groups = np.array(group_ids(test.samples, sources))
    origin = np.array([s.source for s in test.samples])
    for cand in sorted({0.0, w, 1.0}):
        p = 1 / (1 + np.exp(-(cand * tp + (1 - cand) * tm)))
        t_val = 1 / (1 + np.exp(-(cand * lp + (1 - cand) * lm)))
        thr = choose_threshold(val.labels, t_val)
        for name in dict.fromkeys(origin):
            i = np.flatnonzero(origin == name)
            m = headline(compute_metrics(test.labels[i], p[i], thr))
            m["ci95"] = bootstrap_ci(test.labels[i], p[i], list(groups[i]), thr, args.bootstrap)
            out["test"][f"w={cand} {name}"] = m
            print(f"w={cand} {name} test", json.dumps(m), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
