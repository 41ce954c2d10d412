"""Soak: a thousand requests from eight clients against the launched app, its resident memory sampled throughout.

    python -m bench.soak [--requests 1000] [--clients 8] [--port 7873] [--write docs/reliability.md]

Starts ``python app.py`` on loopback and sends a mix through ``/predict`` (gradio_client, one client per
simulated user): real radiographs of both data sets, non-radiographs (photos, documents, drawings, other
modalities), odd but usable files (16-bit, palette, RGBA, truncated JPEG, a windowed DICOM, a 300-frame
deflated DICOM) and hostile ones (a 1.7 MB DICOM that inflates to 1.8 GB, a PNG over the pixel limit, a
truncated PNG, empty, text and PDF files), plus the worst uploads inside the limits (80 MP 16-bit PNG, 80 MP
DICOM, 80 MP JPEG). After a warm-up, four worst-case uploads at once (the memory budget), then the soak.
Every usable file must be answered, every hostile one refused with a message ("Cannot use this file"),
the server alive at the end, its peak resident memory within 3 GiB, and its level after the warm-up flat
within 10% (the median of the soak's last tenth of samples against its first tenth).
``--write`` puts the table between the ``<!-- soak:start -->`` markers of that file.
"""
from __future__ import annotations

import argparse
import io
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.non_radiographs import non_radiographs
from fracture_demo.runtime import usable_cores
from tests import hostile_files as hostile
from tests.real_images import real_radiographs, sample_radiographs
from bench.load_test import wait_for
from train.card import git_commit
from train.report import write_section

ROOT = Path(__file__).resolve().parents[1]
GiB = 2 ** 30


