"""Training throughput: this pipeline vs a naive one, same model, same images, same batch size.

    python -m bench.train_speed --data-dir data/bone-fracture [--model mobilenetv3] [--images 512] [--epochs 3]

naive:    torchvision ImageFolder-style Dataset: PIL decode + resize + flips every image, every epoch,
          DataLoader with 2 workers, fp32.
pipeline: what ``python -m train`` does: decode-once cache (train.data.ImageCache), batch augmentation
          on tensors, channels-last memory format for CNNs, bf16 autocast where `python -m train` uses it.
Both include their decoding time; each runs in its own process (median of ``--repeats``), the naive one also once with
fracture_demo's CPU tuning (fracture_demo/runtime.py) so that its share of the speed-up shows.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from fracture_demo import FractureClassifier
from fracture_demo.imaging import normalize
from train.augment import augment
from train.data import ImageCache, scan
from train.loop import amp_dtype


class NaiveDataset(torch.utils.data.Dataset):
    def __init__(self, samples, size, mean, std):
        from torchvision import transforms as T
        self.samples = samples
        self.tf = T.Compose([T.Resize((size, size)), T.RandomHorizontalFlip(), T.RandomVerticalFlip(),
                             T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image, ImageFile
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        s = self.samples[i]
        return self.tf(Image.open(s.path).convert("RGB")), torch.tensor(float(s.label))


def step(model, opt, x, y, amp):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = F.binary_cross_entropy_with_logits(model(x).float().flatten(), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def naive(samples, clf, epochs, bs):
    model, cfg = clf.model.train(), clf.config
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    dl = torch.utils.data.DataLoader(NaiveDataset(samples, clf.image_size, cfg["mean"], cfg["std"]),
                                     batch_size=bs, shuffle=True, num_workers=2)
    t, n = time.perf_counter(), 0
    for _ in range(epochs):
        for x, y in dl:
            step(model, opt, x, y, False)
            n += len(x)
    return n / (time.perf_counter() - t)


def pipeline(samples, clf, epochs, bs, amp_mode="auto"):
    amp = amp_dtype(amp_mode, clf.arch, torch.device("cpu")) is not None  # "auto": what python -m train does
    model, cfg = clf.model.train().to(memory_format=torch.channels_last), clf.config
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    t, n = time.perf_counter(), 0
    data = ImageCache(clf.image_size).load(samples)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(order) - bs + 1, bs):
            idx = order[i:i + bs]
            x = normalize(augment(images[idx], gen, "flip"), cfg["mean"], cfg["std"]).contiguous(
                memory_format=torch.channels_last)
            step(model, opt, x, labels[idx], amp)
            n += len(idx)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--only", choices=["naive", "pipeline"], default=None, help="run one side (bench/cpu_time.py)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side; the median is reported")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"], help="the pipeline's precision (as python -m train)")
    args = ap.parse_args()
    samples = [s for s in scan(args.data_dir) if s.split == "train"]
    samples = samples[:: max(1, len(samples) // args.images)][: args.images]
    if args.only:
        torch.manual_seed(0)
        clf = FractureClassifier.new(args.model)
        speed = (naive(samples, clf, args.epochs, args.batch_size) if args.only == "naive"
                 else pipeline(samples, clf, args.epochs, args.batch_size, args.amp))
        print(f"{args.only} {speed:.2f} images/s")
        return
    speeds = {}
    for side, tuning in (("naive", "0"), ("naive", "1"), ("pipeline", "1")):
        # each side in a fresh process: a plain torchvision script runs without fracture_demo's CPU tuning
        runs = [float(subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", side], check=True, text=True,
                                     capture_output=True, env={**os.environ, "FRACTURE_CPU_TUNING": tuning}).stdout.split()[-2])
                for _ in range(args.repeats)]
        speeds[side, tuning] = statistics.median(runs)
    a, a_tuned, b = speeds["naive", "0"], speeds["naive", "1"], speeds["pipeline", "1"]
    print(f"model {args.model}, {len(samples)} images x {args.epochs} epochs, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} runs per side")
    print(f"naive          {a:8.1f} images/s  (decode+resize every epoch, fp32, default allocator)")
    print(f"naive + tuning {a_tuned:8.1f} images/s  (the same with fracture_demo's CPU tuning)")
    amp = "bf16" if amp_dtype(args.amp, args.model, torch.device("cpu")) else "fp32"
    print(f"pipeline       {b:8.1f} images/s  (decode once, batch augment, {amp} as python -m train, CPU tuning)")
    print(f"speed-up {b / a:.2f}x over naive, {b / a_tuned:.2f}x over naive + tuning")


if __name__ == "__main__":
    main()
