"""``python -m train --model NAME --data-dir D --output-dir OUT``: train one architecture.

Runs unchanged under ``torchrun --nproc_per_node N -m train ...`` (DDP; gloo on CPU, NCCL on GPU).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from fracture_demo import list_models

from .loop import TrainConfig, train
from .sampling import BALANCE
from .sources import add_data_arguments


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    d = {f.name: f.default for f in fields(TrainConfig)}
    ap = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=list_models())
    add_data_arguments(ap, folder=True, split_mode=d["split_mode"])  # repeat --data to train on several sources
    ap.add_argument("--output-dir", required=True, help="model folder to write (Hub-shaped)")
    ap.add_argument("--epochs", type=int, default=d["epochs"])
    ap.add_argument("--batch-size", type=int, default=d["batch_size"])
    ap.add_argument("--lr", type=float, default=d["lr"])
    ap.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    ap.add_argument("--image-size", type=int, default=None, help="input side (default: the model's own)")
    ap.add_argument("--pretrained", default=d["pretrained"],
                    help="hub | none | local ($FRACTURE_PRETRAINED_DIR) | PATH (file, or folder holding it)")
    ap.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                    help="continue from a trained model folder of the same architecture (e.g. grouped -> official)")
    ap.add_argument("--seed", type=int, default=d["seed"])
    ap.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/.train_state")
    ap.add_argument("--patience", type=int, default=d["patience"], help="early stopping: epochs without val-loss gain")
    ap.add_argument("--warmup-epochs", type=float, default=d["warmup_epochs"])
    ap.add_argument("--augment", default=d["augment"], choices=["strong", "flip"],
                    help="flip: the study's flips only; strong: + any-angle rotation, zoom, contrast")
    ap.add_argument("--balance", default=d["balance"], choices=list(BALANCE),
                    help="radiograph: sample each radiograph equally however many copies it has (and labels half and half); "
                         "source: every source equally, each radiograph in it once however many copies it has")
    ap.add_argument("--min-sensitivity", type=float, default=None,
                    help="decision threshold: the highest whose validation sensitivity reaches this (default: max balanced accuracy)")
    ap.add_argument("--amp", default=d["amp"], choices=["auto", "bf16", "none"],
                    help="auto: bf16 autocast on GPUs, and on CPUs for the families where it trains faster (registry cpu_bf16); none: fp32")
    ap.add_argument("--teacher", default=None, help="model folder to distil from (DeiT-style, soft targets)")
    ap.add_argument("--distill-alpha", type=float, default=d["distill_alpha"], help="weight of the teacher's loss")
    ap.add_argument("--distill-temperature", type=float, default=d["distill_temperature"])
    ap.add_argument("--workers", type=int, default=None, help="decode threads (default: the usable cores)")
    ap.add_argument("--head-init", default=d["head_init"], choices=["zero", "probe"],
                    help="probe: fit the classifier on frozen features before fine-tuning (LP-FT)")
    ap.add_argument("--layer-decay", type=float, default=d["layer_decay"], metavar="D",
                    help="layer-wise lr decay: each earlier layer learns at D times the next one's rate (timm models)")
    ap.add_argument("--train-from", default=d["train_from"], metavar="MODULE",
                    help="freeze every parameter before this module (its name in model.named_modules(), e.g. 0.28)")
    ap.add_argument("--ema", type=float, default=d["ema"], metavar="DECAY",
                    help="validate, keep and resume an exponential moving average of the weights (e.g. 0.998)")
    ap.add_argument("--box-weight", type=float, default=d["box_weight"], metavar="W",
                    help="weight of the loss pulling the class-activation map into the drawn boxes (train.guidance)")
    ap.add_argument("--boxes", default=d["boxes"], metavar="COCO_JSON",
                    help="drawn fracture boxes for --box-weight, joined on file name (FracAtlas's annotations.json)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="minutes; pause after the epoch crossing it (continue with --resume)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="minutes of training, the rate's schedule ending in them (mid-epoch if need be); "
                         "then finish with the best epoch (calibrate, evaluate, card)")
    ap.add_argument("--bootstrap", type=int, default=d["bootstrap"], help="resamples for 95%% intervals")
    ap.add_argument("--half", action="store_true", help="store fp16 weights (half the size)")
    ap.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the model folder when done")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if bool(args.data) == bool(args.data_dir):
        ap.error("give --data-dir or one or more --data NAME=DIR[:SPLIT_FILE]")
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in d} | {"data": args.data or []})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        train(cfg)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
