"""What a shared server needs beyond one request: per-model load locks, Hub errors that say which, outline lookups."""
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fracture_demo import hub
from fracture_demo import zoo as zoo_module
from fracture_demo.outlines import OUTLINES_FILE, Outlines
from fracture_demo.zoo import ModelZoo, ZooEntry


class _Loaded:
    """Stands in for a FractureClassifier: the zoo only replicates it and asks for its operating points."""
    operating_points: dict = {}

    def replicate(self, copies: int) -> None:
        pass


def test_loading_one_model_never_blocks_another(monkeypatch):
    release, loads = threading.Event(), []

    def load(source, precision="f32"):
        loads.append(source)
        if source == "slow":
            assert release.wait(10)
        return _Loaded()

    monkeypatch.setattr(zoo_module, "load", load)
    z = ModelZoo([ZooEntry(s, s, None) for s in ("slow", "ready", "other")])
    z.get("ready")
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(z.get, "slow") for _ in range(2)]  # two requests for one model: one load
        time.sleep(0.2)
        t0 = time.perf_counter()
        z.get("ready")  # loaded: answered while "slow" is loading
        z.get("other")  # not loaded: loads beside it
        waited = time.perf_counter() - t0
        assert not any(f.done() for f in slow)
        release.set()
        assert slow[0].result() is slow[1].result()
    assert waited < 0.5 and sorted(loads) == ["other", "ready", "slow"]


def _http_error(cls, status: int, **kw):
    request = httpx.Request("GET", "https://huggingface.co/api/models/me/x")
    return cls("refused", response=httpx.Response(status, request=request), **kw)


@pytest.mark.parametrize("error,kind,says", [
    (lambda e: _http_error(e.RepositoryNotFoundError, 404), FileNotFoundError, "no such Hub repo .*not logged in"),
    (lambda e: _http_error(e.RevisionNotFoundError, 404), FileNotFoundError, "no revision"),
    (lambda e: _http_error(e.GatedRepoError, 403), PermissionError, "gated.*log in"),
    (lambda e: _http_error(e.HfHubHTTPError, 401), PermissionError, "refused access \\(401\\).*log in"),
    (lambda e: e.LocalEntryNotFoundError("no cache"), ConnectionError, "cannot be reached"),
])
def test_hub_errors_say_which(monkeypatch, error, kind, says):
    import huggingface_hub
    from huggingface_hub import errors

    def fail(*args, **kwargs):
        raise error(errors)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(kind, match=says):
        hub.resolve_model_dir("me/x")


def test_a_bug_in_the_download_is_not_called_not_found(monkeypatch):
    import huggingface_hub

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", bug)
    with pytest.raises(KeyError):
        hub.resolve_model_dir("me/x")


def test_outlines_hash_only_files_of_an_examples_size(tmp_path, monkeypatch):
    outlines = Outlines.load()
    example = next(OUTLINES_FILE.parent.glob("fractured_*.jpg"))
    other = tmp_path / "upload.jpg"
    other.write_bytes(example.read_bytes() + b"\0")  # one byte longer: not an example
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda data=b"": hashed.append(len(data)) or real(data))
    assert outlines.find(other) is None and not hashed
    assert outlines.find(example) is not None and hashed == [example.stat().st_size]
