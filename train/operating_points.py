"""Decision thresholds, one per question a reader brings, each chosen on validation files per data source.

One pooled threshold hides one hospital's misses behind another's hits: step 15's pooled sensitivity of 0.90
on validation became 0.74 on FracAtlas test and 0.90 on Multi-Region. Each point here holds on every source's
validation files, so its promise is the weakest hospital's:

  screen    "do not miss a fracture": the highest threshold whose sensitivity reaches the target on every source;
  balanced  "one answer, errors weighed alike": the threshold of the highest balanced accuracy on the worst source
            (ties broken by the mean over sources). The mean alone let the source whose validation files are easiest
            decide: on step 22's out-of-fold predictions it sat above the confirm point, FracAtlas sensitivity 0.34;
  confirm   "only call it when sure": the lowest threshold whose specificity reaches the target on every source.
"""
from __future__ import annotations

import numpy as np

POINTS = ("screen", "balanced", "confirm")


def rates(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity of ``p >= t`` for each candidate threshold in ``t``."""
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    sens = 1 - np.searchsorted(pos, t, side="left") / max(len(pos), 1)
    spec = np.searchsorted(neg, t, side="left") / max(len(neg), 1)
    return sens, spec


def operating_points(y: np.ndarray, p: np.ndarray, sources: list[str] | np.ndarray,
                     min_sensitivity: float = 0.9, min_specificity: float = 0.9) -> dict[str, dict]:
    """Point name -> {"threshold", "rule", "validation": source -> {"sensitivity", "specificity", "n"}}.

    Sources without both classes are left out of the choice (they cannot say how often a fracture is missed)."""
    y, p, sources = np.asarray(y).astype(int), np.asarray(p, dtype=float), np.asarray(sources)
    names = [s for s in dict.fromkeys(sources.tolist()) if len(np.unique(y[sources == s])) == 2]
    if not names:
        return {}
    cand = np.unique(np.concatenate([p, [1.0]]))  # every distinct score; 1.0 calls nothing fractured
    by_source = {s: rates(y[sources == s], p[sources == s], cand) for s in names}
    sens = np.min([r[0] for r in by_source.values()], 0)
    spec = np.min([r[1] for r in by_source.values()], 0)
    bal = np.array([(r[0] + r[1]) / 2 for r in by_source.values()])
    worst, mean_bal = bal.min(0), bal.mean(0)
    fairest = np.flatnonzero(worst == worst.max())
    reach = np.flatnonzero(sens >= min_sensitivity)  # sensitivity falls as the threshold rises
    sure = np.flatnonzero(spec >= min_specificity)
    chosen = {
        "screen": (cand[reach[-1]] if len(reach) else cand[0],
                   f"highest threshold with validation sensitivity >= {min_sensitivity} on every source"),
        "balanced": (cand[fairest[np.argmax(mean_bal[fairest])]],
                     "maximum balanced accuracy on the worst source's validation files (ties: the mean over sources)"),
        "confirm": (cand[sure[0]] if len(sure) else cand[-1],
                    f"lowest threshold with validation specificity >= {min_specificity} on every source"),
    }
    out = {}
    for name, (t, rule) in chosen.items():
        t = float(np.clip(t, 1e-6, 1 - 1e-6))
        val = {}
        for s in names:
            se, sp = rates(y[sources == s], p[sources == s], np.array([t]))
            val[s or "all"] = {"sensitivity": float(se[0]), "specificity": float(sp[0]), "n": int((sources == s).sum())}
        out[name] = {"threshold": t, "rule": rule, "validation": val}
    return out


def resample_by_source(groups: np.ndarray, origin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap draw of whole groups, each source drawn on its own (its size kept)."""
    idx = []
    for src in dict.fromkeys(origin.tolist()):
        names = np.unique(groups[origin == src])
        for g in rng.choice(names, len(names)):
            idx.append(np.flatnonzero(groups == g))
    return np.concatenate(idx)


def placed_draws(y: np.ndarray, p: np.ndarray, origin: np.ndarray, groups: np.ndarray, min_sensitivity: float = 0.9,
                 min_specificity: float = 0.9, draws: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    """Each point's threshold placed again on each of ``draws`` resamples of the validation groups: how far the
    files it was chosen on move it (a larger validation set, as cross-validation gives, narrows it)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {name: [] for name in POINTS}
    for _ in range(draws):
        i = resample_by_source(groups, origin, rng)
        for name, pt in operating_points(y[i], p[i], origin[i], min_sensitivity, min_specificity).items():
            out[name].append(pt["threshold"])
    return {name: np.array(v) for name, v in out.items()}


def threshold_draws(y: np.ndarray, p: np.ndarray, origin: np.ndarray, groups: np.ndarray, point: str = "screen",
                    level: float = 0.9, draws: int = 500, seed: int = 0) -> np.ndarray:
    """One point's ``placed_draws``, its sensitivity or specificity target ``level``."""
    return placed_draws(y, p, origin, groups, level, level, draws, seed)[point]
