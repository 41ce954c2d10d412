"""Can one calibration serve two hospitals? Each source's test ECE under the model's pooled calibration, against
calibrations that know the source (which the app could apply only if a user said where the radiograph is from).

    python bench/calibration_by_source.py --model assets/models/efficientnet_lite0_fusion \
        --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv

  pooled       the model's own temperature and bias, fitted on the pooled validation files (what the app does)
  prior shift  the same temperature; the bias moved by the source's validation prevalence against the pooled one,
               logit(pi_source) - logit(pi_pooled) (``fracture_demo.prevalence``, the app's pre-test slider)
  per source   temperature and bias fitted on that source's validation files alone (Platt)
  sources equal  one temperature and bias for every source, fitted on the pooled validation files with each
               source's files weighing as much in all as another's (the pooled files are two thirds Multi-Region)
ECE with a 95% interval by group; everything is fitted on validation files, never on test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load  # noqa: E402
from fracture_demo.prevalence import shift  # noqa: E402
from train.data import ImageCache  # noqa: E402
from train.evaluate import bootstrap_ci, expected_calibration_error, fit_calibration, predict_logits  # noqa: E402
from train.sources import Source, group_ids, split_sources  # noqa: E402


def calibrated(z: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(z / temperature + bias)).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", default=None, help="write the scores here")
    args = ap.parse_args(argv)
    clf = load(args.model)
    sources = [Source.parse(d) for d in args.data]
    splits, _ = split_sources(sources)
    cache = ImageCache(clf.image_size)
    sets = {(src.name, split): cache.load([s for s in splits[split] if s.source == src.name])
            for src in sources for split in ("val", "test")}
    z = {key: predict_logits(clf, data.images) for key, data in sets.items()}
    t0, b0 = clf.config.get("temperature", 1.0), clf.config.get("bias", 0.0)
    pooled_prevalence = float(np.concatenate([sets[(s.name, "val")].labels for s in sources]).mean())
    val_sets = [sets[(s.name, "val")] for s in sources]
    equal = fit_calibration(np.concatenate([z[(s.name, "val")] for s in sources]),
                            np.concatenate([v.labels for v in val_sets]),
                            weight=np.concatenate([np.full(len(v), 1 / len(v)) for v in val_sets]))
    out = {"model": args.model, "pooled_val_prevalence": pooled_prevalence, "sources": {}}
    for src in sources:
        val, test = sets[(src.name, "val")], sets[(src.name, "test")]
        prevalence = float(val.labels.mean())
        fits = {"pooled": (t0, b0),
                "prior shift": (t0, b0 + shift(prevalence, pooled_prevalence)),  # what the app's slider applies
                "per source": fit_calibration(z[(src.name, "val")], val.labels),
                "sources equal": equal}
        groups = group_ids(test.samples, sources)
        row = {"val_prevalence": prevalence, "test_prevalence": float(test.labels.mean()), "n_test": len(test)}
        for name, (t, b) in fits.items():
            p = calibrated(z[(src.name, "test")], t, b)
            ci = bootstrap_ci(test.labels, p, groups, 0.5, args.bootstrap, keys=("ece",))["ece"]
            row[name] = {"temperature": t, "bias": b, "ece": expected_calibration_error(test.labels, p), "ece_ci95": ci,
                         "mean_p": float(p.mean())}
            print(f"{src.name:14s} {name:14s} T {t:.3f} b {b:+.3f}  test ECE {row[name]['ece']:.3f} "
                  f"[{ci[0]:.3f}, {ci[1]:.3f}]  mean P {p.mean():.3f} (prevalence {row['test_prevalence']:.3f})")
        out["sources"][src.name] = row
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
