"""Cross-validation over groups: every train/val file held out exactly once, groups never split, test untouched."""
import csv
import json
from collections import defaultdict

from train.crossval import fold_sources, train_folds
from train.crossval import main as crossval_main
from train.sources import split_sources


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_each_file_is_held_out_once_and_groups_stay_whole(two_sources, tmp_path):
    a, b = two_sources
    folds = fold_sources(two_sources, 3, tmp_path, {"b"})
    assert all(f[0] == a for f in folds)  # a source not dealt keeps its own split in every fold
    original = {r["file"]: r for r in rows(b.split_file)}
    held = defaultdict(list)
    for i, f in enumerate(folds):
        for r in rows(f[1].split_file):
            assert r.keys() == original[r["file"]].keys()
            if original[r["file"]]["split"] == "test":
                assert r["split"] == "test"
            else:
                assert r["split"] in ("train", "val")
                if r["split"] == "val":
                    held[r["file"]].append(i)
    pooled = [f for f, r in original.items() if r["split"] in ("train", "val")]
    assert sorted(held) == sorted(pooled) and all(len(v) == 1 for v in held.values())
    fold_of_group = defaultdict(set)
    for f, (i,) in held.items():
        fold_of_group[original[f]["group"]].add(i)
    assert all(len(v) == 1 for v in fold_of_group.values())
    for i, f in enumerate(folds):  # and the loader sees it so: fold i's val files of b are exactly those held in fold i
        val = {s.rel for s in split_sources(f)[0]["val"] if s.source == "b"}
        assert val == {p for p, (j,) in held.items() if j == i} - {"val/fractured/copy_of_a.jpg"}


def test_crossval_trains_each_fold_once_and_scores_out_of_fold(two_sources, tmp_path, capsys):
    out = tmp_path / "cv"
    data = [a for s in two_sources for a in ("--data", s.arg())]
    train = ["--model", "mobilenetv3", "--batch-size", "8", "--image-size", "64", "--bootstrap", "0", "--workers", "1",
             "--epochs", "1"]
    assert crossval_main([*data, "--folds", "2", "--deal", "b", "--out", str(out), "--bootstrap", "20", "--", *train]) == 0
    result = json.loads((out / "crossval.json").read_text())
    b_pool = [s for s in split_sources(two_sources)[0]["train"] + split_sources(two_sources)[0]["val"] if s.source == "b"]
    assert result["out_of_fold"]["b"]["n"] == len(b_pool)  # every train/val file of b scored by the model without it
    assert result["out_of_fold"]["a"]["n"] == len([s for s in split_sources(two_sources)[0]["val"] if s.source == "a"])
    assert set(result["test_each_fold"]) == {"fold0", "fold1"}
    assert set(result["operating_points"]) == {"screen", "balanced", "confirm"}
    lo, hi = result["screen_threshold_95"]["out_of_fold"]
    assert 0 <= lo <= hi <= 1 and set(result["screen_threshold_95"]) == {"out_of_fold", "one_fold"}
    for name in ("a", "b"):
        assert 0 <= result["test_mean_of_folds"][name]["roc_auc"] <= 1
    weights = out / "fold0" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    train_folds(fold_sources(two_sources, 2, out / "splits", {"b"}), out, ["--model", "no-such-model"])
    assert weights.stat().st_mtime_ns == before  # a finished fold is not trained again (nor its arguments read)


def test_refuses_to_deal_a_source_it_was_not_given(two_sources, tmp_path, capsys):
    data = [a for s in two_sources for a in ("--data", s.arg())]
    assert crossval_main([*data, "--deal", "fracatlas", "--out", str(tmp_path / "cv"), "--", "--model", "mobilenetv3"]) == 2
    assert "no such source" in capsys.readouterr().err and not (tmp_path / "cv" / "fold0").exists()
