"""Strangers at the same moment: concurrent predict + explain on varied real radiographs, through the launched app.

Concurrent calls once crashed the server (heap corruption: explanations of one shared model ran
backward into its weights' .grad from two threads and read each other's hooked activations).
Every concurrent answer must equal the answer to the same request made alone.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from app import FractureApp, build_app, jpeg_file
from fracture_demo.zoo import ModelZoo, discover
from tests.real_images import real_radiographs
from tests.test_app import _free_port

IMAGES = [str(p) for p in real_radiographs()]
POINTS = ("screen", "confirm", "balanced")  # copies of a model at another threshold share its modules: under load too
JOBS = [(img, model, method, POINTS[(i + k) % 3]) for i, img in enumerate(IMAGES)
        for k, (model, method) in enumerate((("efficientnet_lite0_fusion", "gradcam"), ("vit_hybrid", "attention_rollout"),
                                             ("swin_hybrid", "gradcam++")))]
pytestmark = pytest.mark.skipif(len(IMAGES) < 8, reason="the shared data sets (../shared/data) are not present")


@pytest.fixture(scope="module")
def served():
    from gradio_client import Client
    # as app.py serves: each model computes two requests at once (one copy of its modules each)
    zoo = ModelZoo([e for e in discover() if e.name in ("efficientnet_lite0_fusion", "vit_hybrid", "swin_hybrid")], replicas=2)
    demo = build_app(zoo)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield zoo, lambda: Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def _heat(path_or_image) -> np.ndarray:
    """A map's pixels as the browser gets them: an image the app returned goes through its JPEG encoding."""
    return np.asarray(Image.open(jpeg_file(path_or_image) if isinstance(path_or_image, Image.Image)
                                 else path_or_image).convert("RGB"), np.float32)


def test_concurrent_predict_and_compare_match_one_at_a_time(served):
    from gradio_client import handle_file
    zoo, connect = served
    app = FractureApp(zoo)
    alone = {}
    for job in JOBS:
        img, model, method, point = job
        probs, _, heat, details, _ = app.predict(img, model, method, 0.5, 0, point)
        alone[job] = (probs["fractured"], _heat(heat), details.split("decision **")[1].split("**")[0])
    alone_compare = {img: [r[2] for r in app.compare(img, "gradcam", zoo.names)[0]] for img in IMAGES[:3]}

    def client_session(k: int):
        client, out = connect(), []
        for job in JOBS[k::4]:  # the four clients share the jobs out between them
            res = client.predict(handle_file(job[0]), job[1], job[2], 0.5, 0, job[3], api_name="/predict")
            p = next(c["confidence"] for c in res[0]["confidences"] if c["label"] == "fractured")
            out.append((job, p, _heat(res[2]), res[3].split("decision **")[1].split("**")[0]))
        img = IMAGES[k % 3]
        table, *_ = client.predict(handle_file(img), "gradcam", zoo.names, api_name="/compare")
        return out, (img, [row[2] for row in table["data"]])

    with ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(client_session, range(4)))
    answered = [r for s, _ in sessions for r in s]
    assert len(answered) == len(JOBS)
    for job, p, heat, decision in answered:
        p_alone, heat_alone, decision_alone = alone[job]
        assert p == pytest.approx(p_alone, abs=1e-4) and decision == decision_alone, job
        assert heat.shape == heat_alone.shape and np.abs(heat - heat_alone).mean() < 0.5, job  # same map
    for _, (img, probs) in sessions:
        assert probs == pytest.approx(alone_compare[img], abs=1e-3)


def test_replicas_share_the_weights_not_the_modules():
    import fracture_demo as fd
    clf = fd.load("assets/models/efficientnet_lite0_fusion")
    clf.replicate(3)
    copies = [clf._free.get() for _ in range(3)]
    assert len({id(m) for m in copies}) == 3 and clf.model in copies  # three sets of modules (hooks, activations)
    for other in copies[1:]:
        assert all(a is b for a, b in zip(copies[0].parameters(), other.parameters()))  # one set of weights
        assert all(a is b for a, b in zip(copies[0].buffers(), other.buffers()))


def test_many_identical_requests_all_complete(served):
    """Fifty people clicking one example at once: identical outputs once shared a cache path that one request
    rewrote while another streamed it, and answers were lost (gradio issues 8878 / 8351; app.cached_files)."""
    from gradio_client import handle_file
    zoo, connect = served
    clients = list(ThreadPoolExecutor(8).map(lambda _: connect(), range(50)))
    start = threading.Barrier(50)

    def ask(client):
        start.wait()
        res = client.predict(handle_file(IMAGES[0]), "efficientnet_lite0_fusion", "gradcam", 0.5, 0, "screen",
                             api_name="/predict")
        return next(c["confidence"] for c in res[0]["confidences"] if c["label"] == "fractured"), _heat(res[1]), _heat(res[2])

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, clients))
    assert len(answers) == 50
    p0, over0, heat0 = answers[0]
    for p, over, heat in answers:
        assert p == pytest.approx(p0, abs=1e-6) and np.array_equal(over, over0) and np.array_equal(heat, heat0)


def test_the_load_tests_browser_like_clients_get_gradio_clients_answers(served):
    """bench.load_test --client http (gradio's REST API on one connection) asks what gradio_client asks."""
    from gradio_client import handle_file

    from bench.load_test import HttpClient, probability
    client = served[1]()
    http = HttpClient(client.src)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda img: (probability(http.predict(img)),
                                             probability(client.predict(handle_file(img), api_name="/predict"))),
                                IMAGES[:3]))
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in answers)
