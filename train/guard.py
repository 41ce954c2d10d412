"""Fit a model's radiograph guard: ``python -m train.guard --model DIR --data NAME=DIR[:SPLIT_FILE] [--data ...] [--layer NAME]``.

Fits the mean and shrunk covariance of the model's guard features on the training radiographs of
every data source given (each distinct file once), then sets the threshold so that at most 0.5% of
each source's validation radiographs are flagged (the largest of the per-source thresholds), and
writes ``guard.safetensors`` into the model folder (see fracture_demo/guard.py). Without a split file a
source uses its folder split. ``--layer``: the module whose pooled output the
guard sees (default: the CAM layer's input); ``python -m bench.ood --layers`` measures the candidates.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from fracture_demo import FractureClassifier, load
from fracture_demo.guard import RadiographGuard, guard_features

from .data import ImageCache, Sample
from .inference import for_batches
from .sources import add_data_arguments, sources_from_args

VAL_QUANTILE = 99.5


@torch.no_grad()
def features(clf: FractureClassifier, samples: list[Sample], cache: ImageCache, distinct: bool = False,
             batch: int = 64, layer: str | None = None) -> np.ndarray:
    """The guard's features (fracture_demo.guard.guard_features) of each decodable sample; each content once
    if ``distinct``; at ``layer`` (None: the CAM layer's input)."""
    data = cache.load(samples)
    images = data.images[data.distinct()] if distinct else data.images
    model = clf.unwrapped.eval()

    def pooled(x: torch.Tensor) -> torch.Tensor:
        with guard_features(model, clf.arch, layer) as captured:
            model(clf.normalize(x))
        return captured[0]
    return for_batches(images, batch, pooled).numpy() if len(images) else np.zeros((0, 0), np.float32)


def fit_guard(clf: FractureClassifier, sources: dict[str, dict[str, list[Sample]]], workers: int | None = None,
              layer: str | None = None, cache: ImageCache | None = None) -> RadiographGuard:
    cache = cache or ImageCache(clf.image_size, workers)
    train = np.concatenate([features(clf, s["train"], cache, distinct=True, layer=layer) for s in sources.values()])
    guard = RadiographGuard.fit(train, layer=layer)
    per_source = {}
    for name, splits in sources.items():
        d = guard.distance(torch.from_numpy(features(clf, splits["val"], cache, layer=layer))).numpy()
        per_source[name] = {"val_images": int(len(d)), "threshold": float(np.percentile(d, VAL_QUANTILE))}
    guard.threshold = max(v["threshold"] for v in per_source.values())
    guard.info = {"layer": layer or "input of the CAM layer", "fit_on": f"train radiographs of {', '.join(sources)} ({len(train)} distinct)",
                  "threshold": f"{VAL_QUANTILE}th percentile of validation distances, the largest over sources",
                  "sources": per_source}
    return guard


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.guard", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model folder to fit the guard for (written into it)")
    add_data_arguments(ap)
    ap.add_argument("--layer", default=None, help="module whose pooled output the guard sees, e.g. blocks.5 "
                    "(default: the input of the model's CAM layer)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        clf = load(args.model)
        sources = {src.name: src.splits() for src in sources_from_args(args)}
        if args.layer:
            clf.unwrapped.get_submodule(args.layer)
    except (OSError, ValueError, AttributeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    guard = fit_guard(clf, sources, args.workers, args.layer)
    print(f"wrote {guard.save(args.model)}: threshold {guard.threshold:.1f}; {guard.info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
