"""Several data sources trained as one: splits kept per source, copies never scored, sampling, FracAtlas's split file."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from train.__main__ import main as train_main
from train.data import Sample
from train.fracatlas_split import split_rows
from train.sampling import sample_weights
from train.shrink import MARKER
from train.sources import Source, group_ids, split_sources


def test_parse_names_a_folder_and_its_split_file():
    s = Source.parse("fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv")
    assert (s.name, s.root, s.split_file) == ("fracatlas", Path("data/fracatlas"), Path("assets/splits/fracatlas_split.csv"))
    assert Source.parse("mr=data/x").split_file is None
    for text in ("mr=data/x", "fracatlas=data/fracatlas:assets/splits/fracatlas_split.csv"):
        assert Source.parse(text).arg() == text  # what a child process is told reads back the same
    # the older spelling, DIR[:SPLIT_FILE], is mapped here: the source is named after its folder
    assert Source.parse("data/fracatlas:s.csv") == Source("fracatlas", Path("data/fracatlas"), Path("s.csv"))
    with pytest.raises(ValueError, match="NAME=DIR"):
        Source.parse("=data/x")


def test_a_copy_of_a_training_file_is_never_scored(two_sources):
    splits, dropped = split_sources(two_sources)
    assert sorted((s.source, s.rel) for s in dropped) == [("b", "test/fractured/copy_of_a.jpg"),
                                                           ("b", "val/fractured/copy_of_a.jpg")]
    assert not any(s.rel.endswith("copy_of_a.jpg") for part in ("val", "test") for s in splits[part])
    assert {s.source for s in splits["train"]} == {"a", "b"}
    groups = group_ids(splits["test"], two_sources)
    assert all(g.startswith(("a/", "b/g")) for g in groups)  # groups never span sources


def test_source_sampling_weighs_sources_equally_and_copies_once():
    def s(source, name, label=0):
        return Sample(Path(name), f"train/x/{name}", label, "train", source)
    samples = [s("mr", "12.jpg"), s("mr", "12-rotated1.jpg"), s("mr", "12-rotated2.jpg"), s("mr", "13.jpg"),
               s("fa", "IMG1.jpg"), s("fa", "IMG2.jpg"), s("fa", "IMG3.jpg", 1), s("fa", "IMG4.jpg")]
    w = sample_weights(samples, "source")
    assert w[:4].sum() == pytest.approx(0.5) and w[4:].sum() == pytest.approx(0.5)
    assert w[:3].sum() == pytest.approx(w[3])  # three copies of radiograph 12 weigh what 13 weighs
    assert sample_weights(samples, "none") is None
    with pytest.raises(ValueError, match="balance"):
        sample_weights(samples, "hospital")


def test_training_on_two_sources_scores_each(two_sources, tmp_path, capsys):
    out = tmp_path / "m"
    data = [a for src in two_sources for a in ("--data", src.arg())]
    args = ["--model", "mobilenetv3", "--batch-size", "8", "--image-size", "64", "--bootstrap", "20", "--workers", "1",
            "--epochs", "1", "--balance", "source", "--min-sensitivity", "0.9", "--output-dir", str(out), *data]
    marker = two_sources[1].root / MARKER  # b is a copy made by train.shrink: the config and the card must say so
    made = {"made_by": "python -m train.shrink", "size": 64, "format": "webp", "quality": 80, "original_fingerprint": "f"}
    marker.write_text(json.dumps(made))
    try:
        assert train_main(args) == 0
    finally:
        marker.unlink()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val", "a val", "a test", "b val", "b test"} <= set(metrics["results"])
    assert metrics["results"]["b test"]["n"] == 12  # 6 + 6, the copy of A's training file left out
    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg["data"]["sources"]) == {"a", "b"} and cfg["data"]["split_mode"] == "sources"
    assert cfg["data"]["sources"]["b"]["copy"] == made and cfg["data"]["sources"]["a"]["copy"] is None
    assert "`b` at 64 px, webp quality 80" in (out / "README.md").read_text()
    assert "sensitivity >= 0.9" in cfg["operating_point"]
    for name in ("a", "b"):  # the screening point holds on each source's validation files, not only pooled
        assert cfg["operating_points"]["screen"]["validation"][name]["sensitivity"] >= 0.9
    card = (out / "README.md").read_text()
    assert "| screen (default) | a missed fracture costs more" in card and "| confirm |" in card
    val = metrics["results"]["val"]["confusion_matrix"]
    assert val[1][1] / (val[1][0] + val[1][1]) >= 0.9  # the stated operating point holds on validation
    from train.evaluate import main as evaluate_main
    capsys.readouterr()
    assert evaluate_main(["--model", str(out), *data, "--bootstrap", "20", "--workers", "1", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)  # the saved model, each source on its own: as training scored it
    for name in ("a", "b"):
        assert scored[name]["n"] == metrics["results"][f"{name} test"]["n"]
        assert scored[name]["roc_auc"] == pytest.approx(metrics["results"][f"{name} test"]["roc_auc"], abs=1e-3)


def test_cli_needs_exactly_one_way_to_name_data(capsys):
    with pytest.raises(SystemExit):
        train_main(["--model", "mobilenetv3", "--output-dir", "x"])
    assert "--data" in capsys.readouterr().err


def test_fracatlas_split_excludes_conflicts_and_cross_source_copies():
    base = {"hand": "0", "leg": "1", "hip": "0", "shoulder": "0", "mixed": "0", "label_conflict": "0",
            "also_in_multi_region": "0", "dup_group": "", "label": "not fractured", "split": "train"}
    manifest = [{**base, "file": "IMG0000001.jpg"}, {**base, "file": "IMG0000009.jpg"},
                {**base, "file": "IMG0000010.jpg", "dup_group": "5"}, {**base, "file": "IMG0000500.jpg", "dup_group": "5"},
                {**base, "file": "IMG0000600.jpg", "label_conflict": "1", "label": "fractured"},
                {**base, "file": "IMG0000700.jpg", "also_in_multi_region": "1", "split": "test", "hand": "1"}]
    rows = split_rows(manifest)
    assert rows[0]["group"] == rows[1]["group"] != rows[2]["group"]  # a run of ten ids is one group
    assert rows[2]["group"] == rows[3]["group"]  # near-copies join across runs
    assert [r["split"] for r in rows[4:]] == ["excluded", "excluded"]
    assert rows[4]["note"] == "label conflict" and rows[5]["note"] == "also in Multi-Region"
    assert rows[0]["file"] == "train/not fractured/IMG0000001.jpg" and rows[5]["region"] == "mixed"


def test_committed_fracatlas_split_is_leak_free():
    rows = list(csv.DictReader(open(Path(__file__).resolve().parents[1] / "assets/splits/fracatlas_split.csv")))
    sides: dict[str, set] = {}
    for r in rows:
        if r["split"] != "excluded":
            sides.setdefault(r["group"], set()).add(r["split"])
    assert all(len(v) == 1 for v in sides.values())
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test", "excluded")}
    assert counts == {"train": 2355, "val": 488, "test": 498, "excluded": 122}
    assert not any(r["split"] != "excluded" and r["note"] for r in rows)


def test_platt_scaling_undoes_the_shift_class_weighting_leaves():
    """Logits shifted by log(5) (what a positive weight of 5 does): a temperature cannot recalibrate them, a bias does."""
    from train.calibrate import fit_calibration, fit_temperature
    from train.metrics import expected_calibration_error
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.2).astype(float)
    logits = rng.normal(np.where(y == 1, 1.5, -1.5), 1.0) + np.log(5) - np.log(4)  # a calibrated logit, shifted
    t, b = fit_calibration(logits, y)
    ece_platt = expected_calibration_error(y, 1 / (1 + np.exp(-(logits / t + b))))
    ece_temp = expected_calibration_error(y, 1 / (1 + np.exp(-logits / fit_temperature(logits, y))))
    assert b < -1.0 and ece_platt < 0.02 < ece_temp


def test_platt_scaling_weights_count_as_copies():
    """A file of weight 2 pulls the fit as two copies of it do: what lets each source have the same say."""
    from train.calibrate import fit_calibration
    rng = np.random.default_rng(1)
    y = (rng.random(600) < 0.3).astype(float)
    logits = rng.normal(np.where(y == 1, 1.0, -1.0), 1.5)
    heavy = np.arange(600) < 200
    weighted = fit_calibration(logits, y, weight=np.where(heavy, 2.0, 1.0))
    copied = fit_calibration(np.concatenate([logits, logits[heavy]]), np.concatenate([y, y[heavy]]))
    assert np.allclose(weighted, copied, atol=1e-4)
    assert not np.allclose(weighted, fit_calibration(logits, y), atol=1e-3)


def test_calibrate_refits_config_not_weights(two_sources, tmp_path):
    from train.calibrate import main as calibrate_main
    out = tmp_path / "m"
    args = ["--model", "mobilenetv3", "--batch-size", "8", "--image-size", "64", "--bootstrap", "0", "--workers", "1",
            "--epochs", "1", "--output-dir", str(out), "--data", f"a={two_sources[0].root}"]
    assert train_main(args) == 0
    weights = (out / "model.safetensors").read_bytes()
    cfg = json.loads((out / "config.json").read_text())
    assert calibrate_main(["--model", str(out), "--data", f"a={two_sources[0].root}", "--min-sensitivity", "1.0"]) == 0
    new = json.loads((out / "config.json").read_text())
    assert (out / "model.safetensors").read_bytes() == weights
    assert "bias" in new and "sensitivity >= 1.0" in new["operating_point"] and new["threshold"] <= cfg["threshold"]
    assert new["default_operating_point"] == "screen" and new["threshold"] == new["operating_points"]["screen"]["threshold"]
    new["operating_points"] = {}
    (out / "config.json").write_text(json.dumps(new))
    assert calibrate_main(["--model", str(out), "--data", f"a={two_sources[0].root}", "--points-only"]) == 0
    points = json.loads((out / "config.json").read_text())
    assert {k: points[k] for k in ("temperature", "bias", "calibration_prevalence")} == \
        {k: new[k] for k in ("temperature", "bias", "calibration_prevalence")}  # the calibration stays
    assert set(points["operating_points"]) == {"screen", "balanced", "confirm"}
    assert points["default_operating_point"] == "screen"  # as its recorded rule asked
    assert points["operating_points"]["screen"]["validation"]["a"]["sensitivity"] == 1.0
    for made in (cfg, points):  # training and re-placing record how firmly the validation groups pin each point
        for pt in made["operating_points"].values():
            lo, hi = pt["threshold_95"]
            assert 0 <= lo <= hi <= 1
    assert "95% range over resampled validation groups" in (out / "README.md").read_text()
    steps = [s["args"] for s in points["recalibrations"]]  # each call recorded, in order, for the card
    assert steps == [["--data", f"a={two_sources[0].root}", "--min-sensitivity", "1"],
                     ["--data", f"a={two_sources[0].root}", "--points-only"]]
    from train.card import write_model_card
    write_model_card(out, points, json.loads((out / "metrics.json").read_text()))
    card = (out / "README.md").read_text()
    assert f"train.calibrate --model DIR --data a={two_sources[0].root} --min-sensitivity 1  # commit" in card
    assert card.index("--min-sensitivity 1  #") < card.index("--points-only  #")
    one_class = tmp_path / "one_class"  # validation files of one class: nothing is fitted, nothing is written
    for split in ("train", "val", "test"):
        for label in ("fractured", "not fractured"):
            if split == "val" and label == "fractured":
                continue
            (one_class / split / label).mkdir(parents=True)
            for f in sorted((two_sources[0].root / split / label).glob("*"))[:3]:
                (one_class / split / label / f.name).write_bytes(f.read_bytes())
    before = (out / "config.json").read_text()
    for mode in ([], ["--points-only"]):
        assert calibrate_main(["--model", str(out), "--data", f"a={one_class}", *mode]) == 2
    assert (out / "config.json").read_text() == before


def test_probe_fits_on_pooled_sources_and_scores_each(two_sources, capsys):
    from train.probe import main as probe_main
    args = ["--models", "mobilenetv3", "--pretrained", "none", "--image-size", "64", "--bootstrap", "20", "--workers", "1"]
    for src in two_sources:
        args += ["--data", src.arg()]
    assert probe_main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped_as_copies_of_training_files"] == 2
    assert report["b test"]["n"] == 12 and report["test"]["n"] == report["a test"]["n"] + 12
    assert report["b test"]["n_groups"] == len({g for g in group_ids(split_sources(two_sources)[0]["test"], two_sources)
                                                if g.startswith("b/")})
    with pytest.raises(SystemExit):  # --data and --data-dir together
        probe_main(["--data", f"a={two_sources[0].root}", "--data-dir", str(two_sources[0].root)])
