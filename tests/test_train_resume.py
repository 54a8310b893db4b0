"""Exact resume: a real ``repgls train`` process SIGKILLed after a mid-epoch checkpoint and resumed (with a
different DataLoader worker count) ends with the same weights, metrics and predictions as a run that was
never interrupted. Also: the checkpoint commit survives a crash at any point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from test_train import REPO, base_config, child_env, make_square_world, read_metrics  # noqa: E402


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> dict:
    return make_square_world(tmp_path_factory.mktemp("squares_resume"))


def _config(world: dict, tmp: Path) -> Path:
    import yaml

    # Everything that carries state across steps is on: augmentation (seeded per draw), warm-up + cosine,
    # gradient accumulation, EMA, clipping, the LU-ViT rate head and its joint loss.
    cfg = base_config(
        world,
        tmp / "unused",
        data={"augment": True, "batch_size": 8},
        model={"name": "lu_vit_tiny_test"},
        loss={"name": "luvit"},
        optim={
            "lr": 2e-3,
            "warmup_steps": 3,
            "grad_accum": 2,
            "ema": True,
            "ema_decay": 0.9,
            "grad_clip": 1.0,
        },
        train={"epochs": 4, "log_every": 1, "checkpoint_every": 2, "device": "cpu", "progress": False},
    )
    p = tmp / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "repgls.cli", "train", *args]


def _strip(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time", "img_per_s")} for r in recs]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(squares, tmp_path):
    from safetensors.torch import load_file

    cfg = _config(squares, tmp_path)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    out = subprocess.run(
        _cli("--config", str(cfg), f"output.run_dir={ref}"),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    total_steps = json.loads((ref / "checkpoints" / "last.json").read_text())["step"]
    assert total_steps == 4 * (96 // 8 // 2)

    # The run to kill uses 1 DataLoader worker; it is killed right after a mid-epoch checkpoint of epoch >= 1.
    proc = subprocess.Popen(
        _cli("--config", str(cfg), f"output.run_dir={killed}", "data.num_workers=1"),
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    meta_p = killed / "checkpoints" / "last.json"
    deadline = time.time() + 500
    seen = None
    try:
        while time.time() < deadline and proc.poll() is None:
            if meta_p.exists():
                with __import__("contextlib").suppress(json.JSONDecodeError, FileNotFoundError):
                    m = json.loads(meta_p.read_text())
                    if m["epoch"] >= 1 and m["batch_in_epoch"] > 0:
                        seen = m
                        os.kill(proc.pid, signal.SIGKILL)
                        break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and seen is None:
            proc.kill()
        proc.wait(timeout=60)
    assert seen is not None, (
        f"the run ended before a mid-epoch checkpoint was seen: {proc.stderr.read()[-2000:]}"
    )
    assert proc.returncode == -signal.SIGKILL
    at_kill = json.loads(meta_p.read_text())
    assert at_kill["step"] < total_steps and at_kill["batch_in_epoch"] % 2 == 0

    # Resume with a different worker count: augmentation is seeded per draw, so the images are the same.
    res = subprocess.run(
        _cli("--resume", str(killed), "data.num_workers=2"),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=child_env(),
    )
    assert res.returncode == 0, res.stderr
    assert f"step {at_kill['step']}" in res.stderr  # it really resumed from the checkpoint

    for tag in ("last", "best"):
        a = load_file(str(ref / "checkpoints" / f"{tag}.safetensors"))
        b = load_file(str(killed / "checkpoints" / f"{tag}.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=f"{tag}:{k}")
    sa = torch.load(ref / "checkpoints" / "last.state.pt", weights_only=False)
    sb = torch.load(killed / "checkpoints" / "last.state.pt", weights_only=False)
    for k, v in sa["ema"].items():
        torch.testing.assert_close(sb["ema"][k], v, rtol=1e-5, atol=1e-6)
    assert sb["step"] == sa["step"] == total_steps

    # Same metrics log (the records after the checkpoint were truncated and re-written), same predictions.
    ma, mb = _strip(read_metrics(ref)), _strip(read_metrics(killed))
    assert len(ma) == len(mb)
    for ra, rb in zip(ma, mb, strict=True):
        assert ra.keys() == rb.keys() and ra["kind"] == rb["kind"] and ra["step"] == rb["step"]
        for k in ("loss", "lr", "mean_auc"):
            if k in ra:
                assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (ra, rb)
    pa, pb = (
        pd.read_parquet(ref / "predictions_val.parquet"),
        pd.read_parquet(killed / "predictions_val.parquet"),
    )
    assert list(pa.columns) == list(pb.columns) and (pa["image_id"] == pb["image_id"]).all()
    num = [c for c in pa.columns if c.startswith(("prob:", "rate:"))]
    np.testing.assert_allclose(pb[num].to_numpy(), pa[num].to_numpy(), rtol=1e-5, atol=1e-6)
    assert json.loads((killed / "checkpoints" / "best.json").read_text())["mean_auc"] == pytest.approx(
        json.loads((ref / "checkpoints" / "best.json").read_text())["mean_auc"]
    )


def test_checkpoint_commit_survives_crash_at_each_point(tmp_path, monkeypatch):
    import repgls.training.checkpoint as T

    ck = tmp_path / "checkpoints"
    w1 = {"w": torch.ones(3)}
    T.save_checkpoint(ck, "last", w1, {"step": 1}, {"step": 1})
    real_replace = os.replace

    def crash_on(name):
        def fake(src, dst):
            if Path(dst).name == name:
                raise KeyboardInterrupt("simulated crash")
            return real_replace(src, dst)

        return fake

    # crash before the commit point (while publishing the pending marker): the old checkpoint stays
    monkeypatch.setattr(T.os, "replace", crash_on("last.pending.json"))
    with pytest.raises(KeyboardInterrupt):
        T.save_checkpoint(ck, "last", {"w": torch.full((3,), 2.0)}, {"step": 2}, {"step": 2})
    monkeypatch.setattr(T.os, "replace", real_replace)
    assert T.load_checkpoint_meta(tmp_path)["step"] == 1
    assert torch.load(ck / "last.state.pt", weights_only=False)["step"] == 1
    assert not list(ck.glob("*.tmp"))

    # crash after the commit point (between the renames): loading finishes the commit
    monkeypatch.setattr(T.os, "replace", crash_on("last.state.pt"))
    with pytest.raises(KeyboardInterrupt):
        T.save_checkpoint(ck, "last", {"w": torch.full((3,), 3.0)}, {"step": 3}, {"step": 3})
    monkeypatch.setattr(T.os, "replace", real_replace)
    assert (ck / "last.pending.json").exists()
    assert T.load_checkpoint_meta(tmp_path)["step"] == 3
    assert torch.load(ck / "last.state.pt", weights_only=False)["step"] == 3
    from safetensors.torch import load_file

    assert float(load_file(str(ck / "last.safetensors"))["w"][0]) == 3.0
    assert not (ck / "last.pending.json").exists()
