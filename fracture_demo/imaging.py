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
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from pydicom import Dataset

#: Limits every format shares, read from the header before a pixel is decoded (bounded memory and time).
MAX_PIXELS = 80_000_000  # of the one frame decoded (~8900 x 8900)
MAX_BYTES = 200 * 1024 * 1024  # of the file
MIN_SIDE = 16
MAX_BITS = 16  # per DICOM sample (radiographs store 10-16)
DICOM_HEADER_BYTES = 4 * 1024 * 1024  # of a deflated DICOM's dataset before its pixel data
#: Decodes of more pixels than this take turns, one at a time: four 80 MP uploads at once would each hold
#: hundreds of MB; one at a time, their peak is one decode's (docs/reliability.md).
LARGE_PIXELS = 12_000_000
#: The most memory one decode takes beyond its file's bytes, at the limits; tests/test_imaging.py holds it for
#: the worst files inside them (80 MP: colour JPEG at full size, 16-bit PNG, DICOM, RGBA PNG).
DECODE_MEMORY = 640 * 2**20
DISPLAY_SIDE = 1024  # images shown in the app are capped at this side

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]
_large_decodes = threading.BoundedSemaphore(1)
_JPEG_END = b"\xff\xd9"


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
    drafts: dict[int, "Decoded"] = field(default_factory=dict, repr=False)  # other sides, decoded once each

    def at_draft_side(self, side: int) -> "Decoded":
        """This radiograph as :func:`decode_image` gives it for ``side``: a JPEG drafted for another side
        (say, for display) is decoded again, once per side, so a model gets the same input from any caller and
        Compare's models of one input size share one decode."""
        if self.source_format != "JPEG" or self.path is None or self.draft_side == side:
            return self
        if side not in self.drafts:  # threads racing here decode twice and keep one: same pixels
            self.drafts[side] = decode_image(self.path, draft_side=side)
        return self.drafts[side]


def check_size(width: int, height: int, fmt: str, frames: int = 1) -> list[str]:
    """Refuse a frame outside the limits, from its header; -> the notes to show (a multi-frame file)."""
    if width * height > MAX_PIXELS:
        raise ImageError(f"the {fmt} image is too large ({width}x{height} = {width * height / 1e6:.0f} MP; "
                         f"limit {MAX_PIXELS / 1e6:.0f} MP)")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"the {fmt} image is too small ({width}x{height}); a radiograph needs at least "
                         f"{MIN_SIDE} px a side")
    return [f"multi-frame {fmt} ({frames} frames): the first frame is used"] if frames > 1 else []


@contextmanager
def _decode_slot(pixels: int) -> Iterator[None]:
    """Large decodes one at a time (their memory adds up under concurrent uploads); small ones at once."""
    if pixels <= LARGE_PIXELS:
        yield
        return
    with _large_decodes:
        yield


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


