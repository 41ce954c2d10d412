"""Training, resume, determinism, evaluation, audit, Hub stand-in and DDP on a synthetic data set."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fracture_demo as fd
import train.audit
from train.__main__ import main as train_main
from train.audit import main as audit_main
from train.evaluate import main as evaluate_main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "mobilenetv3", "--batch-size", "8", "--image-size", "64", "--bootstrap", "20", "--workers", "1"]


def run_train(data, out, *extra):
    assert train_main([*FAST, "--data-dir", str(data), "--output-dir", str(out), *extra]) == 0


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model"
    run_train(dataset, out, "--epochs", "2", "--seed", "1")
    return out


def test_output_folder_is_hub_shaped(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "metrics.json", "training_curves.png",
            "confusion_matrix.png", "roc.png"} <= names
    cfg = json.loads((trained / "config.json").read_text())
    for key in ("architecture", "image_size", "mean", "std", "labels", "threshold", "temperature",
                "training", "data", "pretrained_source"):
        assert key in cfg
    assert cfg["data"]["fingerprint"] and cfg["training"]["seed"] == 1
    card = (trained / "README.md").read_text()
    assert "ODC-By" in card and "Not a medical device" in card and "| official test |" in card
    metrics = json.loads((trained / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    assert not metrics["results"]["official test"]["skipped"]  # the test split has no bad files


def test_bad_files_are_skipped_and_named(dataset, tmp_path, capsys):
    run_train(dataset, tmp_path / "m", "--epochs", "1")
    err = capsys.readouterr().err
    assert "skipped train/not fractured/empty.jpg: the file is empty" in err
    assert "skipped train/not fractured/notes.jpg" in err
    assert "used with a caveat train/not fractured/truncated.jpg: the JPEG file is truncated" in err


def test_same_seed_same_weights_and_resume_matches(dataset, tmp_path, trained):
    run_train(dataset, tmp_path / "a", "--epochs", "2", "--seed", "1")
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(trained / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a), "deterministic for a seed"
    # interrupted after epoch 1 (time limit), then resumed: identical to the uninterrupted run
    run_train(dataset, tmp_path / "r", "--epochs", "2", "--seed", "1", "--time-limit", "0")
    assert not (tmp_path / "r" / "metrics.json").exists()
    run_train(dataset, tmp_path / "r", "--epochs", "2", "--seed", "1", "--resume")
    r = load_file(tmp_path / "r" / "model.safetensors")
    assert all((r[k] == b[k]).all() for k in r), "resume reproduces the same run"
    hist = json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]


def test_ema_is_what_is_validated_and_saved_and_resume_keeps_it(dataset, tmp_path, trained):
    b = load_file(trained / "model.safetensors")
    run_train(dataset, tmp_path / "e0", "--epochs", "2", "--seed", "1", "--ema", "0")  # an average of one step
    e0 = load_file(tmp_path / "e0" / "model.safetensors")
    assert all(torch.allclose(e0[k].float(), b[k].float(), atol=1e-5) for k in b)
    run_train(dataset, tmp_path / "e", "--epochs", "2", "--seed", "1", "--ema", "0.9")
    e = load_file(tmp_path / "e" / "model.safetensors")
    assert any(not torch.allclose(e[k].float(), b[k].float(), atol=1e-3) for k in b)  # the average, not the weights
    run_train(dataset, tmp_path / "r", "--epochs", "2", "--seed", "1", "--ema", "0.9", "--time-limit", "0")
    run_train(dataset, tmp_path / "r", "--epochs", "2", "--seed", "1", "--ema", "0.9", "--resume")
    r = load_file(tmp_path / "r" / "model.safetensors")
    assert all((r[k] == e[k]).all() for k in r), "the average survives a resume"
    assert train_main([*FAST, "--data-dir", str(dataset), "--output-dir", str(tmp_path / "x"), "--ema", "1"]) == 2


def test_init_from_continues_the_given_model(dataset, tmp_path, trained, capsys):
    """lr 0: the weights stay the source's, so any difference means they were not loaded."""
    run_train(dataset, tmp_path / "c", "--epochs", "1", "--lr", "0", "--init-from", str(trained))
    a, b = load_file(tmp_path / "c" / "model.safetensors"), load_file(trained / "model.safetensors")
    convs = [k for k in a if k.endswith(".weight") and a[k].ndim == 4]
    assert convs and all((a[k] == b[k]).all() for k in convs)
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["pretrained_source"].startswith("model (this zoo's mobilenetv3")
    assert train_main([*FAST, "--model", "regnet", "--data-dir", str(dataset), "--output-dir", str(tmp_path / "d"),
                       "--init-from", str(trained)]) == 2
    assert "it is mobilenetv3 at 64px, not regnet" in capsys.readouterr().err


