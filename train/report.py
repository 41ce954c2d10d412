"""Model cards, plots and the README's results table, all generated from files a run wrote.

``python -m train.report --models assets/models --data-dir D --split-file F`` re-scores every
bundled model, writes ``assets/results/results.json``, ``roc.png`` and the table between the
``<!-- results:start -->`` markers of README.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from fracture_demo.classifier import LABELS  # noqa: E402

from .evaluate import headline  # noqa: E402

DATASET_CREDIT = (
    "Bone Fracture Multi-Region X-ray Data (Kaggle, bmadushanirodrigo), which merges Bone Break Classifier "
    "(Mohan Kumar), bone_fracture (Abdelaziz Faramawy) and fracture (Harsha Arya). Licensed under the Open "
    "Data Commons Attribution License (ODC-By) 1.0; these weights are derived from it.")
#: The original study's accuracy on the official 506-image test split.
STUDY_ACCURACY = {"custom_cnn": 0.94, "vgg19": 0.89, "mobilenetv3": 0.81, "regnet": 0.81,
                  "wide_resnet": 0.88, "vit": 0.95, "swin": 0.89}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_plots(out: Path, history: list[dict], results: dict, curves: dict) -> None:
    """training_curves.png, confusion_matrix.png, roc.png in the model folder."""
    if history:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        ep = [h["epoch"] for h in history]
        ax[0].plot(ep, [h["train_loss"] for h in history], label="train")
        ax[0].plot(ep, [h["val_loss"] for h in history], label="val")
        ax[0].set(xlabel="epoch", ylabel="loss", title="loss")
        ax[0].legend()
        ax[1].plot(ep, [h["val_accuracy"] for h in history])
        ax[1].set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=100)
        plt.close(fig)
    tests = [k for k in results if k != "val"]
    if tests:
        fig, axes = plt.subplots(1, len(tests), figsize=(4 * len(tests), 3.6), squeeze=False)
        for ax, name in zip(axes[0], tests):
            cm = np.array(results[name]["confusion_matrix"])
            ax.imshow(cm, cmap="Blues")
            for (i, j), v in np.ndenumerate(cm):
                ax.text(j, i, str(v), ha="center", va="center", color="black")
            ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=LABELS, yticklabels=LABELS,
                   xlabel="predicted", ylabel="true", title=name)
        fig.tight_layout()
        fig.savefig(out / "confusion_matrix.png", dpi=100)
        plt.close(fig)
    if curves:
        roc_plot({name: (y, p) for name, (y, p) in curves.items()}, out / "roc.png", "ROC")


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, p) in curves.items():
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt_ci(m: dict, key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    return f"{m[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.3f}"


def write_model_card(out: Path, config: dict, metrics: dict) -> None:
    """README.md with Hub front matter: what it is, how it was trained, every number, caveats."""
    arch, tr, data = config["architecture"], config.get("training", {}), config.get("data", {})
    from fracture_demo import get_spec
    spec = get_spec(arch)
    rows = []
    for name, m in metrics["results"].items():
        rows.append(f"| {name} | {m['n']} | {_fmt_ci(m, 'accuracy')} | {_fmt_ci(m, 'balanced_accuracy')} | "
                    f"{_fmt_ci(m, 'roc_auc')} | {m['macro_f1']:.3f} | {m['ece']:.3f} | {m.get('seen_in_training', '-')} |")
    cmd = "python -m train " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in tr.items()
        if v is not None and not isinstance(v, bool) and k not in ("bootstrap", "workers", "time_limit")
    ) + "".join(f" --{k}" for k, v in tr.items() if v is True)
    loss = ("radiograph-balanced sampling (each radiograph once however many copies, labels half and half), BCE"
            if tr.get("balance") == "radiograph" else "class-balanced BCE")
    card = f"""---
license: odc-by
library_name: pytorch
pipeline_tag: image-classification
tags: [medical-imaging, x-ray, fracture, explainability, {arch}]
datasets: [bmadushanirodrigo/fracture-multi-region-x-ray-data]
---
# Bone-fracture X-ray classifier: {spec.family} (`{arch}`)

**Research and teaching demo. Not a medical device; not for diagnosis.**

