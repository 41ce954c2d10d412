"""A person's path through the page, in headless Chromium driven by Playwright.

Uses Debian's Chromium (``apt-get install chromium``; .ci/run installs it): Playwright's own
browser download needs a network this project does not assume.
"""
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from app import build_app
from tests.test_app import _free_port, tiny_model, zoo  # noqa: F401  (fixtures)
from tests.test_guard import PHOTO, guarded  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "test-artifacts"))


@contextmanager
def _page(zoo):  # noqa: F811  (the fixture's value, passed on)
    """The launched app for ``zoo``, open in headless Chromium, its Predict button visible."""
    from playwright.sync_api import expect, sync_playwright
    demo = build_app(zoo)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    SHOTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")  # gradio keeps a stream open: never "networkidle"
            expect(page.locator("#predict")).to_be_visible(timeout=60_000)
            yield page
            browser.close()
    finally:
        demo.close()


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")
def test_upload_pick_model_read_probability_see_overlay(zoo, dataset):  # noqa: F811
    from playwright.sync_api import expect
    xray = dataset / "test" / "fractured" / "0.jpg"
    with _page(zoo) as page:
        page.locator("#model input").click()
        page.get_by_role("option", name=re.compile("^tiny-copy")).click()
        page.locator("#radiograph input[type=file]").set_input_files(str(xray))
        page.locator("#predict").click()
        details = page.locator("#details")
        expect(details).to_contain_text("P(fractured)", timeout=60_000)
        expect(details).to_contain_text("tiny-copy")
        prob = float(re.search(r"P\(fractured\) = ([0-9.]+)", details.inner_text()).group(1))
        assert prob == pytest.approx(zoo.get("tiny-copy").predict(xray).probability, abs=1e-3)
        expect(page.locator("#probability")).to_contain_text("fractured")
        overlay = page.locator("#overlay img")
        expect(overlay).to_be_visible(timeout=30_000)
        assert overlay.evaluate("img => img.naturalWidth") > 0
        page.screenshot(path=str(SHOTS / "browser_predict.png"), full_page=True)


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")
def test_photo_is_flagged_and_compare_reuses_the_upload(guarded, dataset):  # noqa: F811
    from playwright.sync_api import expect

    import fracture_demo as fd
    from fracture_demo.zoo import ModelZoo, ZooEntry
    with _page(ModelZoo([ZooEntry(str(guarded), "guarded", fd.load(guarded).config)])) as page:
        page.locator("#radiograph input[type=file]").set_input_files(PHOTO)
        page.locator("#predict").click()
        details = page.locator("#details")
        expect(details).to_contain_text("does not look like a radiograph", timeout=60_000)
        expect(details).to_contain_text("not meaningful")
        expect(page.locator("#probability")).to_contain_text("does not look like a radiograph")
        page.screenshot(path=str(SHOTS / "browser_photo_flagged.png"), full_page=True)
        page.reload(wait_until="load")
        expect(page.locator("#predict")).to_be_visible(timeout=60_000)
        page.locator("#radiograph input[type=file]").set_input_files(str(dataset / "test" / "fractured" / "0.jpg"))
        expect(details).to_contain_text("P(fractured)", timeout=60_000)  # the upload predicts by itself
        expect(details).not_to_contain_text("not meaningful")
        page.get_by_role("tab", name="Compare").click()
        expect(page.locator("#compare-radiograph")).to_contain_text(re.compile(r"0\s*\.jpg"), timeout=30_000)  # carried over
        page.locator("#compare").click()
        expect(page.locator("#agreement")).to_contain_text("Mean P(fractured) of 1 model ", timeout=60_000)
        page.screenshot(path=str(SHOTS / "browser_compare.png"), full_page=True)
