"""Cross-validation over groups: ``python -m train.crossval --data ... --folds 5 --out DIR -- TRAIN_ARGS``.

Why: every choice and threshold of the ladder rests on one validation split (FracAtlas: 54 groups, 112 fractures),
and a threshold placed on it moves over 0.10-0.27 when those groups are resampled (step 16 of docs/ladder.md).
Here the train and validation groups of each source named by ``--deal`` are dealt into k folds (``StratifiedGroupKFold``: no group in two
folds, each fold with its share of fractures; test files stay test), ``python -m train`` runs once per fold with
that fold held out as its validation side (a finished fold is skipped and a paused one resumed, so the command
can be run again until it is done), and then:

  out-of-fold   each fold's model scores the files it never trained on: ROC AUC per source over every train and
                validation group (about five times the groups of one validation split), with 95% intervals by group;
  points        one calibration (Platt) and the operating points (``train.calibrate``) placed on those
                out-of-fold predictions, not on one split's, with the screening threshold's 95% range over resampled
                groups beside the range on one fold's worth of them;
  test          the k models' mean logit, so calibrated, on each source's test files, beside each fold's model alone
                (its ROC AUC): what k runs on other data give, and whether their mean beats one of them.

Writes ``DIR/fold<i>/`` (Hub-shaped model folders), ``DIR/splits/`` and ``DIR/crossval.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from fracture_demo import load

from .calibrate import fit_calibration, operating_points, threshold_draws
from .card import git_commit
from .data import ImageCache, Sample
from .inference import predict_logits
from .metrics import bootstrap_ci, compute_metrics
from .sources import Source, add_data_arguments, group_ids, sources_from_args, split_sources


def fold_split_files(source: Source, k: int, out: Path, seed: int = 0) -> list[Source]:
    """k copies of ``source`` whose split files hold fold i as validation and the other folds as train."""
    if source.split_file is None:
        raise ValueError(f"source {source.name}: cross-validation needs a split file with groups")
    with open(source.split_file, newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames or [], list(reader)
    pool = [i for i, r in enumerate(rows) if r["split"] in ("train", "val")]
    in_pool = set(pool)
    labels = [int(rows[i]["file"].split("/")[1] == "fractured") for i in pool]  # rel path: split/label/name
    groups = [rows[i]["group"] for i in pool]
    folds = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(pool)), labels, groups)
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for fold, (_, held) in enumerate(folds):
        held_rows = {pool[j] for j in held}
        path = out / f"{source.name}_fold{fold}.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for i, r in enumerate(rows):
                if i in in_pool:
                    r = r | {"split": "val" if i in held_rows else "train"}
                writer.writerow(r)
        copies.append(Source(source.name, source.root, path))
    return copies


def fold_sources(sources: list[Source], k: int, out: Path, dealt: set[str], seed: int = 0) -> list[list[Source]]:
    """Per fold, every source: those named in ``dealt`` with that fold's split file, the others with their own."""
    per_source = [fold_split_files(src, k, out, seed) if src.name in dealt else [src] * k for src in sources]
    return [[copies[i] for copies in per_source] for i in range(k)]


def train_folds(folds: list[list[Source]], out: Path, train_args: list[str]) -> None:
    """``python -m train`` per fold, in a child process (its memory returns to the system between folds); a folder
    with metrics.json is done, one with a saved state resumes."""
    for i, srcs in enumerate(folds):
        run = out / f"fold{i}"
        if (run / "metrics.json").is_file():
            continue
        data = [a for s in srcs for a in ("--data", s.arg())]
        resume = ["--resume"] if (run / ".train_state").exists() else []
        subprocess.run([sys.executable, "-m", "train", *data, "--output-dir", str(run), *train_args, *resume], check=True)


def scored(sources: list[Source], logits: np.ndarray, kept: list[Sample]) -> dict:
    """Arrays of the kept files: labels, logits, their source and bootstrap group."""
    return {"y": np.array([s.label for s in kept]), "z": logits, "source": np.array([s.source for s in kept]),
            "group": np.array(group_ids(kept, sources))}


