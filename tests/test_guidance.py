"""Box guidance: the map, its loss, masks that move with their images, and a guided training run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fracture_demo import create_model
from train.__main__ import main as train_main
from train.augment import augment
from train.data import Sample
from train.guidance import CamHead, box_loss, box_masks
from train.localize import TOLERANCE

FAST = ["--batch-size", "8", "--image-size", "64", "--bootstrap", "20", "--workers", "1", "--epochs", "2", "--seed", "1"]


def test_cam_head_gives_the_map_that_averages_to_the_logit_and_refuses_other_heads():
    net = CamHead(create_model("efficientnet_lite0")).eval()
    with torch.no_grad():
        logits, cam = net(torch.rand(2, 3, 96, 96))
    assert cam.shape == (2, 1, 3, 3)
    assert torch.allclose(cam.mean(dim=(2, 3)), logits, atol=1e-5)
    for name in ("mobilenetv3", "vit", "custom_cnn"):  # a conv after the pool; tokens; no timm head
        with pytest.raises(ValueError, match="linear"):
            CamHead(create_model(name))


def test_box_loss_is_low_when_the_map_sits_inside_the_box():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1
    inside, outside, flat = torch.full((1, 1, 4, 4), -5.0), torch.full((1, 1, 4, 4), -5.0), torch.zeros(1, 1, 4, 4)
    inside[..., 0, 0], outside[..., 3, 3] = 5.0, 5.0
    assert box_loss(inside, mask) < 0.01 < 4 < box_loss(outside, mask)
    assert box_loss(flat, mask).item() == pytest.approx(-np.log(0.25), abs=1e-5)  # a flat map: the box's area share


def test_training_on_the_loss_moves_the_map_into_the_box():
    torch.manual_seed(0)
    net = CamHead(create_model("efficientnet_lite0"))
    x, mask = torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)
    mask[..., 32:, 32:] = 1  # one cell of the 2 x 2 map
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    before = box_loss(net(x)[1], mask).item()
    for _ in range(10):
        opt.zero_grad()
        box_loss(net(x)[1], mask).backward()
        opt.step()
    assert box_loss(net(x)[1], mask).item() < before / 2


def test_masks_move_with_their_images_and_do_not_change_them():
    img = torch.zeros(4, 1, 64, 64, dtype=torch.uint8)
    img[..., 10:30, 36:60] = 255
    mask = (img > 0).to(torch.uint8)
    plain = augment(img, torch.Generator().manual_seed(3))
    moved, moved_mask = augment(img, torch.Generator().manual_seed(3), masks=mask)
    assert torch.equal(plain, moved)
    bright, inside = moved > moved.mean(dim=(1, 2, 3), keepdim=True) + 0.2, moved_mask > 0.5
    iou = (bright & inside).sum() / (bright | inside).sum()
    assert iou > 0.85 and not torch.equal(moved_mask, mask.float())
    flipped, flipped_mask = augment(img, torch.Generator().manual_seed(3), "flip", masks=mask)
    assert torch.equal(flipped_mask > 0.5, flipped > 0.5)


def test_box_masks_scale_from_the_annotated_size_and_skip_unboxed_or_unfractured(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 200},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
            "annotations": [{"image_id": 1, "bbox": [50, 100, 10, 20]}, {"image_id": 2, "bbox": [0, 0, 10, 10]}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    samples = [Sample(tmp_path / n, f"train/x/{n}", label, "train") for n, label in
               (("a.jpg", 1), ("b.jpg", 0), ("c.jpg", 1))]  # b is not fractured, c has no boxes
    row, masks = box_masks(samples, tmp_path / "c.json", 100)
    assert row.tolist() == [0, -1, -1] and masks.shape == (1, 1, 100, 100)
    grow = TOLERANCE * 100  # the pointing game's tolerance
    ys, xs = np.nonzero(masks[0, 0].numpy())
    assert (xs.min(), xs.max() + 1) == (int(np.floor(50 - grow)), int(np.ceil(60 + grow)))
    assert (ys.min(), ys.max() + 1) == (int(np.floor(50 - grow)), int(np.ceil(60 + grow)))


def _annotate_squares(data: Path, out: Path) -> int:
    """A COCO file with the box of each fractured training image's bright square (the synthetic 'fracture')."""
    images, anns = [], []
    for i, path in enumerate(sorted((data / "train" / "fractured").iterdir())):
        try:
            arr = np.asarray(Image.open(path).convert("L"))
        except OSError:
            continue
        ys, xs = np.nonzero(arr > 200)
        if not len(ys):
            continue
        images.append({"id": i, "file_name": path.name, "width": arr.shape[1], "height": arr.shape[0]})
        anns.append({"image_id": i, "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]})
    out.write_text(json.dumps({"images": images, "annotations": anns}))
    return len(anns)


def test_guided_training_runs_is_recorded_and_changes_only_what_it_should(dataset, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    n = _annotate_squares(dataset, boxes)
    run = lambda out, *extra: train_main(["--model", "regnet", *FAST, "--data-dir", str(dataset),  # noqa: E731
                                          "--output-dir", str(tmp_path / out), *extra])
    assert run("plain") == 0 and run("off", "--box-weight", "0", "--boxes", str(boxes)) == 0
    capsys.readouterr()
    assert run("guided", "--box-weight", "1", "--boxes", str(boxes)) == 0
    assert f"{n} fractured training radiographs with drawn boxes" in capsys.readouterr().err
    plain, off, guided = (load_file(tmp_path / d / "model.safetensors") for d in ("plain", "off", "guided"))
    assert all(torch.equal(plain[k], off[k]) for k in plain)  # weight 0: the very same run
    assert any(not torch.equal(plain[k], guided[k]) for k in plain)
    cfg = json.loads((tmp_path / "guided" / "config.json").read_text())["training"]
    assert (cfg["box_weight"], cfg["boxes"]) == (1.0, str(boxes))
    assert run("x", "--box-weight", "1") == 2 and "needs --boxes" in capsys.readouterr().err
    assert train_main(["--model", "mobilenetv3", *FAST, "--data-dir", str(dataset), "--output-dir", str(tmp_path / "m"),
                       "--box-weight", "1", "--boxes", str(boxes)]) == 2
    assert "linear" in capsys.readouterr().err
