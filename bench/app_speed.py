"""App latency on this CPU, per inference engine: cold start, predict + map with the default model, compare all.

    python -m bench.app_speed [--repeats 20] [--image assets/examples/fractured_hand.jpg]
                              [--engines torch,onnxruntime,openvino]

Predict + map is measured for the default and for the largest bundled model (most parameters): what one request
costs at worst.

Prints a table of medians (ms), one column per engine and its arithmetic (``FRACTURE_ENGINE``, fracture_demo/engine.py;
``FRACTURE_PRECISION``, app.serving_zoo), each
measured in its own fresh process, one after the other in one run. Cold start = a fresh process importing the
app, loading the default model and answering one predict (with an empty graph cache, as on a fresh machine, and
again with the graph exported).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = "torch,onnxruntime,openvino:f32,openvino:auto"  # ENGINE[:PRECISION]; openvino:auto is what the app serves


def engine_env(spec: str) -> dict[str, str]:
    """A column's ``ENGINE[:PRECISION]`` -> the environment that serves it (``FRACTURE_ENGINE``, ``FRACTURE_PRECISION``)."""
    engine, _, precision = spec.partition(":")
    return {"FRACTURE_ENGINE": engine, **({"FRACTURE_PRECISION": precision} if precision else {})}

COLD = """
import time; t = time.perf_counter()
from app import FractureApp, serving_zoo
app = FractureApp(serving_zoo())
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


def measure(image: str, repeats: int) -> dict[str, float]:
    """This process's engine: the medians, in ms, keyed by what they measure."""
    import torch

    from app import FractureApp, serving_zoo
    def cold_start(env: dict) -> float:
        done = subprocess.run([sys.executable, "-c", COLD % image], cwd=ROOT, capture_output=True, text=True,
                              check=True, env={**os.environ, **env})
        return float(done.stdout.strip().splitlines()[-1]) * 1000
    with tempfile.TemporaryDirectory() as empty:
        first = cold_start({"FRACTURE_CACHE": empty})  # a fresh machine: the default's graph is exported first
    again = cold_start({})
    zoo = serving_zoo()  # as the app serves: one torch thread per request, one replica per core
    app = FractureApp(zoo)
    clf = zoo.get(zoo.default)
    out = {"cold start to first answer, no graph exported yet": first, "cold start to first answer": again,
           f"predict only, default model ({zoo.default})": median_ms(lambda: clf.predict(image), repeats),
           f"compare: all {len(zoo.names)} bundled models with Grad-CAM (app.compare)":
               median_ms(lambda: app.compare(image, "gradcam"), max(3, repeats // 4))}
    torch.set_num_threads(1)  # the runtimes use the threads set when they compiled: one per call, as served
    out["predict + Grad-CAM + overlay, default model, 1 thread (app.predict)"] = median_ms(
        lambda: app.predict(image, zoo.default, "gradcam"), repeats)
    largest = max(zoo.names, key=lambda n: (zoo.entries[n].config or {}).get("parameters", 0))
    params = zoo.entries[largest].config["parameters"] / 1e6
    out[f"... the same, largest model ({largest}, {params:.1f}M parameters)"] = median_ms(
        lambda: app.predict(image, largest, "gradcam"), max(3, repeats // 4))
    return out


def table(columns: dict[str, dict[str, float]]) -> str:
    """Rows: what was measured; one column per engine."""
    engines = list(columns)
    lines = ["| measurement (ms: medians) | " + " | ".join(engines) + " |", "|---" * (len(engines) + 1) + "|"]
    for key in columns[engines[0]]:
        lines.append(f"| {key} | " + " | ".join(_number(columns[e][key]) for e in engines) + " |")
    return "\n".join(lines)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.1f}" if abs(value) < 20 else f"{value:.0f}"


def by_engine(engines: list[str], repeats: int, image: str) -> dict[str, dict[str, float]]:
    """Each engine measured in a fresh process (its own threads, caches and allocator), one after another."""
    out = {}
    for engine in engines:
        done = subprocess.run([sys.executable, "-m", "bench.app_speed", "--json", "--repeats", str(repeats),
                               "--image", image], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, **engine_env(engine)})
        if done.returncode:
            raise SystemExit(f"{engine}: {done.stderr[-2000:]}")
        out[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--image", default=str(ROOT / "assets/examples/fractured_hand.jpg"))
    ap.add_argument("--engines", default=ENGINES, help="comma-separated; each in its own process")
    ap.add_argument("--json", action="store_true", help="measure this process's engine only, print JSON")
    args = ap.parse_args()
    if args.json:
        print(json.dumps(measure(args.image, args.repeats)))
    else:
        print(table(by_engine(args.engines.split(","), args.repeats, args.image)))


if __name__ == "__main__":
    main()
