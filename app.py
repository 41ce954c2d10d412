"""Gradio app (and Hugging Face Spaces entry point): predict, explain and compare fracture models.

    python app.py [--port 7860] [--share] [--models DIR_OR_HUB_ID ...]

UI wiring only: every decision about models, images and explanations lives in ``fracture_demo``.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

from fracture_demo import runtime

runtime.apply()  # before torch loads: OpenMP reads its settings once (fracture_demo/runtime.py)

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder
from PIL import Image

from fracture_demo import ImageError, decode_image, get_spec, methods, threshold_range
from fracture_demo import prevalence as pretest
from fracture_demo.engine import PRECISIONS
from fracture_demo.explain import heatmap_image, overlay
from fracture_demo.imaging import DISPLAY_SIDE
from fracture_demo.outlines import Outlines
from fracture_demo.zoo import ModelZoo, discover, ensemble_label, supported_method

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.jpg")) + sorted((ROOT / "assets" / "examples").glob("*.png"))
FRACATLAS_EXAMPLES = sorted((ROOT / "assets" / "examples" / "fracatlas").glob("*.jpg"))
OUTLINED = ("Green outline: the fracture as drawn by FracAtlas's annotators (FracAtlas, Abedeen et al., Scientific "
            "Data 2023, CC BY 4.0): does the map point at it?")
RESULTS = ROOT / "assets" / "results"
ROC_PNGS = {"ROC curves, Multi-Region grouped test": RESULTS / "roc.png",
            "ROC curves, FracAtlas test": RESULTS / "roc_fracatlas.png"}
POINTS = {"screen": "Screening: miss few fractures", "balanced": "Balanced: both errors alike",
          "confirm": "Confirming: few false alarms"}  # train.calibrate, in words
PRECISION_ENV = "FRACTURE_PRECISION"  # the served arithmetic (serving_zoo): auto | bf16 | f32
NOTICE = ("**Research and teaching demo. Not a medical device.** It must not be used to diagnose, triage or "
          "treat anyone; its models were trained on a small public data set with known flaws (see About).")


class FractureApp:
    """The app's behaviour, callable without a browser (the tests call it directly)."""

    def __init__(self, zoo: ModelZoo, outlines: Outlines | None = None) -> None:
        self.zoo = zoo
        self.outlines = outlines if outlines is not None else Outlines.load()

    def _decode(self, path: str | None):
        if not path:
            raise gr.Error("Upload a radiograph first (PNG, JPEG, BMP, TIFF or DICOM).")
        try:
            decoded = decode_image(path, draft_side=DISPLAY_SIDE)
        except ImageError as exc:
            raise gr.Error(f"Cannot use this file: {exc}.") from exc
        for note in decoded.warnings:
            gr.Warning(note)
        return decoded

    def methods_for(self, model: str) -> list[tuple[str, str]]:
        clf_cfg = self.zoo.entries[model].config if model in self.zoo.entries else None
        arch = (clf_cfg or {}).get("architecture") or self.zoo.get(model).arch
        return [(methods.LABELS[m], m) for m in get_spec(arch).explain_methods]

    def predict(self, image: str | None, model: str | None = None, method: str = "gradcam", opacity: float = 0.5,
                prevalence: float = 0, operating_point: str | None = None):
        """-> (label probabilities, overlay, raw heatmap, details markdown, state for re-blending).

        ``prevalence``: the user's share of fractured radiographs in percent (0: as calibrated).
        ``operating_point``: the question the decision answers (``POINTS``; None: the model's own)."""
        wanted = check_prevalence(prevalence)
        check_point(operating_point)
        decoded = self._decode(image)
        model = model or self.zoo.default
        clf = self.zoo.get(model, operating_point)
        method = supported_method(clf, method)
        e = clf.explain(decoded, method, opacity)
        delta = pretest.shift(wanted, clf.calibration_prevalence)
        p = pretest.at_prevalence(e.prediction, wanted, clf.calibration_prevalence)
        flips = [pretest.shifted(f, delta) for f in e.flip_probabilities]
        if p.radiograph is None:  # this model has no guard of its own: the zoo's guard model answers
            warning = self.zoo.radiograph_warning(decoded)
            p.radiograph, p.warnings = warning is None, p.warnings + [warning] * bool(warning)
        if p.radiograph is False:
            gr.Warning("This image does not look like a radiograph: the probability is not meaningful.")
        shown = (f"{p.probability:.3f} (**not meaningful**: the image does not look like a radiograph)"
                 if p.radiograph is False else f"**{p.probability:.3f}**")
        views = " (the mean of the image and its three flips)" if clf.views > 1 else ""
        decision = (f"no decision (not a radiograph; it would be *{p.label}* at {point_note(clf)})."
                    if p.radiograph is False else
                    f"decision **{p.label}** at {point_note(clf)}: {p.threshold:.3f}, so it can differ from the larger "
                    f"probability. {sureness(flips, p.threshold)}")
        details = (f"**{model}** ({clf.arch}): P(fractured){views} = {shown}{prevalence_note(clf, wanted)}, {decision} "
                   f"Map: {methods.LABELS[method]} of the evidence for *{e.target}*."
                   + "".join(f"\n\n⚠️ {w}" for w in p.warnings))
        label = {"does not look like a radiograph": 1.0} if p.radiograph is False else p.as_label_dict()
        outline = self.outlines.find(image)
        shown_overlay = outline.draw(e.overlay) if outline else e.overlay
        if outline:
            details += f"\n\n{OUTLINED}"
        raw = heatmap_image(e.heatmap[::2, ::2])  # half the display size: a smooth map from the model's input side
        return label, shown_overlay, raw, details, (np.asarray(e.image), e.heatmap, outline)

    def reblend(self, state, opacity: float):
        if not state:
            return None
        img, heat, outline = state
        blended = overlay(Image.fromarray(img), heat, opacity)
        return outline.draw(blended) if outline else blended

    def compare(self, image: str | None, method: str = "gradcam", models: list[str] | None = None,
                operating_point: str | None = None, prevalence: float = 0, opacity: float = 0.5):
        """-> (table rows, gallery of overlays, ensemble probabilities); ``models``: None = all; each model decides at
        ``operating_point`` (None: its own) and shows P(fractured) at ``prevalence`` percent (0: as calibrated)."""
        wanted = check_prevalence(prevalence)
        check_point(operating_point)
        decoded = self._decode(image)
        if not self.zoo.names:
            raise gr.Error("No trained models are available.")
        names = self.zoo.names if models is None else list(models)
        if not names:
            raise gr.Error("Tick at least one model to compare.")
        unknown = [m for m in names if m not in self.zoo.entries]
        if unknown:
            raise gr.Error(f"Unknown model(s): {', '.join(unknown)}. Available: {', '.join(self.zoo.names)}.")
        explanations = self.zoo.compare(decoded, method, opacity, names, operating_point)
        preds = [pretest.at_prevalence(e.prediction, wanted, self.zoo.get(n).calibration_prevalence)
                 for n, e in zip(names, explanations)]
        probs = np.array([p.probability for p in preds])
        mean = float(probs.mean())
        agreement = (f"Mean P(fractured) of {len(probs)} model{'s' * (len(probs) > 1)} **{mean:.3f}**; they range from {probs.min():.3f} to "
                     f"{probs.max():.3f} (standard deviation {probs.std():.3f})"
                     + (": **they disagree** (some above 0.5, some below)." if probs.min() < 0.5 <= probs.max() else "."))
        if len(probs) > 1:
            agreement += (f" The mean shows how far the models agree; it is not a better answer than {self.zoo.default} "
                          f"alone (on validation radiographs no mean of the app's models ranked FracAtlas fractures "
                          f"better by the ladder's margin of 0.01: docs/ladder.md, *Choices that cost no training*).")
        warning = self.zoo.radiograph_warning(decoded)
        if warning:
            agreement = f"⚠️ {warning[0].upper()}{warning[1:]}: no model's decision stands.\n\n{agreement}"
        outline = self.outlines.find(image)
        if outline:
            agreement += f"\n\n{OUTLINED}"
        rows, gallery = [], []
        if wanted is not None:
            agreement += f"\n\nEach model's P(fractured) at {wanted:.0%} fractured radiographs (decisions unchanged)."
        for name, e, p in zip(names, explanations, preds):
            entry = self.zoo.entries[name]
            scores = [entry.score("fracatlas test", "roc_auc"), entry.score(), entry.score("official test", "accuracy")]
            rows.append([name, entry.trained_on, round(p.probability, 4), "no decision" if warning else p.label,
                         *(round(s, 3) if s is not None else None for s in scores)])
            gallery.append((outline.draw(e.overlay) if outline else e.overlay,
                            f"{name}: {p.probability:.2f} ({methods.LABELS[e.method]})"))
        return rows, gallery, ensemble_label(mean), agreement


