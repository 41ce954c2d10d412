"""One radiograph, one answer: lossless re-encodings decode to the same pixels and get the same probability."""

import numpy as np
import pytest
from PIL import Image

import fracture_demo as fd
from fracture_demo.zoo import ModelZoo, discover
from tests.test_imaging import _dicom

EXAMPLE = "assets/examples/fractured_hand.jpg"


def _encodings(tmp_path) -> dict[str, tuple[str, float]]:
    """name -> (file, how far its probability may move): lossless 0.02, lossy 0.05."""
    pixels = np.asarray(fd.decode_image(EXAMPLE).image)
    grey = Image.fromarray(pixels)
    out = {}

    def save(name, img, fmt, tol, **kw):
        path = tmp_path / name
        img.save(path, fmt, **kw)
        out[name] = (str(path), tol)

    save("8bit.png", grey, "PNG", 0.02)
    save("16bit.png", Image.fromarray(pixels.astype(np.uint16) * 257), "PNG", 0.02)
    out["mono2.dcm"] = (str(_dicom(tmp_path / "mono2.dcm", pixels.astype(np.uint16) * 257, bits_stored=16)), 0.02)
    out["mono1.dcm"] = (str(_dicom(tmp_path / "mono1.dcm", 65535 - pixels.astype(np.uint16) * 257, "MONOCHROME1",
                                   bits_stored=16)), 0.02)
    save("cmyk.jpg", grey.convert("CMYK"), "JPEG", 0.05, quality=95)
    save("palette.png", grey.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=256), "PNG", 0.05)
    return out


def test_lossless_encodings_decode_to_the_same_pixels(tmp_path):
    encodings = _encodings(tmp_path)
    ref = np.asarray(fd.decode_image(encodings["8bit.png"][0]).image)
    for name in ("16bit.png", "mono2.dcm", "mono1.dcm"):
        assert np.array_equal(np.asarray(fd.decode_image(encodings[name][0]).image), ref), name


def test_every_encoding_gets_the_same_probability(tmp_path):
    zoo = ModelZoo(discover())
    clf = zoo.get(zoo.default)
    encodings = _encodings(tmp_path)
    ref = clf.predict(encodings["8bit.png"][0]).probability
    for name, (path, tol) in encodings.items():
        assert clf.predict(path).probability == pytest.approx(ref, abs=tol), name


def test_the_app_and_the_library_give_one_answer_for_a_large_jpeg():
    from app import FractureApp
    zoo = ModelZoo(discover())
    app = FractureApp(zoo)
    probs, overlay, *_ = app.predict(EXAMPLE)  # the app decodes for display (1024 px), the library for the model
    assert probs["fractured"] == pytest.approx(zoo.get(zoo.default).predict(EXAMPLE).probability, abs=1e-6)
    assert max(overlay.size) > 1000, "the overlay keeps the display resolution"
