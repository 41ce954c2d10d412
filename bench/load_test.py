"""Concurrent load on a running app: N gradio_client requests at once, p50/p95 latency and errors.

    python bench/load_test.py [--requests 50] [--port 7871]

Starts ``python app.py`` on 127.0.0.1 (loopback only), waits until it answers, fires the requests
from N threads (one Client each), prints the numbers and stops the app.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--port", type=int, default=7871)
    ap.add_argument("--image", default=str(ROOT / "assets/examples/fractured_hand.jpg"))
    args = ap.parse_args()
    from gradio_client import Client, handle_file
    url = f"http://127.0.0.1:{args.port}/"
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(args.port), "--host", "127.0.0.1"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while True:
            try:
                Client(url, verbose=False)
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("the app did not start")
                time.sleep(1)

        def one(_):
            t = time.perf_counter()
            try:
                Client(url, verbose=False).predict(handle_file(args.image), api_name="/predict")
                return time.perf_counter() - t, None
            except Exception as exc:
                return time.perf_counter() - t, repr(exc)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.requests) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t0
        lat = sorted(r[0] for r in results)
        errors = [r[1] for r in results if r[1]]
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        print(f"| {args.requests} concurrent /predict requests | p50 {statistics.median(lat) * 1000:.0f} ms | "
              f"p95 {p95 * 1000:.0f} ms | errors {len(errors)} | wall {wall:.1f} s |")
        for e in errors[:5]:
            print("error:", e)
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
