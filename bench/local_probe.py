"""Does a probe that sees *where* (each position of a frozen ImageNet feature map, taught by the drawn boxes) add to
the default? Validation only.

    python bench/local_probe.py --data fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv \
        --annotations ../shared/data/fracatlas/annotations.json --model assets/models/efficientnet_lite0_fusion

The fusion's floor (``train.probe``) averages the frozen feature map over the whole radiograph, where a small
fracture is a few positions of hundreds. Here one linear unit scores every position of the map (FracAtlas decoded at
``--size``, near its stored ~400 px), and the positions are pooled into the radiograph's logit (mean, mean of the top
five, or log-mean-exp), trained on the image labels; with ``--box-weight`` also by the guidance loss of
``train.guidance`` (the softmax mass over positions inside the drawn box). Printed per variant on FracAtlas
validation: its ROC AUC alone, mixed with ``--model``'s calibrated logit (its own logit rescaled to that one's mean and spread)
at the weight ``train.fuse`` would choose,
the paired 95% interval of that gain by group, and the pointing game of its position map on the validation
fractures (``train.localize``'s tolerance). The global average of the same map, fitted by ``train.probe.fit``, is the
reference row.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.special import logit
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fracture_demo import create_model, load  # noqa: E402
from fracture_demo.imaging import normalize  # noqa: E402
from fracture_demo.registry import data_config  # noqa: E402
from train.choose import validation_probabilities  # noqa: E402
from train.data import ImageCache  # noqa: E402
from train.evaluate import paired_auc_gain_ci  # noqa: E402
from train.fuse import choose_weight  # noqa: E402
from train.localize import box_mask, pointing_hit, read_boxes  # noqa: E402
from train.probe import fit  # noqa: E402
from train.sources import Source, group_ids, split_sources  # noqa: E402

VARIANTS = (("mean", 0.0), ("top5", 0.0), ("top5", 1.0), ("lse", 1.0))


@torch.no_grad()
def feature_maps(images: np.ndarray, backbone: str, batch: int = 16) -> torch.Tensor:
    """N x H x W x D frozen ImageNet feature maps (bf16 autocast, as ``train.features``)."""
    cfg = data_config(backbone, "local")
    model = create_model(backbone, "local").eval()
    out = []
    for i in range(0, len(images), batch):
        x = normalize(torch.from_numpy(images[i:i + batch]), cfg["mean"], cfg["std"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(model.forward_features(x).float().permute(0, 2, 3, 1).contiguous())
    return torch.cat(out)


def pool(z: torch.Tensor, how: str) -> torch.Tensor:
    """B x H x W position logits -> B radiograph logits."""
    flat = z.flatten(1)
    if how == "mean":
        return flat.mean(1)
    if how == "lse":
        return torch.logsumexp(flat, 1) - float(np.log(flat.shape[1]))
    return flat.topk(int(how.removeprefix("top")), 1).values.mean(1)


def fit_positions(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], masks: torch.Tensor, how: str,
                  box_weight: float, epochs: int, seed: int = 0) -> tuple[torch.nn.Linear, np.ndarray]:
    """One linear unit over standardised positions, trained on ``train``; the epoch with the best validation ROC AUC
    is kept (returns it and its validation logits)."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x["train"].shape[-1], 1)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3, weight_decay=1e-2)
    pos_weight = (1 - y["train"].mean()) / y["train"].mean()
    boxed = masks.flatten(1).any(1)
    best: tuple[float, dict, np.ndarray] = (-1.0, {}, np.empty(0))
    for _ in range(epochs):
        for b in torch.randperm(len(y["train"])).split(64):
            z = lin(x["train"][b]).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(pool(z, how), y["train"][b], pos_weight=pos_weight)
            if box_weight and boxed[b].any():
                inside = masks[b][boxed[b]].flatten(1)
                logp = torch.log_softmax(z[boxed[b]].flatten(1), 1)
                loss = loss - box_weight * torch.logsumexp(logp.masked_fill(~inside, -1e9), 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            zv = pool(lin(x["val"]).squeeze(-1), how).numpy()
        auc = float(roc_auc_score(y["val"].numpy(), zv))
        if auc > best[0]:
            best = (auc, {k: v.clone() for k, v in lin.state_dict().items()}, zv)
    lin.load_state_dict(best[1])
    return lin, best[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, metavar="NAME=DIR:SPLIT_FILE", help="the source with drawn boxes")
    ap.add_argument("--annotations", required=True, help="COCO boxes, joined on file name")
    ap.add_argument("--model", default="assets/models/efficientnet_lite0_fusion", help="the model it would join")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    source = Source.parse(args.data)
    samples = split_sources([source])[0]
    cache = ImageCache(args.size)
    sets = {k: cache.load(samples[k]) for k in ("train", "val")}
    y = {k: torch.from_numpy(s.labels) for k, s in sets.items()}
    maps = {k: feature_maps(s.images, args.backbone) for k, s in sets.items()}
    mu, sd = maps["train"].flatten(0, 2).mean(0), maps["train"].flatten(0, 2).std(0) + 1e-4
    x = {k: (v - mu) / sd for k, v in maps.items()}
    boxes = read_boxes(args.annotations)
    stored = {k: [Image.open(s.path).size for s in sets[k].samples] for k in sets}  # boxes are in stored pixels
    h, w = maps["train"].shape[1:3]
    masks = torch.from_numpy(np.stack([box_mask((h, w), boxes.get(s.path.name, []), (w / sw, h / sh))
                                       for s, (sw, sh) in zip(sets["train"].samples, stored["train"])]))

    clf = load(args.model)
    p = validation_probabilities(clf, sets["val"].samples, ImageCache(clf.image_size))
    model_logit, yv = logit(np.clip([p[s.path] for s in sets["val"].samples], 1e-7, 1 - 1e-7)), sets["val"].labels
    groups = group_ids(sets["val"].samples, [source])
    cases = [(i, boxes[s.path.name]) for i, s in enumerate(sets["val"].samples) if s.label == 1 and s.path.name in boxes]

    def row(z: np.ndarray, maps_val: torch.Tensor | None) -> dict:
        zs = (z - z.mean()) / z.std()  # on the model's logit scale: w mixes comparable spreads
        zs = zs * model_logit.std() + model_logit.mean()
        wt, sweep = choose_weight(yv, model_logit, zs)
        out = {"alone": float(roc_auc_score(yv, z)), "w": wt, "fused": sweep[str(wt)],
               "gain_ci95": paired_auc_gain_ci(yv, model_logit, wt * zs + (1 - wt) * model_logit, groups)}
        if maps_val is not None:
            hits = [pointing_hit(maps_val[i].numpy(), b, (w / stored["val"][i][0], h / stored["val"][i][1]))
                    for i, b in cases]
            out["pointing_game_val"] = float(np.mean(hits))
        return out

    rows = {"model alone": {"alone": float(roc_auc_score(yv, model_logit))}}
    glob = {k: F.normalize(v.mean((1, 2)), dim=1).numpy() for k, v in maps.items()}
    res = fit(glob, {k: v.numpy() for k, v in y.items()})
    rows["global average (train.probe)"] = row(logit(np.clip(res["prob"]["val"], 1e-7, 1 - 1e-7)), None)
    print(json.dumps(rows), flush=True)
    for how, bw in VARIANTS:
        lin, zv = fit_positions(x, y, masks, how, bw, args.epochs)
        with torch.no_grad():
            mv = lin(x["val"]).squeeze(-1)
        name = f"positions, {how}, box weight {bw}"
        rows[name] = row(zv, mv)
        print(name, json.dumps(rows[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "backbone": args.backbone, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
