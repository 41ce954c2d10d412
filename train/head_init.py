"""Fit the classifier head on frozen features before fine-tuning (LP-FT, Kumar et al. 2022): ``--head-init probe``.

A logistic regression on frozen ImageNet features beats every model fine-tuned here on FracAtlas (docs/ladder.md,
the ladder's *floor* row), so fine-tuning loses features it should keep. Starting from a fitted head
(train.probe's fit on the model's own pooled features, strength chosen on val), the first gradients
through the backbone come from a head that already separates the classes, and change it less. The head is the
fit divided by its validation temperature: the probe's best strength gives over-confident logits (step 7 of the
docs/ladder.md started from them at validation loss 1.13), and calibrated ones start the loss where the
probe's probabilities put it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fracture_demo import FractureClassifier

from .data import ImageSet
from .inference import for_batches
from .probe import fit
from .sampling import sample_weights


@torch.no_grad()
def pooled_features(clf: FractureClassifier, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """What the classifier layer sees (timm's ``pre_logits``) for each uint8 1xSxS image, model in eval mode."""
    model = clf.unwrapped.eval()
    return for_batches(images, batch, lambda x: model.forward_head(model.forward_features(clf.normalize(x)),
                                                                   pre_logits=True).float()).numpy()


def balance_weights(samples: list, balance: str) -> np.ndarray | None:
    """The weights of ``train.sampling``'s ``--balance`` as a loss's per-file weights (mean 1): the probe weighs
    the files as the epochs would draw them (with ``source``: each source the same, a radiograph's rotated copies
    as one)."""
    w = sample_weights(samples, balance)
    return None if w is None else w * len(w)


@torch.no_grad()
def fit_head(clf: FractureClassifier, train: ImageSet, val: ImageSet, balance: str = "none") -> dict:
    """Set ``clf``'s classifier to the probe's calibrated fit on its frozen features (each distinct training file once,
    weighed as ``balance`` draws them; its strength chosen on validation files weighed alike)."""
    model = clf.unwrapped
    head = model.get_classifier() if hasattr(model, "forward_head") else None
    if not isinstance(head, nn.Linear) or head.out_features != 1:
        raise ValueError(f"--head-init probe needs a timm model with one linear logit; {clf.arch} has none")
    keep = train.distinct()
    weights = {"train": balance_weights([train.samples[i] for i in keep], balance),
               "val": balance_weights(val.samples, balance)}
    res = fit({"train": pooled_features(clf, train.images[keep]), "val": pooled_features(clf, val.images)},
              {"train": train.labels[keep], "val": val.labels}, weights=weights)
    t = res["temperature"]
    head.weight.copy_(torch.from_numpy(res["weight"] / t).float().view_as(head.weight))
    head.bias.fill_(res["bias"] / t)
    return {"C": res["C"], "temperature": t, "val_roc_auc": max(r["val_roc_auc"] for r in res["sweep"]), "train_files": len(keep),
            "balance": balance}
