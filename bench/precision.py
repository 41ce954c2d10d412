"""What bfloat16 buys and moves, per bundled model the inference runtime serves: the evidence behind the registry's
``serve_bf16`` (the families the app serves in bf16).

    python -m bench.precision [--repeats 3] [--write docs/speed.md]

Each model loaded twice, OpenVINO in f32 and in bf16 (``fracture_demo.load(..., precision=)``), on one thread; on the
real radiographs of both sets (``tests/real_images.py``): the median time of predict + Grad-CAM, and how far
P(fractured) and the map (0-1) move, and how many decisions and guard verdicts change. ``--write`` puts the table
between the file's ``<!-- precision:start/end -->`` markers.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fracture_demo import decode_image, get_spec, load
from fracture_demo.zoo import BUNDLED_DIR
from tests.real_images import real_radiographs
from train.card import git_commit
from train.report import write_section


def compare(folder: Path, images: list, repeats: int) -> dict | None:
    """f32 against bf16 for one model folder; None where torch serves it (its maps need gradients)."""
    f32, bf16 = load(folder, precision="f32"), load(folder, precision="bf16")
    if f32.compiled is None:
        return None
    times: dict[str, list[float]] = {"f32": [], "bf16": []}
    dp, dmap, decisions, verdicts = [], [], 0, 0
    for img in images:
        out = {}
        for name, clf in (("f32", f32), ("bf16", bf16)):
            clf.explain(img, "gradcam")  # warm: each batch shape compiles once
            for _ in range(repeats):
                t = time.perf_counter()
                out[name] = clf.explain(img, "gradcam")
                times[name].append(time.perf_counter() - t)
        a, b = out["f32"], out["bf16"]
        dp.append(abs(a.prediction.probability - b.prediction.probability))
        dmap.append(float(np.abs(a.heatmap - b.heatmap).max()))
        decisions += a.prediction.label != b.prediction.label
        verdicts += a.prediction.radiograph != b.prediction.radiograph
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return {"arch": f32.arch, "served": "bf16" if get_spec(f32.arch).serve_bf16 else "f32", **ms,
            "dp_max": max(dp), "dp_mean": float(np.mean(dp)), "map_max": max(dmap), "decisions": decisions,
            "verdicts": verdicts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", type=Path, default=None, help="a Markdown file with <!-- precision:start/end --> markers")
    args = ap.parse_args()
    os.environ["FRACTURE_ENGINE"] = "openvino"
    torch.set_num_threads(1)  # as the app serves: one thread per request (the runtime compiles with it)
    commit = git_commit()
    images = [decode_image(p, draft_side=1024) for p in real_radiographs()]
    lines = ["| model (architecture) | served at auto | f32 ms | bf16 ms | P(fractured) moved: max, mean | map moved: max "
             "| decisions changed | guard verdicts changed |", "|---" * 8 + "|"]
    for folder in sorted(p.parent for p in BUNDLED_DIR.glob("*/config.json")):
        r = compare(folder, images, args.repeats)
        if r:
            lines.append(f"| {folder.name} ({r['arch']}) | {r['served']} | {r['f32']:.0f} | {r['bf16']:.0f} | "
                         f"{r['dp_max']:.4f}, {r['dp_mean']:.4f} | {r['map_max']:.3f} | {r['decisions']} | {r['verdicts']} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + (f"\n\n{len(images)} real radiographs of both sets; predict + Grad-CAM on one thread, "
                               f"medians of {args.repeats} per image; commit `{commit}`.\n")
    print(text)
    if args.write:
        write_section(args.write, "precision", text)


if __name__ == "__main__":
    main()
