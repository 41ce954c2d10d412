"""A model folder's own documents: its model card (README.md: huggingface_hub's ``ModelCard``, its front matter a
``ModelCardData``) and its plots.

Written by a training run (train.finalize) and rewritten when train.report re-scores a bundled model.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from huggingface_hub import ModelCard, ModelCardData  # noqa: E402

from fracture_demo.classifier import LABELS, threshold_range  # noqa: E402

DATASET_CREDIT = (
    "Bone Fracture Multi-Region X-ray Data (Kaggle, bmadushanirodrigo), which merges Bone Break Classifier "
    "(Mohan Kumar), bone_fracture (Abdelaziz Faramawy) and fracture (Harsha Arya). Licensed under the Open "
    "Data Commons Attribution License (ODC-By) 1.0; these weights are derived from it.")
FRACATLAS_CREDIT = (
    "FracAtlas (Abedeen et al., \"FracAtlas: A Dataset for Fracture Classification, Localization and "
    "Segmentation of Musculoskeletal Radiographs\", Scientific Data 10, 521, 2023, doi:10.1038/s41597-023-02432-4; "
    "data doi:10.6084/m9.figshare.22363012), licensed under CC BY 4.0; these weights are derived from it. "
    "Its split here: `assets/splits/fracatlas_split.csv` (`python -m train.fracatlas_split`): the data set's "
    "suggested split by groups, less its 11 images with conflicting labels and its 114 images also in the "
    "Multi-Region set.")
def git_commit() -> str:
    """HEAD's short hash, plus "+changes" when tracked files differ from it: a number made from uncommitted code or
    weights (a report run before its bundle is committed) says so, instead of naming a commit that did not make it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        return head + ("+changes" if _git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


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


def fmt_ci(m: dict, key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    return f"{m[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.3f}"


def _copies(sources: dict) -> str:
    """The card's word on training files that were a shrunk copy (``train.shrink``'s marker), not the originals."""
    made = [f"`{k}` at {c['size']} px, {c['format']} quality {c['quality']} (of data {c['original_fingerprint']})"
            for k, v in sources.items() if (c := v.get("copy"))]
    return ("\nTrained on copies made by `python -m train.shrink` to travel to a GPU machine: " + ", ".join(made)
            + ". The validation choices and the numbers that a report writes are on the original files.") if made else ""


def threshold_span(point: dict) -> str:
    """A point's threshold range over resampled validation groups, in brackets, where recorded."""
    span = threshold_range(point)
    return f" ({span})" if span else ""


def _points(config: dict) -> str:
    """The operating points' table (``train.calibrate``): one threshold per question, with what each
    promised on every source's validation files."""
    points = config.get("operating_points") or {}
    if not points:
        return ""
    why = {"screen": "a missed fracture costs more than a second look", "balanced": "both errors weighed alike",
           "confirm": "call a fracture only when sure"}
    rows = [f"| {name}{' (default)' * (name == config.get('default_operating_point'))} | {why.get(name, '')} | "
            f"{pt['threshold']:.3f}{threshold_span(pt)} | " + "; ".join(f"{src} {v['sensitivity']:.2f} / {v['specificity']:.2f}"
                                                            for src, v in pt['validation'].items()) + " |"
            for name, pt in points.items()]
    ranged = any(pt.get("threshold_95") for pt in points.values())
    return ("\n\nOperating points, each chosen on every source's validation files (the app asks which)"
            + (" with, in parentheses, the threshold's 95% range over resampled validation groups: how firmly those "
               "files pin it" if ranged else "") + ":\n\n"
            "| point | for | threshold | validation sensitivity / specificity |\n|---|---|---|---|\n" + "\n".join(rows))


def backbone_command(config: dict) -> str:
    """The ``train.backbone`` line that writes a ``--pretrained`` file made from another zoo model, so the command
    below it reruns from the bundled folders alone."""
    origin = config.get("pretrained_from")
    return f"python -m train.backbone --model {origin['source']} --out {config['training']['pretrained']}\n" if origin else ""


def _plots(out: Path) -> str:
    """The plots this folder holds (a fusion has its tuned branch's training curves only)."""
    names = [n for n in ("training_curves.png", "confusion_matrix.png", "roc.png") if (out / n).is_file()]
    return f"Plots: {', '.join(f'`{n}`' for n in names)}. " if names else ""


def _gain(f: dict) -> str:
    """The chosen mix's gain over the tuned model alone, with its paired interval (fusions built since it was kept)."""
    if "gain_ci95" not in f:
        return ""
    lo, hi = f["gain_ci95"]
    gain = f["sweep"][str(f["w"])] - f["sweep"]["0.0"]
    return f"; gain over the tuned model alone {gain:+.3f}, 95% interval by group {lo:+.3f} to {hi:+.3f}"


def _fusion(config: dict) -> str:
    """How a fusion (``train.fuse``) was made from the run above: its frozen branch, its probe and its weight."""
    f = config.get("fusion")
    if not f:
        return ""
    sweep = ", ".join(f"{w}: {auc:.3f}" for w, auc in f["sweep"].items())
    return (f"\nThen fused with a frozen ImageNet `{f['floor']}` at {f['floor_size']} px and a logistic regression on its "
            f"features fitted on {', '.join(f['probe_sources'])} train (C {f['probe_C']}), at w = {f['w']} "
            f"(the probe's share of the logit), chosen on {f['choose_on']} validation ROC AUC ({sweep}{_gain(f)}); recalibrated on the pooled "
            f"validation files (commit `{f['commit']}`):\n\n```\npython -m train.fuse --model {f['tuned_from']} "
            + " ".join(f"--data {d}" for d in config.get("training", {}).get("data", []))
            + f" --floor {f['floor']} --floor-size {f['floor_size']} --probe-sources {','.join(f['probe_sources'])} "
            f"--choose-on {f['choose_on']}"
            + (f" --min-sensitivity {f['min_sensitivity']}" if f.get("min_sensitivity") else "") + " --out DIR\n```\n")


def _recalibrations(config: dict) -> str:
    """The ``train.calibrate`` calls made on the folder after training (the flip mean, operating points), in order."""
    steps = config.get("recalibrations")
    if not steps:
        return ""
    lines = "\n".join(f"python -m train.calibrate --model DIR {' '.join(s['args'])}  # commit {s['commit']}" for s in steps)
    return f"\nThen recalibrated on the validation files, the weights untouched:\n\n```\n{lines}\n```\n"


def write_model_card(out: Path, config: dict, metrics: dict) -> None:
    """README.md with Hub front matter: what it is, how it was trained, every number, caveats."""
    arch, tr, data = config["architecture"], config.get("training", {}), config.get("data", {})
    from fracture_demo import family, get_spec
    spec, fam = get_spec(arch), family(config)  # a fusion's family: its fine-tuned branch's
    shown = get_spec(fam).family  # a variant of a family (the hybrid ViT) is titled as that family
    title = spec.family if shown == spec.family else f"{shown} in a {spec.family.lower()}"
    rows = []
    for name, m in metrics["results"].items():
        rows.append(f"| {name} | {m['n']} | {fmt_ci(m, 'accuracy')} | {fmt_ci(m, 'balanced_accuracy')} | "
                    f"{fmt_ci(m, 'roc_auc')} | {m['macro_f1']:.3f} | {m['ece']:.3f} | {m.get('seen_in_training', '-')} |")
    cmd = "python -m train " + " ".join(
        f"--{k.replace('_', '-')} {x}" for k, v in tr.items()
        if v not in (None, []) and not isinstance(v, bool) and k not in ("bootstrap", "workers", "time_limit")
        for x in (v if isinstance(v, list) else [v])
        if not (k == "data_dir" and tr.get("data"))
    ) + "".join(f" --{k}" for k, v in tr.items() if v is True)
    loss = {"radiograph": "radiograph-balanced sampling (each radiograph once however many copies, labels half and half), BCE",
            "source": "source-balanced sampling (each source half, each radiograph in it once however many copies), "
                      "class-balanced BCE"}.get(tr.get("balance"), "class-balanced BCE")
    sources = data.get("sources") or {}
    credit = "\n\n".join([DATASET_CREDIT] * ("fracatlas" not in sources or len(sources) > 1)
                         + [FRACATLAS_CREDIT] * ("fracatlas" in sources))
    meta = ModelCardData(
        license="other" if "fracatlas" in sources else "odc-by", library_name="pytorch", pipeline_tag="image-classification",
        tags=["medical-imaging", "x-ray", "fracture", "explainability", *dict.fromkeys([fam, arch])],
        datasets=["bmadushanirodrigo/fracture-multi-region-x-ray-data"]
        + ["FracAtlas (doi:10.6084/m9.figshare.22363012)"] * ("fracatlas" in sources))
    body = f"""# Bone-fracture X-ray classifier: {title} (`{arch}`)

**Research and teaching demo. Not a medical device; not for diagnosis.**

{spec.description} One logit; sigmoid = P(fractured), calibrated as sigmoid(logit / {config.get('temperature', 1):.3f} {'+' if config.get('bias', 0) >= 0 else '-'} {abs(config.get('bias', 0)):.3f})
and thresholded at {config.get('threshold', 0.5):.3f} ({config.get('operating_point', 'maximum balanced accuracy on validation')}),
both fitted on validation data. Input: greyscale radiograph
resized to {config['image_size']}x{config['image_size']}, replicated to 3 channels, normalised with mean
{config['mean']} / std {config['std']}. {config.get('parameters', 0):,} parameters.
Pretrained start: {config.get('pretrained_source', 'unknown')}.{_points(config)}

## Results

{('Sources: ' + ', '.join(f"`{k}` (split file `{v['split_file']}`, files per split {v['counts']})" for k, v in sources.items()) + '; a file whose bytes are on a training side is never scored') if sources else f"Split `{data.get('split_mode')}` (files per split: {data.get('counts')})"}; data fingerprint `{data.get('fingerprint')}`;
code commit `{config.get('code_commit', 'unknown')}`. 95% intervals: bootstrap over groups of related images.{_copies(sources)}
"seen" = test images byte-identical to a training image (the official split leaks; see the data caveats).

| test set | n | accuracy | balanced accuracy | ROC AUC | macro F1 | ECE | seen |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{_plots(out)}All numbers: `metrics.json`.

## Training

```
{backbone_command(config)}{cmd}
```
{_fusion(config)}{_recalibrations(config)}Seed {tr.get('seed')}, {len(metrics.get('history', []))} epochs run{f" (stopped: {metrics['stop_reason']})" if metrics.get('stop_reason') else ''}.
Augmentation `{tr.get('augment')}`; AdamW, cosine schedule, {loss}{'; distilled from ' + str(tr.get('teacher')) if tr.get('teacher') else ''}.

## Data

{credit}

Caveats: the Multi-Region set is massively duplicated (10,439 files, 3,765 distinct) and its official splits
leak (491 of 506 test files are byte-identical to train files). Official-split scores mostly measure
memorisation; the grouped split (`python -m train.audit`) keeps every group of related images on one side.
Some images carry arrows, text or watermarks a model can read instead of bone.

## Intended use

Teaching and research on explainable medical-imaging ML. Not validated clinically; must not be used to
diagnose, triage or treat anyone.
"""
    ModelCard(f"---\n{meta.to_yaml()}\n---\n{body}").save(out / "README.md")
