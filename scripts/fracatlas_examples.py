"""Copy the app's FracAtlas examples and their drawn outlines: ``python scripts/fracatlas_examples.py``.

The rule (no picking by what a model gets right): from the FracAtlas test split, the first fractured
radiograph (by file name) with a drawn outline of each body region that has one, and the first not
fractured one of each of two regions; truncated files left out. Writes assets/examples/fracatlas/.
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

from train.fracatlas_split import region_of

ROOT = Path(__file__).resolve().parents[1]

CREDIT = "FracAtlas (Abedeen et al., Scientific Data 2023), CC BY 4.0; outline drawn by its annotators"


def main(shared: Path = ROOT.parent / "shared" / "data" / "fracatlas", out: Path = ROOT / "assets" / "examples" / "fracatlas") -> None:
    rows = sorted(csv.DictReader(open(shared / "manifest.csv")), key=lambda r: r["file"])
    split = {r["file"].split("/")[-1]: r for r in csv.DictReader(open(ROOT / "assets" / "splits" / "fracatlas_split.csv"))}
    coco = json.loads((shared / "annotations.json").read_text())
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    polys: dict[int, list] = {}
    for a in coco["annotations"]:
        polys.setdefault(a["image_id"], []).extend(a["segmentation"])
    chosen, regions_fr, regions_nf = [], set(), set()
    for r in rows:
        if split[r["file"]]["split"] != "test" or r["truncated"] == "1":
            continue
        region = region_of(r)
        if r["label"] == "fractured" and region not in regions_fr and polys.get(ids.get(r["file"])):
            regions_fr.add(region)
            chosen.append((r, region))
        elif r["label"] == "not fractured" and region not in regions_nf and len(regions_nf) < 2:
            regions_nf.add(region)
            chosen.append((r, region))
    out.mkdir(parents=True, exist_ok=True)
    table, lines = {}, []
    for r, region in chosen:
        name = f"{'fractured' if r['label'] == 'fractured' else 'not_fractured'}_{region}_{r['file']}"
        shutil.copyfile(shared / "blobs" / f"{r['sha256']}.jpg", out / name)
        sha = hashlib.sha256((out / name).read_bytes()).hexdigest()
        if r["label"] == "fractured":
            table[sha] = {"file": name, "polygons": polys[ids[r["file"]]], "size": [int(r["width"]), int(r["height"])], "credit": CREDIT}
        lines.append(f"| `fracatlas/{name}` | `{r['file']}` | {r['label']} | {region} |")
    (out / "outlines.json").write_text(json.dumps(table, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
