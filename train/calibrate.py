"""Calibration and decision thresholds, fitted on validation files only: temperature and bias (Platt scaling),
one threshold per question (screen, balanced, confirm), and how firmly the validation groups pin each.

As a command, ``python -m train.calibrate --model DIR --data ...`` refits a model folder's calibration and
thresholds: for a model whose run predates Platt scaling (temperature only), to move its operating point, or to make its
prediction the mean over its four flips (``--views 4``, test-time augmentation; ``--views 1`` undoes it):
the pooled validation files of the given sources (the ones it trained with) refit temperature, bias
and threshold, and record their share of fractures (what the probability is true at). ``--prevalence-only``
records that alone, for a model calibrated before it was recorded, from its ``metrics.json`` (the validation
files its training calibrated on: for an official-split twin, with the copies of training files that a
leak-free split would drop). ``--points-only`` keeps the calibration and views and places the thresholds
(screen, balanced, confirm) on the given sources' validation files, for a model
calibrated before they existed (its decision follows its recorded rule: screening where that asked for a
sensitivity). ``config.json`` is rewritten, the weights are not touched; where no source's validation files hold both
classes (an official-split twin once its copies of training files are dropped) nothing is written. Never fitted
on test data.

**Operating points.** One pooled threshold hides one hospital's misses behind another's hits: step 15's pooled sensitivity of 0.90
on validation became 0.74 on FracAtlas test and 0.90 on Multi-Region. Each point here holds on every source's
validation files, so its promise is the weakest hospital's:

  screen    "do not miss a fracture": the highest threshold whose sensitivity reaches the target on every source;
  balanced  "one answer, errors weighed alike": the threshold of the highest balanced accuracy on the worst source
            (ties broken by the mean over sources). The mean alone let the source whose validation files are easiest
            decide: on step 22's out-of-fold predictions it sat above the confirm point, FracAtlas sensitivity 0.34;
  confirm   "only call it when sure": the lowest threshold whose specificity reaches the target on every source.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_curve

from fracture_demo import load

from .card import git_commit
from .data import ImageCache, ImageSet
from .inference import predict_logits
from .sources import Source, add_data_arguments, group_ids, sources_from_args, split_sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model folder (rewritten in place)")
    add_data_arguments(ap, required=False)
    ap.add_argument("--min-sensitivity", type=float, default=None,
                    help="threshold: the highest whose validation sensitivity reaches this (default: max balanced accuracy)")
    ap.add_argument("--views", type=int, choices=[1, 4], default=None,
                    help="4: P(fractured) from the mean logit of the image and its flips; 1: the image alone (default: keep)")
    ap.add_argument("--prevalence-only", action="store_true",
                    help="only record the share of fractures of the validation files in its metrics.json; nothing else moves")
    ap.add_argument("--points-only", action="store_true",
                    help="keep calibration and views; place the operating points' thresholds on validation files")
    args = ap.parse_args(argv)
    if args.prevalence_only:
        return _record_prevalence(Path(args.model))
    if not args.data:
        ap.error("--data is required (or --prevalence-only)")
    try:
        clf = load(args.model)
        sources = sources_from_args(args)
        splits, _ = split_sources(sources)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    val = ImageCache(clf.image_size).load(splits["val"])
    keys = ("views", "temperature", "bias", "threshold", "calibration_prevalence")
    before = {k: clf.config.get(k) for k in keys}
    if args.points_only:
        asked = args.min_sensitivity or asked_sensitivity(clf.config.get("operating_point", ""))
        set_operating_points(clf, val, predict_logits(clf, val.images), asked, sources)
    else:
        if args.views is not None:
            clf.config["views"] = args.views
        calibrate(clf, val, args.min_sensitivity, sources=sources)
    if not clf.operating_points:  # e.g. an official-split twin: its leak-free validation files are 27 copies of one class
        print(f"error: no source's {len(val)} validation files hold both classes: nothing can be fitted or placed; "
              f"{args.model} is left as it was", file=sys.stderr)
        return 2
    clf.config.setdefault("recalibrations", []).append({"args": _step_args(args), "commit": git_commit()})
    path = Path(args.model) / "config.json"
    path.write_text(json.dumps(clf.config, indent=2) + "\n")
    after = {k: clf.config.get(k) for k in keys}
    print(f"{args.model}: {before} -> {after} on {len(val)} validation files ({clf.config['operating_point']})", file=sys.stderr)
    return 0


def _step_args(args: argparse.Namespace) -> list[str]:
    """This call's options, recorded so that the model card's training section shows every step that made the model."""
    return ([x for d in args.data for x in ("--data", d)]
            + (["--views", str(args.views)] if args.views is not None and not args.points_only else [])
            + (["--min-sensitivity", f"{args.min_sensitivity:g}"] if args.min_sensitivity is not None else [])
            + (["--points-only"] if args.points_only else []))


def asked_sensitivity(rule: str) -> float | None:
    """The sensitivity a recorded rule asked for ("... sensitivity >= 0.9"), or None (a balanced point)."""
    head, sep, tail = rule.partition("sensitivity >= ")
    return float(tail.split()[0]) if sep else None


def _record_prevalence(folder: Path) -> int:
    try:
        cm = json.loads((folder / "metrics.json").read_text())["results"]["val"]["confusion_matrix"]
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {folder} has no validation confusion matrix in metrics.json ({exc!r})", file=sys.stderr)
        return 2
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["calibration_prevalence"] = sum(cm[1]) / (sum(cm[0]) + sum(cm[1]))
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"{folder}: calibration_prevalence {config['calibration_prevalence']:.4f} ({sum(cm[1])} of "
          f"{sum(cm[0]) + sum(cm[1])} validation files fractured)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


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


POINTS = ("screen", "balanced", "confirm")


def rates(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity of ``p >= t`` for each candidate threshold in ``t``."""
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    sens = 1 - np.searchsorted(pos, t, side="left") / max(len(pos), 1)
    spec = np.searchsorted(neg, t, side="left") / max(len(neg), 1)
    return sens, spec


