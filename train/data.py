"""The data set on disk: Kaggle's folder layout, the official or grouped split, a decode-once cache.

Every distinct file (by content hash) is decoded and resized once per run, in parallel, into
one uint8 array; epochs then only index and augment that array. Files that cannot be decoded
are skipped and reported by name; a bad file never stops a run.
"""
from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fracture_demo.classifier import LABELS
from fracture_demo.imaging import ImageError, decode_image, to_array
from fracture_demo.runtime import usable_cores

SPLITS = ("train", "val", "test")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm"}


@dataclass(frozen=True)
class Sample:
    path: Path
    rel: str  # "split/label/file": the identity split files and reports use
    label: int  # 1 = fractured
    split: str  # the official (folder) split
    source: str = ""  # the data source's name where several train together (train.sources)


def scan(data_dir: str | os.PathLike, source: str = "") -> list[Sample]:
    """Every file under ``D/{train,val,test}/{fractured,not fractured}/`` (any subset of splits)."""
    root = Path(data_dir)
    samples = []
    for split in SPLITS:
        for label_idx, label in enumerate(LABELS):
            folder = root / split / label
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    samples.append(Sample(path, f"{split}/{label}/{path.name}", label_idx, split, source))
    if not samples:
        raise FileNotFoundError(f"no images under {root}: expected {root}/<train|val|test>/<fractured|not fractured>/")
    return samples


def default_split_file(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "grouped_split.csv"


def read_split_file(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """rel path -> (grouped split, group id)."""
    with open(path, newline="") as fh:
        return {r["file"]: (r["split"], r["group"]) for r in csv.DictReader(fh)}


def split_samples(samples: list[Sample], mode: str = "official",
                  split_file: str | os.PathLike | None = None) -> dict[str, list[Sample]]:
    """Official folder split, or the audit's grouped split (no group on two sides)."""
    if mode == "official":
        return {s: [x for x in samples if x.split == s] for s in SPLITS}
    if mode != "grouped":
        raise ValueError(f"split mode must be official or grouped, not {mode!r}")
    if split_file is None or not Path(split_file).is_file():
        raise FileNotFoundError(f"grouped split file {split_file} not found; run `python -m train.audit --data-dir D` first")
    table = read_split_file(split_file)
    return {s: [x for x in samples if table.get(x.rel, ("",))[0] == s] for s in SPLITS}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(samples: list[Sample]) -> str:
    """Identifies which files with which labels a run saw (names, not pixels, so resized copies match)."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: s.rel):
        h.update(f"{s.rel}\t{s.label}\n".encode())
    return h.hexdigest()[:16]


def _decode(args: tuple[str, int]) -> tuple[np.ndarray | None, str, list[str]]:
    path, size = args
    try:
        decoded = decode_image(path, draft_side=size)
        return to_array(decoded.image, size), "", decoded.warnings
    except ImageError as exc:
        return None, str(exc), []
    except Exception as exc:  # never let one file end a run
        return None, f"{exc.__class__.__name__}: {exc}", []


@dataclass
class ImageSet:
    """Decoded, resized images of one split: ``images[i]`` is uint8 1xSxS for ``samples[i]``."""

    samples: list[Sample]
    images: np.ndarray
    labels: np.ndarray
    hashes: list[str] = field(default_factory=list)  # content sha256 of each kept sample
    skipped: dict[str, str] = field(default_factory=dict)  # rel path -> why
    notes: dict[str, list[str]] = field(default_factory=dict)  # rel path -> warnings (e.g. truncated)

    def __len__(self) -> int:
        return len(self.samples)

    def distinct(self) -> list[int]:
        """Index of the first sample of each distinct content (rotated copies aside, byte copies count once)."""
        first: dict[str, int] = {}
        for i, h in enumerate(self.hashes):
            first.setdefault(h, i)
        return list(first.values())


class ImageCache:
    """Decodes each distinct file once per run (by content hash), shared by every split."""

    def __init__(self, size: int, workers: int | None = None) -> None:
        self.size = size
        self.workers = workers if workers is not None else usable_cores()
        self._by_hash: dict[str, tuple[np.ndarray | None, str, list[str]]] = {}

    @property
    def distinct_files(self) -> int:
        """How many distinct files (by content) have been decoded so far."""
        return len(self._by_hash)

    def load(self, samples: list[Sample], progress: bool = False) -> ImageSet:
        hashes = [sha256_file(s.path) for s in samples]
        todo = {h: str(s.path) for h, s in zip(hashes, samples) if h not in self._by_hash}
        jobs = [(p, self.size) for p in todo.values()]
        if self.workers > 1 and len(jobs) > 32:
            # threads, not processes: PIL decodes and resizes without the GIL, and forking a process that holds
            # torch cost twice the kernel time (page tables, copy-on-write faults; docs/speed.md)
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(_progress(pool.map(_decode, jobs), len(jobs), progress))
        else:
            results = [_decode(j) for j in _progress(jobs, len(jobs), progress)]
        self._by_hash.update(zip(todo, results))
        keep, images, kept_hashes, skipped, notes = [], [], [], {}, {}
        for s, h in zip(samples, hashes):
            arr, err, warn = self._by_hash[h]
            if arr is None:
                skipped[s.rel] = err
                continue
            if warn:
                notes[s.rel] = warn
            keep.append(s)
            images.append(arr)
            kept_hashes.append(h)
        stack = np.stack(images)[:, None] if images else np.zeros((0, 1, self.size, self.size), np.uint8)
        return ImageSet(keep, stack, np.array([s.label for s in keep], np.float32), kept_hashes, skipped, notes)


def _progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, total=total, desc="decode", unit="img", leave=False, disable=None)