{spec.description} One logit; sigmoid = P(fractured), temperature-scaled (T = {config.get('temperature', 1):.3f})
and thresholded at {config.get('threshold', 0.5):.3f}, both fitted on validation data. Input: greyscale radiograph
resized to {config['image_size']}x{config['image_size']}, replicated to 3 channels, normalised with mean
{config['mean']} / std {config['std']}. {config.get('parameters', 0):,} parameters.
Pretrained start: {config.get('pretrained_source', 'unknown')}.

## Results

Split `{data.get('split_mode')}` (files per split: {data.get('counts')}); data fingerprint `{data.get('fingerprint')}`;
code commit `{config.get('code_commit', 'unknown')}`. 95% intervals: bootstrap over groups of related images.
"seen" = test images byte-identical to a training image (the official split leaks; see the data caveats).

| test set | n | accuracy | balanced accuracy | ROC AUC | macro F1 | ECE | seen |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Plots: `training_curves.png`, `confusion_matrix.png`, `roc.png`. All numbers: `metrics.json`.

## Training

```
{cmd}
```
Seed {tr.get('seed')}, {len(metrics.get('history', []))} epochs run{f" (stopped: {metrics['stop_reason']})" if metrics.get('stop_reason') else ''}.
Augmentation `{tr.get('augment')}`; AdamW, cosine schedule, {loss}{'; distilled from ' + str(tr.get('teacher')) if tr.get('teacher') else ''}.

## Data

{DATASET_CREDIT}

Caveats: the data set is massively duplicated (10,439 files, 3,765 distinct) and its official splits
leak (491 of 506 test files are byte-identical to train files). Official-split scores mostly measure
memorisation; the grouped split (`python -m train.audit`) keeps every group of related images on one side.
Some images carry arrows, text or watermarks a model can read instead of bone.

## Intended use