def operating_points(y: np.ndarray, p: np.ndarray, sources: list[str] | np.ndarray,
                     min_sensitivity: float = 0.9, min_specificity: float = 0.9) -> dict[str, dict]:
    """Point name -> {"threshold", "rule", "validation": source -> {"sensitivity", "specificity", "n"}}.

    Sources without both classes are left out of the choice (they cannot say how often a fracture is missed)."""
    y, p, sources = np.asarray(y).astype(int), np.asarray(p, dtype=float), np.asarray(sources)
    names = [s for s in dict.fromkeys(sources.tolist()) if len(np.unique(y[sources == s])) == 2]
    if not names:
        return {}
    cand = np.unique(np.concatenate([p, [1.0]]))  # every distinct score; 1.0 calls nothing fractured
    by_source = {s: rates(y[sources == s], p[sources == s], cand) for s in names}
    sens = np.min([r[0] for r in by_source.values()], 0)
    spec = np.min([r[1] for r in by_source.values()], 0)
    bal = np.array([(r[0] + r[1]) / 2 for r in by_source.values()])
    worst, mean_bal = bal.min(0), bal.mean(0)
    fairest = np.flatnonzero(worst == worst.max())
    reach = np.flatnonzero(sens >= min_sensitivity)  # sensitivity falls as the threshold rises
    sure = np.flatnonzero(spec >= min_specificity)
    chosen = {
        "screen": (cand[reach[-1]] if len(reach) else cand[0],
                   f"highest threshold with validation sensitivity >= {min_sensitivity} on every source"),
        "balanced": (cand[fairest[np.argmax(mean_bal[fairest])]],
                     "maximum balanced accuracy on the worst source's validation files (ties: the mean over sources)"),
        "confirm": (cand[sure[0]] if len(sure) else cand[-1],
                    f"lowest threshold with validation specificity >= {min_specificity} on every source"),
    }
    out = {}
    for name, (t, rule) in chosen.items():
        t = float(np.clip(t, 1e-6, 1 - 1e-6))
        val = {}
        for s in names:
            se, sp = rates(y[sources == s], p[sources == s], np.array([t]))
            val[s or "all"] = {"sensitivity": float(se[0]), "specificity": float(sp[0]), "n": int((sources == s).sum())}
        out[name] = {"threshold": t, "rule": rule, "validation": val}
    return out


