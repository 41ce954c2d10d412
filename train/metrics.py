"""Metrics of scored files: the study's report, the numbers an honest comparison adds, and 95% intervals
that resample whole groups of related images (one patient's views, a radiograph's rotated copies)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from fracture_demo.classifier import LABELS


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
