"""How well the radiograph guard tells radiographs from everything else: share of each set it flags.

    python bench/ood.py --model assets/models/efficientnet_lite0_multiregion \
        --data data/bone-fracture:assets/splits/grouped_split.csv --data data/fracatlas:assets/splits/fracatlas_split.csv

Radiographs: each source's test split (never seen when the guard was fitted or thresholded).
Non-radiographs: bench/non_radiographs.py (photos, documents, screenshots, drawings, MRI, CT
phantom, retina, microscopy). Target: at most 1% of test radiographs, at least 95% of the rest.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.non_radiographs import non_radiographs  # noqa: E402
from fracture_demo import load  # noqa: E402
from train.data import ImageCache, Sample  # noqa: E402
from train.guard import features, source_splits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="assets/models/efficientnet_lite0_multiregion", help="the model whose guard the app uses")
    ap.add_argument("--data", action="append", default=[], metavar="DIR[:SPLIT_FILE]")
    args = ap.parse_args()
    clf = load(args.model)
    if clf.guard is None:
        raise SystemExit(f"{args.model} has no guard: fit one with python -m train.guard")
    cache = ImageCache(clf.image_size)
    rows = []
    for spec in args.data:
        test = source_splits(spec)["test"]
        flagged = clf.guard.flags(torch.from_numpy(features(clf, test, cache)))
        rows.append((f"radiographs: {Path(spec.partition(':')[0]).name} test", len(flagged), float(flagged.float().mean())))
    with tempfile.TemporaryDirectory() as tmp:
        by_category = defaultdict(list)
        for path, category in non_radiographs(tmp):
            by_category[category].append(Sample(path, path.name, 0, "test"))
        everything = []
        for category, samples in sorted(by_category.items()):
            flagged = clf.guard.flags(torch.from_numpy(features(clf, samples, cache)))
            everything.append(flagged)
            rows.append((f"not radiographs: {category}", len(flagged), float(flagged.float().mean())))
        allf = torch.cat(everything)
        rows.append(("not radiographs: all", len(allf), float(allf.float().mean())))
    print(f"Guard of {args.model} (threshold {clf.guard.threshold:.1f}; {clf.guard.info.get('fit_on')})\n")
    print("| set | images | flagged as not a radiograph |\n|---|---|---|")
    for name, n, share in rows:
        print(f"| {name} | {n} | {share:.1%} |")


if __name__ == "__main__":
    main()
