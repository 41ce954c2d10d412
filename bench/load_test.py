"""Concurrent load on a running app: N clients' requests at once, p50/p95 latency, throughput, errors.

    python -m bench.load_test [--requests 50] [--image PATH ...] [--port 7871] [--app-args="--replicas 1"]
                              [--client gradio|http] [--engines torch,openvino]

Starts ``python app.py`` on 127.0.0.1 (loopback only), waits until it answers, connects one client
per request (as a stranger's open browser tab would be), then fires all requests at once and
times them. The clients share this machine's cores with the app: ``gradio`` clients (gradio_client, as a Python
user calls the app) spend about as much CPU per request as the app does; ``http`` clients make the three requests
a browser makes on one kept-alive connection each (:class:`HttpClient`), so more of the CPU is the app's. Images: ``--image`` (repeatable), else a mix of real radiographs from both data sets
in ``../shared`` (RGB and greyscale JPEGs, a truncated file), else the bundled example.
Each answer's P(fractured) is checked against the same image asked alone, one request at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.app_speed import engine_env
from tests.real_images import real_radiographs

ROOT = Path(__file__).resolve().parents[1]


def probability(result) -> float:
    return next(c["confidence"] for c in result[0]["confidences"] if c["label"] == "fractured")


class HttpClient:
    """A browser tab's requests through gradio's REST API, on one kept-alive connection: upload the file, join the
    queue, read the result stream. (gradio_client opens a new connection, with a new TLS context, per call.)"""

    def __init__(self, url: str) -> None:
        import httpx
        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=600)
        params = self.http.get("/info").json()["named_endpoints"]["/predict"]["parameters"]
        self.defaults = [p["parameter_default"] for p in params[1:]]  # as gradio_client fills them in

    def predict(self, path: str, api_name: str = "/predict"):
        with open(path, "rb") as fh:
            uploaded = self.http.post("/upload", files=[("files", fh)]).json()[0]
        data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, *self.defaults]
        event = self.http.post(f"/call{api_name}", json={"data": data}).json()["event_id"]
        with self.http.stream("GET", f"/call{api_name}/{event}") as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    if kind == "error":
                        raise RuntimeError(f"the app answered with an error: {line}")
                    return json.loads(line.removeprefix("data:"))
        raise RuntimeError("the result stream ended without a result")


def wait_for(url: str, proc: subprocess.Popen | None, seconds: float = 180):
    """A client of the launched app once it answers (it must not die, nor take more than ``seconds``)."""
    from gradio_client import Client

    deadline = time.time() + seconds
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:
            if time.time() > deadline or (proc is not None and proc.poll() is not None):
                raise SystemExit("the app did not start")
            time.sleep(1)


def load(images: list[str], requests: int, port: int, app_args: str = "", url: str | None = None,
         env: dict | None = None, client: str = "gradio") -> dict:
    """Start the app (unless ``url``), then ``requests`` clients at once: p50, p95 (ms), requests/s, errors."""
    from gradio_client import Client, handle_file
    proc = None if url else subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--host", "127.0.0.1", *app_args.split()], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    url = url or f"http://127.0.0.1:{port}/"
    try:
        first = wait_for(url, proc)
        alone = {img: probability(first.predict(handle_file(img), api_name="/predict")) for img in images}
        with ThreadPoolExecutor(16) as pool:
            # a browser elsewhere fetches the result images itself; here they would only load the server's CPUs
            clients = list(pool.map(lambda _: Client(url, verbose=False, download_files=False) if client == "gradio"
                                    else HttpClient(url), range(requests)))
        upload = handle_file if client == "gradio" else str

        def one(i):
            img = images[i % len(images)]
            t = time.perf_counter()
            try:
                p = probability(clients[i].predict(upload(img), api_name="/predict"))
                return time.perf_counter() - t, None if abs(p - alone[img]) < 1e-4 else f"{img}: {p} != {alone[img]} alone"
            except Exception as exc:
                return time.perf_counter() - t, repr(exc)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(requests) as pool:
            results = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
        if proc and proc.poll() is not None:
            raise SystemExit(f"the app died under load (exit code {proc.returncode})")
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
    lat = sorted(r[0] for r in results)
    errors = [r[1] for r in results if r[1]]
    return {"p50": statistics.median(lat) * 1000, "p95": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] * 1000,
            "rps": requests / wall, "errors": errors, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--port", type=int, default=7871)
    ap.add_argument("--image", action="append", default=None, help="repeatable; default: real radiographs")
    ap.add_argument("--app-args", default="", help="extra arguments for app.py, e.g. '--replicas 1'")
    ap.add_argument("--url", default=None, help="load an app that is already running instead of starting one")
    ap.add_argument("--client", default="gradio", choices=("gradio", "http"), help="see above")
    ap.add_argument("--engines", default=None, help="comma-separated ENGINE[:PRECISION] values, one launched app each "
                                                    "(default: the app as configured)")
    args = ap.parse_args()
    images = args.image or [str(p) for p in real_radiographs()] or [str(ROOT / "assets/examples/fractured_hand.jpg")]
    print(f"{len(images)} distinct images\n| engine | load | p50 | p95 | requests/s | errors | wall |\n|---|---|---|---|---|---|---|")
    for engine in (args.engines.split(",") if args.engines else [os.environ.get("FRACTURE_ENGINE", "default")]):
        env = engine_env(engine) if args.engines else {}
        r = load(images, args.requests, args.port, args.app_args, args.url, env, args.client)
        print(f"| {engine} | {args.requests} concurrent /predict requests | {r['p50']:.0f} ms | {r['p95']:.0f} ms | "
              f"{r['rps']:.1f} | {len(r['errors'])} | {r['wall']:.1f} s |", flush=True)
        for e in r["errors"][:5]:
            print("error:", e)


if __name__ == "__main__":
    main()
