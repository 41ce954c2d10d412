"""Frozen-feature linear probe: ``python -m train.probe --data NAME=DIR[:SPLIT_FILE] [--data ...] [--models a,b]``.

How much fracture signal do ImageNet features carry on a split, with no fine-tuning at all? Each
file's features (mean over 8 flipped / quarter-turned views) from one or more backbones are
concatenated; a logistic regression is fitted on the train part, its strength, temperature and
threshold chosen on val, and test is scored with ``train.evaluate``'s metrics and group bootstrap:
pooled and per source (several ``--data`` are pooled for fitting, as ``python -m train`` pools them).
Minutes on a CPU: a ceiling check before spending hours fine-tuning, and a baseline every
fine-tuned model should beat. Writes nothing but its JSON report (stdout, or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fracture_demo.registry import get_spec

from .calibrate import choose_threshold, fit_temperature
from .data import ImageCache, ImageSet, fingerprint
from .features import view_features
from .metrics import bootstrap_ci, compute_metrics, headline
from .sources import Source, add_data_arguments, group_ids, sources_from_args, split_sources

BACKBONES = ("efficientnet_lite0", "mobilenetv2", "mobilenetv3", "regnet")  # those with offline ImageNet weights
STRENGTHS = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 1.0)  # inverse L2 strength C, picked on val


VIEWS = {8: (0, 90, 180, 270), 2: (0,)}  # views -> quarter turns, each also mirrored


def features(sets: dict[str, ImageSet], model: str, pretrained: str, views: int = 8) -> dict[str, np.ndarray]:
    """Per split, N x D mean-over-views features; each distinct file (by content hash) is run once."""
    first: dict[str, int] = {}
    images = []
    for s in sets.values():
        for h, im in zip(s.hashes, s.images):
            if h not in first:
                first[h] = len(images)
                images.append(im)
    _, per_view = view_features(np.stack(images), model, pretrained, angles=VIEWS[views], centre=False)
    mean = per_view.mean(1)
    return {k: mean[[first[h] for h in s.hashes]] for k, s in sets.items()}


def fit(x: dict[str, np.ndarray], y: dict[str, np.ndarray], strengths: tuple[float, ...] = STRENGTHS,
        weights: dict[str, np.ndarray] | None = None) -> dict:
    """Logistic regression on train (classes weighted equally), C by val ROC AUC; probabilities of every split, and
    the fit as ``weight``, ``bias`` on the unstandardised features. ``weights``: per-file weights of "train" (in the
    loss) and "val" (in the ROC AUC that picks C), e.g. ``train.sampling``'s, so that each source has the same say."""
    weights = weights or {}
    mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
    z = {k: (v - mu) / sd for k, v in x.items()}
    sweep, best = [], None
    for c in strengths:
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(z["train"], y["train"],
                                                                                 sample_weight=weights.get("train"))
        auc = float(roc_auc_score(y["val"], lr.decision_function(z["val"]), sample_weight=weights.get("val")))
        sweep.append({"C": c, "val_roc_auc": auc})
        if best is None or auc > best[0]:
            best = (auc, c, lr)
    _, c, lr = best
    t = fit_temperature(lr.decision_function(z["val"]), y["val"])
    prob = {k: 1 / (1 + np.exp(-lr.decision_function(v) / t)) for k, v in z.items()}
    w = lr.coef_[0] / sd  # the same decision function on unstandardised features: a linear layer's weights
    return {"C": c, "temperature": t, "threshold": choose_threshold(y["val"], prob["val"]), "sweep": sweep, "prob": prob,
            "weight": w, "bias": float(lr.intercept_[0] - (w * mu).sum())}


def probe(sources: list[Source], models: list[str], image_size: int = 224, pretrained: str = "local",
          bootstrap: int = 1000, workers: int | None = None, views: int = 8) -> dict:
    for m in models:
        get_spec(m)  # an unknown name fails before minutes of decoding
    parts, dropped = split_sources(sources)
    cache = ImageCache(image_size, workers)
    sets = {k: cache.load(v) for k, v in parts.items()}
    per_model = [features(sets, m, pretrained, views) for m in models]
    x = {k: np.concatenate([f[k] for f in per_model], 1) for k in sets}
    y = {k: s.labels for k, s in sets.items()}
    res = fit(x, y)
    out = {"models": models, "image_size": image_size, "views": views, "sources": [f"{s.name}={s.root}:{s.split_file or ''}" for s in sources],
           "C": res["C"], "temperature": res["temperature"], "threshold": res["threshold"], "sweep": res["sweep"],
           "dropped_as_copies_of_training_files": len(dropped),
           "data_fingerprint": {k: fingerprint(s.samples) for k, s in sets.items()}}
    out["val"] = _scores(y["val"], res["prob"]["val"], res["threshold"])
    test = sets["test"]
    groups = np.array(group_ids(test.samples, sources))
    origin = np.array([s.source for s in test.samples])
    for name in [""] + ([s.name for s in sources] if len(sources) > 1 else []):
        idx = np.flatnonzero(origin == name) if name else np.arange(len(test.samples))
        out[f"{name} test".strip()] = _scores(y["test"][idx], res["prob"]["test"][idx], res["threshold"],
                                              list(groups[idx]), bootstrap)
    return out


def _scores(y: np.ndarray, p: np.ndarray, threshold: float, groups: list[str] | None = None, bootstrap: int = 0) -> dict:
    m = compute_metrics(y, p, threshold)
    out = headline(m) | {"n": m["n"]}
    if groups is not None and bootstrap:
        out["ci95"] = bootstrap_ci(y, p, groups, threshold, bootstrap)
        out["n_groups"] = len(set(groups))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.probe", description=__doc__.split("\n")[0])
    add_data_arguments(ap, folder=True, split_mode="grouped")  # pooled for fitting, scored per source
    ap.add_argument("--models", default=",".join(BACKBONES), help="comma-separated registry names (features concatenated)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--views", type=int, default=8, choices=sorted(VIEWS),
                    help="features averaged over 8 views (flips, quarter turns) or 2 (the image and its mirror)")
    ap.add_argument("--pretrained", default="local", help="hub | none | local | PATH, as for python -m train")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the JSON report here as well")
    args = ap.parse_args(argv)
    try:
        sources = sources_from_args(args)
        report = probe(sources, args.models.split(","), args.image_size, args.pretrained, args.bootstrap, args.workers,
                       args.views)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
