"""What an epoch draws under each ``--balance``: ``python -m bench.sampling [--write docs/data.md]``.

For the two sources trained together, per sampling mode: each source's share of the draws, the share
of fractured draws, and how many distinct radiographs (copies counted once, by train.audit's name
rules) an epoch of as many draws as training files is expected to touch. No training: it measures
the sampler, the first half of "does the Multi-Region set drown FracAtlas".
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from train.audit import radiograph_key
from train.report import write_section
from train.sampling import BALANCE, sample_weights
from train.sources import add_data_arguments, sources_from_args, split_sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_arguments(ap, default=["bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv",
                                    "fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv"])
    ap.add_argument("--write", type=Path, default=None, help="a Markdown file with <!-- sampling:start/end --> markers")
    args = ap.parse_args(argv)
    sources = sources_from_args(args)
    train = split_sources(sources)[0]["train"]
    n = len(train)
    keys = [(s.source, radiograph_key(s)) for s in train]
    names = [src.name for src in sources]
    print(f"{n} training files; distinct radiographs: " + ", ".join(
        f"{name} {len({k for k in keys if k[0] == name})} in {sum(s.source == name for s in train)} files" for name in names))
    lines = ["| sampling | " + " | ".join(f"{name} share of draws" for name in names)
             + " | fractured share | distinct radiographs touched per epoch |", "|---|" + "---|" * (len(names) + 2)]
    labels = np.array([s.label for s in train])
    for mode in BALANCE:
        w = sample_weights(train, mode)
        w = np.full(n, 1.0 / n) if w is None else w
        per_key = defaultdict(float)
        for k, wi in zip(keys, w):
            per_key[k] += wi
        touched = sum(1 - (1 - p) ** n for p in per_key.values())  # expected distinct radiographs in n draws
        shares = [w[[s.source == name for s in train]].sum() for name in names]
        lines.append(f"| {mode} | " + " | ".join(f"{x:.1%}" for x in shares)
                     + f" | {w[labels == 1].sum():.1%} | {touched:,.0f} of {len(per_key):,} |")
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "sampling", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
