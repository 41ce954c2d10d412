"""Score a model folder or Hub id on any Kaggle-layout folder.

``python -m train.evaluate --model M --data-dir D [--split test] [--split-mode official|grouped] [--json]``
prints the original study's classification report plus balanced accuracy, ROC AUC, expected
calibration error and the confusion matrix; ``--json`` prints one JSON object instead.
``--data NAME=DIR[:SPLIT_FILE]`` (repeatable) instead of ``--data-dir`` scores each named source's
split on its own (its split file's groups for the intervals); ``--json`` then prints one object per source.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, classification_report,
                             confusion_matrix, f1_score, roc_auc_score, roc_curve)

from fracture_demo import load
from fracture_demo.classifier import LABELS, FractureClassifier

from .data import ImageCache, ImageSet, default_split_file, fingerprint, groups_of, scan, split_samples
from .sources import Source, group_ids, split_sources


def model_labels(folders: list[str]) -> list[str]:
    """Each model folder's name, or the path as given where two names collide (an incumbent and its candidate run
    are both ``custom_cnn``), so that tables keyed by label never let one model overwrite another."""
    names = [Path(f).name for f in folders]
    return [n if names.count(n) == 1 else str(f) for f, n in zip(folders, names)]


@torch.no_grad()
def predict_logits(clf: FractureClassifier, images: np.ndarray, batch_size: int | None = None,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Raw logits for a uint8 N x 1 x S x S array (S = the model's input size); for a model with 4 views, each
    image's mean logit over its flips (a batch then holds a quarter of the images).

    ``batch_size`` defaults to 16 on a CPU, where throughput no longer grows beyond it and a larger batch only
    raises the peak heap that the kernel first faults in page by page (bench/cpu_time.py: batch 64 at 320 px,
    9-13% of CPU time in the kernel and 4 GB; batch 16, 5% and 2 GB, same wall time); 64 on a GPU.
    """
    batch_size = max(1, (batch_size or (16 if torch.device(device).type == "cpu" else 64)) // clf.views)
    model = clf.model.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = clf.normalize(torch.from_numpy(images[i:i + batch_size]).to(device))
        if clf.views > 1:  # the model's own test-time views, as its predict() sees them
            x = clf.with_flips(x)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"):
            out.append(clf.view_mean(model(x), len(x) // clf.views).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def predict_probabilities(clf: FractureClassifier, images: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Calibrated P(fractured) for decoded images, as the model's own ``predict`` gives it (views, temperature, bias)."""
    return clf.probability(torch.from_numpy(predict_logits(clf, images, device=device))).numpy()


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Binary ECE over P(fractured), equal-width bins."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(err)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): one scalar fitted by NLL on validation logits."""
    return fit_calibration(logits, y, with_bias=False)[0]


def fit_calibration(logits: np.ndarray, y: np.ndarray, with_bias: bool = True,
                    weight: np.ndarray | None = None) -> tuple[float, float]:
    """Platt scaling, ``sigmoid(logit / T + b)``, fitted by NLL on validation logits (each file's term times
    ``weight``, e.g. to give every source the same say).

    The bias matters here: class-balanced BCE (positive weight ~4.7 on FracAtlas) shifts every logit by
    about log(4.7), which a temperature alone cannot undo (validation ECE 0.15 after temperature scaling).
    """
    z, t = torch.tensor(logits, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    w = None if weight is None else torch.tensor(weight / np.mean(weight), dtype=torch.float64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=with_bias)
    opt = torch.optim.LBFGS([log_t, bias] if with_bias else [log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp() + bias, t, weight=w)
        loss.backward()
        return loss
    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0)), float(bias.item())


def choose_threshold(y: np.ndarray, p: np.ndarray, min_sensitivity: float | None = None) -> float:
    """Threshold maximising balanced accuracy (Youden's J) on validation data, or, for an operating
    point where a missed fracture costs more than a second look, the highest one whose sensitivity
    is at least ``min_sensitivity``."""
    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    best = int(np.argmax(tpr >= min_sensitivity)) if min_sensitivity else int(np.argmax(tpr - fpr))
    return float(np.clip(thr[best], 1e-6, 1 - 1e-6))


def compute_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    """The study's report plus the numbers an honest comparison needs."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else float("nan"),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=[0, 1], zero_division=0)),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "ece": expected_calibration_error(y, np.asarray(p)),
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "report": classification_report(y, pred, labels=[0, 1], target_names=LABELS, output_dict=True, zero_division=0),
    }


def headline(m: dict) -> dict:
    """The few numbers a model's config.json keeps per test set (the app's dropdown shows them)."""
    return {k: m[k] for k in ("accuracy", "balanced_accuracy", "roc_auc", "ece", "macro_f1")}


def bootstrap_ci(y: np.ndarray, p: np.ndarray, groups: list[str], threshold: float, n: int = 1000,
                 seed: int = 0, keys: tuple[str, ...] = ("accuracy", "balanced_accuracy", "roc_auc", "macro_f1")) -> dict:
    """95% intervals, resampling whole groups (related images are not independent)."""
    draws = {k: [] for k in keys}
    for idx in group_resamples(groups, n, seed):
        yy, pp = y[idx], p[idx]
        if len(np.unique(yy)) < 2:
            continue
        pred = pp >= threshold
        vals = {"accuracy": lambda: float((pred == yy).mean()),
                "balanced_accuracy": lambda: float(balanced_accuracy_score(yy, pred)),
                "roc_auc": lambda: float(roc_auc_score(yy, pp)),
                "macro_f1": lambda: float(f1_score(yy, pred, average="macro", zero_division=0)),
                "ece": lambda: expected_calibration_error(yy, pp),
                "sensitivity": lambda: float(pred[yy == 1].mean()),
                "specificity": lambda: float(1 - pred[yy == 0].mean())}
        for k in keys:
            draws[k].append(vals[k]())
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else [float("nan")] * 2
            for k, v in draws.items()}


def group_resamples(groups: list[str], n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` bootstrap index arrays, each drawing whole groups with replacement as many times as there are groups."""
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    for _ in range(n):
        yield np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])


