"""The feature cache the audit and bench/floor_choices share (one computation per distinct file, rows where asked),
and the equalisations bench/equalize compares."""
import numpy as np
import pytest

from train.features import cached_by_hash, equalised


def test_cache_computes_each_distinct_file_once_and_keeps_rows_aligned(tmp_path):
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return {"f": np.array([[float(values[i])] for i in idx])}

    path = tmp_path / "c.npz"
    values = {0: 1, 1: 2, 2: 1, 3: 3}  # files 0 and 2 are byte-identical copies (hash "a")
    hashes = ["a", "b", "a", "c"]
    out = cached_by_hash(path, hashes, compute, {"model": "m", "size": 64})
    assert calls == [[0, 1, 3]] and out["f"][:, 0].tolist() == [1, 2, 1, 3]
    values.update({0: 4, 1: 2})  # a rerun on a grown set: only the new file is computed
    out = cached_by_hash(path, ["d", "c", "a", "b"], compute, {"model": "m", "size": 64})
    assert calls[-1] == [0] and out["f"][:, 0].tolist() == [4, 3, 1, 2]
    out = cached_by_hash(path, ["a", "b"], compute, {"model": "m", "size": 96})  # another size: nothing reused
    assert calls[-1] == [0, 1]


def test_equalisations_spread_a_dim_film_and_clahe_evens_out_its_halves():
    """A dim, low-contrast radiograph whose left half is darker: both equalisations spread its grey levels over the
    whole range; CLAHE, equalising each tile, also brings the two halves' brightness closer together."""
    rng = np.random.default_rng(0)
    im = rng.normal(60, 6, (1, 1, 64, 64))
    im[..., :32] -= 30
    im = np.clip(im, 0, 255).astype(np.uint8)
    assert equalised(im, "none") is im
    for how in ("global", "clahe"):
        out = equalised(im, how)
        assert out.shape == im.shape and out.dtype == np.uint8
        assert out.max() - out.min() > 200 > im.max() - im.min()
    flat, local = equalised(im, "global")[0, 0].astype(float), equalised(im, "clahe")[0, 0].astype(float)
    def gap(a):
        return a[:, 32:].mean() - a[:, :32].mean()
    assert gap(local) < 0.8 * gap(flat)  # one grey-level map for the whole image keeps the dark half dark
    with pytest.raises(ValueError, match="unknown equalisation"):
        equalised(im, "gamma")
