"""After the last epoch: calibrate on validation data, score every test set, write the model folder, push.

Calibration (temperature and bias) and threshold come from the pooled validation files of every source, never from a test
split. Test sets: each source's test split (several sources), or the split's test and the official
test (one folder, as before), with 95% intervals by group.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from fracture_demo import load

from .data import ImageCache, ImageSet, Sample, scan
from .evaluate import evaluate_set, fit_calibration, headline, predict_logits
from .operating_points import operating_points, placed_draws
from .sources import Source, group_ids


def scored_sets(cfg, sources: list[Source], splits: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
    """Name -> files of each set a finished run is scored on (besides the pooled val)."""
    if cfg.data:
        sets = {}
        for src in sources:
            sets[f"{src.name} val"] = [x for x in splits["val"] if x.source == src.name]
            sets[f"{src.name} test"] = [x for x in splits["test"] if x.source == src.name]
        return sets
    sets = {f"{cfg.split_mode} test": splits["test"]}
    if cfg.split_mode == "grouped":
        sets["official test"] = [s for s in scan(cfg.data_dir) if s.split == "test"]
    return sets


def calibrate(clf, val_set: ImageSet, min_sensitivity: float | None, dev: torch.device | str = "cpu",
              sources: list[Source] | None = None) -> np.ndarray:
    """Fit calibration (temperature and bias) and the decision threshold on validation files, into ``clf.config``;
    returns the validation files' raw logits."""
    val_logits = predict_logits(clf, val_set.images, device=dev)
    temperature, bias = fit_calibration(val_logits, val_set.labels)
    clf.config.update(temperature=temperature, bias=bias)
    clf.config["calibration_prevalence"] = float(val_set.labels.mean())  # what P(fractured) is true at
    set_operating_points(clf, val_set, val_logits, min_sensitivity, sources)
    return val_logits


def set_operating_points(clf, val_set: ImageSet, val_logits: np.ndarray, min_sensitivity: float | None,
                         sources: list[Source] | None = None) -> None:
    """Thresholds for each question (``train.operating_points``) from validation files, into ``clf.config``; the
    default decision is screening where ``min_sensitivity`` is given (a missed fracture costs more), else balanced.
    With ``sources`` (their split files name the groups), each point also records ``threshold_95``: its 95% range
    over resampled validation groups, how firmly those files pin it (a reader's error bar on the threshold)."""
    val_p = clf.probability(torch.from_numpy(val_logits)).numpy()
    origin, level = np.array([s.source for s in val_set.samples]), min_sensitivity or 0.9
    points = operating_points(val_set.labels, val_p, origin, level)
    if points and sources is not None:
        draws = placed_draws(val_set.labels, val_p, origin, np.array(group_ids(val_set.samples, sources)), level)
        for name, pt in points.items():
            if len(draws[name]):
                pt["threshold_95"] = [round(float(x), 4) for x in np.percentile(draws[name], [2.5, 97.5])]
    if not points:  # validation files of one class cannot place a threshold
        for stale in ("operating_points", "default_operating_point"):
            clf.config.pop(stale, None)
        clf.config.update(threshold=0.5, operating_point="0.5: validation files of one class")
        return
    default = "screen" if min_sensitivity else "balanced"
    clf.config.update(operating_points=points, default_operating_point=default,
                      threshold=points[default]["threshold"], operating_point=points[default]["rule"])


def finalize(cfg, out: Path, cache: ImageCache, splits: dict, sources: list[Source],
             history: list[dict], stop_reason: str, dev: torch.device) -> dict:
    """Best weights -> calibrate on val -> score test splits -> metrics, plots, model card, push."""
    from .card import write_model_card, write_plots

    clf = load(out)
    clf.model.to(dev)
    val_set = cache.load(splits["val"])
    calibrate(clf, val_set, cfg.min_sensitivity, dev, sources)
    temperature, bias = clf.config["temperature"], clf.config["bias"]
    train_hashes = set(cache.load(splits["train"]).hashes)
    results = {"val": evaluate_set(clf, val_set, device=dev)[0]}
    curves = {}
    for name, samples in scored_sets(cfg, sources, splits).items():
        if not samples:
            continue
        data = cache.load(samples)
        m, p = evaluate_set(clf, data, group_ids(data.samples, sources), cfg.bootstrap, device=dev)
        m["seen_in_training"] = int(sum(h in train_hashes for h in data.hashes))
        results[name] = m
        curves[name] = (data.labels, p)
    metrics = {"model": cfg.model, "results": results, "history": history, "stop_reason": stop_reason,
               "temperature": temperature, "bias": bias, "threshold": clf.config["threshold"]}
    clf.config["metrics"] = {k: headline(v) for k, v in results.items()}
    clf.save_pretrained(out, half=cfg.half)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_plots(out, history, results, curves)
    write_model_card(out, clf.config, metrics)
    for name, m in results.items():
        print(f"{name}: accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}  "
              f"AUC {m['roc_auc']:.4f}  ECE {m['ece']:.4f}", file=sys.stderr)
    if cfg.push_to_hub:
        from fracture_demo.hub import push_folder
        url = push_folder(out, cfg.push_to_hub, private=cfg.private)
        print(f"pushed {out} to {url}", file=sys.stderr)
    return metrics
