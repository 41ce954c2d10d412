"""The results (docs/results.md, the README's headline), cross-source matrix and localisation tables, re-scored from the bundled weights.

``python -m train.report --data bone-fracture=D:F --data fracatlas=D:F --annotations A`` scores every
model folder under ``--models`` on the Multi-Region official test, its grouped test and the FracAtlas
test (per body region too), checks each model's maps against FracAtlas's drawn fracture boxes, and
writes ``assets/results/`` (results.json, roc.png, roc_fracatlas.png), the tables between the
``<!-- results:start -->``, ``<!-- matrix:start -->``, ``<!-- localization:start -->`` and
``<!-- operating-points:start -->`` markers of docs/results.md, and the headline table of README.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fracture_demo import methods

from .card import fmt_ci, git_commit, roc_plot, threshold_span, write_model_card
from .metrics import headline
from .sources import add_data_arguments, sources_from_args

#: The original study's accuracy on the official 506-image test split.
STUDY_ACCURACY = {"custom_cnn": 0.94, "vgg19": 0.89, "mobilenetv3": 0.81, "regnet": 0.81,
                  "wide_resnet": 0.88, "vit": 0.95, "swin": 0.89}
MR, FA = "bone-fracture", "fracatlas"
TESTS = ("official test", "grouped test", "fracatlas test")


def latency_ms(clf, image, repeats: int = 10) -> float:
    clf.predict(image)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        clf.predict(image)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def regime(config: dict) -> str:
    """What a model was trained on, in the words of the tables."""
    data = config.get("data", {})
    names = sorted(data.get("sources") or [])
    if names:
        return {(FA,): "FracAtlas", (MR,): "Multi-Region grouped", tuple(sorted((MR, FA))): "both sources"}.get(
            tuple(names), "+".join(names))
    return f"Multi-Region {data.get('split_mode', 'grouped')}"


def training_files(config: dict, sources: dict) -> list:
    """The files a bundled model trained on, rebuilt from its recorded sources or split mode."""
    from .data import scan
    data = config.get("data", {})
    if data.get("sources"):
        return [s for name in data["sources"] for s in sources[name].splits()["train"]]
    if data.get("split_mode") == "official":
        return [s for s in scan(sources[MR].root) if s.split == "train"]
    return sources[MR].splits()["train"]


def test_sets(sources: dict) -> dict:
    from .data import scan
    return {"official test": [s for s in scan(sources[MR].root, MR) if s.split == "test"],
            "grouped test": sources[MR].splits()["test"],
            "fracatlas test": sources[FA].splits()["test"]}


def by_region(data, p: np.ndarray, groups: list[str], regions: dict[str, str], threshold: float, bootstrap: int) -> dict:
    """ROC AUC and balanced accuracy of one test set per body region (FracAtlas's metadata)."""
    from .metrics import bootstrap_ci, compute_metrics
    out = {}
    names = np.array([regions.get(s.rel, "unknown") for s in data.samples])
    for region in sorted(set(names)):
        idx = np.flatnonzero(names == region)
        y = data.labels[idx]
        if len(np.unique(y)) < 2:
            continue
        m = compute_metrics(y, p[idx], threshold)
        ci = bootstrap_ci(y, p[idx], [groups[i] for i in idx], threshold, bootstrap, keys=("balanced_accuracy", "roc_auc"))
        out[region] = {"n": int(len(idx)), "positives": int(y.sum()), "roc_auc": m["roc_auc"],
                       "balanced_accuracy": m["balanced_accuracy"], "ci95": ci}
    return out


def results_table(models_dir: Path, sources: dict, out_dir: Path, reference_image: Path | None,
                  annotations: Path | None, bootstrap: int = 1000, localize_methods: list[str] | None = None,
                  score_cache: Path | None = None) -> dict:
    """Re-score every bundled model (or take its scores from ``score_cache`` when nothing they depend on changed);
    write results.json and the ROC plots; return the rows."""
    from fracture_demo import count_parameters, load

    from .data import sha256_file
    from .localize import fracture_cases, localize

    commit = git_commit()  # before this run writes the bundle's scores and cards (a stamp taken after would say +changes)
    tests = test_sets(sources)
    cases = fracture_cases(sources[FA], annotations) if annotations else []
    hashes_of: dict[str, set[str]] = {}
    caches: dict = {}
    rows, curves, refs = {}, {name: {} for name in TESTS}, {}
    fingerprint = {name: [s.rel for s in samples] for name, samples in tests.items()}
    for folder in sorted(p.parent for p in models_dir.glob("*/config.json")):
        clf = load(folder)
        trained = regime(clf.config)
        key = score_key(folder, clf.config, [fingerprint, bootstrap])
        hit = score_cache / f"{key}.json" if score_cache else None
        # the maps do not depend on calibration or thresholds: kept by the weights, the input and the cases alone
        input_only = {k: clf.config.get(k) for k in ("architecture", "image_size", "mean", "std")}
        maps_key = score_key(folder, input_only, [[c.path.name for c in cases], localize_methods, bootstrap])
        loc_hit = score_cache / f"maps-{maps_key}.json" if score_cache else None
        official_twin = trained == "Multi-Region official"
        loc = cached(loc_hit, lambda: localize([str(folder)], cases, localize_methods, bootstrap)[folder.name]
                     if cases and not official_twin else {})


        def scored() -> dict:  # only on a cache miss: hashing a regime's training files takes a while
            if trained not in hashes_of:
                hashes_of[trained] = {sha256_file(s.path) for s in training_files(clf.config, sources)}
            return score_model(clf, tests, hashes_of[trained], sources, bootstrap, caches)
        saved = cached(hit, scored)
        scores, seen = saved["scores"], saved["seen"]
        for name, (y, p) in saved["curves"].items():
            curves[name][folder.name] = (np.array(y), np.array(p))
        record_scores(folder, clf.config, scores, loc, commit)
        rows[folder.name] = {
            "architecture": clf.arch, "family": clf.family, "trained_on": trained, "scores": scores, "seen": seen, "localization": loc,
            "image_size": clf.image_size, "parameters": count_parameters(clf.model),
            "file_mb": (folder / "model.safetensors").stat().st_size / 2**20,
            "latency_ms": latency_ms(clf, reference_image) if reference_image else None,
            "pretrained_source": clf.config.get("pretrained_source"),
        }
        if reference_image:
            refs[folder.name] = clf.predict(reference_image).probability
    out_dir.mkdir(parents=True, exist_ok=True)
    roc_plot(curves["grouped test"], out_dir / "roc.png", f"ROC, Multi-Region grouped test (n={len(tests['grouped test'])})")
    roc_plot(curves["fracatlas test"], out_dir / "roc_fracatlas.png", f"ROC, FracAtlas test (n={len(tests['fracatlas test'])})")
    meta = {"sources": {k: {"root": str(v.root), "split_file": str(v.split_file)} for k, v in sources.items()},
            "commit": commit, "bootstrap": bootstrap, "n": {k: len(v) for k, v in tests.items()},
            "fractures_with_boxes": len(cases)}
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "models": rows}, indent=2, default=float) + "\n")
    if reference_image:
        (models_dir / "reference_predictions.json").write_text(json.dumps(
            {"image": reference_image.name, "probabilities": refs}, indent=2) + "\n")
    return {"meta": meta, "models": rows}


