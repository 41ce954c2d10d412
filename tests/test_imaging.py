"""Every kind of bad or odd input: decoded sensibly, or refused with a clear message."""
import io

import numpy as np
import pytest
from PIL import Image

from fracture_demo.imaging import ImageError, decode_image


def save(img: Image.Image, path, fmt: str, **kw):
    img.save(path, fmt, **kw)
    return path


@pytest.fixture
def grey():
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((64, 80)) * 255).astype(np.uint8), "L")


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "PDF"),
    (b"hello, I am a text file\n", "text file"),
    (bytes(range(256)) * 4, "not an image"),
])
def test_non_images_are_refused(tmp_path, content, message):
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        decode_image(p)


def test_truncated_jpeg_loads_with_warning(tmp_path, grey):
    buf = io.BytesIO()
    grey.resize((400, 400)).save(buf, "JPEG")
    p = tmp_path / "t.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    d = decode_image(p)
    assert d.image.size == (400, 400) and any("truncated" in w for w in d.warnings)


def test_huge_image_refused_before_decoding(tmp_path):
    p = save(Image.new("L", (20000, 20000)), tmp_path / "huge.png", "PNG")
    with pytest.raises(ImageError, match="too large"):
        decode_image(p)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    p = save(Image.new("L", (3000, 3000)), tmp_path / "bomb.png", "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ImageError, match="bomb"):
        decode_image(p)


def test_tiny_image_refused(tmp_path):
    p = save(Image.new("L", (1, 1)), tmp_path / "one.png", "PNG")
    with pytest.raises(ImageError, match="too small"):
        decode_image(p)


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "RGB", "I"])
def test_modes_become_greyscale(tmp_path, grey, mode):
    img = grey.convert(mode)
    p = save(img, tmp_path / f"m.{'tif' if mode in ('CMYK', 'I') else 'png'}", "TIFF" if mode in ("CMYK", "I") else "PNG")
    d = decode_image(p)
    assert d.image.mode == "L" and d.image.size == grey.size
    assert np.corrcoef(np.asarray(d.image, float).ravel(), np.asarray(grey, float).ravel())[0, 1] > 0.9


def test_rgba_transparent_background_is_black(tmp_path):
    img = Image.new("RGBA", (32, 32), (255, 255, 255, 0))
    d = decode_image(save(img, tmp_path / "a.png", "PNG"))
    assert np.asarray(d.image).max() == 0


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("L", (40, 40), v) for v in (10, 200, 90)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    d = decode_image(p)
    assert abs(int(np.asarray(d.image).mean()) - 10) < 3 and "first frame" in d.warnings[0]


def test_16bit_png_maps_its_stored_range_linearly(tmp_path):
    eight = np.tile(np.arange(256, dtype=np.uint16), (16, 1))
    p = save(Image.fromarray(eight * 257), tmp_path / "s.png", "PNG")  # an 8-bit picture scaled to 16 bits
    assert np.array_equal(np.asarray(decode_image(p).image), eight), "the same pixels, not a re-stretched window"
    twelve = np.tile(np.linspace(0, 4095, 64), (16, 1)).astype(np.uint16)  # a 12-bit detector in a 16-bit PNG
    arr = np.asarray(decode_image(save(Image.fromarray(twelve), tmp_path / "t.png", "PNG")).image)
    assert arr.min() == 0 and arr.max() == 255 and len(np.unique(arr)) == 64, "full range, contrast kept"


def test_png_inside_jpg_name(tmp_path, grey):
    p = save(grey, tmp_path / "really_png.jpg", "PNG")
    assert decode_image(p).source_format == "PNG"


def _dicom(path, pixels: np.ndarray | None, photometric="MONOCHROME2", window=None, bits_stored=12):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_monochrome2_and_monochrome1(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 64), (48, 1))
    a = np.asarray(decode_image(_dicom(tmp_path / "a.dcm", ramp)).image, float)
    b = np.asarray(decode_image(_dicom(tmp_path / "b.dcm", ramp, "MONOCHROME1")).image, float)
    assert a[:, -1].mean() > a[:, 0].mean() + 200, "bright stays bright"
    assert b[:, 0].mean() > b[:, -1].mean() + 200, "MONOCHROME1 is inverted"


def test_dicom_window_applied(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 64), (48, 1))
    arr = np.asarray(decode_image(_dicom(tmp_path / "w.dcm", ramp, window=(1000, 400))).image)
    assert arr[:, :8].max() == 0 and arr[:, -8:].min() == 255, "outside the window saturates"


def test_dicom_without_pixels(tmp_path):
    with pytest.raises(ImageError, match="no pixel data"):
        decode_image(_dicom(tmp_path / "empty.dcm", None))