def score_folds(folds: list[list[Source]], out: Path, cache: ImageCache, dealt: set[str],
                test: np.ndarray) -> tuple[dict, list[np.ndarray]]:
    """Each fold model loaded once: the validation logits no model trained on, and every fold's logits on ``test``.

    Validation: a dealt source's files from the fold model that held them out (``fold``), another source's (its own
    validation split, held out by every fold; ``fold`` -1) the fold models' mean."""
    parts, others, on_test = [], [], []
    for i, srcs in enumerate(folds):
        clf = load(str(out / f"fold{i}"))
        data = cache.load(split_sources(srcs)[0]["val"])
        z = predict_logits(clf, data.images)
        mine = np.array([s.source in dealt for s in data.samples], bool)
        parts.append(scored(srcs, z[mine], [s for s, m in zip(data.samples, mine) if m]) | {"fold": np.full(mine.sum(), i)})
        others.append(scored(srcs, z[~mine], [s for s, m in zip(data.samples, mine) if not m]))
        on_test.append(predict_logits(clf, test))
    if len(others[0]["y"]):  # the same files in every fold
        parts.append(others[0] | {"z": np.mean([o["z"] for o in others], 0), "fold": np.full(len(others[0]["y"]), -1)})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, on_test


def per_source(y: np.ndarray, p: np.ndarray, source: np.ndarray, group: np.ndarray, threshold: float,
               bootstrap: int) -> dict:
    """ROC AUC, balanced accuracy, sensitivity and specificity per source, with 95% intervals by group."""
    out = {}
    for name in dict.fromkeys(source.tolist()):
        m = source == name
        met = compute_metrics(y[m], p[m], threshold)
        pred = p[m] >= threshold
        out[name] = {"n": int(m.sum()), "n_groups": len(set(group[m].tolist())), "roc_auc": met["roc_auc"],
                     "balanced_accuracy": met["balanced_accuracy"], "ece": met["ece"],
                     "sensitivity": float(pred[y[m] == 1].mean()), "specificity": float(1 - pred[y[m] == 0].mean())}
        if bootstrap:
            out[name]["ci95"] = bootstrap_ci(y[m], p[m], group[m].tolist(), threshold, bootstrap,
                                             keys=("roc_auc", "balanced_accuracy", "sensitivity", "specificity"))
    return out


def crossval(sources: list[Source], k: int, out: Path, train_args: list[str], dealt: set[str], seed: int = 0,
             min_sensitivity: float = 0.9, bootstrap: int = 1000, train: bool = True) -> dict:
    if not dealt & {s.name for s in sources}:
        raise ValueError(f"--deal {','.join(sorted(dealt))}: no such source among --data; nothing would be cross-validated")
    folds = fold_sources(sources, k, out / "splits", dealt, seed)
    if train:
        train_folds(folds, out, train_args)
    cache = ImageCache(load(str(out / "fold0")).image_size)
    test = cache.load(split_sources(sources)[0]["test"])
    oof, test_logits = score_folds(folds, out, cache, dealt, test.images)
    t, b = fit_calibration(oof["z"], oof["y"])
    p_oof = expit(oof["z"] / t + b)
    points = operating_points(oof["y"], p_oof, oof["source"], min_sensitivity)
    screen = points["screen"]["threshold"]
    one = oof["fold"] <= 0  # what one validation split holds: fold 0 of the dealt sources, the others' own
    spread = {name: np.percentile(threshold_draws(oof["y"][m], p_oof[m], oof["source"][m], oof["group"][m],
                                                  level=min_sensitivity), [2.5, 97.5]).tolist()
              for name, m in (("out_of_fold", np.ones_like(one)), ("one_fold", one))}
    ref = scored(sources, np.zeros(len(test)), test.samples)
    alone = {f"fold{i}": {name: float(roc_auc_score(ref["y"][ref["source"] == name], z[ref["source"] == name]))
                          for name in dict.fromkeys(ref["source"].tolist())} for i, z in enumerate(test_logits)}
    p_test = expit(np.mean(test_logits, 0) / t + b)
    return {"folds": k, "seed": seed, "train_args": train_args, "commit": git_commit(),
            "calibration": {"temperature": t, "bias": b}, "operating_points": points, "screen_threshold_95": spread,
            "out_of_fold": per_source(oof["y"], p_oof, oof["source"], oof["group"], screen, bootstrap),
            "test_mean_of_folds": per_source(ref["y"], p_test, ref["source"], ref["group"], screen, bootstrap),
            "test_each_fold": alone}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="arguments after -- go to python -m train")
    add_data_arguments(ap)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--deal", default="fracatlas", help="comma-separated sources dealt into folds; the others keep "
                    "their split (Multi-Region's thousands of rotated copies sit in a few groups: one fold would hold them)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0, help="how groups are dealt into folds")
    ap.add_argument("--min-sensitivity", type=float, default=0.9, help="the screening point's promise")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--no-train", action="store_true", help="score the fold models already in --out")
    args = ap.parse_args(argv)
    try:
        result = crossval(sources_from_args(args), args.folds, args.out, train_args, set(args.deal.split(",")),
                          args.seed, args.min_sensitivity, args.bootstrap, not args.no_train)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (args.out / "crossval.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("out_of_fold", "test_mean_of_folds", "test_each_fold")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