def prevalence_note(clf, wanted: float | None) -> str:
    """Which share of fractures the probability assumes, in words."""
    at = clf.calibration_prevalence
    if wanted is None:
        return f" (true where {at:.0%} of radiographs show a fracture, as in its validation files)" if at else ""
    if at is None:
        return " (this model does not record the share of fractures it was calibrated at: shown as calibrated)"
    return f" at {wanted:.0%} fractured radiographs (calibrated at {at:.0%}; the decision does not change)"


def check_prevalence(prevalence: float | None) -> float | None:
    """The user's share of fractures in percent -> a fraction (None: as calibrated)."""
    if not 0 <= (prevalence or 0) < 100:
        raise gr.Error(f"The share of fractures must be at least 0 and under 100%, not {prevalence}.")
    return prevalence / 100 if prevalence else None


def check_point(operating_point: str | None) -> None:
    if operating_point and operating_point not in POINTS:
        raise gr.Error(f"Unknown operating point {operating_point!r}: choose one of {', '.join(POINTS)}.")


def point_note(clf) -> str:
    """Which threshold decided, and what it promised on each source's validation files."""
    name = clf.operating_point
    point = clf.operating_points.get(name or "")
    if not point:
        return "its one threshold, chosen on validation data (this model offers no choice of question)"
    seen = "; ".join(f"{src} sensitivity {v['sensitivity']:.2f}, specificity {v['specificity']:.2f}"
                     for src, v in point["validation"].items())
    span = threshold_range(point)
    pinned = f"; resampling those validation groups moves it over {span}" if span else ""
    return f"the threshold for *{POINTS.get(name, name).lower()}*, chosen on validation data ({seen}{pinned})"


