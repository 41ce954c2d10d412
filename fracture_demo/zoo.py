"""The set of trained models an app or a script offers: found once, loaded once, compared together."""
from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from . import methods
from .classifier import LABELS, Explanation, FractureClassifier, load
from .guard import GUARD_NAME
from .imaging import Decoded, ImageSource
from .registry import get_spec

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"
#: Extra models (folders or Hub ids, comma-separated) the app should offer.
MODELS_ENV = "FRACTURE_MODELS"


@dataclass(frozen=True)
class ZooEntry:
    source: str  # folder or Hub id
    name: str  # what the UI shows
    config: dict | None  # known without loading weights for local folders

    def score(self, split: str = "grouped test", key: str = "balanced_accuracy") -> float | None:
        m = (self.config or {}).get("metrics", {}).get(split, {})
        return m.get(key)

    @property
    def split_mode(self) -> str | None:
        """"official" for the twins trained on the leaking split, for which no grouped score exists."""
        return (self.config or {}).get("data", {}).get("split_mode")

    @property
    def sources(self) -> list[str]:
        """The data sources it trained on (several for the app's models; none recorded for one-folder runs)."""
        return sorted((self.config or {}).get("data", {}).get("sources") or [])

    @property
    def trained_on(self) -> str:
        return " + ".join(self.sources) if self.sources else f"{self.split_mode or '?'} split"

    @property
    def merit(self) -> float | None:
        """Mean balanced accuracy over the held-out test sets it was scored on (the default's last tie-break)."""
        scores = [s for s in (self.score("fracatlas test"), self.score("grouped test")) if s is not None]
        return float(np.mean(scores)) if scores else None

    @property
    def label(self) -> str:
        auc, bal = self.score("fracatlas test", "roc_auc"), self.score()
        acc = self.score("official test", "accuracy") if self.split_mode == "official" else None
        parts = [f"FracAtlas ROC AUC {auc:.3f}" if auc is not None else "", f"grouped bal. acc {bal:.3f}" if bal is not None else "",
                 f"official acc {acc:.3f}, leaky split" if acc is not None else ""]
        extra = ", ".join(p for p in parts if p)
        return f"{self.name} ({extra})" if extra else self.name


def discover(extra: list[str] | None = None, bundled: Path = BUNDLED_DIR) -> list[ZooEntry]:
    """Bundled model folders plus any extra folders / Hub ids (flag or ``$FRACTURE_MODELS``)."""
    entries = []
    if bundled.is_dir():
        for cfg in sorted(bundled.glob("*/config.json")):
            entries.append(ZooEntry(str(cfg.parent), cfg.parent.name, json.loads(cfg.read_text())))
    extra = list(extra or []) + [s for s in os.environ.get(MODELS_ENV, "").split(",") if s.strip()]
    for src in extra:
        src = src.strip()
        cfg = Path(src) / "config.json"
        entries.append(ZooEntry(src, Path(src).name if cfg.is_file() else src,
                                json.loads(cfg.read_text()) if cfg.is_file() else None))
    return entries


class ModelZoo:
    """Lazily loads each model once (thread-safe); the default is the best of those trained on the most sources."""

    def __init__(self, entries: list[ZooEntry], replicas: int = 1, precision: str = "f32") -> None:
        """``replicas``: how many requests each model computes at once (FractureClassifier.replicate);
        ``precision``: the inference runtime's arithmetic (``engine.compile_model``)."""
        self.entries = {e.name: e for e in entries}
        self.replicas, self.precision = replicas, precision
        self._loaded: dict[str, FractureClassifier] = {}
        self._lock = threading.Lock()  # guards the two dicts only; never held while a model loads
        self._loading: dict[str, threading.Lock] = {}

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    @property
    def default(self) -> str | None:
        """Of the models trained on the most sources, the one with the highest FracAtlas validation ROC AUC: the
        ladder's rule (docs/ladder.md: chosen on validation files of another hospital, never on test); test scores break ties."""
        if not self.entries:
            return None
        return max(self.entries.values(), key=lambda e: (len(e.sources), e.score("fracatlas val", "roc_auc") or -1.0,
                                                         e.merit or -1.0, e.score("official test", "accuracy") or -1)).name

    def get(self, name: str, operating_point: str | None = None) -> FractureClassifier:
        """The named model (loaded once), deciding at ``operating_point`` where it has that point; a model with
        one threshold (the official-split twins) keeps it, and its details say so."""
        if name not in self.entries:
            raise KeyError(f"unknown model {name!r}; available: {', '.join(self.names) or 'none'}")
        clf = self._loaded.get(name)
        if clf is None:
            with self._lock:
                model_lock = self._loading.setdefault(name, threading.Lock())
            with model_lock:  # one load per model; loading one never blocks another that is ready
                clf = self._loaded.get(name)
                if clf is None:
                    clf = load(self.entries[name].source, precision=self.precision)
                    clf.replicate(self.replicas)
                    with self._lock:
                        self._loaded[name] = clf
        return clf.at_operating_point(operating_point) if operating_point in clf.operating_points else clf

    @property
    def held_out_names(self) -> list[str]:
        """Models trained on the grouped split (the others saw nearly every test image)."""
        return [n for n, e in self.entries.items() if e.split_mode != "official"]

    @property
    def preferred_names(self) -> list[str]:
        """The models the app offers first: held out from the leak, trained on the most sources."""
        most = max((len(self.entries[n].sources) for n in self.held_out_names), default=0)
        return [n for n in self.held_out_names if len(self.entries[n].sources) == most]

    @cached_property
    def guard_model(self) -> str | None:
        """Whose radiograph guard answers for models without one: the default's, else the first model
        that has one (a guard is a feature extractor's, not a classifier's: any model's serves).
        Found once: the entries are fixed, and requests ask on every call."""
        with_guard = [n for n, e in self.entries.items() if (Path(e.source) / GUARD_NAME).is_file()]
        return self.default if self.default in with_guard or not with_guard else with_guard[0]

    def radiograph_warning(self, image: ImageSource | Decoded) -> str | None:
        """The guard model's answer on this image: its warning if the image does not look like a radiograph,
        None if it does (or no guard was fitted). For models that have no guard of their own."""
        name = self.guard_model
        return self.get(name).radiograph_warning(image) if name else None

    def compare(self, image: ImageSource | Decoded, method: str = "gradcam", opacity: float = 0.5,
                names: list[str] | None = None, operating_point: str | None = None) -> list[Explanation]:
        """Each named model's (default: every model's) explanation of one image; each decides at
        ``operating_point`` where it has one (else at its own threshold). The models run side by side, as many
        at once as each model has replicas (one per core in the app): one user's comparison uses the cores. Each
        runs only the views its P(fractured) needs (no flip spread is shown)."""
        def explain(name: str) -> Explanation:
            clf = self.get(name, operating_point)
            return clf.explain(image, supported_method(clf, method), opacity, spread=False)
        with ThreadPoolExecutor(self.replicas) as pool:
            return list(pool.map(explain, self.names if names is None else names))


def supported_method(clf: FractureClassifier, method: str) -> str:
    """``method`` if this model's family offers it, else Grad-CAM (which every family has)."""
    return method if method in get_spec(clf.arch).explain_methods else methods.FALLBACK


def ensemble_label(p: float) -> dict[str, float]:
    return {LABELS[1]: p, LABELS[0]: 1 - p}
