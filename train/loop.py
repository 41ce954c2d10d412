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

from fracture_demo import FractureClassifier, get_spec, load
from fracture_demo.registry import count_parameters, resolve_pretrained, weights_origin

from .augment import augment
from timm.utils import ModelEmaV3

from .batchnorm import precise_batch_stats
from .card import git_commit
from .data import ImageCache, default_split_file, fingerprint, scan
from .distributed import setup_distributed
from .evaluate import predict_logits
from .finalize import finalize
from .guidance import CamHead, box_loss, box_masks
from .head_init import fit_head
from .optim import apply_lr, param_groups
from .sampling import BALANCE, sample_weights
from .schedule import lr_at
from .shrink import copy_of
from .sources import Source, from_legacy, source_names, split_sources
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
    ema: float | None = None  # validate and keep an exponential moving average of the weights with this decay
    box_weight: float = 0.0  # > 0: the class-activation map is pulled into the drawn boxes (train.guidance)
    boxes: str | None = None  # COCO file of the drawn boxes, for box_weight

    def sources(self) -> list[Source]:
        if self.data:
            return [Source.parse(d) for d in self.data]
        split_file = self.split_file or (str(default_split_file(self.data_dir)) if self.split_mode == "grouped" else None)
        return [from_legacy(self.data_dir, self.split_mode, split_file)]


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


