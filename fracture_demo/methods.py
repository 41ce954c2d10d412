"""The explanation methods, listed once: which family offers which (registry), how each runs (explain),
what the UI calls it (app)."""
from __future__ import annotations

LABELS = {
    "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM",
    "eigencam": "EigenCAM", "scorecam": "ScoreCAM", "attention_rollout": "Attention rollout",
}
CNN = ("gradcam", "gradcam++", "hirescam", "eigencam", "scorecam")
VIT = ("gradcam", "attention_rollout")  # CAMs need a spatial grid: prefix tokens dropped, tokens reshaped
SWIN = ("gradcam", "gradcam++", "hirescam", "eigencam")
#: every family offers it: what a model falls back to when it lacks the method asked for
FALLBACK = "gradcam"
#: what Compare offers for all models at once: the maps CNNs and Swin share (ScoreCAM, hundreds of
#: forward passes per map, left out)
COMPARE = tuple(m for m in CNN if m in SWIN)