def paired_auc_gain_ci(y: np.ndarray, base: np.ndarray, other: np.ndarray, groups: list[str], n: int = 1000,
                       seed: int = 0) -> list[float]:
    """95% interval of ROC AUC(other) - ROC AUC(base) on the same files, both scored on each resample of whole
    groups: whether a choice's gain is more than which patients validation happened to hold."""
    gains = [roc_auc_score(y[i], other[i]) - roc_auc_score(y[i], base[i])
             for i in group_resamples(groups, n, seed) if len(np.unique(y[i])) == 2]
    return [float(np.percentile(gains, 2.5)), float(np.percentile(gains, 97.5))]


def evaluate_set(clf: FractureClassifier, data: ImageSet, groups: list[str] | None = None,
                 bootstrap: int = 0, device: str = "cpu") -> tuple[dict, np.ndarray]:
    """Metrics of ``clf`` (with its own temperature and threshold) on one decoded split."""
    p = predict_probabilities(clf, data.images, device)
    m = compute_metrics(data.labels, p, float(clf.config.get("threshold", 0.5)))
    if bootstrap and len(data):
        m["ci95"] = bootstrap_ci(data.labels, p, groups or [s.rel for s in data.samples], m["threshold"], bootstrap)
        m["n_groups"] = len(set(groups or [s.rel for s in data.samples]))
    m["skipped"] = data.skipped
    return m, p