def _eight_bit(arr: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``curve`` (values -> uint8) applied to every pixel without float copies of a large image: through a
    lookup table over every value a <=16-bit integer can take (exact), else strip by strip."""
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
        unsigned = np.dtype(f"u{arr.dtype.itemsize}")
        domain = np.arange(2 ** (8 * arr.dtype.itemsize), dtype=unsigned).view(arr.dtype)
        return curve(domain)[arr.view(unsigned)]
    rows = max(1, 4_000_000 // max(1, arr[0].size))
    return np.concatenate([curve(arr[i:i + rows]) for i in range(0, len(arr), rows)])


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


def _at_pixel_data(tag, vr, length) -> bool:
    return tag == 0x7FE00010


def _dicom_header(data: bytes) -> tuple["Dataset", Callable[[], np.ndarray]]:
    """The DICOM header (file meta and the dataset up to its pixel data), and a function that decodes its
    first frame, and no other. A deflated dataset is inflated no further than the header here, and no further
    than the first frame's end by that function, so a small file cannot inflate to gigabytes."""
    from pydicom import dcmread
    from pydicom.filereader import read_dataset, read_preamble
    from pydicom.pixels import pixel_array
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    fp = io.BytesIO(data)
    read_preamble(fp, force=True)
    meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return (dcmread(io.BytesIO(data), force=True, stop_before_pixels=True),
                lambda: pixel_array(io.BytesIO(data), index=0))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head = inflater.decompress(data[fp.tell():], DICOM_HEADER_BYTES)
    fp = io.BytesIO(head)
    header = read_dataset(fp, False, True, stop_when=_at_pixel_data)
    header.file_meta = meta
    at = fp.tell() + 12  # the pixels start after the element's tag, VR and length

    def first_frame() -> np.ndarray:  # deflated data is native underneath: frame 0 is a run of bytes
        bits = int(header.BitsAllocated)
        frame_bytes = -(-int(header.Rows) * int(header.Columns) * int(header.get("SamplesPerPixel", 1)) * bits // 8)
        missing = at + frame_bytes - len(head)
        pixels = (head + inflater.decompress(inflater.unconsumed_tail, missing) if missing > 0 else head)[at:at + frame_bytes]
        if len(pixels) < frame_bytes:
            raise ImageError("the DICOM's pixel data is truncated (its first frame is incomplete)")
        ds = header.copy()
        ds.file_meta = meta.copy()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW" if bits > 8 else "OB"
        if "NumberOfFrames" in ds:
            ds.NumberOfFrames = 1
        return pixel_array(ds)

    return header, first_frame


def _dicom_curve(ds: "Dataset", arr: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Stored values -> display grey, as a viewer shows them: the VOI window (or LUT) the modality chose,
    its output range mapped to 0-255; without one, the stored bits linearly. MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        if "VOILUTSequence" in ds:  # preferred by apply_voi_lut; its output has the LUT's bit depth
            lo, hi = 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
        else:  # the window's output range: what it gives far below and far above its centre
            with np.errstate(over="ignore"):
                lo, hi = (float(v) for v in apply_voi_lut(np.array([-1e15, 1e15]), ds))

        def grey(v: np.ndarray) -> np.ndarray:
            return _window(apply_voi_lut(apply_modality_lut(v, ds), ds), lo, hi)
    else:  # the stored bits, linearly (the modality LUT is linear too: same picture)
        bits = int(ds.get("BitsStored", 0)) or None
        lo, hi = _stored_range(arr, bits, int(ds.get("PixelRepresentation", 0)) == 1)

        def grey(v: np.ndarray) -> np.ndarray:
            return _window(v, lo, hi)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        return lambda v: 255 - grey(v)
    return grey


def _decode_dicom(data: bytes) -> Decoded:
    try:
        ds, first_frame = _dicom_header(data)
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageError(f"unreadable DICOM file ({exc.__class__.__name__}: {exc})") from exc
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageError("this DICOM file has no pixel data (PixelData is missing)")
    if int(ds.get("BitsAllocated", 16)) > MAX_BITS:
        raise ImageError(f"this DICOM stores {ds.BitsAllocated} bits a sample; limit {MAX_BITS} (radiographs store "
                         f"at most 16)")
    notes = check_size(int(ds.Columns), int(ds.Rows), "DICOM", int(ds.get("NumberOfFrames", 1) or 1))
    with _decode_slot(int(ds.Columns) * int(ds.Rows)):
        try:
            arr = first_frame()
        except ImageError:
            raise
        except Exception as exc:
            if "no pixel data" in str(exc).lower():
                raise ImageError("this DICOM file has no pixel data (PixelData is missing)") from exc
            raise ImageError(f"cannot decode this DICOM's pixel data ({exc})") from exc
        if arr.ndim == 3:
            return Decoded(Image.fromarray(arr[..., :3].astype(np.uint8)).convert("L"), notes, "DICOM")
        return Decoded(Image.fromarray(_eight_bit(arr, _dicom_curve(ds, arr)), "L"), notes, "DICOM")


def _to_grey(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img)
        lo, hi = _stored_range(arr)
        return Image.fromarray(_eight_bit(arr, lambda v: _window(v, lo, hi)), "L")
    if img.mode in ("P", "RGBA", "LA", "PA"):  # strip by strip: one RGBA copy of an 80 MP image is 320 MB
        out = Image.new("L", img.size)
        rows = max(1, 1_000_000 // img.width)
        for y in range(0, img.height, rows):
            out.paste(_over_black(img.crop((0, y, img.width, min(img.height, y + rows)))), (0, y))
        return out
    return img.convert("L")


def _over_black(img: Image.Image) -> Image.Image:
    """Transparent parts shown black, as radiograph backgrounds are."""
    rgba = img.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), rgba).convert("L")


def _open_image(data: bytes) -> Image.Image:
    """Pillow's lazy image: the header read, no pixel yet."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode safely (decompression bomb guard: {exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(_describe_non_image(data[:256])) from exc
    return img


def _drafted(img: Image.Image, draft_side: int | None) -> Image.Image:
    """A JPEG set to decode at reduced scale for ``draft_side`` (fast, bounded memory); others as they are."""
    if draft_side and img.format == "JPEG":
        img.draft("L", (draft_side, draft_side))
    return img


def _load(img: Image.Image, data: bytes, draft_side: int | None) -> tuple[Image.Image, list[str]]:
    """Decode the pixels. A truncated JPEG is decoded again with its end marker put back: the pixels Pillow's
    process-wide ``LOAD_TRUNCATED_IMAGES`` gives (checked on FracAtlas's 79 truncated files), without a flag
    that other threads read."""
    fmt = img.format or "?"
    try:
        img.load()
        return img, []
    except OSError as exc:
        if "truncated" not in str(exc):
            raise ImageError(f"the {fmt} file is corrupt ({exc})") from exc
        if fmt != "JPEG":
            raise ImageError(f"the {fmt} file is truncated (its end is missing): export it again") from exc
    except (SyntaxError, ValueError) as exc:
        raise ImageError(f"the {fmt} file is corrupt ({exc})") from exc
    img = _drafted(_open_image(data + _JPEG_END), draft_side)
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the {fmt} file is truncated and unreadable ({exc})") from exc
    return img, [f"the {fmt} file is truncated: the missing part is shown grey"]


def _open_bytes(data: bytes, name: str, draft_side: int | None) -> Decoded:
    if not data:
        raise ImageError("the file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageError(f"the file is too large ({len(data) / 2**20:.0f} MB; limit {MAX_BYTES // 2**20} MB)")
    if _is_dicom(data, name):
        return _decode_dicom(data)
    img = _open_image(data)
    fmt = img.format or "?"
    notes = check_size(*img.size, fmt, getattr(img, "n_frames", 1))
    img = _drafted(img, draft_side)
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    if img.mode == "CMYK":
        notes.append("CMYK image converted to greyscale")
    with _decode_slot(img.size[0] * img.size[1]):
        img, more = _load(img, data, draft_side)
        img = ImageOps.exif_transpose(img) if fmt == "JPEG" else img
        return Decoded(_to_grey(img), notes + more, fmt)


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
