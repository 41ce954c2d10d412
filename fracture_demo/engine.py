"""The forward pass in an inference runtime: the logits, the class activation map and the guard's features at once.

Why: on these 2 CPU cores OpenVINO runs the default model's four views in about half torch's time on one thread
(docs/speed.md). And where the head is global average pooling then one linear layer (``ModelSpec.cam_weights``),
the gradient of the logit with respect to the CAM layer's output ``A`` (h x w positions) is ``w / (h w)`` at every
position, so Grad-CAM and HiResCAM both equal ``ReLU(±w · A / (h w))``: the class activation map (Zhou et al.,
2016), which the forward pass already holds. No backward pass. (After a non-overlapping max-pool, as in VGG, the
gradient still averages to ``w / (h w)``: Grad-CAM's map is the same, HiResCAM's is not; ``ModelSpec.forward_methods``.) Methods that need gradients or many passes
(Grad-CAM++, ScoreCAM, EigenCAM, attention rollout) keep the torch path (:mod:`fracture_demo.explain`), as does
training; so do architectures whose head is not linear in ``A``.

The graph is exported with ``torch.onnx`` (ONNX opset 18) when a model folder is loaded, cached on disk under a
hash of its weights and of what the graph returns, and compiled by the backend: OpenVINO (the default: measured
faster here) or ONNX Runtime. ``FRACTURE_ENGINE=torch`` serves everything from torch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.image import scale_cam_image
from torch import nn

from .guard import guard_features
from .registry import get_spec
from .runtime import usable_cores

log = logging.getLogger(__name__)

ENGINE_ENV = "FRACTURE_ENGINE"  # openvino (default) | onnxruntime | torch
CACHE_ENV = "FRACTURE_CACHE"  # where exported graphs are kept (default ~/.cache/fracture_demo)
BACKENDS = ("openvino", "onnxruntime")
PRECISIONS = ("f32", "bf16", "auto")  # auto: bf16 for the families the registry marks serve_bf16, else f32
_GRAPH_VERSION = "2"  # bump when what the exported graph computes changes: old cache entries are then ignored
_OPSET = 18
_exporting = threading.Lock()  # torch.onnx keeps its state in globals: one export at a time in a process


def backend() -> str | None:
    """The backend ``$FRACTURE_ENGINE`` names (None: torch serves)."""
    name = os.environ.get(ENGINE_ENV, BACKENDS[0]).strip().lower()
    if name in ("torch", "none", "off", "0"):
        return None
    if name not in BACKENDS:
        raise ValueError(f"{ENGINE_ENV}={name!r}: choose one of {', '.join(BACKENDS)} or torch")
    if importlib.util.find_spec(name) is None:  # installed without it: serve from torch, and say so
        log.warning("%s is not installed (pip install %s): models are served from torch", name, name)
        return None
    return name


class Outputs(NamedTuple):
    logits: torch.Tensor  # N x 1
    cam: torch.Tensor | None  # N x h x w: w · A, the head's weights times the CAM layer's map (None: head not linear)
    pooled: torch.Tensor | None  # N x D: the guard's features (None: no guard)


class _Graph(nn.Module):
    """What is exported: the model's logits, plus ``w · A`` at the CAM layer and the guard's pooled features."""

    def __init__(self, model: nn.Module, arch: str, guard_layer: str | None, guarded: bool) -> None:
        super().__init__()
        self.model, self.arch, self.guard_layer, self.guarded = model, arch, guard_layer, guarded
        self.weights = get_spec(arch).cam_weights(model)

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + ["cam"] * (self.weights is not None) + ["pooled"] * self.guarded

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps: list[torch.Tensor] = []
        handle = get_spec(self.arch).cam_layer(self.model).register_forward_hook(lambda _m, _i, out: maps.append(out))
        guarded = guard_features(self.model, self.arch, self.guard_layer) if self.guarded else nullcontext([])
        try:
            with guarded as pooled:
                outputs = [self.model(x)]
        finally:
            handle.remove()
        if self.weights is not None:
            outputs.append(torch.einsum("c,nchw->nhw", self.weights.float(), maps[0].float()))
        return tuple(outputs + pooled[:1])


def resize_taps(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's antialiased bilinear resize of n samples to ``size`` as the inputs each output reads and their
    weights (``size x k``, k = the widest footprint, narrower ones padded with weight 0): torch's own weights,
    read off the resize of an identity matrix."""
    matrix = F.interpolate(torch.eye(n)[None, None], size=(size, n), mode="bilinear", antialias=True,
                           align_corners=False)[0, 0]
    weights, taps = matrix.topk(int((matrix != 0).sum(1).max()), dim=1)  # every non-zero weight (all are > 0)
    return taps, weights


