"""Write a trained zoo model's CNN as the timm weights file that ``--pretrained FILE`` loads.

Why: a hybrid's stem (``vit_hybrid``, ``swin_hybrid``) is built by timm from a file of EfficientNet-Lite0
weights; this lets it start from one already fine-tuned on radiographs (a fusion's tuned branch) instead of
ImageNet, with no other code path. Only our own safetensors are read.

    python -m train.backbone --model assets/models/efficientnet_lite0_fusion --out runs/lite0_tuned.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import save_file

import fracture_demo as fd


def backbone_state(folder: str | Path) -> tuple[str, dict]:
    """(timm architecture, state dict) of the CNN in a zoo folder: a fusion's tuned branch, else the model."""
    clf = fd.load(folder)
    model = clf.unwrapped
    net, arch = (model.tuned, model.tuned_arch) if clf.arch == "fusion" else (model, clf.arch)
    return arch, {k: v.clone().contiguous() for k, v in net.state_dict().items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a zoo model folder (a fusion's tuned branch is taken)")
    ap.add_argument("--out", required=True, help="the safetensors file to write")
    args = ap.parse_args(argv)
    arch, state = backbone_state(args.model)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, args.out, metadata={"source": str(args.model), "architecture": arch})
    print(f"{args.out}: {arch} from {args.model} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