def test_init_from_at_another_resolution(dataset, tmp_path, trained):
    """Train low, fine-tune high (FixRes): a conv net's weights fit any input size as they are, a ViT's position
    table and a Swin's window tables are resampled by timm's checkpoint filter."""
    run_train(dataset, tmp_path / "hi", "--epochs", "1", "--lr", "0", "--init-from", str(trained), "--image-size", "96")
    a, b = load_file(tmp_path / "hi" / "model.safetensors"), load_file(trained / "model.safetensors")
    assert json.loads((tmp_path / "hi" / "config.json").read_text())["image_size"] == 96
    assert all((a[k] == b[k]).all() for k in a if a[k].ndim == 4)
    from train.loop import _init_from
    small = fd.FractureClassifier.new("vit", "none", 64)
    small.save_pretrained(tmp_path / "vit64")
    big = fd.FractureClassifier.new("vit", "none", 96)
    _init_from(big, str(tmp_path / "vit64"))
    assert big.model.pos_embed.shape[1] == 1 + 6 * 6  # 96 px / 16 px patches
    assert torch.equal(big.model.blocks[0].attn.qkv.weight, small.model.blocks[0].attn.qkv.weight)
    assert torch.allclose(big.model.pos_embed[:, 0], small.model.pos_embed[:, 0])  # the class token's entry kept
    assert big.model(torch.zeros(1, 3, 96, 96)).shape == (1, 1)
    small = fd.FractureClassifier.new("swin", "none", 224)
    small.save_pretrained(tmp_path / "swin")
    swin = fd.FractureClassifier.new("swin", "none", 256)
    _init_from(swin, str(tmp_path / "swin"))  # its windows' relative-position tables resampled to the new windows
    assert torch.equal(swin.model.layers[0].blocks[0].attn.qkv.weight, small.model.layers[0].blocks[0].attn.qkv.weight)
    assert swin.model(torch.zeros(1, 3, 256, 256)).shape == (1, 1)


def test_a_spent_time_budget_ends_the_epoch(dataset, tmp_path):
    """The rate's schedule ends with the budget, so the rest of an epoch would train at zero: it is cut there."""
    run_train(dataset, tmp_path / "b", "--epochs", "1", "--time-budget", "1e-9")
    hist = json.loads((tmp_path / "b" / "metrics.json").read_text())["history"]
    assert hist[0]["images"] == 8  # one batch, the first (at least one step is taken)
    run_train(dataset, tmp_path / "f", "--epochs", "1")
    assert json.loads((tmp_path / "f" / "metrics.json").read_text())["history"][0]["images"] > 8


def test_precise_batch_stats_match_the_batch():
    """After the recount, eval mode on the sample gives what train mode gives (stale averages did not)."""

    from train.loop import precise_batch_stats
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8, momentum=0.01),
                                torch.nn.Dropout(0.5), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    images = (torch.rand(64, 1, 16, 16) * 255).to(torch.uint8)
    x = fd.imaging.normalize(images, [0.2] * 3, [0.1] * 3)
    model.train()(x)
    model[1].running_mean += 5.0  # stale statistics
    model.eval()
    with torch.no_grad():
        want = model[1].train()(model[0](x))
    model.train()
    precise_batch_stats(model, images, [0.2] * 3, [0.1] * 3, None, False, n=64, batch=64)
    assert model.training and model[1].momentum == 0.01
    model.eval()
    with torch.no_grad():
        got = model[1](model[0](x))
    assert torch.allclose(got, want, atol=0.02)


