"""FracAtlas's split file: ``python -m train.fracatlas_split --manifest M [--out F]``.

Writes the same columns as the audit's grouped split (``file,label,official_split,group,split``,
``file`` = the materialised ``split/label/name``) plus ``region`` and ``note``, so every tool reads
both sources one way. Decisions, each named in ``note``:
  split       the manifest's suggested split by groups (runs of 10 ids, near-copies, feature pairs)
  group       a run of 10 consecutive ids joined with its near-copy group: the bootstrap's unit
  excluded    ``label_conflict`` (the same radiograph under both labels: no truth to learn or score)
              and ``also_in_multi_region`` (a copy sits in the other source: dropping it here keeps
              every cell of the cross-source matrix leak-free, and one FracAtlas test set for all)
  label       the published folder's (``csv_label_differs`` rows keep it, as the data set's README does)
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from .audit import UnionFind

REGIONS = ("hand", "leg", "hip", "shoulder")
COLUMNS = ("file", "label", "official_split", "group", "split", "region", "note")


def region_of(row: dict) -> str:
    """One body region per radiograph; several ticked (or ``mixed``) -> mixed."""
    ticked = [r for r in REGIONS if row.get(r) == "1"]
    return ticked[0] if len(ticked) == 1 and row.get("mixed") != "1" else "mixed"


def split_rows(manifest: list[dict]) -> list[dict]:
    uf = UnionFind(len(manifest))
    first: dict[tuple, int] = {}
    for i, r in enumerate(manifest):
        digits = "".join(c for c in Path(r["file"]).stem if c.isdigit())
        for key in (("run", int(digits) // 10 if digits else r["file"]), ("dup", r["dup_group"])):
            if key[1] == "":
                continue
            uf.union(first.setdefault(key, i), i)
    rows = []
    for i, r in enumerate(manifest):
        note = "label conflict" if r["label_conflict"] == "1" else (
            "also in Multi-Region" if r["also_in_multi_region"] == "1" else "")
        rows.append({"file": f"{r['split']}/{r['label']}/{r['file']}", "label": int(r["label"] == "fractured"),
                     "official_split": r["split"], "group": f"fa{uf.find(i)}",
                     "split": "excluded" if note else r["split"], "region": region_of(r), "note": note})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.fracatlas_split", description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default="../shared/data/fracatlas/manifest.csv")
    ap.add_argument("--out", default="assets/splits/fracatlas_split.csv")
    args = ap.parse_args(argv)
    with open(args.manifest, newline="") as fh:
        rows = split_rows(list(csv.DictReader(fh)))
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    print(f"wrote {args.out}: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