def rss(pid: int, field: str = "VmRSS") -> int:
    """Bytes of the process's resident memory now (``VmHWM``: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def build_mix(folder: Path) -> dict[str, list[tuple[Path, str]]]:
    """kind -> [(file, what it should get: "answer" or "refusal")]."""
    def put(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    base = Image.open(real_radiographs()[0]).convert("L")
    ramp = np.tile(np.linspace(0, 4095, 512), (512, 1)).astype("<u2")
    windowed = hostile.dicom_bytes(512, 512, deflated=False, pixels=ramp.tobytes())
    truncated_png = _png(base)
    return {
        "radiograph": [(p, "answer") for p in dict.fromkeys(real_radiographs() + sample_radiographs(40))],
        "not a radiograph": [(p, "answer") for p, _ in non_radiographs(folder / "non_radiographs", drawn_per_kind=2)],
        "odd but usable": [
            (put("sixteen.png", _png(Image.fromarray(np.asarray(base, np.uint16) * 257))), "answer"),
            (put("palette.png", _png(base.convert("P"))), "answer"),
            (put("rgba.png", _png(base.convert("RGBA"))), "answer"),
            (put("windowed.dcm", windowed), "answer"),
            (put("frames.dcm", hostile.dicom_bytes(2048, 2048, frames=300)), "answer"),
        ],
        "hostile": [
            (put("bomb.dcm", hostile.dicom_bytes(30_000, 30_000)), "refusal"),
            (put("over.png", hostile.png_over_limit()), "refusal"),
            (put("truncated.png", truncated_png[: len(truncated_png) // 2]), "refusal"),
            (put("empty.png", b""), "refusal"),
            (put("notes.jpg", b"just some text\n"), "refusal"),
            (put("paper.png", b"%PDF-1.7\n1 0 obj<<>>endobj\n"), "refusal"),
        ],
        "worst inside the limits": [
            (put("worst16.png", hostile.png16_at_limit()), "answer"),
            (put("worst.dcm", hostile.dicom_at_limit()), "answer"),
            (put("worst.jpg", hostile.jpeg_at_limit()), "answer"),
        ],
    }


def ask(client, path: Path) -> tuple[str, float, str]:
    """-> (outcome: "answer" / "refusal" / "lost", seconds, message)."""
    from gradio_client import handle_file
    t = time.perf_counter()
    try:
        client.predict(handle_file(str(path)), api_name="/predict")
        return "answer", time.perf_counter() - t, ""
    except Exception as exc:  # gradio_client raises AppError with the app's gr.Error message
        message = str(exc)
        clear = "Cannot use this file" in message
        return ("refusal" if clear else "lost"), time.perf_counter() - t, message[:200]


def summary(args: argparse.Namespace, mix: dict, kind_of: dict, results: list, samples: list, m: dict) -> tuple[str, float]:
    """The table (one row per kind of upload) and what memory did; returns it with the level's drift."""
    ready, burst, burst_seconds, burst_peak = m["ready"], m["burst"], m["burst_seconds"], m["burst_peak"]
    after_warmup, wall, alive, end, peak = m["after_warmup"], m["wall"], m["alive"], m["end"], m["peak"]
    soak = [s[2] for s in samples if s[1] >= args.warmup]
    tenth = max(1, len(soak) // 10)  # a leak grows the level; a worst-case upload is a spike the budget bounds
    first, last = statistics.median(soak[:tenth]), statistics.median(soak[-tenth:])
    flat = last / first - 1
    rows = []
    for kind in mix:
        mine = [r for r in results if kind_of[r[0]] == kind]
        right = sum(r[2] == r[1] for r in mine)
        lat = sorted(r[3] for r in mine if r[2] == "answer")
        p50 = f"{statistics.median(lat) * 1000:.0f} ms" if lat else "-"
        p95 = f"{lat[int(round(0.95 * (len(lat) - 1)))] * 1000:.0f} ms" if lat else "-"
        expect = "answered" if mine and mine[0][1] == "answer" else "refused with a message"
        rows.append(f"| {kind} | {len({r[0] for r in mine})} | {len(mine)} | {expect} | {right} / {len(mine)} | "
                    f"{sum(r[2] == 'lost' for r in mine)} | {p50} | {p95} |")
    commit = git_commit()
    table = "\n".join([
        "| kind | files | requests | should be | as it should | lost | p50 | p95 |", "|---|---|---|---|---|---|---|---|", *rows,
        "",
        f"{len(results)} requests from {args.clients} clients: a {args.warmup}-request warm-up, then "
        f"{len(results) - args.warmup} in {wall:.0f} s; "
        f"server alive at the end: **{'yes' if alive else 'NO'}**; answers lost: **{sum(r[2] == 'lost' for r in results)}**.",
        f"Four worst-case uploads at once (80 MP 16-bit PNG, 80 MP DICOM, 80 MP JPEG, the PNG again): "
        f"{sum(b[0] == 'answer' for b in burst)} / 4 answered in {burst_seconds:.1f} s.",
        f"Resident memory: {ready / GiB:.2f} GiB serving, peak {burst_peak / GiB:.2f} GiB after the burst "
        f"(budget 3 GiB), {after_warmup / GiB:.2f} GiB after the warm-up; during the soak the median of its first tenth "
        f"{first / GiB:.2f} GiB, of its last tenth {last / GiB:.2f} GiB (**{flat:+.1%}**; limit 10%), spikes to "
        f"{max(soak) / GiB:.2f} GiB when worst-case uploads overlap; {end / GiB:.2f} GiB at the end; peak of the whole "
        f"run {peak / GiB:.2f} GiB.",
        f"Generated by `python -m bench.soak` at commit `{commit}` on {usable_cores()} CPU cores.",
    ])
    return table, flat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=100, help="requests before the burst and the memory baseline")
    ap.add_argument("--port", type=int, default=7873)
    ap.add_argument("--write", type=Path, default=None, help="a Markdown file with <!-- soak:start/end --> markers")
    args = ap.parse_args(argv)
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        mix = build_mix(Path(tmp))
        # each usable kind weighted as users would send it: mostly radiographs; every file at least once
        pool = [f for f in mix["radiograph"] for _ in range(6)] + [f for k in mix if k != "radiograph" for f in mix[k]]
        kind_of = {f[0]: k for k, files in mix.items() for f in files}
        rng = random.Random(0)
        jobs = [pool[i % len(pool)] if i < len(pool) else rng.choice(pool) for i in range(args.requests)]
        rng.shuffle(jobs)
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(args.port), "--host", "127.0.0.1"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{args.port}/"
        samples: list[tuple[float, int, int]] = []  # (time, requests done, rss)
        done = [0]
        stop = threading.Event()
        try:
            wait_for(url, proc)
            ready = rss(proc.pid)

            def sampler():
                while not stop.wait(0.25) and proc.poll() is None:
                    samples.append((time.time(), done[0], rss(proc.pid)))

            threading.Thread(target=sampler, daemon=True).start()
            clients = [Client(url, verbose=False, download_files=False) for _ in range(args.clients)]
            results: list[tuple[Path, str, str, float, str]] = []

            def run(batch: list[tuple[Path, str]]):
                def one(k: int):
                    out = []
                    for path, expected in batch[k::args.clients]:
                        outcome, seconds, message = ask(clients[k], path)
                        done[0] += 1
                        out.append((path, expected, outcome, seconds, message))
                    return out
                with ThreadPoolExecutor(args.clients) as ex:
                    for part in ex.map(one, range(args.clients)):
                        results.extend(part)

            run(jobs[:args.warmup])
            worst = mix["worst inside the limits"]
            t0 = time.perf_counter()
            burst_clients = [Client(url, verbose=False, download_files=False) for _ in range(4)]
            with ThreadPoolExecutor(4) as ex:  # the memory budget: four worst-case uploads at once
                burst = list(ex.map(lambda c, f: ask(c, f[0]), burst_clients, worst + worst[:1]))
            burst_seconds = time.perf_counter() - t0
            burst_peak = rss(proc.pid, "VmHWM")
            after_warmup = rss(proc.pid)
            t0 = time.perf_counter()
            run(jobs[args.warmup:])
            wall = time.perf_counter() - t0
            stop.set()
            alive = proc.poll() is None
            end, peak = (rss(proc.pid), rss(proc.pid, "VmHWM")) if alive else (0, 0)
        finally:
            stop.set()
            proc.terminate()
            proc.wait(30)

    measured = {"ready": ready, "burst": burst, "burst_seconds": burst_seconds, "burst_peak": burst_peak,
                "after_warmup": after_warmup, "wall": wall, "alive": alive, "end": end, "peak": peak}
    table, flat = summary(args, mix, kind_of, results, samples, measured)
    wrong = [r for r in results if r[2] != r[1]]
    print(table)
    for r in wrong[:10]:
        print(f"unexpected: {r[0].name}: wanted {r[1]}, got {r[2]} {r[4]}", file=sys.stderr)
    if args.write:
        write_section(args.write, "soak", table + "\n")
    ok = alive and not wrong and peak <= 3 * GiB and flat <= 0.10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
