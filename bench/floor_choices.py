"""Which frozen floor should a fusion carry? Validation only; build the choice with ``python -m train.fuse``.

    python bench/floor_choices.py --model assets/models/efficientnet_lite0_fusion \
        --data bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv \
        --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv --choose-on fracatlas

Step 17's floor is ImageNet EfficientNet-Lite0 at 224 px, average-pooled. FracAtlas fractures are small: does a
larger input, a max-pooled map (a small finding is not averaged away with the whole radiograph) or a second
backbone carry more? Or the floor reading a CLAHE-equalised image (``bench/equalize.py``: +0.02 for the probe alone
within FracAtlas)? A variant is ``NAME@SIZE:POOL[/clahe]``, several joined by ``+`` (features concatenated). For each,
the probe (``train.probe.fit``, strength chosen on pooled validation) is fitted on every source's train files,
with features computed as the fusion computes them (``train.features.floor_features``), and mixed with the
fusion's tuned branch (its calibrated logit) at each ``w``, as ``train.fuse`` chooses. Printed per variant: the
probe alone and the best mix on each source's validation files. Features are cached per backbone and size.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.special import logit
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load  # noqa: E402
from train.data import ImageCache  # noqa: E402
from train.features import cached_by_hash, equalised, floor_features  # noqa: E402
from train.fuse import choose_weight  # noqa: E402
from train.probe import fit  # noqa: E402
from train.sources import Source, split_sources  # noqa: E402

VARIANTS = ("efficientnet_lite0@224:avg", "efficientnet_lite0@224:max", "efficientnet_lite0@224:avgmax",
            "efficientnet_lite0@320:avg", "efficientnet_lite0@320:avgmax", "mobilenetv2@224:avg", "regnet@224:avg",
            "mobilenetv3@224:avg", "efficientnet_lite0@224:avg+mobilenetv2@224:avg")
POOLS = ("avg", "max", "avgmax")


def cached(images: np.ndarray, hashes: list[str], name: str, size: int, cache: Path,
           contrast: str = "none") -> dict[str, np.ndarray]:
    """floor_features for every pooling of the images as decoded or equalised (``train.features.equalised``),
    remembered per content hash (a rerun computes only new files)."""
    suffix = "" if contrast == "none" else f"_{contrast}"
    return cached_by_hash(cache / f"{name}_{size}{suffix}.npz", hashes,
                          lambda idx: floor_features(equalised(images[idx], contrast), name, size, POOLS))


@torch.no_grad()
def tuned_logits(clf, images: np.ndarray, batch: int = 4) -> np.ndarray:
    """The fusion's tuned branch, calibrated as it was before the mix: ``train.fuse.build`` set its scale to (1 - w) / T
    and the shift to (1 - w) b from the tuned model's own calibration, and the fusion's recalibration went to its
    config, not there, so dividing by 1 - w gives back exactly the z / T + b that ``train.fuse`` mixed."""
    net, w = clf.unwrapped, float(clf.config["fusion"]["w"])
    out = []
    for i in range(0, len(images), batch):
        x = clf.with_flips(clf.normalize(torch.from_numpy(images[i:i + batch])))
        out.append(clf.view_mean(net.tuned(x), len(x) // 4))
    z = torch.cat(out).numpy()
    return (float(net.scales[0]) * z + float(net.shift)) / (1 - w)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a fusion folder (train.fuse): its tuned branch is mixed")
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR[:SPLIT_FILE]")
    ap.add_argument("--choose-on", default="fracatlas")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--cache", default=".cache/floor_choices")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    clf, cache = load(args.model), Path(args.cache)
    sources = [Source.parse(d) for d in args.data]
    splits, _ = split_sources(sources)
    decoded = ImageCache(clf.image_size)
    sets = {k: decoded.load(splits[k]) for k in ("train", "val")}
    y = {k: s.labels for k, s in sets.items()}
    origin = np.array([s.source for s in sets["val"].samples])
    tuned_path = cache / "tuned_val.npz"
    if tuned_path.is_file() and np.load(tuned_path)["hashes"].tolist() == sets["val"].hashes:
        tuned = np.load(tuned_path)["z"]
    else:
        tuned = tuned_logits(clf, sets["val"].images)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(tuned_path, z=tuned, hashes=np.array(sets["val"].hashes))
    names = [s.name for s in sources]
    rows = {"tuned alone": {n: float(roc_auc_score(y["val"][origin == n], tuned[origin == n])) for n in names}}
    print(json.dumps(rows), flush=True)
    on = origin == args.choose_on
    for variant in args.variants.split(","):
        parts = []
        for part in variant.split("+"):
            name, rest = part.split("@")
            size, pool = rest.split(":")
            pool, _, contrast = pool.partition("/")
            parts.append({k: cached(s.images, s.hashes, name, int(size), cache, contrast or "none")[pool]
                          for k, s in sets.items()})
        x = {k: np.concatenate([p[k] for p in parts], 1) for k in sets}
        res = fit(x, y)
        probe = logit(np.clip(res["prob"]["val"], 1e-7, 1 - 1e-7))  # its calibrated logit
        w, sweep = choose_weight(y["val"][on], tuned[on], probe[on])
        mixed = w * probe + (1 - w) * tuned
        rows[variant] = {"C": res["C"], "w": w, "sweep": sweep} | {
            f"{n} probe": float(roc_auc_score(y["val"][origin == n], probe[origin == n])) for n in names} | {
            f"{n} fused": float(roc_auc_score(y["val"][origin == n], mixed[origin == n])) for n in names}
        print(variant, json.dumps(rows[variant]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
