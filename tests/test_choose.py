"""train.choose, the ladder's rule as a command: both models on the same validation files, the verdict by margin."""
import json

import pytest
import torch

import fracture_demo as fd
from train.choose import compare, verdict
from train.choose import main as choose_main


def test_verdict_takes_the_candidate_only_past_the_margin():
    assert verdict(0.025, 0.01) == "candidate"
    assert verdict(-0.02, 0.01) == "incumbent"
    assert verdict(0.01, 0.01).startswith("tie") and verdict(-0.004, 0.01).startswith("tie")


def test_a_model_against_itself_gains_nothing_and_two_sizes_pair_the_same_files(two_sources, tmp_path):
    torch.manual_seed(0)
    small, large = fd.FractureClassifier.new("regnet", image_size=48), fd.FractureClassifier.new("regnet", image_size=64)
    same = compare(small, small, two_sources, "b", bootstrap=50)
    assert same["gain"] == 0 and same["gain_ci95"] == [0.0, 0.0] and same["verdict"].startswith("tie")
    assert set(same["scores"]) == {"a", "b"} and all(s["n"] > 0 for s in same["scores"].values())
    other = compare(small, large, two_sources, "b", bootstrap=50)
    b = other["scores"]["b"]
    assert b["n"] == same["scores"]["b"]["n"]  # each model at its own size, the same files scored
    assert other["gain"] == pytest.approx(b["candidate"] - b["incumbent"])
    assert other["verdict"] == verdict(other["gain"], 0.01)


def test_cli_writes_the_comparison_and_refuses_a_source_it_cannot_score(two_sources, tmp_path, capsys):
    for name, size in (("inc", 48), ("cand", 64)):
        fd.FractureClassifier.new("mobilenetv3", image_size=size).save_pretrained(tmp_path / name)
    data = [s.arg() for s in two_sources]
    args = ["--incumbent", str(tmp_path / "inc"), "--candidate", str(tmp_path / "cand"), "--bootstrap", "20"]
    args += sum([["--data", d] for d in data], [])
    assert choose_main(args + ["--choose-on", "b", "--json", str(tmp_path / "c.json")]) == 0
    out = json.loads((tmp_path / "c.json").read_text())
    assert out["choose_on"] == "b" and out["candidate"].endswith("cand") and "gain on b" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--choose-on"):
        choose_main(args + ["--choose-on", "nowhere"])
