"""benchmarks/gpu_check.sh --dry-run: every step runs at tiny sizes on this machine, so the GPU check cannot rot.

On a CPU-only machine the CUDA-only steps (bf16 training, NCCL, torch.compile on CUDA) must say SKIP, and the
two equality checks (SIGKILL + resume vs an uninterrupted run; 2-process gloo DDP vs one process) must really
run and PASS. The helpers that turn outputs into PASS / FAIL / SKIP are checked on their own.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _load_driver():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    return mod


gc = _load_driver()


def test_steady_img_per_s_drops_warmup_and_epoch_boundaries():
    recs = [
        {"kind": "train", "epoch": 0, "img_per_s": 10.0},  # warm-up window: left out
        {"kind": "train", "epoch": 0, "img_per_s": 100.0},
        {"kind": "train", "epoch": 0, "img_per_s": 102.0},
        {"kind": "train", "epoch": 1, "img_per_s": 30.0},  # spans the epoch boundary: left out
        {"kind": "val", "epoch": 1, "mean_auc": 0.5},
        {"kind": "train", "epoch": 1, "img_per_s": 104.0},
    ]
    assert gc.steady_img_per_s(recs) == (102.0, 3)
    value, n = gc.steady_img_per_s(recs[:1])
    assert n == 0 and value != value  # NaN: no steady window


def test_compare_weights_bitwise_and_differences(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    w = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4)}
    save_file(w, str(tmp_path / "x.safetensors"))
    save_file({k: v.clone() for k, v in w.items()}, str(tmp_path / "y.safetensors"))
    save_file({"a": w["a"], "b": w["b"] + 1e-3}, str(tmp_path / "z.safetensors"))
    same = gc.compare_weights(tmp_path / "x.safetensors", tmp_path / "y.safetensors")
    assert same["bitwise"] and same["max_abs"] == 0.0
    diff = gc.compare_weights(tmp_path / "x.safetensors", tmp_path / "z.safetensors")
    assert not diff["bitwise"] and diff["worst"] == "b" and diff["max_abs"] == pytest.approx(1e-3, rel=1e-3)
    ok, _ = gc.allclose(tmp_path / "x.safetensors", tmp_path / "z.safetensors", rtol=0, atol=1e-2)
    assert ok
    ok, _ = gc.allclose(tmp_path / "x.safetensors", tmp_path / "z.safetensors", rtol=0, atol=1e-5)
    assert not ok


def test_missing_third_party_package_is_skip_anything_else_fail(tmp_path):
    log = tmp_path / "x.log"
    with pytest.raises(gc.Skip, match="missing package: xgrammar"):
        gc.raise_for_output("llm", 1, "ModuleNotFoundError: No module named 'xgrammar.contrib'", log)
    # a module of repgls itself that cannot be imported is a real failure (e.g. a refactor broke it)
    with pytest.raises(gc.StepFailed, match="exited 1: ModuleNotFoundError"):
        gc.raise_for_output("train", 1, "ModuleNotFoundError: No module named 'repgls.training'", log)
    with pytest.raises(gc.StepFailed, match="RuntimeError: CUDA error"):
        gc.raise_for_output("train", 1, "step 3\nRuntimeError: CUDA error: out of memory\n", log)


def test_dry_plan_is_tiny_and_options_override():
    plan = gc.Plan.make(True, gc.parse_args(["--dry-run", "--steps", "4", "--budget", "99"]))
    assert (plan.size, plan.steps, plan.budget, plan.world_n) == (64, 4, 99, 300)
    real = gc.Plan.make(False, gc.parse_args([]))
    assert real.size == 224 and real.models == ("lu_vit_small", "densenet121") and real.budget == 470
    assert 2 <= real.workers <= 10


def test_table_keeps_markdown_columns():
    rows = [gc.Row("ddp", gc.PASS, "max |dw| 1e-7", "a|b", 3.2), gc.Row("compile", gc.SKIP, "", "needs CUDA")]
    lines = gc.table_text(rows).splitlines()
    assert len(lines) == 4 and all(ln.count("|") == 6 for ln in lines)


@pytest.mark.slow
def test_dry_run_every_step_named_equality_checks_pass(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    out, js = tmp_path / "work", tmp_path / "summary.json"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--python", sys.executable, "--dry-run", "--out", str(out), "--json", str(js)],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    doc = json.loads(js.read_text())
    rows = {r["step"]: r for r in doc["steps"]}
    expected = ["env", "world", "loader", "train lu_vit_tiny_test bf16", "train lu_vit_tiny_test fp32",
                "train densenet_tiny_test bf16", "train densenet_tiny_test fp32", "resume", "nccl", "ddp",
                "compile", "llm_mine"]
    assert list(rows) == expected
    table = proc.stdout[proc.stdout.index("| step"):]
    for name in expected:
        assert f"| {name} " in table, name
    assert not doc["failed"] and all(r["status"] in ("PASS", "SKIP") for r in doc["steps"])

    # the equality checks really ran and passed here
    assert rows["resume"]["status"] == "PASS" and rows["resume"]["data"]["at_kill"]["batch_in_epoch"] > 0
    assert rows["resume"]["data"]["resume_vs_ref"]["same_keys"]
    assert rows["ddp"]["status"] == "PASS" and rows["ddp"]["data"]["weights"]["max_abs"] < 1e-4
    for name in ("env", "world", "loader", "train lu_vit_tiny_test fp32", "train densenet_tiny_test fp32"):
        assert rows[name]["status"] == "PASS", rows[name]
    assert rows["train lu_vit_tiny_test fp32"]["data"]["trainer_img_per_s"] > 0
    assert rows["train lu_vit_tiny_test fp32"]["data"]["timm_img_per_s"] > 0
    assert rows["loader"]["data"]["img_per_s"] > 0 and rows["loader"]["data"]["images"] == 5 * 8
    llm = rows["llm_mine"]
    assert llm["status"] == "PASS" or (llm["status"] == "SKIP" and "missing package" in llm["note"])

    cuda_only = ("train lu_vit_tiny_test bf16", "train densenet_tiny_test bf16", "nccl", "compile")
    if not torch.cuda.is_available():
        for name in cuda_only:
            assert rows[name]["status"] == "SKIP" and "CUDA" in rows[name]["note"], rows[name]
        assert "gloo (CPU)" in rows["ddp"]["note"]
    else:  # a dry run on a GPU machine runs them (NCCL may refuse two ranks on one GPU: SKIP)
        for name in cuda_only[:2] + cuda_only[3:]:
            assert rows[name]["status"] == "PASS", rows[name]