def cached(path: Path | None, compute) -> dict:
    """``compute()``, or what it returned before for the same key (the file ``path``)."""
    if path and path.is_file():
        return json.loads(path.read_text())
    value = compute()
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, default=float))
    return value


def score_model(clf, tests: dict, trained_hashes: set[str], sources: dict, bootstrap: int, caches: dict) -> dict:
    """One model's scores on every test set it has not seen (the official one always: the study's protocol), how
    many of each set's files it trained on, and its ROC curves' points."""
    from .data import ImageCache
    from .evaluate import evaluate_set
    from .sources import group_ids

    regions = sources[FA].regions()
    cache = caches.setdefault(clf.image_size, ImageCache(clf.image_size))
    scores, seen, curves = {}, {}, {}
    for name, samples in tests.items():
        data = cache.load(samples)
        seen[name] = sum(h in trained_hashes for h in data.hashes)
        if seen[name] and name != "official test":
            continue
        groups = group_ids(data.samples, list(sources.values()))
        m, p = evaluate_set(clf, data, groups, bootstrap)
        m["seen_in_training"] = seen[name]
        m["operating_points"] = point_scores(data.labels, p, groups, clf.operating_points, bootstrap)
        if name == "fracatlas test":
            m["by_region"] = by_region(data, p, groups, regions, m["threshold"], bootstrap)
        scores[name] = m
        curves[name] = [data.labels.tolist(), p.tolist()]
    return {"scores": scores, "seen": seen, "curves": curves}


