"""Where CPU time goes: wall, user and sys seconds of each hot path, with fracture_demo's CPU tuning on and off.

    python -m bench.cpu_time --data-dir data/bone-fracture [--rows eval,train,audit,app] [--images 512] [--beside]

Each row runs in a fresh process (``FRACTURE_CPU_TUNING=1`` or ``0``, see fracture_demo/runtime.py)
and is timed from outside with ``os.wait4``, children included. sys share = sys / (user + sys):
time the kernel spent on the process (mostly page faults when freed tensors go back to the kernel).
``--beside`` runs an evaluation loop in another process (same setting) during each row: two
processes sharing the cores, as when the tests run beside a training run.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each row runs; {data}, {images} filled in. Python snippets so that every row uses the
# package's own code path and nothing else.
ROWS = {
    "eval": ("evaluation: `train.evaluate`, the default (efficientnet_lite0_fusion), official test ({n_test} radiographs)",
             ["-m", "train.evaluate", "--model", "assets/models/efficientnet_lite0_fusion", "--data-dir", "{data}",
              "--split", "test", "--json"]),
    "train": ("one training epoch: efficientnet_lite0, {images} images, batch 32, bf16 (bench/train_speed.py pipeline)",
              ["bench/train_speed.py", "--data-dir", "{data}", "--images", "{images}", "--epochs", "1", "--only", "pipeline"]),
    "audit": ("audit feature pass: efficientnet_lite0 features of {images} images x 16 views (`train.features.view_features`)",
              ["-c", "import numpy as np; from train.features import view_features; from train.data import ImageCache, scan; "
                     "s = scan('{data}'); s = s[::max(1, len(s) // {images})][:{images}]; "
                     "view_features(ImageCache(160).load(s).images, 'efficientnet_lite0', 'local')"]),
    "app": ("app: predict + Grad-CAM + overlay, default model, 300 calls on real radiographs, as the app serves them "
            "(`FractureApp.predict` from one thread per replica, `app.serving_zoo`)",
            ["-c", "from concurrent.futures import ThreadPoolExecutor; from app import FractureApp, serving_zoo; "
                   "from tests.real_images import real_radiographs; "
                   "imgs = [str(p) for p in real_radiographs()] or ['assets/examples/fractured_hand.jpg']; "
                   "zoo = serving_zoo(); app = FractureApp(zoo); "
                   "list(ThreadPoolExecutor(zoo.replicas).map(lambda i: app.predict(imgs[i % len(imgs)]), range(300)))"]),
}


def _env(tuning: bool, extra: dict | None = None) -> dict:
    env = {**os.environ, **(extra or {}), "FRACTURE_CPU_TUNING": "1" if tuning else "0"}
    for var in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS"):  # let the package decide, or not
        env.pop(var, None)
    return env


def run(args: list[str], tuning: bool, beside: list[str] | None = None,
        extra_env: dict | None = None) -> tuple[float, float, float]:
    """Wall, user and sys seconds of ``python args`` (``extra_env`` added to its environment)."""
    env = _env(tuning, extra_env)
    other = subprocess.Popen(["bash", "-c", f"while true; do {shlex.join(beside)}; done"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) if beside else None
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if other:
        os.killpg(other.pid, 15)
        other.wait()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr.read()[-2000:]}")
    return wall, usage.ru_utime, usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="data/bone-fracture", help="Multi-Region set in Kaggle's layout")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--beside", action="store_true", help="with an evaluation loop in another process")
    args = ap.parse_args()
    beside = [sys.executable, *[a.format(data=args.data_dir) for a in ROWS["eval"][1]]] if args.beside else None
    n_test = sum(1 for _ in Path(args.data_dir, "test").rglob("*.*"))
    print(f"| work{' (an evaluation loop beside it)' if beside else ''} | CPU tuning | wall s | user s | sys s | sys share |")
    print("|---|---|---|---|---|---|")
    for key in args.rows.split(","):
        title, argv = ROWS[key]
        argv = [a.format(data=args.data_dir, images=args.images) for a in argv]
        for tuning in (True, False):
            wall, user, sys_ = run(argv, tuning, beside)
            print(f"| {title.format(images=args.images, n_test=n_test)} | {'on' if tuning else 'off'} | {wall:.1f} | "
                  f"{user:.1f} | {sys_:.1f} | {sys_ / (user + sys_):.0%} |", flush=True)


if __name__ == "__main__":
    main()
