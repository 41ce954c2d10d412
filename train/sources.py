"""Data sources: a named folder with its own leak-free split, and several of them trained as one.

Every command names its data one way, ``--data NAME=DIR[:SPLIT_FILE]`` (:func:`add_data_arguments`,
:func:`sources_from_args`); the older spellings are mapped here and nowhere else: ``DIR[:SPLIT_FILE]`` is named
after its folder, and ``--data-dir D --split-mode M [--split-file F]`` is one unnamed source.
``NAME=DIR[:SPLIT_FILE]`` names a source (``bone-fracture=data/bone-fracture:assets/splits/grouped_split.csv``,
``fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv``); without a split file the folders'
own split is used. Each source keeps its split; together they add one rule: a file whose bytes are
on some source's training side is never scored (val or test) in any source, so a copy cannot cross
to a test side while its twin trains (near-copies across sources are the split files' job:
FracAtlas's excludes its images that are also in the Multi-Region set).
"""
from __future__ import annotations

import argparse
import csv
import os
from dataclasses import dataclass
from pathlib import Path

from .data import SPLITS, Sample, default_split_file, read_split_file, scan, sha256_file, split_samples

DATA_METAVAR = "NAME=DIR[:SPLIT_FILE]"


@dataclass(frozen=True)
class Source:
    name: str
    root: Path
    split_file: Path | None = None

    @classmethod
    def parse(cls, text: str) -> "Source":
        """``NAME=DIR[:SPLIT_FILE]``; ``DIR[:SPLIT_FILE]`` is named after its folder."""
        name, sep, rest = text.partition("=")
        if not sep:
            name, rest = Path(text.partition(":")[0]).name, text
        if not name or not rest:
            raise ValueError(f"data source {text!r}: expected NAME=DIR or NAME=DIR:SPLIT_FILE")
        root, _, split_file = rest.partition(":")
        return cls(name, Path(root), Path(split_file) if split_file else None)

    def arg(self) -> str:
        """The ``NAME=DIR[:SPLIT_FILE]`` text that :meth:`parse` reads back: how a child ``python -m train`` is told."""
        return f"{self.name}={self.root}" + (f":{self.split_file}" if self.split_file else "")

    def splits(self) -> dict[str, list[Sample]]:
        mode = "grouped" if self.split_file else "official"
        return split_samples(scan(self.root, self.name), mode, self.split_file)

    def groups(self) -> dict[str, str]:
        """rel path -> group id (prefixed by the source's name: groups never span sources)."""
        table = read_split_file(self.split_file) if self.split_file else {}
        return {rel: f"{self.name}/{group}" for rel, (_, group) in table.items()}

    def regions(self) -> dict[str, str]:
        """rel path -> body region, where the split file records one (FracAtlas's)."""
        if not self.split_file:
            return {}
        with open(self.split_file, newline="") as fh:
            return {r["file"]: r["region"] for r in csv.DictReader(fh) if r.get("region")}


def split_sources(sources: list[Source]) -> tuple[dict[str, list[Sample]], list[Sample]]:
    """Every source's split, side by side; returns (splits, the val/test files dropped as copies of a training file)."""
    per_source = [src.splits() for src in sources]
    splits = {s: [x for parts in per_source for x in parts[s]] for s in SPLITS}
    trained = {sha256_file(x.path) for x in splits["train"]}
    dropped = []
    for s in ("val", "test"):
        keep = []
        for x in splits[s]:
            (dropped if sha256_file(x.path) in trained else keep).append(x)
        splits[s] = keep
    return splits, dropped


def group_ids(samples: list[Sample], sources: list[Source]) -> list[str]:
    """The bootstrap's unit for each sample: its split file's group, else the file itself."""
    tables = {src.name: src.groups() for src in sources}
    return [tables.get(x.source, {}).get(x.rel, f"{x.source}/{x.rel}") for x in samples]


def source_names(sources: list[Source]) -> str:
    return "+".join(src.name for src in sources)


def add_data_arguments(ap: argparse.ArgumentParser, required: bool = True, folder: bool = False,
                       split_mode: str = "official", default: list[str] | None = None) -> None:
    """``--data NAME=DIR[:SPLIT_FILE]`` (repeatable); with ``folder``, also ``--data-dir/--split-mode/--split-file``."""
    where = ap.add_mutually_exclusive_group(required=required and not default) if folder else ap
    where.add_argument("--data", action="append", default=None, required=required and not folder and not default,
                       metavar=DATA_METAVAR, help="a named data set in Kaggle's layout with its split file (repeat for several)")
    if folder:
        where.add_argument("--data-dir", default="", help="one folder in Kaggle's layout, instead of --data")
        ap.add_argument("--split-mode", default=split_mode, choices=["official", "grouped"])
        ap.add_argument("--split-file", default=None, help="grouped split CSV from train.audit (default: DATA_DIR/grouped_split.csv)")
    ap.set_defaults(data_default=default or [])


def sources_from_args(args: argparse.Namespace) -> list[Source]:
    """The sources :func:`add_data_arguments`' options name."""
    return named_sources(args.data or ([] if getattr(args, "data_dir", "") else args.data_default),
                         getattr(args, "data_dir", ""), getattr(args, "split_mode", "official"), getattr(args, "split_file", None))


def named_sources(data: list[str], data_dir: str | os.PathLike = "", split_mode: str = "official",
                  split_file: str | os.PathLike | None = None) -> list[Source]:
    """Every spelling of the data as sources: ``data`` (``NAME=DIR[:SPLIT_FILE]`` each), or one folder."""
    if bool(data) == bool(data_dir):
        raise ValueError(f"give --data-dir or one or more --data {DATA_METAVAR}")
    if data:
        return [Source.parse(d) for d in data]
    if split_mode == "grouped" and split_file is None:
        split_file = default_split_file(data_dir)
    return [from_legacy(data_dir, split_mode, split_file)]


def from_legacy(data_dir: str | os.PathLike, split_mode: str, split_file: str | os.PathLike | None) -> Source:
    """The single unnamed source of ``--data-dir D --split-mode M [--split-file F]``."""
    if split_mode not in ("official", "grouped"):
        raise ValueError(f"split mode must be official or grouped, not {split_mode!r}")
    if split_mode == "grouped" and (split_file is None or not Path(split_file).is_file()):
        raise FileNotFoundError(f"grouped split file {split_file} not found; run `python -m train.audit --data-dir D` first")
    return Source("", Path(data_dir), Path(split_file) if split_mode == "grouped" else None)
