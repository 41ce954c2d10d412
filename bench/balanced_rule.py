"""Which rule should place the *balanced* point: the worst source's balanced accuracy, or the mean over sources?

    python bench/balanced_rule.py --models regnet,vit \
        --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv

For each bundled model both rules place a threshold on its validation files (``train.operating_points``'s rule,
the worst source's, and the mean over sources it replaced). Reported per rule: the threshold, its 95% range over
resampled validation groups (how well the validation files determine it), and on each source's test files its
sensitivity and specificity and the worst source's balanced accuracy; then the paired 95% interval (resampled test
groups) of the worst source's test balanced accuracy, worst rule minus mean rule. Written to --out as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from threshold_noise import scored  # noqa: E402
from train.card import git_commit  # noqa: E402
from train.operating_points import operating_points, rates, resample_by_source  # noqa: E402
from train.sources import Source  # noqa: E402


def mean_rule(y: np.ndarray, p: np.ndarray, origin: np.ndarray) -> float:
    """The rule before step 23: the threshold of the highest mean balanced accuracy over the sources."""
    cand = np.unique(np.concatenate([p, [1.0]]))
    bal = [sum(rates(y[origin == s], p[origin == s], cand)) / 2 for s in dict.fromkeys(origin.tolist())]
    return float(np.clip(cand[int(np.argmax(np.mean(bal, 0)))], 1e-6, 1 - 1e-6))


def worst_rule(y: np.ndarray, p: np.ndarray, origin: np.ndarray) -> float:
    return operating_points(y, p, origin)["balanced"]["threshold"]


def worst_balanced(y: np.ndarray, p: np.ndarray, origin: np.ndarray, t: float) -> float:
    return float(min(sum(rates(y[origin == s], p[origin == s], np.array([t])))[0] / 2 for s in np.unique(origin)))


def compare(parts: dict, draws: int, seed: int = 0) -> dict:
    (y, p, origin, groups), (ty, tp, torigin, tgroups) = parts["val"], parts["test"]
    rng = np.random.default_rng(seed)
    rules = {"worst": worst_rule, "mean": mean_rule}
    out = {}
    for name, rule in rules.items():
        t = rule(y, p, origin)
        spread = [rule(y[i], p[i], origin[i]) for i in (resample_by_source(groups, origin, rng) for _ in range(draws))]
        test = {}
        for s in dict.fromkeys(torigin.tolist()):
            se, sp = rates(ty[torigin == s], tp[torigin == s], np.array([t]))
            test[s] = {"sensitivity": float(se[0]), "specificity": float(sp[0])}
        out[name] = {"threshold": t, "threshold_95": np.percentile(spread, [2.5, 97.5]).round(3).tolist(),
                     "test": test, "test_worst_balanced": worst_balanced(ty, tp, torigin, t)}
    diffs = []
    for _ in range(draws):
        i = resample_by_source(tgroups, torigin, rng)
        diffs.append(worst_balanced(ty[i], tp[i], torigin[i], out["worst"]["threshold"])
                     - worst_balanced(ty[i], tp[i], torigin[i], out["mean"]["threshold"]))
    out["gain"] = out["worst"]["test_worst_balanced"] - out["mean"]["test_worst_balanced"]
    out["gain_95"] = np.percentile(diffs, [2.5, 97.5]).round(3).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated folders under --models-dir")
    ap.add_argument("--models-dir", default="assets/models")
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--out", default="runs/balanced_rule.json")
    args = ap.parse_args()
    sources = [Source.parse(d) for d in args.data]
    report = {"commit": git_commit(), "draws": args.draws, "models": {}}
    for name in args.models.split(","):
        _, parts = scored(str(Path(args.models_dir) / name), sources)
        r = report["models"][name] = compare(parts, args.draws)
        print(f"{name}: worst {r['worst']['threshold']:.3f} {r['worst']['threshold_95']} -> "
              f"{r['worst']['test_worst_balanced']:.3f}; mean {r['mean']['threshold']:.3f} {r['mean']['threshold_95']} -> "
              f"{r['mean']['test_worst_balanced']:.3f}; gain {r['gain']:+.3f} {r['gain_95']}", file=sys.stderr, flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
