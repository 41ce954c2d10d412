"""Score a model folder or Hub id on a data set's split: ``python -m train.evaluate --model M --data ... [--json]``.

``--data NAME=DIR[:SPLIT_FILE]`` (repeatable) scores each named source's split on its own (its split file's groups
for the intervals; files whose bytes are on a training side left out) and ``--json`` prints one object per source;
``--data-dir D [--split-mode official|grouped]`` scores one folder's split as it is and prints one object. Printed:
the original study's classification report plus balanced accuracy, ROC AUC, expected calibration error and the
confusion matrix.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fracture_demo import load
from fracture_demo.classifier import FractureClassifier

from .data import ImageCache, ImageSet, fingerprint
from .inference import predict_probabilities
from .metrics import bootstrap_ci, compute_metrics, format_report
from .sources import add_data_arguments, group_ids, sources_from_args, split_sources


def model_labels(folders: list[str]) -> list[str]:
    """Each model folder's name, or the path as given where two names collide (an incumbent and its candidate run
    are both ``custom_cnn``), so that tables keyed by label never let one model overwrite another."""
    names = [Path(f).name for f in folders]
    return [n if names.count(n) == 1 else str(f) for f, n in zip(folders, names)]


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model folder or Hub id")
    add_data_arguments(ap, folder=True)
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--bootstrap", type=int, default=0, help="resamples for 95%% intervals (by group)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    try:
        clf = load(args.model)
        sources = sources_from_args(args)
        # named sources keep the leak-free rule; one folder is scored as it is (the official test, leaks and all)
        samples = split_sources(sources)[0][args.split] if args.data else sources[0].splits()[args.split]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = ImageCache(clf.image_size, args.workers)
    out = {}
    for src in sources:
        mine = [s for s in samples if s.source == src.name]
        data = cache.load(mine)
        if not data.samples:
            print(f"error: no readable {args.split} images in {src.arg()}", file=sys.stderr)
            return 2
        m, _ = evaluate_set(clf, data, group_ids(data.samples, sources), args.bootstrap)
        m |= {"model": args.model, "architecture": clf.arch, "split": args.split}
        if args.data:
            m |= {"source": f"{src.name}={src.root}", "split_file": str(src.split_file or ""),
                  "data_fingerprint": fingerprint(data.samples)}
        else:
            m |= {"data_dir": str(src.root), "split_mode": args.split_mode, "data_fingerprint": fingerprint(mine)}
        out[src.name] = m
        if not args.json:
            print(f"{args.model} on {src.arg()} [{args.split}]\n{format_report(m)}\n")
    if args.json:
        print(json.dumps(out if args.data else out[sources[0].name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
