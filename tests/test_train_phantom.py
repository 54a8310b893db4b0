"""A small phantom-world run through the whole pipeline: phantom -> mine -> rates -> prepare -> train.

The phantom world's findings are subtle at 64 px and the val split is small (60 images), so the bar is
modest: the training loss falls and the best validation mean AUC over 14 classes is above chance.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from test_train import REPO, child_env, read_metrics  # noqa: E402


def _cli(*args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "repgls.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=child_env(),
    )
    assert out.returncode == 0, f"repgls {args[0]} failed: {out.stderr[-3000:]}"


@pytest.mark.slow
def test_phantom_pipeline_trains(tmp_path):
    import repgls

    world, cache = tmp_path / "world", tmp_path / "cache"
    findings, labels = tmp_path / "findings.parquet", tmp_path / "labels.parquet"
    _cli("phantom", "--out", str(world), "--n", "600", "--size", "64", "--seed", "0")
    _cli("mine", str(world / "reports.csv"), "--out", str(findings), "--text-col", "findings,impression")
    _cli("rates", str(findings), "--out", str(labels), "--studies", str(world / "reports.csv"))
    _cli(
        "prepare",
        "phantom",
        "--root",
        str(world),
        "--out",
        str(cache),
        "--size",
        "64",
        "--workers",
        "1",
        "--no-progress",
    )

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = repgls.train(
            REPO / "configs" / "phantom-tiny.yaml",
            overrides=[
                f"data.cache_dir={cache}",
                f"data.labels={labels}",
                f"output.run_dir={tmp_path / 'run'}",
                "model.name=resnet_tiny_test",
                "loss.name=bce",
                "loss.kwargs={}",
                "optim.lr=3e-3",
                "data.batch_size=16",
                "train.epochs=8",
                "train.device=cpu",
                "train.progress=false",
            ],
        )
    finally:
        torch.set_num_threads(n)

    recs = read_metrics(run)
    losses = [r["loss"] for r in recs if r["kind"] == "train"]
    vals = [r for r in recs if r["kind"] == "val"]
    assert len(vals) == 8
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert max(v["mean_auc"] for v in vals) > 0.55, [round(v["mean_auc"], 3) for v in vals]
    pred = pd.read_parquet(run / "predictions_val.parquet")
    classes = json.loads((run / "checkpoints" / "best.json").read_text())["auc"].keys()
    assert len(classes) == 14 and all(f"prob:{c}" in pred.columns for c in classes)
    assert pred["image_id"].is_unique and len(pred) > 0
