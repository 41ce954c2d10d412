"""The README's tables are built from what the report measured: regimes, matrix rows, seen-test handling."""
import numpy as np

from train.report import localization_table, markdown_table, matrix_table, operating_points_table, point_scores, regime


def _scores(auc, bal, by_region=None):
    m = {"roc_auc": auc, "balanced_accuracy": bal, "accuracy": bal, "ece": 0.05,
         "ci95": {"roc_auc": [auc - 0.1, auc + 0.05], "balanced_accuracy": [bal - 0.1, bal + 0.05], "accuracy": [0, 1]}}
    if by_region:
        m["by_region"] = by_region
    return m


def _row(arch, trained_on, scores, seen=None, loc=None, family=None):
    return {"architecture": arch, "family": family or arch, "trained_on": trained_on, "scores": scores, "localization": loc or {},
            "seen": {"official test": 309, "grouped test": 0, "fracatlas test": 0, **(seen or {})},
            "image_size": 224, "parameters": 3.4e6, "file_mb": 6.5, "latency_ms": 20.0}


def test_regime_names_what_a_model_trained_on():
    assert regime({"data": {"sources": {"bone-fracture": {}, "fracatlas": {}}}}) == "both sources"
    assert regime({"data": {"sources": {"fracatlas": {}}}}) == "FracAtlas"
    assert regime({"data": {"split_mode": "official"}}) == "Multi-Region official"
    assert regime({"data": {"split_mode": "grouped"}}) == "Multi-Region grouped"


def test_tables_rank_models_and_never_score_seen_test_sets():
    region = {"hand": {"n": 10, "positives": 3, "roc_auc": 0.9, "balanced_accuracy": 0.8,
                       "ci95": {"roc_auc": [0.8, 1.0], "balanced_accuracy": [0.7, 0.9]}}}
    loc = {"gradcam": {"pointing_game": 0.5, "pointing_game_ci95": [0.4, 0.6], "hits": 37, "n": 74, "mass_ratio": 3.0,
                       "seconds_per_image": 0.05},
           "eigencam": {"pointing_game": 0.2, "pointing_game_ci95": [0.1, 0.3], "hits": 15, "n": 74, "mass_ratio": 2.0,
                        "seconds_per_image": 0.9}}
    models = {
        "eff": _row("fusion", "both sources", {"official test": _scores(0.8, 0.8), "grouped test": _scores(0.8, 0.75),
                                               "fracatlas test": _scores(0.91, 0.83, region)}, loc=loc,
                    family="efficientnet_lite0"),  # a fusion sits in its fine-tuned branch's family
        "eff_mr": _row("efficientnet_lite0", "Multi-Region grouped", {"official test": _scores(0.8, 0.8), "grouped test": _scores(0.79, 0.7),
                                                                     "fracatlas test": _scores(0.62, 0.56, region)}),
        "eff_fa": _row("efficientnet_lite0", "FracAtlas", {"official test": _scores(0.7, 0.7), "grouped test": _scores(0.6, 0.55),
                                                          "fracatlas test": _scores(0.88, 0.8, region)}),
        "regnet_official": _row("regnet", "Multi-Region official", {"official test": _scores(0.99, 0.99)},
                                seen={"official test": 491, "grouped test": 2082}),
    }
    report = {"models": models, "meta": {"commit": "abc1234", "bootstrap": 1000, "fractures_with_boxes": 74,
                                         "n": {"official test": 506, "grouped test": 2088, "fracatlas test": 498}}}
    results = markdown_table(report).splitlines()
    assert [line.split(" | ")[0] for line in results[2:6]] == ["| eff", "| eff_fa", "| eff_mr", "| regnet_official"]
    assert "seen (2082 files)" in results[5] and "0.50 [0.40, 0.60] (gradcam)" in results[2]
    matrix = matrix_table(report).splitlines()
    assert [line.split(" | ")[:2] for line in matrix[2:5]] == [["| eff_mr", "Multi-Region grouped"], ["| eff_fa", "FracAtlas"],
                                                                ["| eff", "both sources"]]
    assert "0.900 [0.80, 1.00] (n=10, 3 fr.)" in matrix[4] and "regnet" not in matrix_table(report)
    loc_rows = localization_table(report).splitlines()
    assert loc_rows[2].startswith("| eff | gradcam | 0.500 [0.40, 0.60] | 37/74 | 3.00")
    assert "abc1234" in localization_table(report)


def test_score_key_follows_weights_calibration_and_test_files_not_recorded_scores(tmp_path):
    from train.report import score_key
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    cfg = {"architecture": "regnet", "image_size": 224, "temperature": 1.2, "bias": -0.5, "threshold": 0.3}
    key = score_key(tmp_path, cfg, [["a.jpg"], 1000])
    assert score_key(tmp_path, {**cfg, "metrics": {"fracatlas test": {}}}, [["a.jpg"], 1000]) == key
    assert score_key(tmp_path, {**cfg, "bias": 0.0}, [["a.jpg"], 1000]) != key
    assert score_key(tmp_path, {**cfg, "views": 4}, [["a.jpg"], 1000]) != key
    assert score_key(tmp_path, cfg, [["a.jpg", "b.jpg"], 1000]) != key
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert score_key(tmp_path, cfg, [["a.jpg"], 1000]) != key


def test_operating_points_are_scored_per_test_set_and_tabled():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.35, 0.2, 0.5, 0.3, 0.1, 0.1, 0.05, 0.4])
    points = {"screen": {"threshold": 0.3}, "confirm": {"threshold": 0.55, "threshold_95": [0.41, 0.702]}}
    scored = point_scores(y, p, [str(i) for i in range(10)], points, 50)
    assert scored["screen"]["sensitivity"] == 0.75 and scored["screen"]["specificity"] == 0.5
    assert scored["confirm"]["sensitivity"] == 0.5 and scored["confirm"]["specificity"] == 1.0
    lo, hi = scored["screen"]["ci95"]["sensitivity"]
    assert lo <= 0.75 <= hi
    both = {"grouped test": {"operating_points": scored}, "fracatlas test": {"operating_points": scored}}
    report = {"models": {"eff": _row("efficientnet_lite0", "both sources", both),
                         "twin": _row("regnet", "Multi-Region official", {"fracatlas test": {"operating_points": scored}})},
              "meta": {"commit": "abc1234"}}
    rows = operating_points_table(report).splitlines()
    assert rows[2].startswith("| eff | screen | 0.300 | 0.75 [")  # no recorded range: none shown
    assert rows[3].startswith("| eff | confirm | 0.550 (0.41-0.70) |")
    assert rows[4].startswith("| twin | screen | 0.300 | - | - | 0.75 [")  # its grouped test is seen: not scored
    assert "abc1234" in rows[-1]


def test_commit_stamp_says_when_tracked_files_differ_from_it(tmp_path, monkeypatch):
    """Every recorded number names the commit it came from; one made from uncommitted code or weights must not
    pass for that commit."""
    import subprocess

    from train.card import git_commit
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git + ["init", "-q"], check=True)
    (tmp_path / "model.txt").write_text("weights 1")
    subprocess.run(git + ["add", "model.txt"], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    monkeypatch.chdir(tmp_path)
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "notes.txt").write_text("untracked files do not count")
    assert git_commit() == head
    (tmp_path / "model.txt").write_text("weights 2")
    assert git_commit() == head + "+changes"
