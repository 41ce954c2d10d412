"""How much does a threshold chosen on validation files move with the validation files it was chosen on?

    python bench/threshold_noise.py --model assets/models/efficientnet_lite0_fusion \
        --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv

Each source's validation groups are resampled with replacement (as the intervals resample test groups), the
operating point is placed again on each resample (``train.operating_points``, the rule the model's own came
from), and each resampled threshold is applied to every source's test files. The spread of those thresholds,
and of the test sensitivity and specificity they give, is what a larger validation set (cross-validation over
groups) would narrow; a test shortfall inside it is the threshold's noise, not the model's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load  # noqa: E402
from train.calibrate import asked_sensitivity  # noqa: E402
from train.data import ImageCache  # noqa: E402
from train.evaluate import predict_probabilities  # noqa: E402
from train.operating_points import operating_points, threshold_draws  # noqa: E402
from train.sources import Source, group_ids, split_sources  # noqa: E402


def scored(model: str, sources: list[Source]) -> tuple:
    """The model, and for its validation and test files: labels, P(fractured), source and bootstrap group of each."""
    splits, _ = split_sources(sources)
    clf = load(model)
    parts = {}
    for part in ("val", "test"):
        data = ImageCache(clf.image_size).load(splits[part])
        p = predict_probabilities(clf, data.images)
        parts[part] = (data.labels, p, np.array([s.source for s in data.samples]), np.array(group_ids(data.samples, sources)))
    return clf, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--point", default="screen", help="which operating point to place again")
    ap.add_argument("--draws", type=int, default=500)
    args = ap.parse_args()
    sources = [Source.parse(d) for d in args.data]
    clf, parts = scored(args.model, sources)
    y, p, origin, groups = parts["val"]
    ty, tp, torigin, _ = parts["test"]
    level = asked_sensitivity(clf.operating_points.get(args.point, {}).get("rule", "")) or 0.9

    def on_test(t: float) -> dict:
        out = {}
        for src in dict.fromkeys(torigin.tolist()):
            i = torigin == src
            called = tp[i] >= t
            out[src] = {"sensitivity": float(called[ty[i] == 1].mean()), "specificity": float(1 - called[ty[i] == 0].mean())}
        return out

    base = operating_points(y, p, origin, level, level)[args.point]["threshold"]
    draws = threshold_draws(y, p, origin, groups, args.point, level, args.draws)
    q = lambda v: [round(float(x), 3) for x in np.percentile(v, [2.5, 50, 97.5])]  # noqa: E731
    rows = [on_test(t) for t in draws]
    report = {"model": args.model, "point": args.point, "threshold": base, "on_test": on_test(base),
              "draws": len(draws), "threshold_2.5_50_97.5": q(draws),
              "test_over_draws_2.5_50_97.5": {src: {k: q([r[src][k] for r in rows]) for k in ("sensitivity", "specificity")}
                                              for src in rows[0]}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
