"""Would a finer map point at the fracture more often? Pointing game of a model's CAMs taken at other layers.

    python bench/cam_layers.py --model assets/models/efficientnet_lite0_fusion --layers tuned.bn2,tuned.blocks.6,tuned.blocks.5

FracAtlas fractures are small, and the registry's CAM layer is the last one (a 10x10 grid at 320 px); an
earlier block gives 20x20. Scored on the validation fractures with drawn boxes (a choice is made there,
never on test), with ``train.localize``'s metrics; the layer is swapped in the registry for the run only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import load, registry  # noqa: E402
from train.localize import fracture_cases, score  # noqa: E402
from train.sources import Source  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--layers", required=True, help="comma-separated module names (model.get_submodule)")
    ap.add_argument("--methods", default="gradcam,gradcam++,hirescam")
    ap.add_argument("--data", default="fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv")
    ap.add_argument("--annotations", default="../shared/data/fracatlas/annotations.json")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    args = ap.parse_args()
    cases = fracture_cases(Source.parse(args.data), args.annotations, args.split)
    arch = load(args.model).arch
    spec = registry.get_spec(arch)
    out = {"model": args.model, "split": args.split, "fractures": len(cases), "scores": {}}
    try:
        for layer in args.layers.split(","):
            registry._REGISTRY[arch] = dataclasses.replace(spec, cam_layer=lambda m, name=layer: m.get_submodule(name))
            clf = load(args.model)
            for method in args.methods.split(","):
                s = score(clf, cases, method, bootstrap=1000)
                out["scores"][f"{layer} {method}"] = {k: s[k] for k in ("hits", "pointing_game", "pointing_game_ci95", "mass_ratio")}
                print(f"{layer:10s} {method:10s} {s['hits']}/{s['n']} = {s['pointing_game']:.3f}  mass ratio {s['mass_ratio']:.2f}",
                      file=sys.stderr, flush=True)
    finally:
        registry._REGISTRY[arch] = spec
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
