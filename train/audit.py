"""Leak audit and grouped split: ``python -m train.audit --data-dir D [--out F] [--report-dir R]``.

Finds exact duplicates (content hash) and near-duplicates (copies at any angle, zoomed, padded,
flipped, re-encoded; one patient's views) within and across the official splits, joins them into
groups, and writes a split in which no group has members on two sides.

Relations, each a union-find edge:
  sha256      byte-identical files
  family      ``<n>-rotated*`` copies and the plain ``<n>.jpg`` / ``<n> (1).jpg`` original, per label
  copy-name   same name up to `` (1)``, ``(2)``, `` - Copy`` suffixes, per label
  run         consecutive ids (``IMG0002340``/``IMG0002341``; plain numbers above the family range):
              one patient's views
  figure      figures of one article (``..._Fig1_HTML``, ``..._Fig2_HTML``)
  feature     cosine >= threshold between ImageNet features of one image and any of 16 rotated /
              flipped views of the other (what a perceptual hash misses)
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .data import ImageCache, Sample, default_split_file, scan
from .features import cached_view_features, feature_similarity, view_features

RULES = ("sha256", "family", "copy-name", "run", "figure", "feature")
_COPY = re.compile(r"(\s*\(\d+\)|\s*-\s*Copy)+$", re.I)
_FAMILY = re.compile(r"^(\d+)-rotated", re.I)
_PLAIN = re.compile(r"^(\d+)$")
_IMG = re.compile(r"^IMG(\d+)$", re.I)
_FIG = re.compile(r"(fig(?:ure)?[-_ ]?|figu)\d+", re.I)


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def _number(m: re.Match) -> str:
    """A family number without leading zeros: ``012`` and ``12`` name one radiograph."""
    return m.group(1).lstrip("0") or "0"


def stem(name: str) -> str:
    """File name without extension and copy suffixes: ``15 (1).jpg`` -> ``15``."""
    return _COPY.sub("", Path(name).stem).strip()


def radiograph_key(s: Sample) -> tuple[int, str]:
    """Which radiograph a file copies, by its name alone: ``12-rotated2.jpg``, ``12 (1).jpg`` and
    ``12.jpg`` of one label share a key. Coarser relations (one patient's views) are the groups'."""
    name = Path(s.rel).name
    m = _FAMILY.match(name) or _PLAIN.match(stem(name))
    return (s.label, _number(m) if m else stem(name).lower())


def name_edges(samples: list[Sample]) -> list[tuple[int, int, str]]:
    """Edges from the file-name rules (family, copy-name, run, figure)."""
    edges = []
    by_key: dict[tuple, list[int]] = defaultdict(list)
    families: set[tuple[int, str]] = set()
    for i, s in enumerate(samples):
        m = _FAMILY.match(Path(s.rel).name)
        if m:
            families.add((s.label, _number(m)))
    max_family = max((int(n) for _, n in families), default=-1)
    ids: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for i, s in enumerate(samples):
        name = Path(s.rel).name
        st = stem(name)
        m = _FAMILY.match(name)
        plain = _PLAIN.match(st)
        if m:
            by_key[("family", s.label, _number(m))].append(i)
        elif plain and (s.label, _number(plain)) in families and Path(name).suffix.lower() in (".jpg", ".jpeg"):
            by_key[("family", s.label, _number(plain))].append(i)
        by_key[("copy-name", s.label, st.lower(), Path(name).suffix.lower())].append(i)
        fig = _FIG.search(st)
        if fig:
            by_key[("figure", _FIG.sub("FIG", st).lower())].append(i)
        img = _IMG.match(st)
        if img:
            ids[("IMG",)].append((int(img.group(1)), i))
        elif plain and int(plain.group(1)) > max_family and Path(name).suffix.lower() in (".jpg", ".jpeg"):
            ids[("plain", s.label)].append((int(plain.group(1)), i))
    for key, members in by_key.items():
        edges += [(members[0], j, key[0]) for j in members[1:]]
    for seq in ids.values():
        seq.sort()
        edges += [(a[1], b[1], "run") for a, b in zip(seq, seq[1:]) if b[0] - a[0] <= 1]
    return edges


def assign_splits(groups: dict[int, list[int]], labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[int, str]:
    """Greedy, label-aware: each group (largest first, ties random) goes where it is most missing."""
    rng = np.random.default_rng(seed)
    order = sorted(groups, key=lambda g: (-len(groups[g]), rng.random()))
    total = np.array([np.sum(labels == 0), np.sum(labels == 1)], float)
    have = {s: np.zeros(2) for s in fractions}
    out = {}
    for g in order:
        counts = np.array([np.sum(labels[groups[g]] == 0), np.sum(labels[groups[g]] == 1)], float)
        deficit = {s: float(((fractions[s] * total - have[s]) / np.maximum(total, 1) * (counts > 0)).sum()) for s in fractions}
        best = max(deficit, key=lambda s: deficit[s])
        out[g] = best
        have[best] += counts
    return out


def pair_sheet(pairs: list[tuple[int, int, float]], samples: list[Sample], images: np.ndarray, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not pairs:
        return
    fig, axes = plt.subplots(len(pairs), 2, figsize=(5, 2.4 * len(pairs)), squeeze=False)
    for row, (a, b, sim) in zip(axes, pairs):
        for ax, i in zip(row, (a, b)):
            ax.imshow(images[i, 0], cmap="gray")
            ax.set_title(samples[i].rel[:40], fontsize=6)
            ax.axis("off")
        row[0].text(-10, 0, f"{sim:.3f}", fontsize=8, va="top", ha="right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def audit(data_dir: str, out: Path, report_dir: Path | None, threshold: float = 0.8, features: str = "efficientnet_lite0",
          pretrained: str = "local", size: int = 160, seed: int = 0, fractions: dict | None = None,
          workers: int | None = None, features_cache: str | None = None) -> dict:
    fractions = fractions or {"train": 0.7, "val": 0.1, "test": 0.2}
    samples_all = scan(data_dir)
    data = ImageCache(size, workers).load(samples_all, progress=True)
    samples, images, labels = data.samples, data.images, data.labels.astype(int)
    n = len(samples)
    uf = UnionFind(n)
    rule_counts, examples = Counter(), defaultdict(list)
    first_by_hash: dict[str, int] = {}
    edges = []
    for i, h in enumerate(data.hashes):
        if h in first_by_hash:
            edges.append((first_by_hash[h], i, "sha256"))
        else:
            first_by_hash[h] = i
    edges += name_edges(samples)
    # one representative per distinct content for the (expensive) feature comparison
    reps = sorted(first_by_hash.values())
    sim_stats = {}
    if features != "none":
        base, views = cached_view_features(images[reps], [data.hashes[r] for r in reps], features, pretrained,
                                           Path(features_cache) if features_cache else None, extract=view_features)
        sim = feature_similarity(base, views)
        iu = np.triu_indices(len(reps), 1)
        hits = np.flatnonzero(sim[iu] >= threshold)
        edges += [(reps[iu[0][k]], reps[iu[1][k]], "feature") for k in hits]
        sim_stats = {"threshold": threshold, "pairs_above": int(len(hits)), "model": features}
    for a, b, rule in edges:
        joined = uf.union(a, b)
        rule_counts[rule] += 1
        if joined and len(examples[rule]) < 6:
            examples[rule].append((samples[a].rel, samples[b].rel))
    groups = _group_by([uf.find(i) for i in range(n)])
    assignment = assign_splits(groups, labels, fractions, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "official_split", "group", "split"])
        for g, idx in sorted(groups.items()):
            for i in idx:
                w.writerow([samples[i].rel, samples[i].label, samples[i].split, f"g{g}", assignment[g]])
    split_counts = Counter((assignment[uf.find(i)], int(labels[i])) for i in range(n))
    sizes = sorted((len(v) for v in groups.values()), reverse=True)
    report = {
        "data_dir": str(data_dir), "files": len(samples_all), "decoded": n, "distinct": len(first_by_hash),
        "skipped": data.skipped, "warnings": data.notes,
        "edges_by_rule": dict(rule_counts), "examples_by_rule": dict(examples),
        "groups": len(groups), "largest_groups": sizes[:10], "singletons": sum(1 for s in sizes if s == 1),
        **official_leaks(samples, data.hashes, groups), "feature_similarity": sim_stats,
        "grouped_split": {f"{s}/{['not fractured', 'fractured'][lab]}": c for (s, lab), c in sorted(split_counts.items())},
        "split_file": str(out),
    }
    if report_dir and features != "none":
        report["closest_apart"] = pair_sheets(report_dir, sim, [uf.find(r) for r in reps], reps, samples, images,
                                              threshold, seed)
        (report_dir / "audit.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def official_leaks(samples: list, hashes: list[str], groups: dict[int, list[int]]) -> dict:
    """How the official splits leak: identical files within and across them, groups spanning them, and the val and
    test files with a related training file."""
    dup = Counter()
    for idx in _group_by(hashes).values():
        if len(idx) > 1:
            dup["exact duplicate files (beyond the first)"] += len(idx) - 1
            dup[f"sets of identical files in {'+'.join(sorted({samples[i].split for i in idx}))}"] += 1
    near_cross = Counter()
    for idx in groups.values():
        splits = sorted({samples[i].split for i in idx})
        if len(splits) > 1:
            near_cross["+".join(splits)] += 1
    with_train = [idx for idx in groups.values() if any(samples[i].split == "train" for i in idx)]
    leak = {s: sum(1 for idx in with_train if any(samples[i].split == s for i in idx)) for s in ("val", "test")}
    leaked_files = {s: sum(1 for idx in with_train for i in idx if samples[i].split == s) for s in ("val", "test")}
    return {"duplicates": dict(dup), "official_leak_groups": leak, "official_files_with_related_train_file": leaked_files,
            "groups_spanning_official_splits": dict(near_cross)}


def pair_sheets(report_dir: Path, sim: np.ndarray, rep_groups: list[int], reps: list[int], samples: list,
                images: np.ndarray, threshold: float, seed: int) -> list:
    """Contact sheets a reader checks the feature rule by: random pairs it joined, and the closest pairs kept in
    different groups (returned by name, with their similarity)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    iu = np.triu_indices(len(reps), 1)
    rep_group, vals = np.array(rep_groups), sim[iu]
    joined = np.flatnonzero(vals >= threshold)
    pick = np.random.default_rng(seed).choice(joined, min(8, len(joined)), replace=False) if len(joined) else []
    apart_idx = np.flatnonzero(rep_group[iu[0]] != rep_group[iu[1]])
    apart = [(reps[iu[0][k]], reps[iu[1][k]], float(vals[k])) for k in apart_idx[np.argsort(-vals[apart_idx])[:8]]]
    pair_sheet([(reps[iu[0][k]], reps[iu[1][k]], float(vals[k])) for k in pick], samples, images,
               report_dir / "pairs_joined.png", f"random pairs joined by features (cos >= {threshold})")
    pair_sheet(apart, samples, images, report_dir / "pairs_closest_apart.png", "closest pairs kept in different groups")
    return [(samples[a].rel, samples[b].rel, s) for a, b, s in apart]


def _group_by(keys: list) -> dict:
    out = defaultdict(list)
    for i, k in enumerate(keys):
        out[k].append(i)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.audit", description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default=None, help="grouped split CSV (default: DATA_DIR/grouped_split.csv)")
    ap.add_argument("--report-dir", default=None, help="write audit.json and pair sheets (PNG) here")
    ap.add_argument("--threshold", type=float, default=0.8, help="feature cosine that joins two images")
    ap.add_argument("--features", default="efficientnet_lite0", help="registry model for features, or 'none'")
    ap.add_argument("--pretrained", default="local", help="its weights: local | hub | PATH")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--features-cache", default=".cache/audit-features.npz",
                    help="npz of features by content hash, reused across runs ('none': no cache)")
    args = ap.parse_args(argv)
    fr = {"train": 1 - args.test_fraction - args.val_fraction, "val": args.val_fraction, "test": args.test_fraction}
    try:
        rep = audit(args.data_dir, Path(args.out or default_split_file(args.data_dir)),
                    Path(args.report_dir) if args.report_dir else None, args.threshold, args.features,
                    args.pretrained, args.size, args.seed, fr, args.workers,
                    None if args.features_cache == "none" else args.features_cache)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in rep.items() if k not in ("warnings",)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
