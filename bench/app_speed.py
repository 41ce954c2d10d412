"""App latency on this CPU: cold start, predict+explain with the default model, compare all models.

    python -m bench.app_speed [--repeats 20] [--image assets/examples/fractured_hand.jpg]

Prints medians (ms). Cold start = a fresh process importing the app, loading the default model and
answering one predict. Also what serving choices rest on: one request's work on one torch thread
and on all cores, and the CAM pass's cost per request when k requests share one batch (what a
micro-batcher, or gradio's ``batch=True``, could buy).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COLD = """
import time; t = time.perf_counter()
from app import FractureApp
from fracture_demo.zoo import ModelZoo, discover
app = FractureApp(ModelZoo(discover()))
app.predict(%r)
print(time.perf_counter() - t)
"""


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--image", default=str(ROOT / "assets/examples/fractured_hand.jpg"))
    args = ap.parse_args()
    cold = float(subprocess.run([sys.executable, "-c", COLD % args.image], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip().splitlines()[-1])
    import torch

    from app import FractureApp
    from fracture_demo.explain import DecidedTarget, cam_map
    from fracture_demo.zoo import ModelZoo, discover
    zoo = ModelZoo(discover())
    app = FractureApp(zoo)
    default = zoo.default
    clf = zoo.get(default)
    predict = median_ms(lambda: clf.predict(args.image), args.repeats)
    explain = median_ms(lambda: app.predict(args.image, default, "gradcam"), args.repeats)
    compare = median_ms(lambda: app.compare(args.image, "gradcam"), max(3, args.repeats // 4))
    cores = torch.get_num_threads()
    per_thread = {}
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        per_thread[threads] = median_ms(lambda: app.predict(args.image, default, "gradcam"), args.repeats)
    views = clf.with_flips(clf.preprocess(clf.decode(args.image)))
    batched = {k: median_ms(lambda: cam_map(clf.model, clf.arch, views.repeat(k, 1, 1, 1), "gradcam",
                                            DecidedTarget(lambda _logit: 1)), max(3, args.repeats // k)) / k
               for k in (1, 2, 4, 8)}
    torch.set_num_threads(cores)
    print(f"| measurement | median |\n|---|---|\n| cold start to first answer | {cold * 1000:.0f} ms |")
    print(f"| predict only, default model ({default}) | {predict:.0f} ms |")
    print(f"| predict + Grad-CAM + overlay, default model (app.predict) | {explain:.0f} ms |")
    print(f"| compare: all {len(zoo.names)} bundled models with Grad-CAM (app.compare) | {compare:.0f} ms |")
    for threads, ms in per_thread.items():
        print(f"| predict + Grad-CAM + overlay on {threads} torch thread{'s' * (threads > 1)} | {ms:.0f} ms |")
    print("| Grad-CAM pass (image + 3 flips), per request, when k requests share one batch: "
          + ", ".join(f"k={k} {ms:.0f} ms" for k, ms in batched.items()) + " | |")


if __name__ == "__main__":
    main()
