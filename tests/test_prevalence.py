"""P(fractured) at a user's own share of fractures: Bayes' rule on the log-odds, the decision unchanged."""
import json
import math
from pathlib import Path

import pytest

import fracture_demo as fd
from fracture_demo.classifier import Prediction
from fracture_demo.prevalence import at_prevalence, shift, shifted

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"


def test_bayes_rule_on_the_odds():
    # at 40% calibrated, P = 0.5 means likelihood ratio 1.5; at 15% prevalence the odds are 0.15/0.85 x 1.5
    p = at_prevalence(Prediction(0.5, "fractured", 0.3), 0.15, 0.40).probability
    odds = 0.15 / 0.85 * (0.5 / 0.5) / (0.40 / 0.60)
    assert p == pytest.approx(odds / (1 + odds))
    assert shifted(0.7, shift(0.4, 0.4)) == 0.7 and shift(None, 0.4) == 0.0 and shift(0.2, None) == 0.0
    assert shifted(0.0, 3.0) == 0.0 and shifted(1.0, -3.0) == 1.0
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="between 0 and 1"):
            shift(bad, 0.4)


@pytest.mark.parametrize("p", [0.01, 0.2, 0.29, 0.31, 0.6, 0.99])
@pytest.mark.parametrize("prevalence", [0.05, 0.15, 0.4, 0.8])
def test_the_decision_never_changes(p, prevalence):
    pred = Prediction(p, fd.LABELS[int(p >= 0.3)], 0.3, ["a note"], True)
    moved = at_prevalence(pred, prevalence, 0.4)
    assert moved.label == pred.label and moved.warnings == ["a note"] and moved.radiograph is True
    assert (moved.probability >= moved.threshold) == (p >= 0.3)
    assert (moved.probability < p) == (prevalence < 0.4) or prevalence == 0.4
    assert pred.probability == p  # the original is left as it was


def test_every_bundled_model_records_what_its_probability_is_true_at():
    for folder in sorted(p for p in MODELS.iterdir() if (p / "config.json").is_file()):
        at = json.loads((folder / "config.json").read_text()).get("calibration_prevalence")
        assert at is not None and 0.1 < at < 0.6, folder.name
        assert fd.load(folder).calibration_prevalence == at
    assert math.isclose(fd.load(MODELS / "efficientnet_lite0_fusion").calibration_prevalence, 0.402, abs_tol=0.01)
