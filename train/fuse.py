"""Fuse a fine-tuned model with a frozen-feature probe: ``python -m train.fuse --model DIR --data ... --out DIR``.

The probe (``train.probe``: a logistic regression on a frozen ImageNet CNN's features, fitted on the train files
of ``--probe-sources``) and the model each give a calibrated logit; the fusion is ``w x probe + (1 - w) x model``,
``w`` chosen on the validation ROC AUC of ``--choose-on`` (the other hospital's question; ties go to the smaller
``w``), each logit computed as the fusion computes it (its input size, resize and flips; the probe's own 8-view
features rank validation files differently: docs/ladder.md, step 17). The result is one model folder (architecture
``fusion``, fracture_demo.models.fusion) with both branches' weights, recalibrated and its operating points placed
on the pooled validation files of every ``--data`` source, as ``train.calibrate`` does, and a card. Never fitted
on test files; ``python -m train.report`` scores it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from fracture_demo import FractureClassifier, count_parameters, create_model, load
from fracture_demo.registry import data_config

from .calibrate import calibrate
from .card import git_commit, write_model_card
from .data import ImageCache
from .inference import predict_logits, predict_probabilities
from .metrics import compute_metrics, headline, paired_auc_gain_ci
from .probe import features, fit
from .sources import Source, add_data_arguments, group_ids, sources_from_args, split_sources

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: What a fusion keeps of its tuned model's config: how it was trained and on what; the rest is its own.
KEPT = ("image_size", "mean", "std", "labels", "training", "data", "pretrained_source", "pretrained_from",
        "code_commit")


def choose_weight(y: np.ndarray, model_logit: np.ndarray, probe_logit: np.ndarray,
                  weights: tuple[float, ...] = WEIGHTS) -> tuple[float, dict[str, float]]:
    """The mixing weight with the highest ROC AUC (the first, i.e. smallest, of ties) and the whole sweep."""
    sweep = {str(w): float(roc_auc_score(y, w * probe_logit + (1 - w) * model_logit)) for w in weights}
    return max(weights, key=lambda w: sweep[str(w)]), sweep


@torch.no_grad()
def build(tuned: FractureClassifier, floor: str, floor_size: int, probe: dict, w: float,
          pretrained: str = "local") -> FractureClassifier:
    """The fusion of ``tuned`` and ``floor`` (ImageNet weights from ``pretrained``) with ``probe``'s fit
    (``train.probe.fit``) as the floor's head, mixed at ``w``; calibration left to :func:`train.finalize.calibrate`."""
    net = create_model("fusion", tuned=tuned.arch, floor=floor, floor_size=floor_size,
                       tuned_kwargs=tuned.config.get("model_kwargs", {}))
    net.tuned.load_state_dict(tuned.unwrapped.state_dict())
    net.floor.load_state_dict(create_model(floor, pretrained).state_dict())
    head = net.floor.get_classifier()
    head.weight.copy_(torch.as_tensor(probe["weight"], dtype=torch.float32).view_as(head.weight))
    head.bias.fill_(probe["bias"])
    t, b = float(tuned.config.get("temperature", 1.0)), float(tuned.config.get("bias", 0.0))
    net.scales.copy_(torch.tensor([(1 - w) / t, w / probe["temperature"]]))
    net.shift.fill_((1 - w) * b)
    fm, fs = (torch.tensor(data_config(floor, pretrained)[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    tm, ts = (torch.tensor(tuned.config[k], dtype=torch.float32).view(1, 3, 1, 1) for k in ("mean", "std"))
    net.floor_scale.copy_(ts / fs)  # x_raw = x * ts + tm; the floor wants (x_raw - fm) / fs
    net.floor_shift.copy_((tm - fm) / fs)
    config = {k: tuned.config[k] for k in KEPT if k in tuned.config}
    config.update(architecture="fusion", family=tuned.family, views=tuned.views, temperature=1.0, bias=0.0, threshold=0.5,
                  model_kwargs={"tuned": tuned.arch, "floor": floor, "floor_size": floor_size,
                                "tuned_kwargs": tuned.config.get("model_kwargs", {})},
                  parameters=count_parameters(net))
    return FractureClassifier(net.eval().requires_grad_(False), config)


@torch.no_grad()
def fuse(model_dir: str, sources: list[Source], floor: str = "efficientnet_lite0", floor_size: int = 224,
         probe_sources: list[str] | None = None, choose_on: str | None = None,
         min_sensitivity: float | None = None, pretrained: str = "local") -> tuple[FractureClassifier, dict]:
    """The calibrated fusion, and its scores on each source's validation files (``train.evaluate``'s metrics)."""
    tuned = load(model_dir)
    names = [s.name for s in sources]
    probe_sources, choose_on = probe_sources or names, choose_on or names[0]
    if not set(probe_sources) <= set(names) or choose_on not in probe_sources:
        raise ValueError(f"--probe-sources {probe_sources} and --choose-on {choose_on} must name --data sources, "
                         "and the choice must be among the probe's sources (its validation files are held out from it)")
    splits, _ = split_sources(sources)
    small = {k: ImageCache(floor_size).load([s for s in splits[k] if s.source in probe_sources]) for k in ("train", "val")}
    probe = fit(features(small, floor, pretrained), {k: v.labels for k, v in small.items()})
    print(f"probe on {probe_sources}: C {probe['C']}, temperature {probe['temperature']:.3f}", file=sys.stderr, flush=True)

    on = np.array([s.source == choose_on for s in small["val"].samples])
    chosen = [s for s, keep in zip(small["val"].samples, on) if keep]
    cache = ImageCache(tuned.image_size)  # the fusion's input size too: each validation file decoded once
    val = cache.load(chosen)
    if [s.path for s in val.samples] != [s.path for s in chosen]:
        raise ValueError("a validation file decodes at one size and not the other")
    model_logit = torch.logit(torch.from_numpy(predict_probabilities(tuned, val.images)), eps=1e-6).numpy()
    probe_alone = build(tuned, floor, floor_size, probe, 1.0, pretrained)  # the probe's calibrated logit, as the fusion
    probe_logit = predict_logits(probe_alone, val.images)  # computes it: its views
    w, sweep = choose_weight(val.labels, model_logit, probe_logit)
    gain_ci = paired_auc_gain_ci(val.labels, model_logit, w * probe_logit + (1 - w) * model_logit,
                                 group_ids(val.samples, sources))
    print(f"{choose_on} validation ROC AUC by w: {sweep}; w = {w}, gain over the model alone "
          f"{sweep[str(w)] - sweep['0.0']:+.3f} (95% interval by group {gain_ci[0]:+.3f}, {gain_ci[1]:+.3f})",
          file=sys.stderr, flush=True)

    clf = build(tuned, floor, floor_size, probe, w, pretrained)
    val = cache.load(splits["val"])
    p = clf.probability(torch.from_numpy(calibrate(clf, val, min_sensitivity, sources=sources))).numpy()
    origin = np.array([s.source for s in val.samples])
    results = {"val": compute_metrics(val.labels, p, clf.threshold)} | {
        f"{name} val": compute_metrics(val.labels[origin == name], p[origin == name], clf.threshold)
        for name in names if (origin == name).any()}
    clf.config["metrics"] = {k: headline(m) for k, m in results.items()}
    clf.config["fusion"] = {
        "tuned_from": str(model_dir), "floor": floor, "floor_size": floor_size, "probe_sources": probe_sources,
        "probe_C": probe["C"], "probe_temperature": probe["temperature"], "w": w,
        "choose_on": choose_on, "sweep": sweep, "gain_ci95": gain_ci,
        "min_sensitivity": min_sensitivity,
        "commit": git_commit()}
    clf.config["pretrained_source"] = (f"{clf.config.get('pretrained_source', tuned.arch)}; frozen branch: {floor} "
                                       f"ImageNet weights ({pretrained}), probe fitted on {', '.join(probe_sources)} train")
    return clf, results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.fuse", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the fine-tuned model folder")
    add_data_arguments(ap)  # every source the model trained on: pooled validation files calibrate the fusion
    ap.add_argument("--floor", default="efficientnet_lite0", help="registry name of the frozen ImageNet CNN")
    ap.add_argument("--floor-size", type=int, default=224)
    ap.add_argument("--probe-sources", default=None, help="comma-separated sources the probe fits on (default: all)")
    ap.add_argument("--choose-on", default=None, help="the source whose validation ROC AUC chooses w (default: the first)")
    ap.add_argument("--min-sensitivity", type=float, default=None, help="the default decision screens at this sensitivity")
    ap.add_argument("--pretrained", default="local", help="where the floor's ImageNet weights are (local | PATH)")
    ap.add_argument("--out", required=True, help="the fusion's model folder")
    args = ap.parse_args(argv)
    try:
        clf, results = fuse(args.model, sources_from_args(args), args.floor, args.floor_size,
                   args.probe_sources.split(",") if args.probe_sources else None, args.choose_on,
                   args.min_sensitivity, args.pretrained)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = clf.save_pretrained(args.out, half=True)
    tuned = Path(args.model)  # the tuned branch's training, the only one there was, for the card
    if (tuned / "training_curves.png").is_file():
        shutil.copy(tuned / "training_curves.png", out / "training_curves.png")
    run = json.loads((tuned / "metrics.json").read_text()) if (tuned / "metrics.json").is_file() else {}
    metrics = {"history": run.get("history", []), "stop_reason": run.get("stop_reason"), "results": results}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    write_model_card(out, clf.config, metrics)  # test scores: python -m train.report
    print(json.dumps({k: clf.config[k] for k in ("fusion", "temperature", "bias", "threshold", "operating_points")},
                     indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
