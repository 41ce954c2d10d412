"""How far does one recipe move with its seed alone?

    python bench/seed_spread.py runs/seeds/mobilenetv3_seed0 runs/seeds/mobilenetv3_seed1 ...

Reads each run's ``metrics.json`` (written by ``python -m train``: same data, split, epochs and schedule, only
``--seed`` differs, so the sampling order, the augmentations and the head's start) and prints, per scored set,
each seed's ROC AUC and balanced accuracy, their mean, standard deviation and range, beside the mean width of
one run's 95% interval by group. Why: every step of the ladder is one seed, and its choices rest on validation
differences of 0.01-0.03; a seed-to-seed spread of that size says those choices are a draw, whatever their
intervals by group say (those resample the test files, not the training).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SETS = ("fracatlas val", "fracatlas test", "bone-fracture val", "bone-fracture test")
METRICS = ("roc_auc", "balanced_accuracy")


def spread(runs: list[dict], metric: str, part: str) -> dict:
    """Mean, SD (n-1), range of one metric on one set over runs, and the mean width of a run's 95% interval."""
    values = np.array([r["results"][part][metric] for r in runs])
    widths = [np.subtract(*r["results"][part]["ci95"][metric][::-1]) for r in runs if "ci95" in r["results"][part]]
    return {"values": values.round(4).tolist(), "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "range": float(values.max() - values.min()), "ci95_width": float(np.mean(widths)) if widths else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="model folders of one recipe, one per seed")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    runs = [json.loads((d / "metrics.json").read_text()) for d in args.runs]
    seeds = [json.loads((d / "config.json").read_text())["training"]["seed"] for d in args.runs]
    table = {f"{part} {metric}": spread(runs, metric, part)
             for part in SETS if all(part in r["results"] for r in runs) for metric in METRICS}
    print(f"| set, metric | seeds {', '.join(map(str, seeds))} | mean | SD | range | one run's 95% interval width |")
    print("|---|---|---|---|---|---|")
    for name, s in table.items():
        width = f"{s['ci95_width']:.3f}" if s["ci95_width"] is not None else "-"
        print(f"| {name} | {', '.join(f'{v:.3f}' for v in s['values'])} | {s['mean']:.3f} | {s['sd']:.3f} "
              f"| {s['range']:.3f} | {width} |")
    if args.json:
        args.json.write_text(json.dumps({"runs": [str(d) for d in args.runs], "seeds": seeds, "spread": table},
                                        indent=1))


if __name__ == "__main__":
    main()