def resample_by_source(groups: np.ndarray, origin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap draw of whole groups, each source drawn on its own (its size kept)."""
    idx = []
    for src in dict.fromkeys(origin.tolist()):
        names = np.unique(groups[origin == src])
        for g in rng.choice(names, len(names)):
            idx.append(np.flatnonzero(groups == g))
    return np.concatenate(idx)


def placed_draws(y: np.ndarray, p: np.ndarray, origin: np.ndarray, groups: np.ndarray, min_sensitivity: float = 0.9,
                 min_specificity: float = 0.9, draws: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    """Each point's threshold placed again on each of ``draws`` resamples of the validation groups: how far the
    files it was chosen on move it (a larger validation set, as cross-validation gives, narrows it)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {name: [] for name in POINTS}
    for _ in range(draws):
        i = resample_by_source(groups, origin, rng)
        for name, pt in operating_points(y[i], p[i], origin[i], min_sensitivity, min_specificity).items():
            out[name].append(pt["threshold"])
    return {name: np.array(v) for name, v in out.items()}


def threshold_draws(y: np.ndarray, p: np.ndarray, origin: np.ndarray, groups: np.ndarray, point: str = "screen",
                    level: float = 0.9, draws: int = 500, seed: int = 0) -> np.ndarray:
    """One point's ``placed_draws``, its sensitivity or specificity target ``level``."""
    return placed_draws(y, p, origin, groups, level, level, draws, seed)[point]


def calibrate(clf, val_set: ImageSet, min_sensitivity: float | None, dev: torch.device | str = "cpu",
              sources: list[Source] | None = None) -> np.ndarray:
    """Fit calibration (temperature and bias) and the decision threshold on validation files, into ``clf.config``;
    returns the validation files' raw logits."""
    val_logits = predict_logits(clf, val_set.images, device=dev)
    temperature, bias = fit_calibration(val_logits, val_set.labels)
    clf.config.update(temperature=temperature, bias=bias)
    clf.config["calibration_prevalence"] = float(val_set.labels.mean())  # what P(fractured) is true at
    set_operating_points(clf, val_set, val_logits, min_sensitivity, sources)
    return val_logits


def set_operating_points(clf, val_set: ImageSet, val_logits: np.ndarray, min_sensitivity: float | None,
                         sources: list[Source] | None = None) -> None:
    """Thresholds for each question (``train.calibrate``) from validation files, into ``clf.config``; the
    default decision is screening where ``min_sensitivity`` is given (a missed fracture costs more), else balanced.
    With ``sources`` (their split files name the groups), each point also records ``threshold_95``: its 95% range
    over resampled validation groups, how firmly those files pin it (a reader's error bar on the threshold)."""
    val_p = clf.probability(torch.from_numpy(val_logits)).numpy()
    origin, level = np.array([s.source for s in val_set.samples]), min_sensitivity or 0.9
    points = operating_points(val_set.labels, val_p, origin, level)
    if points and sources is not None:
        draws = placed_draws(val_set.labels, val_p, origin, np.array(group_ids(val_set.samples, sources)), level)
        for name, pt in points.items():
            if len(draws[name]):
                pt["threshold_95"] = [round(float(x), 4) for x in np.percentile(draws[name], [2.5, 97.5])]
    if not points:  # validation files of one class cannot place a threshold
        for stale in ("operating_points", "default_operating_point"):
            clf.config.pop(stale, None)
        clf.config.update(threshold=0.5, operating_point="0.5: validation files of one class")
        return
    default = "screen" if min_sensitivity else "balanced"
    clf.config.update(operating_points=points, default_operating_point=default,
                      threshold=points[default]["threshold"], operating_point=points[default]["rule"])