def test_evaluate_json(trained, dataset, capsys):
    assert evaluate_main(["--model", str(trained), "--data-dir", str(dataset), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "ece", "confusion_matrix", "report", "model", "data_dir"):
        assert key in out
    assert out["report"]["fractured"]["support"] == 8 and sum(map(sum, out["confusion_matrix"])) == 16


def test_evaluate_folder_with_only_test(trained, dataset, tmp_path, capsys):
    shutil.copytree(dataset / "test", tmp_path / "only" / "test")
    assert evaluate_main(["--model", str(trained), "--data-dir", str(tmp_path / "only")]) == 0
    text = capsys.readouterr().out
    assert "precision" in text and "macro avg" in text and "weighted avg" in text and "ROC AUC" in text


def test_evaluate_missing_model_is_clear(dataset, capsys):
    assert evaluate_main(["--model", "nobody/no-such-model", "--data-dir", str(dataset)]) == 2
    assert "nobody/no-such-model" in capsys.readouterr().err


def test_audit_and_grouped_split(dataset, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(dataset, data)
    # a byte copy across splits, and a rotated copy under a family name
    shutil.copy(data / "train" / "fractured" / "0.jpg", data / "test" / "fractured" / "copy_of_0.jpg")
    from PIL import Image
    Image.open(data / "train" / "fractured" / "4.jpg").rotate(37).save(data / "val" / "fractured" / "4-rotated1.jpg")
    assert audit_main(["--data-dir", str(data), "--features", "none", "--workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["edges_by_rule"]["sha256"] >= 1 and report["edges_by_rule"]["family"] >= 1
    rows = list(csv.DictReader(open(data / "grouped_split.csv")))
    side = {}
    for r in rows:
        assert side.setdefault(r["group"], r["split"]) == r["split"], "no group on two sides"
    groups = {r["file"]: r["group"] for r in rows}
    assert groups["train/fractured/0.jpg"] == groups["test/fractured/copy_of_0.jpg"]
    assert groups["train/fractured/4.jpg"] == groups["val/fractured/4-rotated1.jpg"]
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    run_train(data, tmp_path / "g", "--epochs", "1", "--split-mode", "grouped")
    m = json.loads((tmp_path / "g" / "metrics.json").read_text())["results"]
    assert "grouped test" in m and "official test" in m and "ci95" in m["grouped test"]
    assert m["grouped test"]["seen_in_training"] == 0


def test_balanced_weights_count_each_radiograph_once():
    from train.audit import radiograph_key
    from train.data import Sample
    from train.sampling import balanced_weights
    names = [("fractured", n) for n in ["12.jpg", "12-rotated1.jpg", "12-rotated2 (1).jpg", "012 - Copy.jpg", "7.jpg"]]
    names += [("not fractured", n) for n in ["a.png", "a (2).png", "12.jpg"]]
    samples = [Sample(Path(n), f"train/{lab}/{n}", int(lab == "fractured"), "train") for lab, n in names]
    assert len({radiograph_key(s) for s in samples[:4]}) == 1  # copies, rotations, zero-padded names
    assert radiograph_key(samples[0]) != radiograph_key(samples[-1])  # same name, other label
    w = balanced_weights(samples)
    assert w.sum() == pytest.approx(1.0)
    assert w[:5].sum() == pytest.approx(0.5) and w[:4].sum() == pytest.approx(w[4])  # 4 copies weigh as 1
    assert w[5:7].sum() == pytest.approx(w[7]) == pytest.approx(0.25)


def test_balanced_sampling_trains_and_is_recorded(dataset, tmp_path):
    run_train(dataset, tmp_path / "b", "--epochs", "1", "--balance", "radiograph")
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["training"]["balance"] == "radiograph"
    assert "radiograph-balanced sampling" in (tmp_path / "b" / "README.md").read_text()


def _shapes(rng):
    """A structured synthetic image (ImageNet features tell these apart, unlike noise)."""
    from PIL import Image, ImageDraw
    img = Image.new("L", (160, 160), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, 120, 2)
        w, h = rng.integers(15, 60, 2)
        fill, kind = int(rng.integers(80, 255)), rng.integers(0, 3)
        box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
        if kind == 0:
            draw.ellipse(box, fill=fill)
        elif kind == 1:
            draw.rectangle(box, fill=fill)
        else:
            draw.line(box, fill=fill, width=int(rng.integers(3, 10)))
    return img


def test_audit_features_join_rotated_copy(tmp_path, capsys, monkeypatch):
    try:
        fd.registry.resolve_pretrained("efficientnet_lite0", "local")
    except FileNotFoundError:
        pytest.skip("offline ImageNet weights not beside this checkout")
    import numpy as np
    folder = tmp_path / "d" / "test" / "fractured"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(16):
        _shapes(rng).save(folder / f"{i}.png")
    from PIL import Image
    Image.open(folder / "3.png").transpose(Image.FLIP_LEFT_RIGHT).rotate(90).save(folder / "zz.jpg", quality=95)  # flipped, turned, re-encoded
    args = ["--data-dir", str(tmp_path / "d"), "--workers", "1", "--features-cache", str(tmp_path / "features.npz")]
    assert audit_main(args + ["--report-dir", str(tmp_path / "rep")]) == 0
    capsys.readouterr()
    split = (tmp_path / "d" / "grouped_split.csv").read_text()
    groups = {r["file"]: r["group"] for r in csv.DictReader(io.StringIO(split))}
    assert groups["test/fractured/3.png"] == groups["test/fractured/zz.jpg"]
    assert len(set(groups.values())) >= 14, "unrelated images stay apart"
    assert (tmp_path / "rep" / "pairs_joined.png").is_file() and (tmp_path / "rep" / "pairs_closest_apart.png").is_file()
    # a rerun takes every feature from the cache (by content hash) and writes the same split
    computed = []
    real = train.audit.view_features
    monkeypatch.setattr(train.audit, "view_features", lambda images, *a, **k: computed.append(len(images)) or real(images, *a, **k))
    assert audit_main(args) == 0
    assert computed == [] and (tmp_path / "d" / "grouped_split.csv").read_text() == split
    _shapes(rng).save(folder / "new.png")  # a grown data set: only the new image is computed
    assert audit_main(args) == 0
    assert computed == [1]


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records calls, copies files like an upload would."""

    def __init__(self, root):
        self.root, self.calls = Path(root), []

    def create_repo(self, repo_id, repo_type, private, exist_ok):
        self.calls.append(("create_repo", repo_id, private))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, repo_type, commit_message, ignore_patterns):
        self.calls.append(("upload_folder", repo_id))
        import fnmatch
        for p in Path(folder_path).rglob("*"):
            rel = p.relative_to(folder_path).as_posix()
            if p.is_file() and not any(fnmatch.fnmatch(rel, pat) for pat in ignore_patterns):
                (self.root / repo_id / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, self.root / repo_id / rel)


def test_push_to_hub_stand_in_and_reload(trained, dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_do_not_print")
    hub = FakeHub(tmp_path / "hub")
    clf = fd.load(trained)
    url = clf.push_to_hub("me/fracture-mnv3", trained, api=hub)
    assert url.endswith("me/fracture-mnv3") and hub.calls[0] == ("create_repo", "me/fracture-mnv3", False)
    uploaded = tmp_path / "hub" / "me/fracture-mnv3"
    assert (uploaded / "model.safetensors").is_file() and not (uploaded / ".train_state").exists()
    again = fd.load(uploaded)  # the uploaded folder is a loadable model repo, same predictions
    img = dataset / "test" / "fractured" / "0.jpg"
    assert again.predict(img).probability == pytest.approx(clf.predict(img).probability, abs=1e-6)
    out = capsys.readouterr()
    assert "hf_secret" not in out.out + out.err
    assert not any("hf_secret" in p.read_text(errors="ignore") for p in uploaded.rglob("*") if p.is_file())


def test_push_cli_uses_hub_client(dataset, tmp_path, monkeypatch):
    hub = FakeHub(tmp_path / "hub")
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: hub)
    run_train(dataset, tmp_path / "m", "--epochs", "1", "--push-to-hub", "me/x")
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"]
    assert (tmp_path / "hub" / "me/x" / "config.json").is_file()


def test_torchrun_two_cpu_processes(dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "train", *FAST, "--data-dir", str(dataset), "--output-dir", str(tmp_path / "ddp"), "--epochs", "1",
           "--time-budget", "1e-9"]  # both ranks leave the epoch at the same step, or DDP hangs
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    hist = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["history"]
    assert len(hist) == 1 and hist[0]["images"] == 2 * 8 and hist[0]["images_per_s"] > 0
    assert fd.load(tmp_path / "ddp").predict(dataset / "test" / "fractured" / "0.jpg").probability >= 0


def test_linear_probe_reports_val_chosen_fit_with_group_intervals(dataset, tmp_path, capsys):
    from train.probe import main as probe_main
    out = tmp_path / "probe.json"
    assert probe_main(["--data-dir", str(dataset), "--split-mode", "official", "--models", "regnet,mobilenetv3",
                       "--pretrained", "none", "--image-size", "96", "--bootstrap", "50", "--workers", "1",
                       "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert report["C"] == max(report["sweep"], key=lambda r: r["val_roc_auc"])["C"]  # strength chosen on val
    assert report["test"]["n"] == 16 and report["test"]["n_groups"] == 16
    lo, hi = report["test"]["ci95"]["roc_auc"]
    assert lo <= report["test"]["roc_auc"] <= hi
    assert report["test"]["roc_auc"] > 0.8, "even random conv features find the bright mark"
    assert probe_main(["--data-dir", str(dataset), "--split-mode", "official", "--models", "no_such_net"]) == 2
    assert "no_such_net" in capsys.readouterr().err


def test_publish_pushes_every_bundled_folder_and_lists_it_in_the_front_matter(trained, tmp_path, monkeypatch, capsys):
    from train.publish import main as publish_main
    monkeypatch.setenv("HF_TOKEN", "hf_secret_do_not_print")
    hub = FakeHub(tmp_path / "hub")
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: hub)
    zoo = tmp_path / "models"
    for name in ("alpha", "beta"):
        shutil.copytree(trained, zoo / name)
    readme = tmp_path / "README.md"
    readme.write_text("---\ntitle: x\nmodels: []  # filled by train.publish\npinned: false\n---\n\n# Body\nmodels: not front matter\n")
    assert publish_main(["--owner", "me", "--models-dir", str(zoo), "--readme", str(readme)]) == 0
    assert [c for c in hub.calls if c[0] == "create_repo"] == [("create_repo", "me/fracture-alpha", False),
                                                               ("create_repo", "me/fracture-beta", False)]
    assert fd.load(tmp_path / "hub" / "me/fracture-beta").config == fd.load(zoo / "beta").config
    assert readme.read_text() == ("---\ntitle: x\nmodels:\n  - me/fracture-alpha\n  - me/fracture-beta\npinned: false\n"
                                  "---\n\n# Body\nmodels: not front matter\n")
    assert publish_main(["--owner", "me", "--models-dir", str(zoo), "--readme", str(readme)]) == 0  # again: same list
    assert readme.read_text().count("me/fracture-alpha") == 1
    out = capsys.readouterr()
    assert "hf_secret" not in out.out + out.err


@pytest.mark.parametrize("module", ["train.evaluate", "train.audit", "train.guard", "train.publish", "train.probe",
                                    "train.localize", "train.fracatlas_split", "train.report", "train.calibrate"])
def test_every_cli_describes_itself(module, capsys):
    import importlib
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    doc = importlib.import_module(module).__doc__.split("\n")[0]
    assert " ".join(doc.split(":")[0].split()) in " ".join(capsys.readouterr().out.split())


def test_auto_precision_follows_the_registry_on_cpu_and_is_bf16_on_gpus():

    from train.loop import amp_dtype
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", "efficientnet_lite0", cpu) is None and amp_dtype("auto", "regnet", cpu) == torch.bfloat16
    assert amp_dtype("auto", "efficientnet_lite0", gpu) == torch.bfloat16
    assert amp_dtype("bf16", "mobilenetv3", cpu) == torch.bfloat16 and amp_dtype("none", "swin", gpu) is None


def test_head_init_probe_sets_the_head_to_the_frozen_feature_fit(dataset):
    """LP-FT's first step: the classifier equals the probe's calibrated logistic regression on the frozen features."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from train.data import ImageCache, scan, split_samples
    from train.head_init import fit_head, pooled_features
    from train.probe import fit
    clf = fd.FractureClassifier.new("mobilenetv3", "none", 64)
    parts = split_samples(scan(dataset), "official")
    cache = ImageCache(64, 1)
    train_set, val_set = cache.load(parts["train"]), cache.load(parts["val"])
    info = fit_head(clf, train_set, val_set)
    head = clf.unwrapped.get_classifier()
    assert head.weight.abs().sum() > 0 and info["train_files"] == len(set(train_set.hashes))
    with torch.no_grad():
        logits = clf.unwrapped.eval()(clf.normalize(torch.from_numpy(val_set.images))).flatten().numpy()
    assert roc_auc_score(val_set.labels, logits) == pytest.approx(info["val_roc_auc"], abs=1e-6)  # the same fit
    keep = train_set.distinct()
    probe = fit({"train": pooled_features(clf, train_set.images[keep]), "val": pooled_features(clf, val_set.images)},
                {"train": train_set.labels[keep], "val": val_set.labels})
    assert 1 / (1 + np.exp(-logits)) == pytest.approx(probe["prob"]["val"], abs=1e-4)  # and its calibration
    folder_cnn = fd.FractureClassifier.new("custom_cnn", "none")  # no timm head: refused before any work
    with pytest.raises(ValueError, match="linear logit"):
        fit_head(folder_cnn, train_set, val_set)
    assert pooled_features(clf, val_set.images).shape[0] == len(val_set)


def test_head_init_probe_weighs_files_as_balance_draws_them(two_sources):
    """With --balance source the probe's loss gives each source the same say (its strength picked on validation files
    weighed alike): the head is the weighted fit, not the plain one."""
    import numpy as np

    from train.data import ImageCache
    from train.head_init import balance_weights, fit_head, pooled_features
    from train.probe import fit
    from train.sources import split_sources
    parts, _ = split_sources(two_sources)
    cache = ImageCache(64, 1)
    train_set, val_set = cache.load(parts["train"]), cache.load(parts["val"])
    keep = train_set.distinct()
    weights = {"train": balance_weights([train_set.samples[i] for i in keep], "source"),
               "val": balance_weights(val_set.samples, "source")}
    a = np.array([train_set.samples[i].source == "a" for i in keep])
    assert weights["train"][a].sum() == pytest.approx(weights["train"][~a].sum())  # the smaller source counts as much
    heads = {}
    for balance in ("none", "source"):
        torch.manual_seed(0)
        clf = fd.FractureClassifier.new("mobilenetv3", "none", 64)
        assert fit_head(clf, train_set, val_set, balance)["balance"] == balance
        with torch.no_grad():
            heads[balance] = clf.unwrapped.eval()(clf.normalize(torch.from_numpy(val_set.images))).flatten().numpy()
    assert np.abs(heads["source"] - heads["none"]).max() > 1e-3
    probe = fit({"train": pooled_features(clf, train_set.images[keep]), "val": pooled_features(clf, val_set.images)},
                {"train": train_set.labels[keep], "val": val_set.labels}, weights=weights)
    assert 1 / (1 + np.exp(-heads["source"])) == pytest.approx(probe["prob"]["val"], abs=1e-4)


def test_layer_decay_gives_earlier_layers_smaller_rates_and_needs_named_layers():
    from train.optim import Schedule, create_optimizer
    model = fd.create_model("efficientnet_lite0", "none")
    opt = create_optimizer(model, 1.0, 0.05, 0.8)
    scale = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["classifier.weight"])] == 1.0
    assert scale[id(named["conv_stem.weight"])] < scale[id(named["blocks.3.0.conv_pw.weight"])] < 1.0
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)  # every parameter learns
    schedule = Schedule(opt, total_steps=100, warmup=0.1)
    assert schedule.at(0.0) == pytest.approx(1e-3) and schedule.at(0.1) == pytest.approx(1.0)  # warm-up, then the peak
    assert schedule.at(0.55) == pytest.approx(0.5) and schedule.at(1.0) == 0.0  # cosine, halfway and at the end
    schedule.at(0.55)
    assert {round(g["lr"] / g["lr_scale"], 9) for g in opt.param_groups} == {0.5}  # each group at its scale
    assert all(g["weight_decay"] == 0 for g in opt.param_groups if any(p.ndim <= 1 for p in g["params"]))
    plain = create_optimizer(model, 0.01, 0.05)
    assert {g["weight_decay"] for g in plain.param_groups} == {0.0, 0.05}  # weights decayed, biases and norms not
    with pytest.raises(ValueError, match="group_matcher"):
        create_optimizer(fd.create_model("custom_cnn", "none"), 0.01, 0.05, 0.8)
    with pytest.raises(ValueError, match="layer-decay"):
        create_optimizer(model, 0.01, 0.05, 1.5)


def test_train_from_freezes_every_parameter_before_the_named_module():
    from train.optim import create_optimizer
    model = fd.create_model("regnet", "none")
    named = list(model.named_parameters())
    first = next(i for i, (n, _) in enumerate(named) if n.startswith("s4."))
    before = {n: p.detach().clone() for n, p in named}
    opt = create_optimizer(model, 0.01, 0.05, train_from="s4")
    learning = {id(p) for g in opt.param_groups for p in g["params"]}
    assert learning == {id(p) for _, p in named[first:]} and first > 0  # s4 and the head, nothing earlier
    model.train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for _, p in named[:first]), "no backward pass through the frozen blocks"
    opt.step()
    assert all(torch.equal(p, before[n]) for n, p in named[:first])
    assert not torch.equal(named[first][1], before[named[first][0]])
    with pytest.raises(ValueError, match="--train-from s9"):
        create_optimizer(model, 0.01, 0.05, train_from="s9")


