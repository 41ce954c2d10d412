"""Make a small copy of a Kaggle-layout data set, for shipping to a remote GPU machine.

``python -m train.shrink --data-dir D --out data.tar [--size 224] [--format webp]`` writes a tar holding
the same ``split/label/file`` names, each image decoded as training decodes it, resized to the
training size and stored as greyscale JPEG or WebP (the bytes keep the file's name: Pillow reads the
format from the content); byte-identical files become hard links, so the 10,439-file Multi-Region
set travels as ~3,800 small files. WebP at 512 px is about a third of JPEG's size (5 KB a FracAtlas
radiograph at quality 80, so both sources fit a 64 MiB transfer). Unreadable files travel empty:
a run on the copy skips the same files as a run on the original, without their bytes. The copy's
``SHRUNK.json`` (size, format, quality, the original's fingerprint) goes into the config and the card of
every model trained on it (:func:`copy_of`), so nobody mistakes it for the original files.

``python -m train.shrink --weights ../shared/pretrained --out DIR`` writes the registry's offline ImageNet
files without their 1,000-class classifiers (a one-logit head replaces them anyway), conv and linear weights
in fp16, BatchNorm statistics as they are: 14 MiB for the GPU stage's three CNNs in place of 38 (features within 1%).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

from PIL import Image
from safetensors.torch import load_file, save_file

from fracture_demo.registry import create_model, get_spec, list_models

from .data import ImageCache, fingerprint, scan, sha256_file

MARKER = "SHRUNK.json"


def copy_of(data_dir: str | Path) -> dict | None:
    """What ``shrink`` did to make ``data_dir`` (its marker), or None for original files."""
    marker = Path(data_dir) / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def shrink(data_dir: str, out: str, size: int = 224, quality: int = 92, prefix: str = "data",
           fmt: str = "JPEG") -> int:
    samples = scan(data_dir)
    decoded = ImageCache(size).load(samples, progress=True)
    arrays = {s.rel: a for s, a in zip(decoded.samples, decoded.images)}
    first: dict[str, str] = {}
    marker = json.dumps({"made_by": "python -m train.shrink", "size": size, "format": fmt.lower(), "quality": quality,
                         "original_fingerprint": fingerprint(samples)}).encode()
    with tarfile.open(out, "w") as tar:
        info = tarfile.TarInfo(f"{prefix}/{MARKER}")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
        for s in samples:
            name = f"{prefix}/{s.rel}"
            h = sha256_file(s.path)
            if h in first:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.LNKTYPE, first[h]
                tar.addfile(info)
                continue
            first[h] = name
            if s.rel in arrays:
                buf = io.BytesIO()
                Image.fromarray(arrays[s.rel][0], "L").save(buf, fmt, quality=quality)
                data = buf.getvalue()
            else:
                data = b""
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return len(first)


def shrink_weights(src: str | Path, out: str | Path) -> list[str]:
    """fp16 copies of the registry's offline ImageNet files found in ``src``, classifiers dropped; returns the file names."""
    Path(out).mkdir(parents=True, exist_ok=True)
    written = []
    for name in list_models():
        file = get_spec(name).local_file
        if not file or not (Path(src) / file).is_file():
            continue
        classifier = create_model(name).pretrained_cfg["classifier"] + "."
        state = load_file(Path(src) / file)
        save_file({k: v.half() if v.ndim >= 2 and v.is_floating_point() else v
                   for k, v in state.items() if not k.startswith(classifier)}, Path(out) / file)
        written.append(file)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.shrink", description=__doc__.split("\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--data-dir", help="a data set in Kaggle's layout")
    what.add_argument("--weights", help="a folder of offline ImageNet files (../shared/pretrained)")
    ap.add_argument("--out", required=True, help="tar file to write (--data-dir) or folder (--weights)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--quality", type=int, default=92)
    ap.add_argument("--prefix", default="data", help="top folder inside the tar")
    ap.add_argument("--format", default="jpeg", choices=["jpeg", "webp"])
    args = ap.parse_args(argv)
    if args.weights:
        files = shrink_weights(args.weights, args.out)
        print(f"{len(files)} files written to {args.out}: {', '.join(files)}")
        return 0
    n = shrink(args.data_dir, args.out, args.size, args.quality, args.prefix, args.format.upper())
    print(f"{n} distinct files written to {args.out} ({Path(args.out).stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