def format_report(m: dict) -> str:
    """The original study's table (sklearn's classification report) plus the extra numbers."""
    r = m["report"]
    lines = [f"{'':>16}{'precision':>11}{'recall':>9}{'f1-score':>10}{'support':>9}", ""]
    for name in LABELS + ["macro avg", "weighted avg"]:
        if name == "macro avg":
            lines += ["", f"{'accuracy':>16}{'':>20}{m['accuracy']:>10.2f}{m['n']:>9}"]
        row = r[name]
        lines.append(f"{name:>16}{row['precision']:>11.2f}{row['recall']:>9.2f}{row['f1-score']:>10.2f}{int(row['support']):>9}")
    cm = m["confusion_matrix"]
    lines += ["", f"balanced accuracy {m['balanced_accuracy']:.4f}   ROC AUC {m['roc_auc']:.4f}   "
              f"ECE {m['ece']:.4f}   threshold {m['threshold']:.3f}",
              f"confusion matrix (rows true, cols predicted; {LABELS[0]}, {LABELS[1]}): {cm}"]
    for k, (lo, hi) in m.get("ci95", {}).items():
        lines.append(f"  95% CI {k}: [{lo:.4f}, {hi:.4f}] over {m.get('n_groups')} groups")
    if m.get("skipped"):
        lines.append(f"skipped {len(m['skipped'])} unreadable files: " + "; ".join(f"{k} ({v})" for k, v in m["skipped"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model folder or Hub id")
    ap.add_argument("--data-dir", default="", help="folder in Kaggle's layout (only test/ is fine)")
    ap.add_argument("--data", action="append", default=[], metavar="NAME=DIR[:SPLIT_FILE]",
                    help="a named data source with its split file, instead of --data-dir (repeat: each scored on its own)")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--split-mode", default="official", choices=["official", "grouped"])
    ap.add_argument("--split-file", default=None, help="grouped split CSV (default: DATA_DIR/grouped_split.csv)")
    ap.add_argument("--bootstrap", type=int, default=0, help="resamples for 95%% intervals (by group)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    if bool(args.data) == bool(args.data_dir):
        ap.error("give --data-dir or one or more --data NAME=DIR[:SPLIT_FILE]")
    if args.data:
        return _evaluate_sources(args)
    try:
        clf = load(args.model)
        split_file = args.split_file or default_split_file(args.data_dir)
        samples = split_samples(scan(args.data_dir), args.split_mode, split_file)[args.split]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not samples:
        print(f"error: no {args.split} images in {args.data_dir} ({args.split_mode} split)", file=sys.stderr)
        return 2
    data = ImageCache(clf.image_size, args.workers).load(samples)
    groups = groups_of(data.samples, split_file) if args.split_mode == "grouped" else None
    m, _ = evaluate_set(clf, data, groups, args.bootstrap)
    m.update(model=args.model, architecture=clf.arch, data_dir=str(args.data_dir), split=args.split,
             split_mode=args.split_mode, data_fingerprint=fingerprint(samples))
    print(json.dumps(m) if args.json else f"{args.model} on {args.data_dir} [{args.split_mode} {args.split}]\n" + format_report(m))
    return 0


def _evaluate_sources(args: argparse.Namespace) -> int:
    """Each ``--data`` source's split scored on its own; files whose bytes are on a training side are left out."""
    try:
        clf = load(args.model)
        sources = [Source.parse(d) for d in args.data]
        samples = split_sources(sources)[0][args.split]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = ImageCache(clf.image_size, args.workers)
    out = {}
    for src in sources:
        data = cache.load([s for s in samples if s.source == src.name])
        if not data.samples:
            print(f"error: no readable {args.split} images in source {src.name}", file=sys.stderr)
            return 2
        m, _ = evaluate_set(clf, data, group_ids(data.samples, sources), args.bootstrap)
        out[src.name] = m | {"model": args.model, "architecture": clf.arch, "source": f"{src.name}={src.root}",
                             "split": args.split, "split_file": str(src.split_file or ""),
                             "data_fingerprint": fingerprint(data.samples)}
    for name, m in out.items():
        if not args.json:
            print(f"{args.model} on {name} [{args.split}]\n{format_report(m)}\n")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
