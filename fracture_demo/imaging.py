"""Decode any radiograph a person or a data set throws at us, then turn it into model input.

Every failure becomes an :class:`ImageError` whose message a person can act on; recoverable
oddities (a truncated JPEG, an animated GIF) become warnings next to a usable image.
Training and inference share :func:`to_array`, so the model sees identical pixels in both.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

MAX_PIXELS = 80_000_000  # ~9000x9000; bigger files are refused before decoding (bounded memory)
MAX_BYTES = 200 * 1024 * 1024
MIN_SIDE = 16
DISPLAY_SIDE = 1024  # images shown in the app are capped at this side

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]
_truncated_lock = threading.Lock()


class ImageError(ValueError):
    """The input cannot be used as a radiograph; the message says why."""


@dataclass
class Decoded:
    """A greyscale radiograph ready for display and preprocessing, plus what was odd about it."""

    image: Image.Image  # mode "L"
    warnings: list[str] = field(default_factory=list)
    source_format: str = ""
    path: Path | None = None  # the file it came from, if any
    draft_side: int | None = None  # a JPEG decoded at reduced scale for this side (its DCT did the downscaling)

    def at_draft_side(self, side: int) -> "Decoded":
        """This radiograph as :func:`decode_image` gives it for ``side``: a JPEG drafted for another side
        (say, for display) is decoded again, so a model gets the same input from any caller."""
        if self.source_format != "JPEG" or self.path is None or self.draft_side == side:
            return self
        return decode_image(self.path, draft_side=side)


def _describe_non_image(head: bytes) -> str:
    if head.startswith(b"%PDF"):
        return "this is a PDF document, not an image"
    if head[:1] in (b"{", b"<") or all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "this is a text file, not an image"
    return "the file is not an image Pillow or pydicom can read"


def _is_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def _window(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to 8 bits (values outside saturate)."""
    arr = arr.astype(np.float32)
    hi = max(hi, lo + 1.0)
    return (np.clip((arr - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def _stored_range(arr: np.ndarray, bits: int | None = None, signed: bool = False) -> tuple[float, float]:
    """The range a high-bit-depth image's container can hold, not the range this picture happens to use.

    One radiograph must give one answer however it was saved: an 8-bit picture scaled to 16 bits maps back
    to the same pixels. Without a stated bit depth, 12 bits (detectors' usual depth, often stored in 16-bit
    containers) when every value fits, else 16; float images use their own min and max.
    """
    if arr.dtype.kind == "f":
        return float(np.min(arr)), float(np.max(arr))
    if bits is None:
        bits = 12 if np.max(arr) < 4096 and np.min(arr) >= 0 else 16
        signed = bool(np.min(arr) < 0)
    return (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0 ** bits - 1)


def _decode_dicom(data: bytes) -> Decoded:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageError(f"unreadable DICOM file ({exc.__class__.__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise ImageError("this DICOM file has no pixel data (PixelData is missing)")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageError(f"cannot decode this DICOM's pixel data ({exc})") from exc
    notes = []
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        arr, notes = arr[0], [f"multi-frame DICOM ({arr.shape[0]} frames): first frame shown"]
    if arr.ndim == 3:
        return Decoded(Image.fromarray(arr[..., :3].astype(np.uint8)).convert("L"), notes, "DICOM")
    if "WindowCenter" in ds or "VOILUTSequence" in ds:  # the window the modality chose for viewing
        arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
        out = _window(arr, float(np.min(arr)), float(np.max(arr)))
    else:  # the stored bits, linearly (the modality LUT is linear too: same picture)
        bits = int(ds.get("BitsStored", 0)) or None
        out = _window(arr, *_stored_range(arr, bits, int(ds.get("PixelRepresentation", 0)) == 1))
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out
    return Decoded(Image.fromarray(out, "L"), notes, "DICOM")


def _to_grey(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img)
        return Image.fromarray(_window(arr, *_stored_range(arr)), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))  # radiograph backgrounds are black
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("L")


def _open_bytes(data: bytes, name: str, draft_side: int | None) -> Decoded:
    if not data:
        raise ImageError("the file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageError(f"the file is too large ({len(data) / 2**20:.0f} MB; limit {MAX_BYTES // 2**20} MB)")
    if _is_dicom(data, name):
        return _decode_dicom(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode safely (decompression bomb guard: {exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(_describe_non_image(data[:256])) from exc
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"the image is too large ({w}x{h} = {w * h / 1e6:.0f} MP; limit {MAX_PIXELS / 1e6:.0f} MP)")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"the image is too small ({w}x{h}); a radiograph needs at least {MIN_SIDE} px a side")
    notes, fmt = [], img.format or "?"
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"animated {fmt} with {img.n_frames} frames: the first frame is used")
        img.seek(0)
    if draft_side and fmt == "JPEG":  # decode at reduced scale: fast and bounded memory
        img.draft("L", (draft_side, draft_side))
    if img.mode == "CMYK":
        notes.append("CMYK image converted to greyscale")
    try:
        img.load()
    except OSError as exc:
        if "truncated" not in str(exc):
            raise ImageError(f"the {fmt} file is corrupt ({exc})") from exc
        with _truncated_lock:
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            try:
                img = Image.open(io.BytesIO(data))
                if draft_side and fmt == "JPEG":
                    img.draft("L", (draft_side, draft_side))
                img.load()
            except OSError as exc2:
                raise ImageError(f"the {fmt} file is truncated and unreadable ({exc2})") from exc2
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = False
        notes.append(f"the {fmt} file is truncated: the missing part is shown grey")
    except (SyntaxError, ValueError) as exc:
        raise ImageError(f"the {fmt} file is corrupt ({exc})") from exc
    img = ImageOps.exif_transpose(img) if fmt == "JPEG" else img
    return Decoded(_to_grey(img), notes, fmt)


def decode_image(source: ImageSource, draft_side: int | None = None) -> Decoded:
    """Decode a path, bytes, PIL image or array into a greyscale radiograph.

    ``draft_side`` lets JPEGs decode at a reduced scale no smaller than that side (training and
    inference only need the model's input size).
    """
    if isinstance(source, Image.Image):
        if min(source.size) < MIN_SIDE:
            raise ImageError(f"the image is too small ({source.size[0]}x{source.size[1]})")
        return Decoded(_to_grey(source), [], "PIL")
    if isinstance(source, np.ndarray):
        return decode_image(Image.fromarray(source), draft_side)
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ImageError(f"the file is too large ({size / 2**20:.0f} MB)")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{path} is a folder, not an image") from exc
    decoded = _open_bytes(data, path.name, draft_side)
    decoded.path, decoded.draft_side = path, draft_side
    return decoded


def to_array(image: Image.Image, size: int) -> np.ndarray:
    """Resize a greyscale image to ``size`` x ``size`` uint8 (the original study's plain resize).

    First a box reduction by the largest power of two that keeps the short side >= ``size``: what JPEG
    draft decoding does in the DCT, so a PNG (or DICOM) and a JPEG of one radiograph get the same input.
    """
    k = 1
    while min(image.size) // (2 * k) >= size:
        k *= 2
    image = image.reduce(k) if k > 1 else image
    return np.array(image.resize((size, size), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 or [0,1] float N x 1|3 x H x W -> normalised float N x 3 x H x W."""
    x = batch.float()
    if batch.dtype == torch.uint8:
        x = x / 255.0
    x = x.expand(-1, 3, -1, -1) if x.size(1) == 1 else x
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def display_image(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """A copy small enough to send to a browser."""
    img = image.copy()
    img.thumbnail((side, side))
    return img
