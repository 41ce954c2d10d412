"""bench/seed_spread.py: the spread of one recipe over seeds, read from each run's metrics.json."""
import importlib.util
import json
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("seed_spread", Path(__file__).parents[1] / "bench" / "seed_spread.py")
seed_spread = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_spread)


def fake_run(folder: Path, seed: int, auc: float, bal: float) -> Path:
    folder.mkdir()
    scored = {"roc_auc": auc, "balanced_accuracy": bal, "ci95": {"roc_auc": [auc - 0.1, auc + 0.1],
                                                                 "balanced_accuracy": [bal - 0.05, bal + 0.05]}}
    (folder / "metrics.json").write_text(json.dumps({"results": {"fracatlas val": scored, "fracatlas test": scored}}))
    (folder / "config.json").write_text(json.dumps({"training": {"seed": seed}}))
    return folder


def test_spread_over_seeds_and_interval_width(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"s{s}", s, auc, bal) for s, auc, bal in [(0, 0.80, 0.70), (1, 0.90, 0.74), (2, 0.85, 0.72)]]
    seed_spread.main([str(r) for r in runs] + ["--json", str(tmp_path / "out.json")])
    table = json.loads((tmp_path / "out.json").read_text())
    auc = table["spread"]["fracatlas test roc_auc"]
    assert table["seeds"] == [0, 1, 2] and auc["values"] == [0.8, 0.9, 0.85]
    assert auc["mean"] == pytest.approx(0.85) and auc["sd"] == pytest.approx(0.05) and auc["range"] == pytest.approx(0.1)
    assert auc["ci95_width"] == pytest.approx(0.2)
    assert "bone-fracture test roc_auc" not in table["spread"]  # a set no run scored is left out, not invented
    assert "| fracatlas val roc_auc | 0.800, 0.900, 0.850 | 0.850 | 0.050 | 0.100 | 0.200 |" in capsys.readouterr().out
