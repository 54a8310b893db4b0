"""DDP: ``torchrun --nproc_per_node=2 -m repgls.cli train`` on CPU (gloo) with per-rank batch 2 gives the same
weights as one process with batch 4 (SGD: Adam would amplify fp-noise gradients of parameters whose true
gradient is zero, such as the attention key bias, into lr-sized differences) (same global batches: the epoch permutation is sharded rank::world),
and validation predictions gathered from both ranks cover every val image exactly once.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed not available", allow_module_level=True)

from test_train import REPO, base_config, child_env, make_square_world, read_metrics  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_rank_gloo_matches_single_process(tmp_path):
    import yaml
    from safetensors.torch import load_file

    world = make_square_world(tmp_path / "world", n_train=64, n_val=30)
    cfg = base_config(
        world,
        tmp_path / "unused",
        model={"name": "lu_vit_tiny_test"},
        loss={"name": "bce"},
        optim={"name": "sgd", "lr": 0.1, "momentum": 0.9, "warmup_steps": 0},
        train={"epochs": 1, "max_steps": 2, "log_every": 1, "device": "cpu", "progress": False},
    )
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    single, multi = tmp_path / "single", tmp_path / "ddp"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "repgls.cli",
            "train",
            "--config",
            str(p),
            "data.batch_size=4",
            f"output.run_dir={single}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{_free_port()}",
        "-m",
        "repgls.cli",
        "train",
        "--config",
        str(p),
        "data.batch_size=2",
        f"output.run_dir={multi}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=child_env())
    assert out.returncode == 0, out.stderr[-4000:]

    meta = json.loads((multi / "checkpoints" / "last.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == 2
    a = load_file(str(single / "checkpoints" / "last.safetensors"))
    b = load_file(str(multi / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    init_differs = False
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    # the comparison is not vacuous: two steps moved the weights away from the initialisation
    from repgls.models import create_model

    torch.manual_seed(0)
    init = create_model("lu_vit_tiny_test", num_classes=2, img_size=32).state_dict()
    init_differs = any(not torch.allclose(init[k], a[k]) for k in a if k in init)
    assert init_differs

    # train losses averaged over ranks equal the single-process losses
    la = [r["loss"] for r in read_metrics(single) if r["kind"] == "train"]
    lb = [r["loss"] for r in read_metrics(multi) if r["kind"] == "train"]
    np.testing.assert_allclose(lb, la, rtol=1e-4)

    # validation: each rank predicted half; rank 0 gathered all 30 images once, same probabilities
    pa = pd.read_parquet(single / "predictions_val.parquet")
    pb = pd.read_parquet(multi / "predictions_val.parquet")
    assert len(pb) == 30 and pb["image_id"].is_unique
    pa, pb = pa.set_index("image_id").sort_index(), pb.set_index("image_id").sort_index()
    np.testing.assert_allclose(
        pb[["prob:A", "prob:B"]].to_numpy(), pa[["prob:A", "prob:B"]].to_numpy(), atol=1e-5
    )
    assert not (multi / "predictions_val.parquet.tmp").exists()
