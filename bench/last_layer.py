"""Would a last layer refitted on held-out files with every source and class weighing the same (deep feature
reweighting, Kirichenko et al. 2022) rank FracAtlas better than the head that training left?

    python bench/last_layer.py --model assets/models/efficientnet_lite0_fusion \
        --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv

The head training left was fitted where Multi-Region's rotated copies are most of the files, and on files the
features had memorised (train loss near 0.1). Here the model's penultimate features (for a fusion, its tuned
branch's; the mean over four flips) of the pooled validation files are dealt by group into folds; on each fold's
complement a logistic regression is fitted (each source x class cell weighing one quarter, its strength chosen by an
inner split by group on the same complement), and the fold is scored: out-of-fold logits, so no file scores a head
that saw it. Rows: the trained head; the refitted head; the refitted head given the trained head's logit as one more
feature (a correction of it). ROC AUC per source with a paired 95% interval by group against the trained head.
Validation files only; nothing is written but the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load  # noqa: E402
from train.data import ImageCache  # noqa: E402
from train.evaluate import paired_auc_gain_ci  # noqa: E402
from train.sources import Source, group_ids, split_sources  # noqa: E402

STRENGTHS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


@torch.no_grad()
def penultimate(clf, images: np.ndarray, batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """N x D pre-logit features (the mean over the four flips) and the trained head's logit of that mean (for a
    linear head, the mean of the four flips' logits)."""
    net = getattr(clf.unwrapped, "tuned", clf.unwrapped)
    feats = []
    for i in range(0, len(images), batch):
        x = clf.with_flips(clf.normalize(torch.from_numpy(images[i:i + batch])))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f = net.forward_head(net.forward_features(x), pre_logits=True).float()
        feats.append(f.view(4, -1, f.shape[-1]).mean(0))
    f = torch.cat(feats)
    return f.numpy(), net.get_classifier()(f).squeeze(1).numpy()


def cell_weights(y: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Each source x class cell weighs the same in all."""
    w = np.zeros(len(y))
    for o in np.unique(origin):
        for c in (0, 1):
            m = (origin == o) & (y == c)
            w[m] = 1 / max(m.sum(), 1)
    return w * len(y) / w.sum()


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, groups: np.ndarray, free_last: bool = False):
    """Standardised logistic regression; its strength chosen by an inner 4-fold split by group (weighted log loss).
    ``free_last``: the last column (the trained head's logit) scaled up 100-fold, so the penalty all but spares it and
    the fit is that logit plus a shrunk correction."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    if free_last:
        sd[-1] /= 100
    z = (x - mu) / sd
    loss = {}
    for c_ in STRENGTHS:
        losses = []
        for tr, te in GroupKFold(4).split(z, y, groups):
            p = LogisticRegression(C=c_, max_iter=3000).fit(z[tr], y[tr], sample_weight=w[tr]).predict_proba(z[te])[:, 1]
            p = np.clip(p, 1e-6, 1 - 1e-6)
            losses.append(-(w[te] * (y[te] * np.log(p) + (1 - y[te]) * np.log(1 - p))).sum() / w[te].sum())
        loss[c_] = float(np.mean(losses))
    c = min(loss, key=loss.get)
    lr = LogisticRegression(C=c, max_iter=3000).fit(z, y, sample_weight=w)
    return lambda xx: lr.decision_function((xx - mu) / sd), c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    clf = load(args.model)
    sources = [Source.parse(d) for d in args.data]
    splits, _ = split_sources(sources)
    val = ImageCache(clf.image_size).load(splits["val"])
    y, origin = val.labels, np.array([s.source for s in val.samples])
    groups = np.array(group_ids(val.samples, sources))
    feats, trained = penultimate(clf, val.images)
    w = cell_weights(y, origin)
    rows = {"trained head": trained, "refitted head": np.zeros(len(y)), "trained head corrected": np.zeros(len(y))}
    chosen = {"refitted head": [], "trained head corrected": []}
    for tr, te in GroupKFold(args.folds).split(feats, y, groups):
        for name, x, free in (("refitted head", feats, False), ("trained head corrected", np.c_[feats, trained], True)):
            head, c = fit_head(x[tr], y[tr], w[tr], groups[tr], free)
            rows[name][te] = head(x[te])
            chosen[name].append(c)
    out = {"model": args.model, "n_val": len(y), "folds": args.folds, "strengths_chosen": chosen, "rows": {}}
    for name, z in rows.items():
        row = {}
        for src in [s.name for s in sources]:
            m = origin == src
            row[src] = float(roc_auc_score(y[m], z[m]))
            if name != "trained head":
                row[f"{src} minus trained"] = row[src] - float(roc_auc_score(y[m], trained[m]))
                row[f"{src} minus trained ci95"] = paired_auc_gain_ci(y[m], trained[m], z[m], list(groups[m]),
                                                                      args.bootstrap)
        out["rows"][name] = row
        print(name, json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
