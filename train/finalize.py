"""After the last epoch: calibrate on validation data, score every test set, write the model folder, push.

Calibration (temperature and bias) and threshold come from the pooled validation files of every source, never from a test
split. Test sets: each source's test split (several sources), or the split's test and the official
test (one folder, as before), with 95% intervals by group.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from fracture_demo import load

from .calibrate import calibrate
from .data import ImageCache, Sample, scan
from .evaluate import evaluate_set
from .metrics import headline
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
