"""Trainer: a learnable synthetic image cache (a bright square means class A, another class B) through the
real pipeline (PNG files -> prepare_cache -> labels.parquet -> CachedImageDataset -> repgls.train).

Covers: loss falls and val AUC rises well above chance; run folder contents; warm-up + cosine schedule;
gradient accumulation; EMA; CLI with overrides; resume of a finished run; clear config errors.
The kill-and-resume and the DDP tests live in test_train_resume.py and test_train_ddp.py.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from repgls.config import ConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("A", "B")


def make_square_world(root: Path, n_train: int = 96, n_val: int = 48, size: int = 32, seed: int = 0) -> dict:
    """PNG images with a bright square top-left (class A) and/or bottom-right (class B), cached + labelled.

    Returns paths: ``cache`` (image cache), ``labels`` (labels.parquet), plus the truth arrays.
    """
    from PIL import Image

    from repgls.data.cache import prepare_cache
    from repgls.rating import LabelTable, write_labels

    rng = np.random.default_rng(seed)
    n = n_train + n_val
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    y = (rng.random((n, 2)) < 0.5).astype(np.float32)
    rows = []
    q = size // 4
    for i in range(n):
        img = rng.normal(80, 25, (size, size))
        if y[i, 0]:
            img[q : 2 * q, q : 2 * q] += 120
        if y[i, 1]:
            img[2 * q : 3 * q, 2 * q : 3 * q] += 120
        p = img_dir / f"img{i:04d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
        rows.append(
            {
                "path": str(p),
                "image_id": f"img{i:04d}",
                "study_id": f"s{i:04d}",
                "patient_id": f"p{i:04d}",
                "view": "PA",
                "split": "train" if i < n_train else "val",
            }
        )
    index = pd.DataFrame(rows)
    cache = root / "cache"
    prepare_cache(index, cache, size=size, workers=1, dataset="squares", progress=False)
    r = np.zeros_like(y)
    r[y == 1] = -0.2  # negative smoothing on positives (definite wording), 0 elsewhere
    table = LabelTable(
        study_ids=index["study_id"].to_numpy(),
        classes=CLASSES,
        y=y,
        r=r,
        p=np.where(y == 1, 1.0, np.nan).astype(np.float32),
        meta={"vocab": "squares"},
    )
    labels = root / "labels.parquet"
    write_labels(table, labels)
    return {"cache": cache, "labels": labels, "y": y, "index": index}


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> dict:
    return make_square_world(tmp_path_factory.mktemp("squares"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run several times faster with one intra-op thread on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def child_env() -> dict:
    """Environment for subprocess runs: one thread, the package importable."""
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def base_config(world: dict, run_dir: Path, **sections) -> dict:
    """A small CPU config on the squares world; ``sections`` update the defaults section by section."""
    cfg = {
        "data": {
            "cache_dir": str(world["cache"]),
            "labels": str(world["labels"]),
            "augment": False,
            "num_workers": 0,
            "batch_size": 16,
        },
        "model": {"name": "resnet_tiny_test"},
        "loss": {"name": "bce"},
        "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 2},
        "train": {"epochs": 6, "seed": 0, "device": "cpu", "log_every": 1, "progress": False},
        "output": {"run_dir": str(run_dir)},
    }
    for sec, vals in sections.items():
        cfg[sec].update(vals)
    return cfg


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_learns_squares_and_writes_run_folder(squares, tmp_path):
    from safetensors.torch import load_file

    import repgls

    run = repgls.train(base_config(squares, tmp_path / "run"))
    assert run == tmp_path / "run"
    recs = read_metrics(run)
    train_losses = [r["loss"] for r in recs if r["kind"] == "train"]
    vals = [r for r in recs if r["kind"] == "val"]
    assert len(vals) == 6  # one validation per epoch
    assert np.mean(train_losses[-6:]) < 0.6 * np.mean(train_losses[:6])  # loss falls
    best_auc = max(v["mean_auc"] for v in vals)
    assert best_auc > 0.9, vals  # chance is 0.5
    assert vals[-1]["n_classes_scored"] == 2 and set(vals[-1]["auc"]) == set(CLASSES)
    assert all(r["img_per_s"] > 0 for r in recs if r["kind"] == "train")

    # run folder
    for f in (
        "config.yaml",
        "metrics.jsonl",
        "predictions_val.parquet",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.pt",
        "checkpoints/last.json",
        "checkpoints/best.safetensors",
        "checkpoints/best.json",
    ):
        assert (run / f).is_file(), f
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert not list((run / "checkpoints").glob("*.tmp")) and not list((run / "checkpoints").glob("*pending*"))
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["mean_auc"] == pytest.approx(best_auc)
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    assert (last["epoch"], last["batch_in_epoch"], last["step"]) == (6, 0, 6 * (96 // 16))

    # predictions of the best model: every val image once, probabilities that reproduce the best AUC
    pred = pd.read_parquet(run / "predictions_val.parquet")
    assert len(pred) == 48 and pred["image_id"].is_unique
    assert set(pred["image_id"]) == set(squares["index"].query("split == 'val'")["image_id"])
    assert {"study_id", "prob:A", "prob:B", "label:A", "label:B"} <= set(pred.columns)
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(pred[f"label:{c}"], pred[f"prob:{c}"]) for c in CLASSES]
    assert np.mean(aucs) == pytest.approx(best_auc, abs=1e-6)

    # best weights load into a fresh model and reproduce the stored probabilities
    from repgls.data import CachedImageDataset
    from repgls.models import create_model

    model = create_model("resnet_tiny_test", num_classes=2, img_size=32)
    model.load_state_dict(load_file(str(run / "checkpoints" / "best.safetensors")))
    model.eval()
    ds = CachedImageDataset(squares["cache"], labels=str(squares["labels"]), split="val")
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        prob = torch.sigmoid(model(x)).numpy()
    by_id = pred.set_index("image_id").loc[ds.index["image_id"], ["prob:A", "prob:B"]].to_numpy()
    np.testing.assert_allclose(prob, by_id, atol=1e-5)


def test_schedule_accumulation_ema_and_rate_head(squares, tmp_path):
    import repgls

    cfg = base_config(
        squares,
        tmp_path / "run",
        model={"name": "lu_vit_tiny_test"},
        loss={"name": "luvit"},
        optim={
            "lr": 1e-3,
            "warmup_steps": 3,
            "grad_accum": 2,
            "ema": True,
            "ema_decay": 0.9,
            "min_lr": 1e-5,
            "grad_clip": 1.0,
        },
        train={"epochs": 2, "log_every": 1, "device": "cpu", "progress": False},
        data={"augment": True, "class_aware": True, "class_aware_num_samples": 96},
    )
    run = repgls.train(cfg)
    recs = read_metrics(run)
    tr = [r for r in recs if r["kind"] == "train"]
    steps_per_epoch = 96 // 16 // 2
    assert [r["step"] for r in tr] == list(range(1, 2 * steps_per_epoch + 1))
    lrs = [r["lr"] for r in tr]
    # lr after step s is the factor of step s: warm-up 1/3, 2/3, 1 of the peak, then cosine down to min_lr
    assert lrs[0] == pytest.approx(1e-3 * 2 / 3) and lrs[1] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:])) and lrs[-1] == pytest.approx(1e-5)
    assert all("grad_norm" in r for r in tr)
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["ema"] is True
    pred = pd.read_parquet(run / "predictions_val.parquet")
    rate = pred[["rate:A", "rate:B"]].to_numpy()
    assert np.all(np.abs(rate) < 1)  # tanh rate head
    state = torch.load(run / "checkpoints" / "last.state.pt", weights_only=False)
    assert state["ema"] is not None and state["step"] == 2 * steps_per_epoch


def test_lr_factor_shape():
    from repgls.training.optim import lr_factor as _lr_factor

    f = [_lr_factor(s, 100, 10, 0.0, "cosine", 0.01) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[-1] > 0.01 and f[-1] < 0.02
    assert f[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert _lr_factor(50, 100, 0, 0.0, "constant", 0.0) == 1.0


@pytest.mark.slow
def test_cli_overrides_and_resume_finished_run(squares, tmp_path):
    import yaml

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(base_config(squares, tmp_path / "unused")))
    run = tmp_path / "cli_run"
    cmd = [
        sys.executable,
        "-m",
        "repgls.cli",
        "train",
        "--config",
        str(cfg_path),
        f"output.run_dir={run}",
        "train.epochs=1",
        "train.max_steps=3",
        "model.name=vit_tiny_test",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, env=child_env())
    assert out.returncode == 0, out.stderr
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 3 and saved["model"]["name"] == "vit_tiny_test"
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 3
    # a second run into the same folder is refused; --resume extends it with an override
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, env=child_env())
    assert again.returncode != 0 and "--resume" in again.stderr
    more = subprocess.run(
        [sys.executable, "-m", "repgls.cli", "train", "--resume", str(run), "train.max_steps=5"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=child_env(),
    )
    assert more.returncode == 0, more.stderr
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 5
    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5]


def test_cli_config_error_is_clear(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  learning_rate: 0.1\n")
    out = subprocess.run(
        [sys.executable, "-m", "repgls.cli", "train", "--config", str(p)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=child_env(),
    )
    assert out.returncode == 2
    assert "unknown config key 'optim.learning_rate'" in out.stderr


def test_missing_data_is_clear_error(tmp_path):
    import repgls

    with pytest.raises(ConfigError, match=r"data\.cache_dir"):
        repgls.train(
            {
                "data": {"cache_dir": str(tmp_path / "nope"), "labels": "x.parquet"},
                "train": {"device": "cpu"},
                "output": {"run_dir": str(tmp_path / "r")},
            }
        )


@pytest.mark.slow
def test_compiled_training_matches_its_checkpoint(squares, tmp_path, one_torch_thread):
    """train.compile=true (torch.compile, inductor on CPU): the run trains, checkpoints hold plain keys (no
    ``_orig_mod.``), and an uncompiled model loaded from them reproduces the run's own val predictions."""
    from safetensors.torch import load_file

    import repgls
    from repgls.data import CachedImageDataset
    from repgls.models import create_model

    cfg = base_config(squares, tmp_path / "run", model={"name": "resnet_tiny_test"},
                      train={"epochs": 1, "max_steps": 3, "device": "cpu", "progress": False, "compile": True})
    run = repgls.train(cfg)
    losses = [r["loss"] for r in read_metrics(run) if r["kind"] == "train"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    sd = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert sd and not any("_orig_mod" in k for k in sd)
    model = create_model("resnet_tiny_test", num_classes=2, img_size=32)
    model.load_state_dict(sd, strict=True)
    model.eval()
    ds = CachedImageDataset(squares["cache"], labels=str(squares["labels"]), split="val")
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        prob = torch.sigmoid(model(x)).numpy()
    pred = pd.read_parquet(run / "predictions_val.parquet").set_index("image_id")
    np.testing.assert_allclose(prob, pred.loc[ds.index["image_id"], ["prob:A", "prob:B"]].to_numpy(), atol=1e-4)
