"""The serving table: every inference engine side by side, measured in one run on this machine.

    python -m bench.serving [--engines torch,onnxruntime,openvino:f32,openvino:auto] [--requests 50] [--write docs/speed.md]

Per engine and arithmetic (``ENGINE[:PRECISION]``, ``bench.app_speed.engine_env``), one after another: latency (``bench.app_speed``), the
CPU time of 300 requests on real radiographs served as the app serves them (``bench.cpu_time``'s app row, a fresh
process timed from outside) and ``--requests`` clients at once against the launched app
(``bench.load_test``, with browser-like ``http`` clients and with ``gradio`` clients; the clients share the 2
cores). ``--write`` puts the table between the file's
``<!-- serving:start/end -->`` markers.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench import app_speed, cpu_time, load_test
from tests.real_images import real_radiographs
from train.report import write_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default=app_speed.ENGINES)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--port", type=int, default=7873)
    ap.add_argument("--write", type=Path, default=None, help="a Markdown file with <!-- serving:start/end --> markers")
    args = ap.parse_args()
    engines = args.engines.split(",")
    image = str(app_speed.ROOT / "assets/examples/fractured_hand.jpg")
    images = [str(p) for p in real_radiographs()] or [image]
    table = app_speed.by_engine(engines, args.repeats, image)
    _, app_row = cpu_time.ROWS["app"]
    for engine in engines:
        env = app_speed.engine_env(engine)
        wall, user, sys_ = cpu_time.run(app_row, True, extra_env=env)
        table[engine]["300 requests as the app serves them (cpu_time app row): CPU ms per request"] = (user + sys_) / 0.3
        table[engine]["... the same: requests/s on the 2 cores, process start and loading included"] = 300 / wall
        for client in ("http", "gradio"):
            load = load_test.load(images, args.requests, args.port, env=env, client=client)
            for key, name in (("p50", "p50 ms"), ("p95", "p95 ms"), ("rps", "requests/s")):
                table[engine][f"{args.requests} {client} clients at once (load_test --client {client}): {name}"] = load[key]
            table[engine][f"... the same ({client}): errors, answers not equal to the image asked alone"] = len(
                load["errors"])
        print(engine, "done", flush=True)
    text = app_speed.table(table) + f"\n\nImages: `{Path(image).name}` for latency; {len(images)} real radiographs of both sets for the rest.\n"
    print(text)
    if args.write:
        write_section(args.write, "serving", text)


if __name__ == "__main__":
    main()