def test_four_views_predict_the_mean_logit_everywhere(trained, dataset, tmp_path):
    """``train.calibrate --views 4``: predict, explain and evaluation all score the mean logit over the flips,
    and the map explains that decision even where the image alone would have decided otherwise."""
    import numpy as np

    from train.calibrate import main as calibrate_main
    from train.data import ImageCache, scan, split_samples
    from train.inference import predict_logits
    folder = tmp_path / "v"
    shutil.copytree(trained, folder)
    assert calibrate_main(["--model", str(folder), "--data", f"a={dataset}", "--views", "4"]) == 0
    clf = fd.load(folder)
    assert clf.views == 4 and fd.load(trained).views == 1
    val = ImageCache(clf.image_size, 1).load(split_samples(scan(dataset), "official")["val"])
    assert clf.calibration_prevalence == pytest.approx(val.labels.mean())  # what its P(fractured) is true at
    fitted = {k: clf.config[k] for k in ("temperature", "bias", "threshold", "views")}
    (folder / "config.json").write_text(json.dumps({**clf.config, "calibration_prevalence": None}))
    assert calibrate_main(["--model", str(folder), "--prevalence-only"]) == 0  # from its metrics.json
    clf = fd.load(folder)  # an older model gains the record, and nothing else moves
    assert clf.calibration_prevalence == pytest.approx(val.labels.mean())
    assert {k: clf.config[k] for k in fitted} == fitted
    image = sorted((dataset / "test" / "fractured").glob("*.jpg"))[0]
    x = clf.preprocess(clf.decode(image))
    with torch.no_grad():
        logits = clf.model(clf.with_flips(x)).flatten()
    clf.config.update(temperature=float(logits.abs().max()) + 1.0, bias=0.0)  # a tiny model's are saturated
    want = clf.probability(logits.mean()).item()
    assert clf.predict(image).probability == pytest.approx(want, abs=1e-5)
    first = clf.probability(logits[0]).item()
    assert first != pytest.approx(want, abs=1e-4)  # else the next check tests nothing
    clf.config["threshold"] = (first + want) / 2  # the image alone and the mean of its views disagree
    e = clf.explain(image, "gradcam")
    assert e.prediction.probability == pytest.approx(want, abs=1e-4) and e.target == e.prediction.label
    test = ImageCache(clf.image_size, 1).load(split_samples(scan(dataset), "official")["test"])
    with torch.no_grad():
        manual = [clf.model(clf.with_flips(clf.normalize(torch.from_numpy(test.images[i:i + 1])))).mean().item()
                  for i in range(len(test))]
    assert predict_logits(clf, test.images) == pytest.approx(np.array(manual), abs=1e-4)
