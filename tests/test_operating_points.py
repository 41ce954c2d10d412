"""Operating points: each question's threshold holds on every source's validation files, and the model, the app,
the card and the report decide and say it at the point asked."""
from __future__ import annotations

import numpy as np
import pytest

from train.calibrate import operating_points


def two_hospitals(seed: int = 0):
    """Source b's fractures score lower than a's: a pooled threshold would miss b's."""
    rng = np.random.default_rng(seed)
    y = np.r_[rng.random(400) < 0.4, rng.random(300) < 0.2].astype(int)
    src = np.array(["a"] * 400 + ["b"] * 300)
    logit = rng.normal(np.where(y == 1, np.where(src == "a", 2.0, 0.8), -1.0), 1.0)
    return y, 1 / (1 + np.exp(-logit)), src


def rates(y, p, t):
    return (p[y == 1] >= t).mean(), (p[y == 0] < t).mean()


def test_each_point_holds_on_every_source_and_is_the_tightest_that_does():
    y, p, src = two_hospitals()
    pts = operating_points(y, p, src, 0.9, 0.9)
    cand = np.unique(p)
    screen, confirm = pts["screen"]["threshold"], pts["confirm"]["threshold"]
    for s in ("a", "b"):
        i = src == s
        assert rates(y[i], p[i], screen)[0] >= 0.9 and rates(y[i], p[i], confirm)[1] >= 0.9
        assert pts["screen"]["validation"][s]["sensitivity"] == pytest.approx(rates(y[i], p[i], screen)[0])
    above = cand[cand > screen][0]  # one score higher: some source falls under 0.9
    assert min(rates(y[src == s], p[src == s], above)[0] for s in "ab") < 0.9
    below = cand[cand < confirm][-1]
    assert min(rates(y[src == s], p[src == s], below)[1] for s in "ab") < 0.9
    pooled = np.quantile(p[y == 1], 0.1)  # the pooled rule misses more than 10% of b's fractures
    assert rates(y[src == "b"], p[src == "b"], pooled)[0] < 0.9 and screen < pooled
    bal = lambda t: [sum(rates(y[src == s], p[src == s], t)) / 2 for s in "ab"]  # noqa: E731
    assert min(bal(pts["balanced"]["threshold"])) == pytest.approx(max(min(bal(t)) for t in cand))
    assert screen < pts["balanced"]["threshold"] < confirm
    assert "every source" in pts["screen"]["rule"] and "0.9" in pts["screen"]["rule"]


def easy_and_hard(seed: int = 0):
    """An easy source whose negatives crowd one score, and a hard one whose fractures score low."""
    rng = np.random.default_rng(seed)
    y = (rng.random(700) < 0.3).astype(int)
    src = np.array(["easy"] * 400 + ["hard"] * 300)
    mu = np.where(src == "easy", np.where(y == 1, 2.0, -0.5), np.where(y == 1, -1.0, -2.0))
    return y, 1 / (1 + np.exp(-rng.normal(mu, np.where((src == "easy") & (y == 0), 0.3, 1.0)))), src


def test_the_balanced_point_serves_the_worst_source_not_the_easiest():
    """The easy source pulls the mean's best threshold past the confirm point, where the hard source's fractures
    are mostly missed (what step 22's out-of-fold predictions showed)."""
    y, p, src = easy_and_hard()
    bal = lambda t: [sum(rates(y[src == s], p[src == s], t)) / 2 for s in ("easy", "hard")]  # noqa: E731
    pts = operating_points(y, p, src)
    chosen, mean_best = pts["balanced"]["threshold"], max(np.unique(p), key=lambda t: np.mean(bal(t)))
    assert mean_best > pts["confirm"]["threshold"]  # the mean's rule: "balanced" stricter than "confirm"
    assert pts["screen"]["threshold"] < chosen < pts["confirm"]["threshold"]
    assert min(bal(chosen)) > min(bal(mean_best)) + 0.04  # the hard source gains what the easy one can spare
    assert pts["balanced"]["validation"]["hard"]["sensitivity"] > 0.4 > (p[(src == "hard") & (y == 1)] >= mean_best).mean()
    assert "worst source" in pts["balanced"]["rule"]


def test_sources_of_one_class_cannot_place_a_point():
    y, p, src = two_hospitals()
    y[src == "b"] = 0  # b has no fractures: it says nothing of sensitivity, and is left out
    pts = operating_points(y, p, src)
    assert set(pts["screen"]["validation"]) == {"a"}
    assert operating_points(np.zeros(5), np.linspace(0, 1, 5), ["a"] * 5) == {}


def test_a_model_decides_at_the_point_asked_on_the_same_modules():
    from PIL import Image

    from fracture_demo import FractureClassifier
    y, p, src = two_hospitals()
    points = operating_points(y, p, src)
    clf = FractureClassifier.new("mobilenetv3", "none", 64)
    clf.config.update(operating_points=points, default_operating_point="screen", threshold=points["screen"]["threshold"])
    sure = clf.at_operating_point("confirm")
    assert sure.threshold == points["confirm"]["threshold"] != clf.threshold
    assert sure.model is clf.model and sure._free is clf._free  # concurrent calls still take turns on the one copy
    assert clf.at_operating_point(None) is clf and clf.at_operating_point("screen") is clf
    assert clf.threshold == points["screen"]["threshold"]  # the original is left as it was
    x = Image.new("L", (64, 64), 90)
    p0 = clf.predict(x).probability
    assert sure.predict(x).label == ("fractured" if p0 >= sure.threshold else "not fractured")
    with pytest.raises(ValueError, match="no operating point 'triage'"):
        clf.at_operating_point("triage")


def test_every_bundled_model_offers_each_question_and_its_card_says_so():
    from pathlib import Path

    import fracture_demo as fd
    models = Path(__file__).resolve().parents[1] / "assets" / "models"
    for folder in sorted(p for p in models.iterdir() if (p / "config.json").is_file()):
        clf = fd.load(folder)
        if folder.name.endswith("_official"):  # the published protocol's twins: one threshold, on leaky validation
            assert clf.operating_points == {} and clf.operating_point is None, folder.name
            continue
        assert set(clf.operating_points) == {"screen", "balanced", "confirm"}, folder.name
        assert clf.threshold == clf.operating_points[clf.operating_point]["threshold"], folder.name
        pts = clf.operating_points
        assert pts["screen"]["threshold"] <= pts["balanced"]["threshold"] <= pts["confirm"]["threshold"], folder.name
        assert all(pt["threshold_95"][0] <= pt["threshold_95"][1] for pt in pts.values()), folder.name
        for v in pts["screen"]["validation"].values():
            assert v["sensitivity"] >= 0.9, folder.name
        assert "| screen" in (folder / "README.md").read_text(), folder.name
    assert fd.load(models / "efficientnet_lite0_fusion").operating_point == "screen"
