"""The audit's feature cache: one computation per distinct file, rows where asked."""
import numpy as np

from train.features import cached_by_hash


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