def _resize_symbolic(g, x, output_size, _align_corners, _scales):
    """``aten::_upsample_bilinear2d_aa`` (the fusion's frozen branch), which torch.onnx cannot export, as what it
    computes: per axis, gather each output's k inputs and sum them weighted (torch's weights; equal to 2e-7). Why
    not ONNX ``Resize(antialias=1)``: ONNX Runtime's differs from torch's by up to 2e-5, OpenVINO's by 0.4; and
    not a MatMul with the whole resize matrix: the same numbers, twice the time (6.5 vs 3.6 ms for four views)."""
    out = x
    for axis in (2, 3):
        taps, weights = resize_taps(x.type().varyingSizes()[axis], output_size[axis - 2])
        gathered = g.op("Gather", out, g.op("Constant", value_t=taps), axis_i=axis)  # N x C x size x k (x W)
        weighted = g.op("Mul", gathered, g.op("Constant", value_t=weights[:, :, None] if axis == 2 else weights))
        out = g.op("ReduceSum", weighted, g.op("Constant", value_t=torch.tensor([axis + 1])), keepdims_i=0)
    return out


@contextmanager
def _exportable_resize() -> Iterator[None]:
    from torch.onnx import symbolic_helper
    name = "aten::_upsample_bilinear2d_aa"
    torch.onnx.register_custom_op_symbolic(name, symbolic_helper.parse_args("v", "is", "i", "none")(_resize_symbolic),
                                           _OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic(name, _OPSET)


def export(model: nn.Module, arch: str, image_size: int, path: Path, guard_layer: str | None = None,
           guarded: bool = False) -> None:
    """Write ``model``'s graph (any batch size) to ``path`` as ONNX, its outputs named as :class:`Outputs`."""
    graph = _Graph(model, arch, guard_layer, guarded).eval()
    names = graph.output_names
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with _exporting, _exportable_resize(), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notices about the TorchScript-based exporter
        torch.onnx.export(graph, (torch.zeros(1, 3, image_size, image_size),), str(tmp), opset_version=_OPSET,
                          dynamo=False, input_names=["x"], output_names=names,
                          dynamic_axes={n: {0: "n"} for n in ["x", *names]})
    os.replace(tmp, path)  # atomic: another process loading the same model never reads half a file


def _openvino(path: Path, threads: int, streams: int, precision: str
              ) -> tuple[Callable[[np.ndarray], list[np.ndarray]], list[str]]:
    """Compiled once per batch size, with static shapes: 15% faster than one dynamic-batch model here (the
    default's four views: 82 vs 96 ms on one thread). ``precision`` "bf16" is a hint: a CPU without bfloat16
    arithmetic computes in f32."""
    import openvino as ov
    core, compiled, lock = ov.Core(), {}, threading.Lock()
    config = {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": threads * streams,  # `streams` calls at once
              "INFERENCE_PRECISION_HINT": precision}

    def for_shape(shape: tuple[int, ...]):
        with lock:  # one compilation per shape, even when the first calls arrive together
            if shape not in compiled:
                model = core.read_model(str(path))
                model.reshape({0: list(shape)})
                compiled[shape] = core.compile_model(model, "CPU", config)
            return compiled[shape]

    def run(x: np.ndarray) -> list[np.ndarray]:
        model = compiled.get(x.shape) or for_shape(x.shape)
        result = model.create_infer_request().infer({0: x})  # a request per call (microseconds): thread-safe
        return [np.array(result[o]) for o in model.outputs]
    return run, [o.get_any_name() for o in core.read_model(str(path)).outputs]


def _onnxruntime(path: Path, threads: int, streams: int, precision: str
                 ) -> tuple[Callable[[np.ndarray], list[np.ndarray]], list[str]]:
    """Always f32 (``compile_model`` asks for nothing else): its CPU kernels have no bfloat16 convolutions."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # runs in the caller's thread; concurrent calls are safe
    return (lambda x: session.run(None, {"x": x})), [o.name for o in session.get_outputs()]


_COMPILERS = {"openvino": _openvino, "onnxruntime": _onnxruntime}


class CompiledModel:
    """A model's exported forward pass in a backend; thread-safe (calls run side by side)."""

    def __init__(self, run: Callable[[np.ndarray], list[np.ndarray]], names: Sequence[str], backend: str,
                 precision: str = "f32") -> None:
        self._run, self.names, self.backend, self.precision = run, list(names), backend, precision

    @property
    def has_cam(self) -> bool:
        return "cam" in self.names

    def __call__(self, x: torch.Tensor) -> Outputs:
        out = {k: torch.from_numpy(v) for k, v in zip(self.names, self._run(np.ascontiguousarray(x.float().numpy())))}
        return Outputs(out["logits"], out.get("cam"), out.get("pooled"))


def cache_dir() -> Path:
    """Where exported graphs are kept: ``$FRACTURE_CACHE``, else ~/.cache/fracture_demo, else a temp folder."""
    chosen = os.environ.get(CACHE_ENV)
    for folder in ([Path(chosen)] if chosen else []) + [Path.home() / ".cache" / "fracture_demo",
                                                        Path(tempfile.gettempdir()) / "fracture_demo"]:
        path = folder / "graphs"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise OSError("no writable folder for the exported graphs; set " + CACHE_ENV)


def compile_model(model: nn.Module, config: dict, weights_file: Path, guard_layer: str | None = None,
                  guarded: bool = False, threads: int | None = None, precision: str = "f32") -> CompiledModel | None:
    """``model`` (as loaded from ``weights_file`` with ``config``) in the backend ``$FRACTURE_ENGINE`` names,
    exported once per weights (cached), or None where torch serves it: the engine is off, or its maps need
    gradients (the head is not linear in the CAM layer's map, ``ModelSpec.cam_weights``).
    ``threads`` per call (default: torch's, which the app sets to one per request); as many calls at once as the
    cores hold at that. ``precision``: "f32" (the numbers torch computes), "bf16" (bfloat16 where the CPU has
    bfloat16 units; OpenVINO only) or "auto" (bf16 for the families measured to gain from it and stay close to f32,
    the registry's ``serve_bf16``: ``python -m bench.precision``; f32 for the others)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    name, arch = backend(), config["architecture"]
    if precision == "auto":
        precision = "bf16" if get_spec(arch).serve_bf16 else "f32"
    precision = precision if name == "openvino" else "f32"
    if name is None or get_spec(arch).cam_weights(model) is None:
        return None
    what = json.dumps([_GRAPH_VERSION, torch.__version__, arch, config.get("model_kwargs", {}), guard_layer, guarded])
    digest = hashlib.sha256(Path(weights_file).read_bytes() + what.encode()).hexdigest()[:32]
    path = cache_dir() / f"{arch}-{digest}.onnx"
    threads = max(1, threads or torch.get_num_threads())
    try:
        if not path.is_file():
            export(model, arch, int(config["image_size"]), path, guard_layer, guarded)
        run, names = _COMPILERS[name](path, threads, max(1, usable_cores() // threads), precision)
    except Exception:  # a model the runtime cannot take is still served, by torch: slower, never down
        log.warning("%s could not be compiled for %s; torch serves it", arch, name, exc_info=True)
        return None
    log.debug("%s served by %s in %s from %s", arch, name, precision, path)
    return CompiledModel(run, names, name, precision)


def forward_cam(cam: torch.Tensor, category: int, size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM's (= HiResCAM's) map for one image from its ``w · A`` (h x w) and the class it explains, scaled
    as pytorch-grad-cam scales its maps (per layer to the input's ``size`` (height, width), then once more)."""
    h, w = cam.shape[-2:]
    signed = (cam if category == 1 else -cam).float().numpy()[None] / (h * w)  # the gradient: ±w / (h w)
    per_layer = scale_cam_image(np.maximum(signed, 0), (size[1], size[0]))
    return np.nan_to_num(scale_cam_image(np.maximum(per_layer, 0))[0].astype(np.float32))
