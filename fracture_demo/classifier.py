"""A trained model plus the config that says how to feed it: load, predict, explain, save, push.

In the manner of huggingface_hub's ``PyTorchModelHubMixin``: a model folder holds
``model.safetensors`` and ``config.json`` and looks exactly like its repo on the Hub.
Why not the mixin itself: it ties a folder to one ``nn.Module`` class whose ``__init__`` arguments
are the config, while here one loader serves every architecture (the config names it; the registry
builds it), and the folder carries what is not a constructor argument: the calibrated temperature and
threshold, the radiograph guard (``guard.safetensors``), scores and the card. Upload is
``huggingface_hub.upload_folder`` (fracture_demo.hub), download ``snapshot_download``; nothing is re-implemented.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import queue
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from . import explain as _explain
from .engine import CompiledModel, compile_model, forward_cam
from .guard import RadiographGuard, guard_features
from .hub import push_folder, resolve_model_dir
from .imaging import Decoded, ImageSource, decode_image, display_image, normalize, to_array
from .registry import create_model, data_config, family, get_spec

LABELS = ["not fractured", "fractured"]
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


@dataclass
class Prediction:
    probability: float  # calibrated P(fractured)
    label: str
    threshold: float
    warnings: list[str] = field(default_factory=list)
    radiograph: bool | None = None  # the model's guard's verdict; None where the model has no guard

    def as_label_dict(self) -> dict[str, float]:
        return {LABELS[1]: self.probability, LABELS[0]: 1.0 - self.probability}


@dataclass
class Explanation:
    prediction: Prediction
    method: str
    target: str  # which class the map explains
    heatmap: np.ndarray  # [0,1], same size as ``image``
    image: Image.Image  # the radiograph as shown
    overlay: Image.Image
    flip_probabilities: list[float]  # P(fractured) of the image and its three flips (fewer: explain(spread=False))


class FractureClassifier:
    """One trained architecture; every architecture behaves the same through this class."""

    def __init__(self, model: nn.Module, config: dict) -> None:
        self.model = model.eval()
        self.config = config
        self.arch = config["architecture"]
        self.family = family(config)
        # An explanation hooks the module and runs backward through it: one call at a time per copy of the
        # modules, or concurrent requests read each other's activations (and, through .grad, corrupted the heap).
        self._free: queue.LifoQueue[nn.Module] = queue.LifoQueue()
        self._free.put(self.model)
        self.guard: RadiographGuard | None = None  # fitted by ``python -m train.guard``; saved beside the weights
        # the forward pass in an inference runtime (fracture_demo.engine), set when loaded; None: torch serves
        self.compiled: CompiledModel | None = None

    @classmethod
    def new(cls, arch: str, pretrained: str | None = None, image_size: int | None = None,
            **config) -> "FractureClassifier":
        """A fresh model of ``arch`` with its default config (for training)."""
        base = {"architecture": arch, **data_config(arch, pretrained, image_size), "labels": LABELS,
                "threshold": 0.5, "temperature": 1.0}
        return cls(create_model(arch, pretrained, **base["model_kwargs"]), {**base, **config})

    @classmethod
    def from_pretrained(cls, folder_or_id: str | os.PathLike, revision: str | None = None,
                        precision: str = "f32") -> "FractureClassifier":
        """``precision``: the inference runtime's arithmetic (``engine.compile_model``); torch computes in f32."""
        folder = resolve_model_dir(folder_or_id, revision)
        config = json.loads((folder / CONFIG_NAME).read_text())
        get_spec(config["architecture"])  # a clear error for unknown architectures
        model = create_model(config["architecture"], **config.get("model_kwargs", {}))
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(folder / WEIGHTS_NAME).items()}
        model.load_state_dict(state)
        model.requires_grad_(False)  # inference only: CAMs differentiate w.r.t. the input, never write .grad
        if get_spec(config["architecture"]).kind == "cnn":  # 25% faster on these CPUs (inputs follow the weights)
            model = model.to(memory_format=torch.channels_last)
        clf = cls(model, config)
        clf.source = str(folder_or_id)
        clf.guard = RadiographGuard.load(folder)
        clf.compiled = compile_model(model, config, folder / WEIGHTS_NAME, clf.guard and clf.guard.layer,
                                     guarded=clf.guard is not None, precision=precision)
        return clf

    def save_pretrained(self, folder: str | os.PathLike, half: bool = False) -> Path:
        """Write weights (fp16 if ``half``) and config; other files in the folder are left alone."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
                 for k, v in self.unwrapped.state_dict().items()}
        save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt", "architecture": self.arch})
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        return folder

    def push_to_hub(self, repo_id: str, folder: str | os.PathLike, private: bool = False, api=None) -> str:
        self.save_pretrained(folder)
        return push_folder(folder, repo_id, private=private, api=api)

    def replicate(self, copies: int) -> None:
        """Let ``copies`` calls compute at once, each on its own copy of the modules (hooks, activations) sharing
        one set of frozen weights. For a server running one torch thread per request (app.py): batch-1 work
        gains little from a second thread, while two requests side by side use both cores."""
        shared = {id(t): t for t in itertools.chain(self.model.parameters(), self.model.buffers())}
        free: queue.LifoQueue[nn.Module] = queue.LifoQueue()
        free.put(self.model)
        for _ in range(copies - 1):
            free.put(copy.deepcopy(self.model, dict(shared)))
        self._free = free

    @contextmanager
    def _model_in_use(self) -> Iterator[nn.Module]:
        """A copy of the model that no other call is using (with one copy, calls take turns)."""
        free = self._free  # the queue it came from, even if replicate() swaps the queue meanwhile
        model = free.get()
        try:
            yield model
        finally:
            free.put(model)

    @property
    def unwrapped(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    # ----- inference -------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    def decode(self, image: ImageSource | Decoded) -> Decoded:
        """The radiograph as this model sees it: the same pixels whether given a path or an already decoded image."""
        if isinstance(image, Decoded):
            return image.at_draft_side(self.image_size)
        return decode_image(image, draft_side=self.image_size)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0,1]) N x 1 x S x S -> this model's normalised input."""
        return normalize(batch, self.config["mean"], self.config["std"])

    def preprocess(self, decoded: Decoded) -> torch.Tensor:
        return self.normalize(torch.from_numpy(to_array(decoded.image, self.image_size))[None, None])

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated P(fractured): sigmoid of the temperature-scaled, shifted logit (Platt scaling)."""
        return torch.sigmoid(logits.float() / float(self.config.get("temperature", 1.0)) + float(self.config.get("bias", 0.0)))

    @property
    def views(self) -> int:
        """1: P(fractured) is the image's own; 4: the mean logit of the image and its three flips (test-time
        augmentation; set per model with ``python -m train.calibrate --views``, which refits the calibration on it)."""
        return int(self.config.get("views", 1))

    def view_mean(self, logits: torch.Tensor, n: int = 1) -> torch.Tensor:
        """The n predictions' logits from a pass over n images in :meth:`with_flips`' order (the images as given
        first; a pass over the images alone is enough for one view): the mean over this model's views."""
        return logits.float().reshape(-1, n)[: self.views].mean(0)

    @property
    def calibration_prevalence(self) -> float | None:
        """The share of fractured files its calibration was fitted on (None where not recorded):
        :mod:`fracture_demo.prevalence` moves P(fractured) from it to a user's own."""
        return self.config.get("calibration_prevalence")

    @property
    def threshold(self) -> float:
        """Decision threshold on the calibrated probability, chosen on validation data."""
        return float(self.config.get("threshold", 0.5))

    @property
    def operating_points(self) -> dict[str, dict]:
        """Name -> {"threshold", "rule", "validation"}: one threshold per question (screen, balanced, confirm; see
        ``train.calibrate``), each chosen on validation files; empty for a model calibrated before them."""
        return self.config.get("operating_points", {})

    @property
    def operating_point(self) -> str | None:
        """The point this model decides at (None: its one recorded threshold)."""
        return self.config.get("default_operating_point")

    def at_operating_point(self, name: str | None) -> "FractureClassifier":
        """This model deciding at another of its validated thresholds: the same modules and weights (and the same
        queue of copies, so concurrent calls still take turns), another threshold. None: as it is."""
        if not name or name == self.operating_point:
            return self
        if name not in self.operating_points:
            offered = ", ".join(self.operating_points) or "none (one threshold)"
            raise ValueError(f"{self.arch} has no operating point {name!r}; it has {offered}")
        other = copy.copy(self)
        other.config = {**self.config, "default_operating_point": name,
                        "threshold": self.operating_points[name]["threshold"],
                        "operating_point": self.operating_points[name]["rule"]}
        return other

    def _guarded(self, model: nn.Module):
        """Inside: forward passes of ``model`` record the features the guard needs (nothing without a guard)."""
        return guard_features(model, self.arch, self.guard.layer) if self.guard is not None else nullcontext([])

    def _guard_warning(self, pooled: list[torch.Tensor] | None) -> str | None:
        """The guard's verdict on the first image of the forward pass that filled ``pooled`` (the image as given)."""
        return self.guard.warning(pooled[0][:1]) if self.guard is not None and pooled else None

    def _prediction(self, p: float, notes: list[str], pooled: list[torch.Tensor] | None = None) -> Prediction:
        """``pooled``: the guard's features from the forward pass that gave ``p``."""
        warning = self._guard_warning(pooled)
        return Prediction(p, LABELS[int(p >= self.threshold)], self.threshold, list(notes) + [warning] * bool(warning),
                          None if self.guard is None or not pooled else warning is None)

    def _logits(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A batch's logits and the guard's features of it (none without a guard) from one forward pass: in the
        inference runtime where the model has one (fracture_demo.engine), else in torch."""
        if self.compiled is not None:
            out = self.compiled(x)
            return out.logits, [out.pooled] if out.pooled is not None else []
        with torch.no_grad(), self._model_in_use() as model, self._guarded(model) as pooled:
            return model(x), pooled

    def predict(self, image: ImageSource | Decoded) -> Prediction:
        decoded = self.decode(image)
        x = self.preprocess(decoded)
        logits, pooled = self._logits(self.with_flips(x) if self.views > 1 else x)
        return self._prediction(self.probability(self.view_mean(logits)).item(), decoded.warnings, pooled)

    def radiograph_warning(self, image: ImageSource | Decoded) -> str | None:
        """The guard's warning for ``image`` (None: it looks like a radiograph, or this model has no guard). One
        pass of the image alone, the features :meth:`predict` gives its guard: what models without a guard borrow."""
        if self.guard is None:
            return None
        return self._guard_warning(self._logits(self.preprocess(self.decode(image)))[1])

    @staticmethod
    def with_flips(x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> 4N: the batch as is, flipped left-right, upside down, and both (in that order)."""
        return torch.cat([x, x.flip(-1), x.flip(-2), x.flip(-1, -2)])

    def flip_probabilities(self, image: ImageSource | Decoded) -> list[float]:
        """P(fractured) of the image and of its horizontal, vertical and double flips: a cheap measure of how
        sure the model is (a radiograph's side and orientation carry no diagnosis; the study trained on flips)."""
        x = self.preprocess(self.decode(image))
        return self.probability(self._logits(self.with_flips(x))[0]).flatten().tolist()

    def explain(self, image: ImageSource | Decoded, method: str = "gradcam", opacity: float = 0.5,
                target: str | None = None, spread: bool = True) -> Explanation:
        """Prediction plus a heatmap of the evidence for ``target`` (default: the predicted class).

        One forward pass gives both (the map's target class is decided from that pass's own output), and
        the flipped views of :meth:`flip_probabilities` ride along in it. ``spread=False``: only the views
        P(fractured) needs (Compare shows no spread: a quarter of the work for a one-view model); the
        explanation's ``flip_probabilities`` then holds those.
        """
        decoded = self.decode(image)
        views = self.with_flips(self.preprocess(decoded))[: 4 if spread else self.views]
        shown = display_image((image if isinstance(image, Decoded) else decoded).image)  # the caller's, if larger
        forward = (self.compiled is not None and self.compiled.has_cam
                   and method in get_spec(self.arch).forward_methods)
        heat, logits, category, pooled = (self._forward_map if forward else self._torch_map)(views, method, target)
        p = self.probability(self.view_mean(logits)).item()
        heat = _explain.resize_map(heat, shown.size)
        return Explanation(self._prediction(p, decoded.warnings, pooled), method, LABELS[category], heat, shown,
                           _explain.overlay(shown, heat, opacity), self.probability(logits).flatten().tolist())

    def _decided(self, logits: torch.Tensor) -> int:
        """The class the views' mean logit decides at this model's threshold."""
        return int(self.probability(self.view_mean(logits)).item() >= self.threshold)

    def _forward_map(self, views: torch.Tensor, method: str, target: str | None):
        """Grad-CAM (or HiResCAM, where equal) from the runtime's forward pass: -> (map, logits, class, guard
        features)."""
        out = self.compiled(views)
        category = self._decided(out.logits) if target is None else LABELS.index(target)
        return (forward_cam(out.cam[0], category, tuple(views.shape[-2:])), out.logits, category,
                [out.pooled] if out.pooled is not None else [])

    def _torch_map(self, views: torch.Tensor, method: str, target: str | None):
        """Any method through pytorch-grad-cam (or rollout): -> (map, logits, class, guard features)."""
        batch = views[:1] if method == "scorecam" else views  # ScoreCAM's masked passes: for the image alone
        decide = ((lambda logit: int(self.probability(logit).item() >= self.threshold)) if target is None
                  else (lambda _logit: LABELS.index(target)))
        chosen = _explain.DecidedTarget(decide)
        with self._model_in_use() as model, self._guarded(model) as pooled:
            heat, logits = _explain.cam_map(model, self.arch, batch, method, chosen)
            if len(logits) < len(views):  # ScoreCAM's pass held the image alone
                logits = model(views).detach()
            decided = self._decided(logits)
            if target is None and chosen.category != decided:  # the views' mean decided otherwise than the image
                chosen = _explain.DecidedTarget(lambda _logit: decided)  # alone: map the evidence for the decision
                heat, _ = _explain.cam_map(model, self.arch, batch, method, chosen)
        return heat, logits, chosen.category, pooled


def threshold_range(point: dict) -> str | None:
    """Where an operating point's threshold moves when its validation groups are resampled (95%, "lo-hi"), if
    recorded: the app's decision, the cards and the report word that spread alike."""
    span = point.get("threshold_95")
    return "{:.2f}-{:.2f}".format(*span) if span else None


def load(folder_or_id: str | os.PathLike, revision: str | None = None, precision: str = "f32") -> FractureClassifier:
    """Load a trained model from a local folder or a Hub id (one code path)."""
    return FractureClassifier.from_pretrained(folder_or_id, revision, precision)
