"""Every kind of bad or odd input: decoded sensibly, or refused with a clear message."""
import io
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from fracture_demo import imaging
from fracture_demo.imaging import ImageError, decode_image
from tests.hostile_files import dicom_bytes, png_over_limit

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "fractured_hand.jpg"


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


def test_deflated_dicom_bomb_refused_from_its_header(tmp_path):
    p = tmp_path / "bomb.dcm"
    p.write_bytes(dicom_bytes(12_000, 12_000))  # 288 MB of pixels in a file of about 1 MB
    assert p.stat().st_size < 2_000_000
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match=r"too large \(12000x12000 = 144 MP; limit 80 MP\)"):
        decode_image(p)
    seconds, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1 and peak < 40e6, (seconds, peak)  # the file's bytes and 4 MB of header, not 288 MB


def test_multiframe_dicom_decodes_its_first_frame_only(tmp_path):
    p = tmp_path / "frames.dcm"
    p.write_bytes(dicom_bytes(1024, 1024, frames=120))  # 252 MB of pixels once inflated, one frame is 2 MB
    tracemalloc.start()
    d = decode_image(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert d.image.size == (1024, 1024) and "120 frames" in d.warnings[0] and "first frame" in d.warnings[0]
    assert peak < 40e6, peak


def test_png_just_over_the_pixel_limit_refused(tmp_path):
    p = tmp_path / "over.png"
    p.write_bytes(png_over_limit())
    with pytest.raises(ImageError, match=f"too large \\(10000x{imaging.MAX_PIXELS // 10_000 + 1} = 80 MP; limit 80 MP\\)"):
        decode_image(p)


def _truncated_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((300, 300)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) * 2 // 3]


def test_truncated_jpeg_pixels_as_pillows_truncated_mode(tmp_path):
    data = _truncated_jpeg(1)
    p = tmp_path / "t.jpg"
    p.write_bytes(data)
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert np.array_equal(np.asarray(decode_image(p).image), expected)


def test_truncated_png_refused_with_a_message(tmp_path, grey):
    buf = io.BytesIO()
    grey.resize((400, 400)).save(buf, "PNG")
    p = tmp_path / "t.png"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        decode_image(p)


def test_concurrent_truncated_decodes_each_warned(tmp_path):
    """No process-wide flag flips per request: every truncated file carries its warning at any concurrency."""
    paths = []
    for i in range(32):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(_truncated_jpeg(i))
        paths.append(p)
    seen = []
    watch = threading.Event()

    def watcher():  # the flag other threads would read must never be set
        while not watch.is_set():
            seen.append(ImageFile.LOAD_TRUNCATED_IMAGES)

    t = threading.Thread(target=watcher)
    t.start()
    with ThreadPoolExecutor(8) as pool:
        decoded = list(pool.map(decode_image, paths * 4))
    watch.set()
    t.join()
    assert all(any("truncated" in w for w in d.warnings) for d in decoded)
    assert not any(seen)


def _dicom_of(pixels8: np.ndarray, path, photometric: str) -> Path:
    """The 8-bit picture as a 12-bit DICOM that a viewer shows as that picture: stored = grey * 4095 / 255,
    windowed over the whole 12 bits (centre 2048, width 4096); MONOCHROME1 stores it inverted."""
    stored = np.round(pixels8.astype(np.float64) * 4095 / 255)
    return _dicom(path, 4095 - stored if photometric == "MONOCHROME1" else stored, photometric, window=(2048, 4096))


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_window_round_trip_gives_the_pngs_answer(tmp_path, photometric):
    import fracture_demo as fd
    pixels = (30 + np.asarray(decode_image(EXAMPLE).image) * 0.75).astype(np.uint8)  # not black to white
    png = save(Image.fromarray(pixels), tmp_path / "x.png", "PNG")
    dcm = _dicom_of(pixels, tmp_path / "x.dcm", photometric)
    shown = np.asarray(decode_image(dcm).image).astype(int)
    assert np.abs(shown - pixels).max() <= 1
    clf = fd.load("assets/models/efficientnet_lite0_fusion")
    assert clf.predict(dcm).probability == pytest.approx(clf.predict(png).probability, abs=0.01)


DECODE_PEAK = """
import sys
from fracture_demo.imaging import decode_image
def kib(field):  # VmHWM: this process's peak (ru_maxrss would carry the parent's across exec)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
base = kib("VmRSS")
for path in sys.argv[1:]:
    decode_image(path)
print((kib("VmHWM") - base) * 1024)
"""


def test_one_decode_stays_within_its_memory_bound(tmp_path):
    """The README's bound on one decode, for the worst files inside the limits, each decoded at full size."""
    import subprocess
    import sys

    from tests import hostile_files as hostile
    files = {"16.png": hostile.png16_at_limit(), "at.dcm": hostile.dicom_at_limit(), "colour.jpg": hostile.jpeg_at_limit("RGB"),
             "rgba.png": hostile.png_at_limit("RGBA")}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    peak = subprocess.run([sys.executable, "-c", DECODE_PEAK, *(str(tmp_path / n) for n in files)], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()[-1]
    assert 0 < int(peak) <= imaging.DECODE_MEMORY, int(peak) / 2**20