def sureness(flip_probs: list[float], threshold: float) -> str:
    """In words: how far P(fractured) moves when the radiograph is flipped, and whether that crosses the threshold."""
    lo, hi = min(flip_probs), max(flip_probs)
    text = f"Under flips of the image it ranges {lo:.3f}-{hi:.3f}"
    if lo < threshold <= hi:
        return text + ": **not sure**, flipped views fall on both sides of the threshold."
    return text + (": the decision holds." if hi - lo < 0.1 else ": the decision holds, but the number is loose.")


def jpeg_file(image: Image.Image) -> str:
    """``image`` as a JPEG in gradio's upload folder, under its content's hash; a file already there is never
    rewritten. Works around gradio's cache race (gradio issues 8878 and 8351): gradio writes each returned PIL
    image in place at a path named by its content's hash, so two requests with identical outputs rewrite a file
    a third is streaming, and that answer is lost (h11 "Too little data for declared Content-Length"). Here the
    bytes go to a temporary name and are renamed into place; gradio serves a path inside its folder as it is."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG")  # JPEG: encodes 5-10x faster than gradio's default WebP
    data = buf.getvalue()
    folder = Path(get_upload_folder()) / hashlib.sha256(data).hexdigest()
    path = folder / "image.jpeg"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=folder, prefix=".image.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(staging, path)
    return str(path)


def _as_files(value):
    """Every image in a handler's outputs (alone or in a gallery's (image, caption) pairs) as a :func:`jpeg_file`."""
    if isinstance(value, Image.Image):
        return jpeg_file(value)
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return [(_as_files(item[0]), *item[1:]) for item in value]
    return value


def cached_files(handler):
    """``handler`` with its images served as files (:func:`jpeg_file`): what the UI wires, not what tests call."""
    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        out = handler(*args, **kwargs)
        return tuple(_as_files(v) for v in out) if isinstance(out, tuple) else _as_files(out)
    return wrapped


def _about(zoo: ModelZoo) -> str:
    def table(name: str) -> str:
        path = RESULTS / f"{name}.md"
        return path.read_text() if path.is_file() else "_Not generated yet (`python -m train.report`)._"
    parts = [NOTICE, "## Results (bundled models)", table("results"),
             "## Will it work on radiographs from another hospital? Trained on one source, tested on the other",
             table("matrix"),
             "## Which question? Each operating point on each source's test", table("operating-points"),
             "## Do the maps point at the fracture? Checked against FracAtlas's drawn outlines", table("localization"),
             "## The data and its caveats",
             "FracAtlas (Abedeen et al., Scientific Data 10, 521, 2023; CC BY 4.0): 3,463 radiographs of hands, legs, "
             "hips and shoulders from three hospitals in Bangladesh, 18% fractured, fractures outlined. Its split "
             "here is the data set's own by groups, less 11 images with conflicting labels and 114 images also in "
             "the Multi-Region set.",
             "Bone Fracture Multi-Region X-ray Data (Kaggle, bmadushanirodrigo; merging Bone Break Classifier by "
             "Mohan Kumar, bone_fracture by Abdelaziz Faramawy and fracture by Harsha Arya), ODC-By 1.0. "
             "Its official splits leak: 491 of the 506 test images are byte-identical to training images, and "
             "most training images are rotated copies of 99 radiographs. Official-split accuracy therefore mostly "
             "measures memorisation; the *grouped* split keeps every group of related images on one side and is "
             "the number to judge a model by. Some images carry arrows or text a model can read instead of bone."]
    return "\n\n".join(parts)


def _cards(zoo: ModelZoo) -> dict[str, str]:
    """Model name -> its card (README.md without the Hub's front matter)."""
    cards = {}
    for name, entry in zoo.entries.items():
        readme = Path(entry.source) / "README.md"
        if readme.is_file():
            cards[name] = re.sub(r"^---\n.*?\n---\n", "", readme.read_text(), flags=re.S)
    return cards


def examples(target: gr.File) -> None:
    """Both example sets, feeding ``target``: FracAtlas's (with drawn outlines) and the Multi-Region set's."""
    if FRACATLAS_EXAMPLES:
        gr.Examples([[str(p)] for p in FRACATLAS_EXAMPLES], inputs=[target],
                    label="FracAtlas test radiographs (CC BY 4.0; fractures outlined by its annotators)")
    if EXAMPLES:
        gr.Examples([[str(p)] for p in EXAMPLES], inputs=[target], label="Multi-Region test radiographs (ODC-By)")


def build_app(zoo: ModelZoo) -> gr.Blocks:
    app = FractureApp(zoo)
    with gr.Blocks(title="Bone-fracture X-ray classifier") as demo:
        gr.Markdown("# Bone-fracture X-ray classifier\nUpload a radiograph, pick a model, and see how likely a "
                    "fracture is and where the model looked.\n\n" + NOTICE)
        with gr.Tab("Predict"):
            file = _predict_tab(app, zoo)
        with gr.Tab("Compare"):
            _compare_tab(app, zoo, file)
        with gr.Tab("About"):
            _about_tab(zoo)
    # each model computes one request at a time (its lock) on every core; decoding and encoding of other
    # requests overlap with it: two per core measured best (bench/load_test.py, docs/speed.md)
    demo.queue(default_concurrency_limit=2 * runtime.usable_cores(), max_size=64)
    return demo


def _predict_tab(app: FractureApp, zoo: ModelZoo) -> gr.File:
    """One radiograph, one model: probability, decision, map. Returns the upload, which Compare shares."""
    predict, reblend = cached_files(app.predict), cached_files(app.reblend)
    choices = [(zoo.entries[n].label, n) for n in zoo.names]
    default = zoo.default
    offered = app.methods_for(default) if default else [(methods.LABELS[methods.FALLBACK], methods.FALLBACK)]
    with gr.Row():
        with gr.Column(scale=1):
            file = gr.File(label="Radiograph (PNG, JPEG, BMP, TIFF, 16-bit, DICOM)", type="filepath",
                           elem_id="radiograph")
            camera = gr.Image(label="…or webcam / clipboard", type="filepath",
                              sources=["webcam", "clipboard"], height=160)
            model = gr.Dropdown(choices, value=default, label="Model", elem_id="model")
            # choices follow the model; API callers may ask any method its model offers
            method = gr.Dropdown(offered, value=methods.FALLBACK, label="Explanation", elem_id="method",
                                 allow_custom_value=True)
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Overlay opacity")
            prevalence = gr.Slider(0, 95, value=0, step=1, elem_id="prevalence", label=(
                "Share of fractures among the radiographs you see, % (pre-test probability; 0: as calibrated)"))
            point = gr.Radio([(v, k) for k, v in POINTS.items()], value="screen", elem_id="operating-point",
                             label="Decide for (each threshold chosen on every source's validation files)")
            run = gr.Button("Predict", variant="primary", elem_id="predict")
            examples(file)
        with gr.Column(scale=2):
            label = gr.Label(num_top_classes=2, label="Calibrated probability", elem_id="probability")
            details = gr.Markdown(elem_id="details")
            with gr.Row():
                over = gr.Image(label="Explanation overlay", type="filepath", elem_id="overlay", height=420)
                heat = gr.Image(label="Raw heatmap", type="filepath", elem_id="heatmap", height=420)
    state = gr.State()
    outputs = [label, over, heat, details, state]
    inputs = [file, model, method, opacity, prevalence, point]
    run.click(predict, inputs, outputs, api_name="predict")
    file.upload(predict, inputs, outputs, api_visibility="private")
    prevalence.release(predict, inputs, outputs, api_visibility="private")
    point.change(predict, inputs, outputs, api_visibility="private")
    camera.change(lambda p: p, camera, file, api_visibility="private").then(
        predict, inputs, outputs, api_visibility="private")
    model.change(lambda m: gr.Dropdown(choices=app.methods_for(m), value=methods.FALLBACK), model, method,
                 api_visibility="private")
    opacity.release(reblend, [state, opacity], over, api_visibility="private")
    return file


def _compare_tab(app: FractureApp, zoo: ModelZoo, file: gr.File) -> None:
    """Every ticked model on one radiograph, side by side."""
    compare = cached_files(app.compare)
    with gr.Row():
        cfile = gr.File(label="Radiograph (the one uploaded in Predict, or another)", type="filepath",
                        elem_id="compare-radiograph")
        cmethod = gr.Dropdown([(methods.LABELS[m], m) for m in methods.COMPARE],
                              value=methods.FALLBACK, label="Explanation (Grad-CAM where a model lacks it)")
        cpoint = gr.Radio([(v, k) for k, v in POINTS.items()], value="screen", label="Decide for")
        cprevalence = gr.Slider(0, 95, value=0, step=1, label="Share of fractures, % (0: as calibrated)")
        crun = gr.Button("Compare models", variant="primary", elem_id="compare")
    cmodels = gr.CheckboxGroup(zoo.names, value=zoo.preferred_names or zoo.names, label=(
        "Models (ticked: the app's models, trained on both data sources; the *_official twins trained on the "
        "Multi-Region official split, which leaks, and saw nearly every test image of it)"))
    examples(cfile)
    ensemble = gr.Label(num_top_classes=2, label="Mean of the ticked models (agreement, not a better answer)")
    agreement = gr.Markdown(elem_id="agreement")
    table = gr.Dataframe(headers=["model", "trained on", "P(fractured)", "decision", "FracAtlas ROC AUC",
                                  "grouped bal. acc", "official acc"], label="Each model on this image")
    gallery = gr.Gallery(label="Where each model looked", columns=4)
    crun.click(compare, [cfile, cmethod, cmodels, cpoint, cprevalence], [table, gallery, ensemble, agreement], api_name="compare")
    # one upload serves both tabs: Predict's radiograph (uploaded, example or camera) is Compare's too
    file.change(lambda p: p, file, cfile, api_visibility="private")
    cfile.upload(lambda p: p, cfile, file, api_visibility="private")


def _about_tab(zoo: ModelZoo) -> None:
    """The ROC curves and one model card at a time."""
    default = zoo.default
    gr.Markdown(_about(zoo))
    for title, png in ROC_PNGS.items():
        if png.is_file():
            gr.Image(str(png), label=title, interactive=False)
    cards = _cards(zoo)
    if cards:  # one card shown at a time: every block is configured anew for each visitor's session
        first = default if default in cards else next(iter(cards))
        card_name = gr.Dropdown(list(cards), value=first, label="Model card", elem_id="card-model")
        card = gr.Markdown(cards[first], elem_id="card")
        card_name.change(lambda n: cards.get(n, ""), card_name, card, api_visibility="private")


def serving_zoo(extra: list[str] | None = None, replicas: int | None = None, precision: str | None = None) -> ModelZoo:
    """The zoo as the app serves it: ``replicas`` requests per model at once (default: one per core), each on
    cores / replicas torch threads. One thread per request by default: a batch of four views gains little from
    a second thread, and threads that wait for each other cost kernel time (bench/load_test.py, docs/speed.md).
    ``precision`` (default ``$FRACTURE_PRECISION``, else "auto"): "auto" serves the families that gain from it in
    bfloat16 (the registry's ``serve_bf16``; VGG19's predict + map about 5x faster where the CPU has bfloat16 units,
    P(fractured) moved by at most 0.03 on real radiographs: docs/speed.md, bench/precision.py); "f32" serves
    torch's numbers."""
    precision = precision or os.environ.get(PRECISION_ENV) or "auto"
    replicas = max(1, replicas or runtime.usable_cores())
    torch.set_num_threads(max(1, runtime.usable_cores() // replicas))
    return ModelZoo(discover(extra), replicas=replicas, precision=precision)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    ap.add_argument("--host", default=None, help="e.g. 0.0.0.0 to listen on every interface")
    ap.add_argument("--share", action="store_true", help="public gradio.live link (needs a network)")
    ap.add_argument("--models", nargs="*", default=[], help="extra model folders or Hub ids")
    ap.add_argument("--replicas", type=int, default=None,
                    help="requests each model computes at once, on cores/replicas torch threads each (default: one per core)")
    ap.add_argument("--precision", choices=PRECISIONS, default=None,
                    help=f"the inference runtime's arithmetic: auto (bf16 for the families that gain from it), bf16, "
                         f"or f32 (torch's numbers); default ${PRECISION_ENV}, else auto")
    args = ap.parse_args(argv)
    zoo = serving_zoo(args.models, args.replicas, args.precision)
    if zoo.default:
        zoo.get(zoo.default)  # warm: the first request should not pay for loading
    build_app(zoo).launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
