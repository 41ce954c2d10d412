"""The ladder's rule as a command: ``python -m train.choose --incumbent DIR --candidate DIR --data ...``.

Both models predict every source's validation files as the app would (each at its own input size, with its own
views and calibration); the verdict follows the rule of docs/ladder.md: the candidate replaces the incumbent when
it ranks ``--choose-on``'s validation files (another hospital's question) better by more than ``--margin``
(0.01); within the margin the validation pointing game decides (``python -m train.localize --split val``);
otherwise the incumbent stays. Printed beside it, the paired 95% interval of the gain by validation group:
a margin of 0.01 is below what ~54 groups resolve, so a choice inside the interval is a bet, and is reported so.
Never reads a test file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from fracture_demo import FractureClassifier, load

from .card import git_commit
from .data import ImageCache, Sample
from .inference import predict_probabilities
from .metrics import paired_auc_gain_ci
from .sources import Source, add_data_arguments, group_ids, sources_from_args, split_sources


def validation_probabilities(clf: FractureClassifier, samples: list[Sample], cache: ImageCache) -> dict[Path, float]:
    """Calibrated P(fractured) per validation file path (a file that does not decode is absent)."""
    data = cache.load(samples)
    return {s.path: float(v) for s, v in zip(data.samples, predict_probabilities(clf, data.images))}


def verdict(gain: float, margin: float) -> str:
    """The rule: past the margin the better model is chosen; within it neither ROC AUC decides."""
    if gain > margin:
        return "candidate"
    if gain < -margin:
        return "incumbent"
    return "tie: the validation pointing game decides"


def compare(incumbent: FractureClassifier, candidate: FractureClassifier, sources: list[Source],
            choose_on: str, margin: float = 0.01, bootstrap: int = 1000) -> dict:
    """Per-source validation ROC AUC of both, the gain on ``choose_on`` with its paired interval, and the verdict."""
    samples = split_sources(sources)[0]["val"]
    caches = {size: ImageCache(size) for size in (incumbent.image_size, candidate.image_size)}  # one decode per size
    a, b = (validation_probabilities(m, samples, caches[m.image_size]) for m in (incumbent, candidate))
    both = [s for s in samples if s.path in a and s.path in b]  # the same files for both, or no pairing
    y = np.array([s.label for s in both])
    pa, pb = np.array([a[s.path] for s in both]), np.array([b[s.path] for s in both])
    origin = np.array([s.source for s in both])
    scores = {name: {"n": int((origin == name).sum()),
                     "incumbent": float(roc_auc_score(y[origin == name], pa[origin == name])),
                     "candidate": float(roc_auc_score(y[origin == name], pb[origin == name]))}
              for name in dict.fromkeys(origin.tolist()) if len(np.unique(y[origin == name])) == 2}
    if choose_on not in scores:
        raise ValueError(f"--choose-on {choose_on}: no validation files of both classes from that source")
    on = origin == choose_on
    groups = [g for g, keep in zip(group_ids(both, sources), on) if keep]
    gain = scores[choose_on]["candidate"] - scores[choose_on]["incumbent"]
    return {"scores": scores, "choose_on": choose_on, "gain": gain, "margin": margin,
            "gain_ci95": paired_auc_gain_ci(y[on], pa[on], pb[on], groups, bootstrap),
            "verdict": verdict(gain, margin), "commit": git_commit()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--incumbent", required=True, help="the model folder (or Hub id) in use")
    ap.add_argument("--candidate", required=True, help="the model folder (or Hub id) that would replace it")
    add_data_arguments(ap)
    ap.add_argument("--choose-on", default="fracatlas", help="the source whose validation ROC AUC decides")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the comparison here")
    args = ap.parse_args(argv)
    out = compare(load(args.incumbent), load(args.candidate), sources_from_args(args),
                  args.choose_on, args.margin, args.bootstrap)
    out |= {"incumbent": args.incumbent, "candidate": args.candidate}
    for name, s in out["scores"].items():
        print(f"{name} validation ROC AUC (n={s['n']}): incumbent {s['incumbent']:.3f}, candidate {s['candidate']:.3f}")
    lo, hi = out["gain_ci95"]
    print(f"gain on {args.choose_on}: {out['gain']:+.3f} (paired 95% interval by group {lo:+.3f}, {hi:+.3f}); "
          f"margin {args.margin}: {out['verdict']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