Teaching and research on explainable medical-imaging ML. Not validated clinically; must not be used to
diagnose, triage or treat anyone.
"""
    (out / "README.md").write_text(card)


def latency_ms(clf, image, repeats: int = 10) -> float:
    clf.predict(image)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        clf.predict(image)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def results_table(models_dir: Path, data_dir: str, split_file: str, out_dir: Path, reference_image: Path | None,
                  bootstrap: int = 1000) -> dict:
    """Re-score every bundled model on the official and grouped test splits; write JSON, table and ROC plot."""
    from fracture_demo import count_parameters, load
    from .data import ImageCache, groups_of, scan, sha256_file, split_samples
    from .evaluate import evaluate_set

    samples = scan(data_dir)
    official = [s for s in samples if s.split == "test"]
    grouped_splits = split_samples(samples, "grouped", split_file)
    grouped = grouped_splits["test"]
    train_sets = {"grouped": grouped_splits["train"], "official": [s for s in samples if s.split == "train"]}
    train_hashes: dict[str, set[str]] = {}
    caches: dict[int, ImageCache] = {}
    rows, curves, refs = {}, {}, {}
    for folder in sorted(p.parent for p in models_dir.glob("*/config.json")):
        clf = load(folder)
        mode = clf.config.get("data", {}).get("split_mode", "grouped")
        if mode not in train_hashes:
            train_hashes[mode] = {sha256_file(s.path) for s in train_sets[mode]}
        seen = train_hashes[mode]
        cache = caches.setdefault(clf.image_size, ImageCache(clf.image_size))
        o_set, g_set = cache.load(official), cache.load(grouped)
        om, _ = evaluate_set(clf, o_set, groups_of(o_set.samples, split_file), bootstrap)
        om["seen_in_training"] = sum(h in seen for h in o_set.hashes)
        grouped_seen = sum(h in seen for h in g_set.hashes)
        gm = None  # a model trained on the official split has seen grouped test: no grouped score for it
        if grouped_seen == 0:
            gm, gp = evaluate_set(clf, g_set, groups_of(g_set.samples, split_file), bootstrap)
            gm["seen_in_training"] = 0
            curves[folder.name] = (g_set.labels, gp)
        record_scores(folder, clf.config, {"official test": om, **({"grouped test": gm} if gm else {})})
        rows[folder.name] = {
            "architecture": clf.arch, "split_mode": mode, "official": om, "grouped": gm,
            "grouped_seen": grouped_seen,
            "parameters": count_parameters(clf.model),
            "file_mb": (folder / "model.safetensors").stat().st_size / 2**20,
            "latency_ms": latency_ms(clf, reference_image) if reference_image else None,
            "pretrained_source": clf.config.get("pretrained_source"),
        }
        if reference_image:
            refs[folder.name] = clf.predict(reference_image).probability
    out_dir.mkdir(parents=True, exist_ok=True)
    roc_plot(curves, out_dir / "roc.png", f"ROC, grouped test split (n={len(grouped)})")
    meta = {"data_dir": str(data_dir), "split_file": str(split_file), "commit": git_commit(),
            "n_official_test": len(official), "n_grouped_test": len(grouped), "bootstrap": bootstrap}
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "models": rows}, indent=2, default=float) + "\n")
    (out_dir / "results.md").write_text(markdown_table(rows, meta))
    if reference_image:
        (models_dir / "reference_predictions.json").write_text(json.dumps(
            {"image": reference_image.name, "probabilities": refs}, indent=2) + "\n")
    return rows


def record_scores(folder: Path, config: dict, scores: dict) -> None:
    """Make the model's own files (config, metrics.json, card) carry the numbers the table shows.

    A training run may have scored a resized copy of the data on a GPU; this CPU re-score of the
    original files is what the README, the app's dropdown and the card then all agree on.
    """
    config.setdefault("metrics", {}).update({k: headline(v) for k, v in scores.items()})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    mpath = folder / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.is_file() else {"results": {}}
    metrics["results"].update(scores)
    metrics["scored_by"] = f"python -m train.report (CPU, original files) at commit {git_commit()}"
    mpath.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    write_model_card(folder, config, metrics)


def markdown_table(rows: dict, meta: dict) -> str:
    head = ("| model | trained on | study acc. (official) | official acc. | official macro F1 | official ECE | seen | "
            "grouped acc. | grouped bal. acc. | grouped ROC AUC | grouped ECE | params | MB | CPU ms/img |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    def rank(item: tuple[str, dict]) -> tuple[int, float]:
        """Grouped-split models first, best grouped balanced accuracy on top; then the official-split twins."""
        r = item[1]
        return (0, -r["grouped"]["balanced_accuracy"]) if r["grouped"] else (1, -r["official"]["accuracy"])

    for name, r in sorted(rows.items(), key=rank):
        o, g = r["official"], r["grouped"]
        study = STUDY_ACCURACY.get(r["architecture"], "-")
        if g:
            grouped = f"{_fmt_ci(g, 'accuracy')} | {_fmt_ci(g, 'balanced_accuracy')} | {_fmt_ci(g, 'roc_auc')} | {g['ece']:.3f}"
        else:
            grouped = f"n/a: {r['grouped_seen']} of its files seen in training | - | - | -"
        latency = f"{r['latency_ms']:.0f}" if r["latency_ms"] is not None else "-"
        lines.append(f"| {name} | {r['split_mode']} split | {study} | {_fmt_ci(o, 'accuracy')} | {o['macro_f1']:.3f} | {o['ece']:.3f} | "
                     f"{o.get('seen_in_training', '-')} | {grouped} | {r['parameters'] / 1e6:.1f}M | "
                     f"{r['file_mb']:.1f} | {latency} |")
    note = (f"\nOfficial test: the data set's 506-image test split (n={meta['n_official_test']}); grouped test: "
            f"n={meta['n_grouped_test']} images of groups no training image belongs to. Brackets: 95% bootstrap "
            f"intervals over groups ({meta['bootstrap']} resamples). ECE: expected calibration error (15 bins). Latency: median "
            f"single-image predict on this repo's CI CPU (2 cores). Generated by `python -m train.report` at commit "
            f"`{meta['commit']}`.\n")
    return head + "\n".join(lines) + "\n" + note


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        text = text[: text.index(start) + len(start)] + "\n" + table + text[text.index(end):]
        readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.report", description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="assets/models")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--split-file", required=True)
    ap.add_argument("--out-dir", default="assets/results")
    ap.add_argument("--reference-image", default=None, help="image whose predictions the bundled-model test pins")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    ref = Path(args.reference_image) if args.reference_image else None
    results_table(Path(args.models), args.data_dir, args.split_file, out, ref, args.bootstrap)
    update_readme(Path(args.readme), (out / "results.md").read_text())
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
