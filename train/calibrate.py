"""Refit a model folder's calibration and threshold on validation data: ``python -m train.calibrate --model DIR --data ...``.

For a model whose run predates Platt scaling (temperature only), to move its operating point, or to make its
prediction the mean over its four flips (``--views 4``, test-time augmentation; ``--views 1`` undoes it):
the pooled validation files of the given sources (the ones it trained with) refit temperature, bias
and threshold, and record their share of fractures (what the probability is true at). ``--prevalence-only``
records that alone, for a model calibrated before it was recorded, from its ``metrics.json`` (the validation
files its training calibrated on: for an official-split twin, with the copies of training files that a
leak-free split would drop). ``--points-only`` keeps the calibration and views and places the thresholds of
``train.operating_points`` (screen, balanced, confirm) on the given sources' validation files, for a model
calibrated before they existed (its decision follows its recorded rule: screening where that asked for a
sensitivity). ``config.json`` is rewritten, the weights are not touched; where no source's validation files hold both
classes (an official-split twin once its copies of training files are dropped) nothing is written. Never fitted
on test data.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fracture_demo import load

from .card import git_commit
from .data import ImageCache
from .evaluate import predict_logits
from .finalize import calibrate, set_operating_points
from .sources import Source, split_sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model folder (rewritten in place)")
    ap.add_argument("--data", action="append", default=[], metavar="NAME=DIR[:SPLIT_FILE]")
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
        sources = [Source.parse(d) for d in args.data]
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
