"""Files anyone can make that once took a server down, made here without holding their pixels (tests, bench/soak.py).

Each returns the file's bytes: a deflated DICOM that inflates to gigabytes, a multi-frame one, a PNG just
over the pixel limit, and the worst uploads still inside the limits (an 80 MP 16-bit PNG, an 80 MP DICOM,
a large JPEG).
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from fracture_demo.imaging import MAX_PIXELS


def dicom_bytes(rows: int, cols: int, frames: int = 1, deflated: bool = True, pixels: bytes | None = None) -> bytes:
    """A 12-bit MONOCHROME2 DICOM of ``frames`` frames (zeros unless ``pixels``), its pixel data streamed
    through deflate (Deflated Explicit VR Little Endian) or stored as is (Explicit VR Little Endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    ds = Dataset()
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "DX", 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = rows, cols, 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    head, meta_fp = DicomBytesIO(), DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_dataset(head, ds)
    write_file_meta_info(meta_fp, meta)
    size = rows * cols * 2 * frames
    chunks = [pixels] if pixels is not None else [bytes(min(1 << 22, size - i)) for i in range(0, size, 1 << 22)]
    z = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS) if deflated else None
    body = [head.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, size), *chunks]
    out = [z.compress(c) for c in body] + [z.flush()] if z else body
    return b"\0" * 128 + b"DICM" + meta_fp.getvalue() + b"".join(out)


def _side() -> int:
    return int(MAX_PIXELS ** 0.5)  # a square just inside the pixel limit


def png16_at_limit() -> bytes:
    """An 80 MP 16-bit greyscale PNG (a gradient, so it is not all one value)."""
    side = _side()
    row = np.linspace(0, 65535, side).astype(np.uint16)
    img = Image.fromarray(np.broadcast_to(row, (side, side)).copy())
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def dicom_at_limit() -> bytes:
    """An 80 MP uncompressed 12-bit DICOM (160 MB: inside the 200 MB file limit)."""
    side = _side()
    row = np.linspace(0, 4095, side).astype("<u2")
    return dicom_bytes(side, side, deflated=False, pixels=np.broadcast_to(row, (side, side)).tobytes())


def _gradient(mode: str) -> Image.Image:
    side = _side()
    return Image.linear_gradient("L").resize((side, side)).convert(mode)


def jpeg_at_limit(mode: str = "L") -> bytes:
    """An 80 MP JPEG (greyscale, or ``mode``)."""
    buf = io.BytesIO()
    _gradient(mode).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def png_at_limit(mode: str) -> bytes:
    """An 80 MP PNG of ``mode`` (say RGBA: Pillow holds 4 bytes a pixel)."""
    buf = io.BytesIO()
    _gradient(mode).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def png_over_limit() -> bytes:
    """A PNG one row over the pixel limit."""
    buf = io.BytesIO()
    Image.new("L", (10_000, MAX_PIXELS // 10_000 + 1)).save(buf, "PNG")
    return buf.getvalue()
