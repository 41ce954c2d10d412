"""How well the radiograph guard tells radiographs from everything else: share of each set it flags.

    python -m bench.ood --model assets/models/efficientnet_lite0_fusion \
        --data data/bone-fracture:assets/splits/grouped_split.csv --data data/fracatlas:assets/splits/fracatlas_split.csv
    ... --layers cam,blocks.4,blocks.5,blocks.6   # fit a guard at each layer in memory and compare them

Radiographs: each source's test split (never seen when the guard was fitted or thresholded).
Non-radiographs: bench/non_radiographs.py (photos, documents, screenshots, drawings, MRI, CT
phantom, retina, microscopy). Target: at most 1% of test radiographs, at least 95% of the rest.
"""
from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import torch


from bench.non_radiographs import non_radiographs
from fracture_demo import load
from fracture_demo.guard import RadiographGuard
from train.data import ImageCache, Sample
from train.guard import features, fit_guard, source_splits


def flagged_shares(clf, guard: RadiographGuard, tests: dict[str, list[Sample]], others: dict[str, list[Sample]],
                   cache: ImageCache) -> list[tuple[str, int, float]]:
    """(set, images, share flagged) for each source's test radiographs, each non-radiograph category, and all of those."""
    def flags(samples):
        return guard.flags(torch.from_numpy(features(clf, samples, cache, layer=guard.layer)))
    rows = [(f"radiographs: {name} test", *_share(flags(s))) for name, s in tests.items()]
    every = []
    for category, samples in sorted(others.items()):
        every.append(flags(samples))
        rows.append((f"not radiographs: {category}", *_share(every[-1])))
    return rows + [("not radiographs: all", *_share(torch.cat(every)))]


def _share(flags: torch.Tensor) -> tuple[int, float]:
    return len(flags), float(flags.float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="assets/models/efficientnet_lite0_fusion", help="the model whose guard the app uses")
    ap.add_argument("--data", action="append", default=[], metavar="DIR[:SPLIT_FILE]")
    ap.add_argument("--layers", default=None, help="comma-separated modules ('cam': the CAM layer's input): fit a guard "
                    "at each on the sources' train and val splits, in memory, instead of measuring the folder's guard")
    args = ap.parse_args()
    clf = load(args.model)
    splits = {Path(spec.partition(":")[0]).name: source_splits(spec) for spec in args.data}
    cache = ImageCache(clf.image_size)
    if args.layers:
        guards = {layer: fit_guard(clf, splits, layer=None if layer == "cam" else layer, cache=cache)
                  for layer in args.layers.split(",")}
    elif clf.guard is None:
        raise SystemExit(f"{args.model} has no guard: fit one with python -m train.guard (or pass --layers)")
    else:
        guards = {clf.guard.layer or "cam": clf.guard}
    tests = {name: s["test"] for name, s in splits.items()}
    with tempfile.TemporaryDirectory() as tmp:
        others = defaultdict(list)
        for path, category in non_radiographs(tmp):
            others[category].append(Sample(path, path.name, 0, "test"))
        table = {layer: flagged_shares(clf, g, tests, others, cache) for layer, g in guards.items()}
    first = next(iter(guards.values()))
    print(f"Guard of {args.model} ({first.info.get('fit_on')}; threshold: {first.info.get('threshold')})\n")
    print(f"| set | images | {' | '.join(f'flagged, guard at {layer}' for layer in guards)} |")
    print(f"|---|---|{'---|' * len(guards)}")
    for i, (name, n, _) in enumerate(next(iter(table.values()))):
        print(f"| {name} | {n} | {' | '.join(f'{rows[i][2]:.1%}' for rows in table.values())} |")


if __name__ == "__main__":
    main()