def point_scores(y: np.ndarray, p: np.ndarray, groups: list[str], points: dict, bootstrap: int) -> dict:
    """Sensitivity and specificity of one test set at each of a model's operating points, 95% intervals by group."""
    from .metrics import bootstrap_ci
    out = {}
    for name, point in points.items():
        t = point["threshold"]
        called = p >= t
        out[name] = {"threshold": t, "threshold_95": point.get("threshold_95"),
                     "sensitivity": float(called[y == 1].mean()) if (y == 1).any() else float("nan"),
                     "specificity": float(1 - called[y == 0].mean()) if (y == 0).any() else float("nan"),
                     "ci95": bootstrap_ci(y, p, groups, t, bootstrap, keys=("sensitivity", "specificity"))}
    return out


def score_key(folder: Path, config: dict, settings: list) -> str:
    """What a model's scores depend on: its weights, calibration and threshold, the test files, the settings."""
    import hashlib
    h = hashlib.sha256((folder / "model.safetensors").read_bytes())
    keys = ("architecture", "image_size", "views", "temperature", "bias", "threshold", "mean", "std", "operating_points")
    h.update(json.dumps([{k: config.get(k) for k in keys}, settings], sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def record_scores(folder: Path, config: dict, scores: dict, localization: dict, commit: str) -> None:
    """Make the model's own files (config, metrics.json, card) carry the numbers the table shows.

    A training run may have scored a resized copy of the data on a GPU; this CPU re-score of the
    original files is what docs/results.md, the app's dropdown and the card then all agree on.
    """
    kept = {k: v for k, v in config.get("metrics", {}).items() if k not in TESTS}  # val etc.: the training run's
    config["metrics"] = kept | {k: headline(v) for k, v in scores.items()}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    mpath = folder / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.is_file() else {"results": {}}
    metrics["results"] = {k: v for k, v in metrics["results"].items() if k not in TESTS} | scores
    metrics["localization"] = localization
    metrics["scored_by"] = f"python -m train.report (CPU, original files) at commit {commit}"
    mpath.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    write_model_card(folder, config, metrics)


def best_method(loc: dict) -> tuple[str, dict] | None:
    return max(loc.items(), key=lambda kv: (kv[1]["pointing_game"], kv[1]["mass_ratio"])) if loc else None


def _cell(scores: dict, name: str, key: str, seen: dict) -> str:
    m = scores.get(name)
    if m is None:
        return f"seen ({seen.get(name, 0)} files)" if seen.get(name) else "-"
    return fmt_ci(m, key) if key in m.get("ci95", {}) else f"{m[key]:.3f}"


def markdown_table(report: dict) -> str:
    rows, meta = report["models"], report["meta"]
    head = ("| model | trained on | px | study acc. (official) | official acc. | seen | grouped bal. acc. | grouped ROC AUC | "
            "grouped ECE | FracAtlas bal. acc. | FracAtlas ROC AUC | FracAtlas ECE | pointing game (best map) | params | MB | CPU ms/img |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")

    def rank(item: tuple[str, dict]) -> tuple[int, float]:
        """Models to judge first (best FracAtlas ROC AUC on top); the official-split twins last."""
        r = item[1]
        fa = r["scores"].get("fracatlas test", {}).get("roc_auc", 0.0)
        return (int(r["trained_on"] == "Multi-Region official"), -fa)

    lines = []
    for name, r in sorted(rows.items(), key=rank):
        s, seen = r["scores"], r["seen"]
        ece = {t: f"{s[t]['ece']:.3f}" if t in s else "-" for t in TESTS}
        best = best_method(r["localization"])
        point = (f"{best[1]['pointing_game']:.2f} [{best[1]['pointing_game_ci95'][0]:.2f}, "
                 f"{best[1]['pointing_game_ci95'][1]:.2f}] ({best[0]})") if best else "-"
        latency = f"{r['latency_ms']:.0f}" if r["latency_ms"] is not None else "-"
        lines.append(
            f"| {name} | {r['trained_on']} | {r['image_size']} | {STUDY_ACCURACY.get(r['family'], '-')} | "
            f"{_cell(s, 'official test', 'accuracy', seen)} | {seen['official test']} | "
            f"{_cell(s, 'grouped test', 'balanced_accuracy', seen)} | {_cell(s, 'grouped test', 'roc_auc', seen)} | {ece['grouped test']} | "
            f"{_cell(s, 'fracatlas test', 'balanced_accuracy', seen)} | {_cell(s, 'fracatlas test', 'roc_auc', seen)} | "
            f"{ece['fracatlas test']} | {point} | {r['parameters'] / 1e6:.1f}M | {r['file_mb']:.1f} | {latency} |")
    n = meta["n"]
    note = (f"\nTest sets: Multi-Region official test (the data set's own, n={n['official test']}; leaks into every "
            f"training split, \"seen\" = its files byte-identical to a training file of the model), Multi-Region grouped "
            f"test (n={n['grouped test']}, groups no training file belongs to), FracAtlas test (n={n['fracatlas test']}, "
            f"its split by groups, less copies of Multi-Region images). Brackets: 95% bootstrap intervals over groups "
            f"({meta['bootstrap']} resamples). Thresholds and temperatures come from each model's validation data. "
            f"ECE: expected calibration error (15 bins). Pointing game: the best of the model's maps of \"fractured\" "
            f"on the {meta['fractures_with_boxes']} FracAtlas test fractures with drawn boxes (table below). Latency: "
            f"median single-image predict on 2 CPU cores. Generated by `python -m train.report` at commit `{meta['commit']}`.\n")
    return head + "\n".join(lines) + "\n" + note


def matrix_table(report: dict) -> str:
    """Rows: one family trained on each source and on both; columns: each test set and FracAtlas's regions."""
    rows = report["models"]
    regimes = ("Multi-Region grouped", "FracAtlas", "both sources")
    families = sorted({r["family"] for r in rows.values() if r["trained_on"] in regimes and
                       len({x["trained_on"] for x in rows.values() if x["family"] == r["family"]} & set(regimes)) > 1})
    regions = sorted({g for r in rows.values() for g in r["scores"].get("fracatlas test", {}).get("by_region", {})})
    head = ("| model | trained on | Multi-Region grouped test ROC AUC | bal. acc. | FracAtlas test ROC AUC | bal. acc. | "
            + " | ".join(f"FracAtlas {g} ROC AUC" for g in regions) + " |\n|" + "---|" * (6 + len(regions)) + "\n")
    lines = []
    for family in families:
        for name, r in sorted(rows.items(), key=lambda kv: regimes.index(kv[1]["trained_on"]) if kv[1]["trained_on"] in regimes else 9):
            if r["family"] != family or r["trained_on"] not in regimes:
                continue
            s, seen = r["scores"], r["seen"]
            reg = s.get("fracatlas test", {}).get("by_region", {})
            region_cells = [f"{reg[g]['roc_auc']:.3f} [{reg[g]['ci95']['roc_auc'][0]:.2f}, {reg[g]['ci95']['roc_auc'][1]:.2f}] "
                            f"(n={reg[g]['n']}, {reg[g]['positives']} fr.)" if g in reg else "-" for g in regions]
            lines.append(f"| {name} | {r['trained_on']} | {_cell(s, 'grouped test', 'roc_auc', seen)} | "
                         f"{_cell(s, 'grouped test', 'balanced_accuracy', seen)} | {_cell(s, 'fracatlas test', 'roc_auc', seen)} | "
                         f"{_cell(s, 'fracatlas test', 'balanced_accuracy', seen)} | " + " | ".join(region_cells) + " |")
    return (head + "\n".join(lines) + "\n\nOne family, three training sets; every cell a test set none of its training "
            "files belongs to (95% intervals by group). The both-sources row is the app's model of that family, whose "
            "recipe (its card) may differ from the single-source rows' in more than the training set. Generated by "
            f"`python -m train.report` at commit `{report['meta']['commit']}`.\n")


def operating_points_table(report: dict) -> str:
    """Each leak-free model's operating points on each source's test: what every question gets from another hospital."""
    def cell(m: dict | None, key: str) -> str:
        if not m:
            return "-"
        lo, hi = m["ci95"][key]
        return f"{m[key]:.2f} [{lo:.2f}, {hi:.2f}]"

    head = ("| model | point | threshold | Multi-Region grouped test sensitivity | specificity | FracAtlas test sensitivity "
            "| specificity |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for name, r in sorted(report["models"].items(), key=lambda kv: (kv[1]["trained_on"] != "both sources", kv[0])):
        grouped = r["scores"].get("grouped test", {}).get("operating_points", {})
        fa = r["scores"].get("fracatlas test", {}).get("operating_points", {})
        for point in dict.fromkeys([*grouped, *fa]):
            g, f = grouped.get(point), fa.get(point)
            lines.append(f"| {name} | {point} | {(g or f)['threshold']:.3f}{threshold_span(g or f)} | {cell(g, 'sensitivity')} | "
                         f"{cell(g, 'specificity')} | {cell(f, 'sensitivity')} | {cell(f, 'specificity')} |")
    return (head + "\n".join(lines) + "\n\nEach point's threshold was chosen on every source's validation files "
            "(`train.calibrate`): *screen*, the highest whose sensitivity reaches 0.90 on each source; "
            "*balanced*, the highest balanced accuracy on the worst source (step 23; ties: the mean over sources); "
            "*confirm*, the lowest whose specificity reaches 0.90 on each; in parentheses, the threshold's 95% range "
            "over resampled validation groups. Test files from neither source's training side; 95% intervals by group; a model's test set that shares "
            "files with its training side is left out (-). Generated by `python -m train.report` at commit "
            f"`{report['meta']['commit']}`.\n")


def localization_table(report: dict) -> str:
    head = "| model | map | pointing game | hits | mass ratio | s/img |\n|---|---|---|---|---|---|\n"
    lines = []
    for name, r in sorted(report["models"].items(), key=lambda kv: -(best_method(kv[1]["localization"]) or ("", {"pointing_game": -1}))[1]["pointing_game"]):
        for method, s in sorted(r["localization"].items(), key=lambda kv: -kv[1]["pointing_game"]):
            lo, hi = s["pointing_game_ci95"]
            lines.append(f"| {name} | {method} | {s['pointing_game']:.3f} [{lo:.2f}, {hi:.2f}] | {s['hits']}/{s['n']} | "
                         f"{s['mass_ratio']:.2f} | {s['seconds_per_image']:.2f} |")
    return (head + "\n".join(lines) + f"\n\nFracAtlas test fractures with drawn boxes "
            f"(n={report['meta']['fractures_with_boxes']}); maps of the evidence for \"fractured\". Pointing game: the map's "
            f"peak inside a drawn box grown by 15 px at 224 px scale (6.7% of the image's longer side) on each side; "
            f"95% interval by group. Mass ratio: share of the map's mass inside the boxes / the boxes' share of the image "
            f"(1 = a flat map). `python -m train.localize` scores one model alone. Generated by `python -m train.report` "
            f"at commit `{report['meta']['commit']}`.\n")


def headline_table(report: dict) -> str:
    """The front page's table: the app's models (trained on both sources), best FracAtlas test ROC AUC first."""
    rows = sorted(((n, r) for n, r in report["models"].items() if r["trained_on"] == "both sources"),
                  key=lambda item: -item[1]["scores"]["fracatlas test"]["roc_auc"])
    head = ("| model | FracAtlas test ROC AUC | FracAtlas bal. acc. (screening point) | Multi-Region grouped ROC AUC | "
            "Multi-Region grouped bal. acc. | Multi-Region official acc. (leaks) |\n|---|---|---|---|---|---|\n")
    lines = [f"| {name} | {fmt_ci(s['fracatlas test'], 'roc_auc')} | {fmt_ci(s['fracatlas test'], 'balanced_accuracy')} | "
             f"{fmt_ci(s['grouped test'], 'roc_auc')} | {fmt_ci(s['grouped test'], 'balanced_accuracy')} | "
             f"{s['official test']['accuracy']:.3f} |" for name, r in rows for s in [r["scores"]]]
    n = report["meta"]["n"]
    return (head + "\n".join(lines) + f"\n\nFracAtlas test: n={n['fracatlas test']}, radiographs of hospitals none of the "
            f"training files came from as groups; Multi-Region grouped test: n={n['grouped test']}, groups no training file "
            f"belongs to; official test: n={n['official test']}, the study's split, which leaks. 95% intervals over groups. "
            f"Generated by `python -m train.report` at commit `{report['meta']['commit']}`.\n")


def write_section(path: Path, marker: str, text: str) -> None:
    """Replace what lies between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` in ``path`` with ``text``."""
    doc = path.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in doc or end not in doc:
        raise ValueError(f"{path} has no {start} ... {end} markers")
    path.write_text(doc[: doc.index(start) + len(start)] + "\n" + text + doc[doc.index(end):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.report", description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="assets/models")
    add_data_arguments(ap)  # the two sources, named bone-fracture and fracatlas, each with its split file
    ap.add_argument("--annotations", default=None, help="FracAtlas's COCO boxes (for the localisation scores)")
    ap.add_argument("--localize-methods", default=",".join(m for m in methods.LABELS if m != "scorecam"),
                    help="comma-separated maps to check (default: all but ScoreCAM, whose hundreds of forward passes "
                         "per map take minutes per model)")
    ap.add_argument("--out-dir", default="assets/results")
    ap.add_argument("--reference-image", default=None, help="image whose predictions the bundled-model test pins")
    ap.add_argument("--readme", default="README.md", help="the front page: its headline table")
    ap.add_argument("--doc", default="docs/results.md", help="the findings page: every other table")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--score-cache", default=".cache/report", help="scores by weights + calibration + test files + "
                    "settings, so a rerun re-scores only changed models ('none': re-score all)")
    args = ap.parse_args(argv)
    sources = {s.name: s for s in sources_from_args(args)}
    if set(sources) != {MR, FA}:
        ap.error(f"--data must name the sources {MR} and {FA}")
    out = Path(args.out_dir)
    report = results_table(Path(args.models), sources, out, Path(args.reference_image) if args.reference_image else None,
                           Path(args.annotations) if args.annotations else None, args.bootstrap,
                           args.localize_methods.split(","),
                           None if args.score_cache == "none" else Path(args.score_cache))
    tables = {"results": markdown_table(report), "matrix": matrix_table(report), "localization": localization_table(report),
              "operating-points": operating_points_table(report)}
    for marker, table in tables.items():
        (out / f"{marker}.md").write_text(table)
        write_section(Path(args.doc), marker, table)
        print(table)
    write_section(Path(args.readme), "headline", headline_table(report))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
