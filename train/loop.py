"""The training loop: one code path for a laptop CPU, one GPU, or many processes under torchrun.

Resumable (state saved each epoch, atomically), deterministic for a seed (each epoch reseeds
its shuffle, augmentation and dropout), early-stopped on validation loss; the best epoch's
weights are the model folder's ``model.safetensors``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.utils import ModelEmaV3

from fracture_demo import FractureClassifier, get_spec, load
from fracture_demo.registry import count_parameters, resolve_pretrained, weights_origin

from .augment import augment
from .batchnorm import precise_batch_stats
from .card import git_commit
from .data import ImageCache, ImageSet, fingerprint, scan
from .distributed import setup_distributed
from .finalize import finalize
from .guidance import CamHead, box_loss, box_masks
from .head_init import fit_head
from .inference import predict_logits
from .optim import Schedule, create_optimizer
from .sampling import BALANCE, sample_weights
from .shrink import copy_of
from .sources import Source, named_sources, source_names, split_sources
from .state import load_state, save_state


@dataclass
class TrainConfig:
    model: str
    data_dir: str
    output_dir: str
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    image_size: int | None = None
    pretrained: str = "none"
    init_from: str | None = None  # a trained model folder of this zoo (same architecture) to continue from
    split_mode: str = "official"
    split_file: str | None = None
    seed: int = 0
    resume: bool = False
    patience: int = 5
    warmup_epochs: float = 1.0
    augment: str = "strong"
    balance: str = "none"  # train.sampling: none | radiograph | source
    amp: str = "auto"
    teacher: str | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    workers: int | None = None
    time_limit: float | None = None  # minutes; pause (resumable) after the epoch that crosses it
    time_budget: float | None = None  # minutes; the schedule ends in them, the run (calibrate, evaluate) when spent
    bootstrap: int = 1000
    half: bool = False  # store fp16 weights
    push_to_hub: str | None = None
    private: bool = False
    device: str = "auto"
    data: list[str] = field(default_factory=list)  # NAME=DIR[:SPLIT_FILE] sources (train.sources); else data_dir
    min_sensitivity: float | None = None  # threshold: the highest with at least this val sensitivity (else Youden)
    head_init: str = "zero"  # zero (registry) | probe: fitted on frozen features first (train.head_init)
    layer_decay: float | None = None  # each earlier layer learns at this times the next one's rate (train.optim)
    train_from: str | None = None  # a module's name: every parameter before it stays frozen (train.optim)
    ema: float | None = None  # validate and keep an exponential moving average of the weights with this decay
    box_weight: float = 0.0  # > 0: the class-activation map is pulled into the drawn boxes (train.guidance)
    boxes: str | None = None  # COCO file of the drawn boxes, for box_weight

    def sources(self) -> list[Source]:
        return named_sources(self.data, self.data_dir, self.split_mode, self.split_file)


def amp_dtype(amp: str, model: str, device: torch.device) -> torch.dtype | None:
    """The autocast precision: "bf16", "none", or "auto" = bf16 on GPUs and, on CPUs, for the families where
    it measured faster (bench/train_speed.py; the registry's ``cpu_bf16``)."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" or get_spec(model).cpu_bf16 else None
    return None if amp == "none" else torch.bfloat16


def _init_from(clf: FractureClassifier, folder: str) -> str:
    """Start from the weights of an earlier run (e.g. the grouped-split model, to make its
    official-split twin in minutes); the card names the source and its data fingerprint."""
    src = load(folder)
    if src.arch != clf.arch:
        raise ValueError(f"--init-from {folder}: it is {src.arch} at {src.image_size}px, not {clf.arch} at {clf.image_size}px")
    state = src.model.state_dict()  # a conv net's weights fit any size as they are: train low, fine-tune high (FixRes)
    if src.image_size != clf.image_size and get_spec(clf.arch).size_kwarg:
        # a model built for its size (ViT's position table, Swin's window tables): timm's own filter resamples them
        state = sys.modules[type(clf.model).__module__].checkpoint_filter_fn(state, clf.model)
    clf.model.load_state_dict(state)
    data = src.config.get("data", {})
    return (f"{Path(folder).name} (this zoo's {src.arch}, trained on the {data.get('split_mode')} split, "
            f"data {data.get('fingerprint')}, commit {src.config.get('code_commit') or 'not recorded'})")


def _ranks_max(x: float, world: int, dev: torch.device) -> float:
    """The largest of every rank's ``x``: ranks on their own clocks would step at different rates and leave a loop
    at different steps, which hangs DDP."""
    if world == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


def check_config(cfg: TrainConfig) -> None:
    """Refuse a bad option before minutes of decoding, not after."""
    if cfg.balance not in BALANCE:
        raise ValueError(f"balance must be one of {', '.join(BALANCE)}, not {cfg.balance!r}")
    if cfg.ema is not None and not 0 <= cfg.ema < 1:
        raise ValueError(f"--ema must be in [0, 1), not {cfg.ema}")
    if cfg.box_weight < 0 or (cfg.box_weight > 0 and not cfg.boxes):
        raise ValueError("--box-weight must be >= 0 and needs --boxes (a COCO file of drawn fracture boxes)")


def describe(clf: FractureClassifier, cfg: TrainConfig, sources: list[Source], splits: dict) -> None:
    """What the model folder's config records of this run: settings, start, data and its counts, code."""
    start, pretrained_label = resolve_pretrained(cfg.model, cfg.pretrained)
    pretrained_from = weights_origin(start)
    if cfg.init_from:
        pretrained_label, pretrained_from = _init_from(clf, cfg.init_from), None
    clf.config.update(
        training={k: v for k, v in asdict(cfg).items() if k not in ("push_to_hub", "private", "device", "resume")},
        pretrained_source=pretrained_label,
        pretrained_from=pretrained_from,
        data={"fingerprint": fingerprint([x for src in sources for x in scan(src.root, src.name)]),
              "split_mode": "sources" if cfg.data else cfg.split_mode,  # each source's own split file
              "split_file": sources[0].split_file.name if sources[0].split_file and not cfg.data else None,
              "sources": {src.name: {"split_file": src.split_file.name if src.split_file else None,
                                     "copy": copy_of(src.root),
                                     "counts": {s: sum(x.source == src.name for x in v) for s, v in splits.items()}}
                          for src in sources} if cfg.data else None,
              "counts": {s: len(v) for s, v in splits.items()}},
        parameters=count_parameters(clf.model),
        code_commit=git_commit(),
    )


def decode(cache: ImageCache, splits: dict, rank: int) -> tuple[ImageSet, ImageSet]:
    """The training and validation images, decoded once; what was skipped or used with a caveat is named."""
    t0 = time.time()
    train_set, val_set = cache.load(splits["train"], progress=rank == 0), cache.load(splits["val"])
    _log(rank, f"decoded {len(train_set)} train + {len(val_set)} val images at {cache.size}px "
               f"({cache.distinct_files} distinct files) in {time.time() - t0:.1f}s")
    for name, why in {**train_set.skipped, **val_set.skipped}.items():
        _log(rank, f"skipped {name}: {why}")
    for name, notes in {**train_set.notes, **val_set.notes}.items():
        _log(rank, f"used with a caveat {name}: {'; '.join(notes)}")
    return train_set, val_set


class Loop:
    """One run's moving parts: the model (and its DDP wrapper, moving average, teacher), the optimizer and its
    schedule, the decoded training images and how an epoch draws them. :meth:`epoch` trains, :meth:`validate` scores."""

    def __init__(self, cfg: TrainConfig, clf: FractureClassifier, opt: torch.optim.Optimizer, train_set: ImageSet,
                 rank: int, world: int, dev: torch.device) -> None:
        self.cfg, self.clf, self.opt, self.rank, self.world, self.dev = cfg, clf, opt, rank, world, dev
        self.channels_last = get_spec(cfg.model).kind == "cnn"  # faster for CNNs on GPUs and on these CPUs alike
        self.model = clf.model.to(dev)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = ModelEmaV3(self.model, decay=cfg.ema) if cfg.ema is not None else None  # starts where training does
        self.guided = cfg.box_weight > 0
        net = CamHead(self.model) if self.guided else self.model  # one forward: the logit and the map the loss reads
        self.ddp = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
        self.teacher = load(cfg.teacher) if cfg.teacher else None
        if self.teacher:
            self.teacher.model.to(dev).eval()
        self.amp = amp_dtype(cfg.amp, cfg.model, dev)
        self.images, self.labels = torch.from_numpy(train_set.images), torch.from_numpy(train_set.labels)
        drawn = sample_weights(train_set.samples, cfg.balance)
        self.weights = torch.from_numpy(drawn) if drawn is not None else None
        pos = float(self.labels.mean()) if drawn is None else float((self.weights * self.labels.double()).sum())
        # labels weigh the same in the loss, unless they are drawn half and half already
        self.pos_weight = None if cfg.balance == "radiograph" else torch.tensor([(1 - pos) / max(pos, 1e-6)], device=dev)
        if dev.type == "cuda":
            self.images, self.labels = self.images.to(dev), self.labels.to(dev)
        if self.guided:
            self.box_row, self.boxes = (t.to(self.images.device) for t in box_masks(train_set.samples, cfg.boxes, clf.image_size))
            _log(rank, f"box guidance (weight {cfg.box_weight}): {len(self.boxes)} fractured training radiographs with drawn boxes")
        self.per_rank = len(self.images) // world
        self.steps = max(1, self.per_rank // cfg.batch_size)
        self.schedule = Schedule(opt, self.steps * cfg.epochs, min(0.5, cfg.warmup_epochs / max(cfg.epochs, 1)))
        self.t_train = time.time()

    def elapsed(self) -> float:
        """Minutes of training so far, the slowest rank's (so that every rank stops after the same step)."""
        return _ranks_max((time.time() - self.t_train) / 60, self.world, self.dev)

    def order(self, gen: torch.Generator) -> torch.Tensor:
        """This rank's training rows for one epoch: a permutation, or draws by the sampling weights."""
        if self.weights is None:
            return torch.randperm(len(self.images), generator=gen)[: self.per_rank * self.world][self.rank::self.world]
        return torch.multinomial(self.weights, self.per_rank * self.world, replacement=True, generator=gen)[self.rank::self.world]

    def epoch(self, epoch: int) -> dict:
        """One epoch (cut short where a time budget's schedule has run out); its loss, rate and speed."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout etc.: same stream after a resume
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = self.order(gen)
        self.ddp.train()
        t_epoch, seen, loss_sum, rate = time.time(), 0, 0.0, 0.0
        bar = range(self.steps)
        if self.rank == 0:
            from tqdm.auto import tqdm
            bar = tqdm(bar, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", file=sys.stderr, leave=False, disable=None)
        for i in bar:
            progress = (epoch * self.steps + i) / (self.steps * cfg.epochs)
            if cfg.time_budget:  # the schedule ends with whichever runs out first, epochs or minutes
                progress = max(progress, self.elapsed() / cfg.time_budget)
                if i and progress >= 1:  # the rate is at zero: validate now, not at the epoch's end
                    break
            rate = self.schedule.at(progress)
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size].to(self.images.device)
            loss = self.step(idx, gen)
            if self.ema is not None:
                self.ema.update(self.model, step=epoch * self.steps + i + 1)
            seen += len(idx)
            loss_sum += loss * len(idx)
            if self.rank == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{seen * self.world / (time.time() - t_epoch):.0f}")
        seconds = time.time() - t_epoch
        return {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "lr": rate, "images": seen * self.world,
                "images_per_s": seen * self.world / seconds, "seconds": seconds}

    def step(self, idx: torch.Tensor, gen: torch.Generator) -> float:
        """One optimizer step on the rows ``idx`` (augmented with ``gen``); returns the batch's loss."""
        cfg, dev = self.cfg, self.dev
        masks = has_box = None
        if self.guided:
            rows = self.box_row[idx]
            has_box = rows >= 0
            masks = torch.zeros_like(self.images[idx])
            masks[has_box] = self.boxes[rows[has_box]]
            xb, masks = augment(self.images[idx], gen, cfg.augment, masks=masks)
            masks, has_box = masks.to(dev), has_box.to(dev)
        else:
            xb = augment(self.images[idx], gen, cfg.augment)
        xb, yb = xb.to(dev, non_blocking=True), self.labels[idx].to(dev)
        x = self.clf.normalize(xb)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            logits, cam = self.ddp(x) if self.guided else (self.ddp(x), None)
            logits = logits.float().flatten()
            loss = F.binary_cross_entropy_with_logits(logits, yb, pos_weight=self.pos_weight)
            if self.guided and has_box.any():
                loss = loss + cfg.box_weight * box_loss(cam[has_box], masks[has_box])
            if self.teacher is not None:
                loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * self.distillation(xb, logits)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.ddp.parameters(), 5.0)
        self.opt.step()
        return loss.item()

    def distillation(self, xb: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """DeiT-style soft targets: the teacher's sigmoid at temperature tau, on the same augmented images."""
        tau, size = self.cfg.distill_temperature, self.teacher.image_size
        with torch.no_grad():
            xt = self.teacher.normalize(xb)
            if xt.shape[-1] != size:
                xt = F.interpolate(xt, size=size, mode="bilinear", align_corners=False)
            soft = torch.sigmoid(self.teacher.model(xt).float().flatten() / tau)
        return F.binary_cross_entropy_with_logits(logits / tau, soft) * tau * tau

    def validate(self, val_set: ImageSet) -> dict:
        """Validation loss and accuracy of what would be saved (the moving average, where one is kept), its
        BatchNorm statistics recounted first."""
        self.clf.model = self.ema.module if self.ema is not None else self.model
        precise_batch_stats(self.clf.model, self.images, self.clf.config["mean"], self.clf.config["std"], self.amp,
                            self.channels_last)
        logits = torch.from_numpy(predict_logits(self.clf, val_set.images, device=self.dev))
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(val_set.labels)).item()
        accuracy = float(((torch.sigmoid(logits).numpy() >= 0.5) == val_set.labels).mean())
        return {"val_loss": loss, "val_accuracy": accuracy}

    def checkpoint(self, out: Path, improved: bool, meta: dict) -> None:
        """The best weights so far as the model folder's, and the state a ``--resume`` continues from."""
        if self.rank == 0:
            if improved:
                self.clf.save_pretrained(out, half=self.cfg.half)
            save_state(out, self.model, self.opt, meta, self.ema.module if self.ema is not None else None)
        self.clf.model = self.model
        if self.world > 1:
            dist.barrier()


def train(cfg: TrainConfig) -> dict:
    """Train ``cfg.model``; returns the final metrics (or the state of an interrupted run)."""
    check_config(cfg)
    rank, world, dev = setup_distributed(cfg.device)
    out, sources = Path(cfg.output_dir), cfg.sources()
    splits, crossed = split_sources(sources)
    if not splits["train"] or not splits["val"]:
        raise ValueError(f"the split of {source_names(sources) or cfg.data_dir} needs train and val images")
    for s in crossed:
        _log(rank, f"not scored: {s.source}:{s.rel} (the same bytes are on a training side)")
    torch.manual_seed(cfg.seed)
    clf = FractureClassifier.new(cfg.model, cfg.pretrained, cfg.image_size)
    describe(clf, cfg, sources, splits)
    opt = create_optimizer(clf.unwrapped, cfg.lr, cfg.weight_decay, cfg.layer_decay, cfg.train_from)
    cache = ImageCache(clf.image_size, cfg.workers)
    t0 = time.time()
    train_set, val_set = decode(cache, splits, rank)
    if cfg.head_init == "probe" and not (cfg.resume and (out / ".train_state").exists()):
        clf.config["head_init"] = fit_head(clf, train_set, val_set, cfg.balance)
        _log(rank, f"head fitted on frozen features: {clf.config['head_init']}")
    loop = Loop(cfg, clf, opt, train_set, rank, world, dev)
    meta = load_state(out, loop.model, opt, loop.ema.module if loop.ema else None) if cfg.resume else None
    start, history, best_loss, bad = 0, [], float("inf"), 0
    if meta:
        start, history, best_loss, bad = meta["epoch"] + 1, meta["history"], meta["best_loss"], meta["bad_epochs"]
        _log(rank, f"resumed from {out / '.train_state'} after epoch {meta['epoch'] + 1}")
    stop_reason, paused = "", False
    for epoch in range(start, cfg.epochs):
        if bad >= cfg.patience:
            stop_reason = f"no val-loss gain in {cfg.patience} epochs"
            break
        rec = loop.epoch(epoch)
        rec |= loop.validate(val_set)
        history.append(rec)
        improved = rec["val_loss"] < best_loss - 1e-4
        best_loss, bad = (rec["val_loss"], 0) if improved else (best_loss, bad + 1)
        _log(rank, f"epoch {epoch + 1}: train loss {rec['train_loss']:.4f}  val loss {rec['val_loss']:.4f}  "
                   f"val acc {rec['val_accuracy']:.4f}  {rec['images_per_s']:.0f} img/s{'  *best' if improved else ''}")
        loop.checkpoint(out, improved, {"epoch": epoch, "history": history, "best_loss": best_loss, "bad_epochs": bad})
        if cfg.time_limit is not None and _ranks_max((time.time() - t0) / 60, world, dev) > cfg.time_limit \
                and epoch + 1 < cfg.epochs:
            paused = True
            break
        if cfg.time_budget is not None and loop.elapsed() > cfg.time_budget:
            stop_reason = f"time budget of {cfg.time_budget} min"
            _log(rank, f"time budget of {cfg.time_budget} min spent after epoch {epoch + 1}; finishing")
            break
    result: dict = {"history": history}
    if rank == 0 and paused:
        _log(rank, f"time limit reached after epoch {len(history)}; continue with --resume")
        result["status"] = "interrupted"
    elif rank == 0:
        result = finalize(cfg, out, cache, splits, sources, history, stop_reason, dev)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result