def train(cfg: TrainConfig) -> dict:
    """Train ``cfg.model``; returns the final metrics (or the state of an interrupted run)."""
    if cfg.balance not in BALANCE:  # before minutes of decoding, not after
        raise ValueError(f"balance must be one of {', '.join(BALANCE)}, not {cfg.balance!r}")
    if cfg.ema is not None and not 0 <= cfg.ema < 1:
        raise ValueError(f"--ema must be in [0, 1), not {cfg.ema}")
    if cfg.box_weight < 0 or (cfg.box_weight > 0 and not cfg.boxes):
        raise ValueError("--box-weight must be >= 0 and needs --boxes (a COCO file of drawn fracture boxes)")
    rank, world, dev = setup_distributed(cfg.device)
    out = Path(cfg.output_dir)
    sources = cfg.sources()
    splits, crossed = split_sources(sources)
    if not splits["train"] or not splits["val"]:
        raise ValueError(f"the split of {source_names(sources) or cfg.data_dir} needs train and val images")
    for s in crossed:
        _log(rank, f"not scored: {s.source}:{s.rel} (the same bytes are on a training side)")

    torch.manual_seed(cfg.seed)
    start, pretrained_label = resolve_pretrained(cfg.model, cfg.pretrained)
    pretrained_from = weights_origin(start)
    clf = FractureClassifier.new(cfg.model, cfg.pretrained, cfg.image_size)
    if cfg.init_from:
        pretrained_label, pretrained_from = _init_from(clf, cfg.init_from), None
    groups = param_groups(clf.unwrapped, cfg.weight_decay, cfg.layer_decay)
    size = clf.image_size
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
    cache = ImageCache(size, cfg.workers)
    t0 = time.time()
    train_set = cache.load(splits["train"], progress=rank == 0)
    val_set = cache.load(splits["val"])
    _log(rank, f"decoded {len(train_set)} train + {len(val_set)} val images at {size}px "
               f"({len(cache._by_hash)} distinct files) in {time.time() - t0:.1f}s")
    for name, why in {**train_set.skipped, **val_set.skipped}.items():
        _log(rank, f"skipped {name}: {why}")
    for name, notes in {**train_set.notes, **val_set.notes}.items():
        _log(rank, f"used with a caveat {name}: {'; '.join(notes)}")
    if cfg.head_init == "probe" and not (cfg.resume and (out / ".train_state").exists()):
        clf.config["head_init"] = fit_head(clf, train_set, val_set)
        _log(rank, f"head fitted on frozen features: {clf.config['head_init']}")

    model = clf.model.to(dev)
    channels_last = get_spec(cfg.model).kind == "cnn"  # faster for CNNs on GPUs and on these CPUs alike
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    ema = ModelEmaV3(model, decay=cfg.ema) if cfg.ema is not None else None  # no warm-up: it starts where training does
    meta = load_state(out, model, opt, ema.module if ema else None) if cfg.resume else None
    start_epoch, history, best_loss, bad = 0, [], float("inf"), 0
    if meta:
        start_epoch, history, best_loss, bad = meta["epoch"] + 1, meta["history"], meta["best_loss"], meta["bad_epochs"]
        _log(rank, f"resumed from {out / '.train_state'} after epoch {meta['epoch'] + 1}")
    guided = cfg.box_weight > 0
    net = CamHead(model) if guided else model  # one forward gives the logit and the map the loss looks at
    ddp = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net

    teacher_clf = load(cfg.teacher) if cfg.teacher else None
    teacher = teacher_clf.model.to(dev).eval() if teacher_clf else None
    teacher_cfg = teacher_clf.config if teacher_clf else None
    amp = amp_dtype(cfg.amp, cfg.model, dev)
    y_all = torch.from_numpy(train_set.labels)
    drawn = sample_weights(train_set.samples, cfg.balance)
    weights = torch.from_numpy(drawn) if drawn is not None else None
    pos = float(y_all.sum()) / len(y_all) if weights is None else float((weights * y_all.double()).sum())
    pos_weight = torch.tensor([(1 - pos) / max(pos, 1e-6)], device=dev)  # labels weigh the same in the loss
    if cfg.balance == "radiograph":  # labels are drawn half and half already
        pos_weight = None
    images = torch.from_numpy(train_set.images)
    if dev.type == "cuda":
        images, y_all = images.to(dev), y_all.to(dev)
    if guided:
        box_row, boxes = (t.to(images.device) for t in box_masks(train_set.samples, cfg.boxes, size))
        _log(rank, f"box guidance (weight {cfg.box_weight}): {len(boxes)} fractured training radiographs with drawn boxes")
    per_rank = len(images) // world
    steps_per_epoch = max(1, per_rank // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = min(0.5, cfg.warmup_epochs / max(cfg.epochs, 1))
    stop_reason, stopped_for_time = "", False
    t_train = time.time()

    for epoch in range(start_epoch, cfg.epochs):
        if bad >= cfg.patience:
            stop_reason = f"no val-loss gain in {cfg.patience} epochs"
            break
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout etc.: same stream after a resume
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        if weights is None:
            order = torch.randperm(len(images), generator=gen)[: per_rank * world][rank::world]
        else:
            order = torch.multinomial(weights, per_rank * world, replacement=True, generator=gen)[rank::world]
        ddp.train()
        t_epoch, seen, loss_sum = time.time(), 0, 0.0
        bar = range(steps_per_epoch)
        if rank == 0:
            from tqdm.auto import tqdm
            bar = tqdm(bar, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", file=sys.stderr, leave=False, disable=None)
        for i in bar:
            progress = (epoch * steps_per_epoch + i) / total_steps
            if cfg.time_budget:  # the schedule ends with whichever runs out first, epochs or minutes
                progress = max(progress, _ranks_max((time.time() - t_train) / (cfg.time_budget * 60), world, dev))
                if i and progress >= 1:  # the rate is at zero: validate now, not at the epoch's end
                    break
            rate = lr_at(progress, warmup, cfg.lr)
            apply_lr(opt, rate)
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size].to(images.device)
            if guided:
                rows = box_row[idx]
                has_box = rows >= 0
                mb = torch.zeros_like(images[idx])
                mb[has_box] = boxes[rows[has_box]]
                xb, mb = augment(images[idx], gen, cfg.augment, masks=mb)
                xb, mb, has_box = xb.to(dev, non_blocking=True), mb.to(dev), has_box.to(dev)
            else:
                xb = augment(images[idx], gen, cfg.augment).to(dev, non_blocking=True)
            yb = y_all[idx].to(dev)
            x = clf.normalize(xb)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits, cam = ddp(x) if guided else (ddp(x), None)
                logits = logits.float().flatten()
                loss = F.binary_cross_entropy_with_logits(logits, yb, pos_weight=pos_weight)
                if guided and has_box.any():
                    loss = loss + cfg.box_weight * box_loss(cam[has_box], mb[has_box])
                if teacher is not None:
                    with torch.no_grad():
                        xt = teacher_clf.normalize(xb)
                        if xt.shape[-1] != teacher_cfg["image_size"]:
                            xt = F.interpolate(xt, size=teacher_cfg["image_size"], mode="bilinear", align_corners=False)
                        soft = torch.sigmoid(teacher(xt).float().flatten() / cfg.distill_temperature)
                    tau = cfg.distill_temperature
                    kd = F.binary_cross_entropy_with_logits(logits / tau, soft) * tau * tau
                    loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ddp.parameters(), 5.0)
            opt.step()
            if ema is not None:
                ema.update(model, step=epoch * steps_per_epoch + i + 1)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            if rank == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{seen * world / (time.time() - t_epoch):.0f}")
        train_time = time.time() - t_epoch
        clf.model = ema.module if ema is not None else model  # what is validated is what is saved
        precise_batch_stats(clf.model, images, clf.config["mean"], clf.config["std"], amp, channels_last)
        val_logits = predict_logits(clf, val_set.images, device=dev)
        vy = torch.from_numpy(val_set.labels)
        val_loss = F.binary_cross_entropy_with_logits(torch.from_numpy(val_logits), vy).item()
        val_p = torch.sigmoid(torch.from_numpy(val_logits)).numpy()
        val_acc = float(((val_p >= 0.5) == val_set.labels).mean())
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "val_loss": val_loss, "val_accuracy": val_acc,
               "lr": rate, "images": seen * world, "images_per_s": seen * world / train_time, "seconds": train_time}
        history.append(rec)
        improved = val_loss < best_loss - 1e-4
        best_loss, bad = (val_loss, 0) if improved else (best_loss, bad + 1)
        _log(rank, f"epoch {epoch + 1}: train loss {rec['train_loss']:.4f}  val loss {val_loss:.4f}  "
                   f"val acc {val_acc:.4f}  {rec['images_per_s']:.0f} img/s{'  *best' if improved else ''}")
        if rank == 0:
            if improved:
                clf.save_pretrained(out, half=cfg.half)
            save_state(out, model, opt, {"epoch": epoch, "history": history, "best_loss": best_loss, "bad_epochs": bad},
                       ema.module if ema is not None else None)
        clf.model = model
        if world > 1:
            dist.barrier()
        # the slowest rank's minutes, so that every rank stops after the same epoch
        if cfg.time_limit is not None and _ranks_max((time.time() - t0) / 60, world, dev) > cfg.time_limit \
                and epoch + 1 < cfg.epochs:
            stopped_for_time = True
            break
        if cfg.time_budget is not None and _ranks_max((time.time() - t_train) / 60, world, dev) > cfg.time_budget:
            stop_reason = f"time budget of {cfg.time_budget} min"
            _log(rank, f"time budget of {cfg.time_budget} min spent after epoch {epoch + 1}; finishing")
            break

    result: dict = {"history": history}
    if rank == 0 and stopped_for_time:
        _log(rank, f"time limit reached after epoch {len(history)}; continue with --resume")
        result["status"] = "interrupted"
    elif rank == 0:
        result = finalize(cfg, out, cache, splits, sources, history, stop_reason, dev)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result
