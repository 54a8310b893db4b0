"""One command that proves the GPU path (issue #14): the driver behind ``benchmarks/gpu_check.sh``.

Each step is a function that runs what a user runs (``python -m repgls.cli phantom|mine|rates|prepare|train``,
``torchrun -m repgls.cli train``, ``repgls.mining.llm.mine_llm``) as a subprocess and returns one row of the
summary table: step, status (PASS / FAIL / SKIP), figure, note. A step whose package is missing says SKIP with
the package's name; anything else that goes wrong is FAIL, and the script exits 1 when any step failed.

Steps (see docs/gpu.md for what each figure means):

* ``env``: torch, CUDA, the GPU, NCCL, the optional packages; a pinned-memory copy and a bf16 matmul.
* ``world``: a cached phantom world (``repgls phantom`` -> ``mine`` -> ``rates`` -> ``prepare``).
* ``loader``: the cache DataLoader with training augmentation (what the CPU can feed the GPU).
* ``train <model> <precision>``: ``repgls train`` throughput without augmentation (``img_per_s`` of
  metrics.jsonl, steady windows) next to a timm-style loop (fixed random batch on the device, channels_last,
  SGD, warm-up then timed iterations between ``torch.cuda.synchronize``), same model, batch and precision.
* ``resume``: a run SIGKILLed after a mid-epoch checkpoint and resumed (other worker count) vs an uninterrupted
  run, ``train.deterministic=true``: bit-identical weights, or (only where two uninterrupted runs differ too)
  within the run-to-run noise.
* ``nccl`` / ``ddp``: ``torchrun --nproc_per_node=2`` on the one device vs one process with the same global
  batch (NCCL when it accepts two ranks on one GPU, else gloo on CUDA tensors; gloo on CPU).
* ``compile``: a short ``train.compile=true`` run on CUDA.
* ``llm_mine``: the in-process LLM engine (transformers + xgrammar) on the device, reports/s; the tiny random
  Qwen3 of ``repgls.mining.llm_tiny`` unless ``--llm-model PATH`` (or ``REPGLS_LLM_MODEL``) names a model.

``--dry-run``: tiny models at 64 px, a few steps, on whatever device there is (CPU: CUDA-only steps SKIP, the
equality checks still run with gloo). ``tests/test_gpu_check.py`` runs it.

Internal modes (children of the driver): ``gpu_check.py _env|_timm|_loader|_llm JSON`` and, under torchrun,
``gpu_check.py _ddp_worker --config CFG [overrides]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parents[1]
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
LLM_PACKAGES = ("transformers", "tokenizers", "xgrammar", "jsonschema")
OPTIONAL_PACKAGES = ("timm", "safetensors", "tensorboard", "triton", *LLM_PACKAGES, "pytorch_grad_cam")
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # cuBLAS is only deterministic with it


class Skip(Exception):
    """A step cannot run here (missing package, no CUDA); the message says why."""


class StepFailed(Exception):
    """A step ran and failed; the message says what differed or which command failed."""


@dataclass
class Row:
    step: str
    status: str
    figure: str = ""
    note: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """Sizes of one run: ``real`` (one H200, <= 8 minutes with the world) or ``dry`` (tiny, any machine).

    Real sizes come from a calibration run on the H200 machine (16 CPUs): 40,000 studies took 44 s to build, a
    throughput run costs ~20 s of start-up, cuDNN autotuning and validation on top of its steps, the timm loop
    ~75 s (DenseNet autotuning in two precisions), compile ~35 s of compilation; see docs/gpu.md."""

    world_n: int
    size: int
    models: tuple[str, str]
    batch: int
    steps: int
    log_every: int
    workers: int
    timm_warm: int
    timm_iters: int
    loader_iters: int
    resume_model: str
    resume_batch: int
    resume_steps: int
    resume_every: int
    ddp_batch: int  # per process; the single-process run uses 2x
    ddp_steps: int
    compile_steps: int
    llm_reports: int
    budget: float  # seconds; steps not started by then are SKIPped, llm_mine stops mining (0 = no limit)

    @classmethod
    def make(cls, dry: bool, args: argparse.Namespace) -> Plan:
        if dry:
            plan = cls(world_n=300, size=64, models=("lu_vit_tiny_test", "densenet_tiny_test"), batch=8, steps=6,
                       log_every=2, workers=1, timm_warm=2, timm_iters=5, loader_iters=5,
                       resume_model="lu_vit_tiny_test", resume_batch=8, resume_steps=12, resume_every=4,
                       ddp_batch=4, ddp_steps=3, compile_steps=6, llm_reports=3, budget=0)
        else:
            plan = cls(world_n=20_000, size=224, models=("lu_vit_small", "densenet121"), batch=128, steps=200,
                       log_every=10, workers=max(2, min(10, usable_cpus() - 2)), timm_warm=10, timm_iters=40,
                       loader_iters=40, resume_model="lu_vit_small", resume_batch=64, resume_steps=40,
                       resume_every=10, ddp_batch=32, ddp_steps=3, compile_steps=60, llm_reports=200, budget=470)
        for key in ("steps", "batch", "workers", "world_n", "llm_reports", "budget"):
            if getattr(args, key, None) is not None:
                setattr(plan, key, getattr(args, key))
        return plan


def cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 CFS quota); None when unlimited or unknown."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        return None if q <= 0 else q / int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    return None


def usable_cpus() -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    q = cpu_quota()
    return max(1, min(n, math.ceil(q))) if q else n


# ---------------------------------------------------------------------------------------------------------
# Context: paths, the child environment, subprocess helpers


class Ctx:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.py = args.python or sys.executable
        self.dry = bool(args.dry_run)
        self.plan = Plan.make(self.dry, args)
        self.cuda = False
        self.env_info: dict[str, Any] = {}
        self.world: dict[str, Path] = {}
        self.eager_ips: dict[tuple[str, str], float] = {}
        self.timm: dict[str, Any] | None = None
        self.two_proc_run: tuple[Path, str] | None = None  # (run dir, backend) of a 2-process run that worked
        self.warnings: set[str] = set()
        self.t_start = time.perf_counter()
        self.walls: dict[str, float] = {}  # wall seconds of every child process, by log name
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(REPO / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("REPGLS_PROGRESS", None)
        if self.dry:  # tiny models: one intra-op thread per process is faster (and fairer on a shared CPU)
            env.setdefault("OMP_NUM_THREADS", "1")
        env.update(extra or {})
        return env

    def run(self, name: str, cmd: list[str], *, timeout: float = 600, extra_env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run ``cmd``, log its output to logs/<name>.log; a non-zero exit raises StepFailed (or Skip for a
        missing third-party package)."""
        log, t0 = self.logs / f"{name}.log", time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=self.env(extra_env), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            log.write_text(f"$ {' '.join(cmd)}\n{_text(e.stdout)}\n{_text(e.stderr)}")
            raise StepFailed(f"{name}: timed out after {timeout:.0f} s (log {log})") from None
        self.walls[name] = wall = time.perf_counter() - t0
        log.write_text(f"$ {' '.join(cmd)}\n# exit {proc.returncode}, wall {wall:.1f} s\n{proc.stdout}\n{proc.stderr}")
        self.collect_warnings(proc.stderr)
        if check and proc.returncode != 0:
            raise_for_output(name, proc.returncode, proc.stdout + proc.stderr, log)
        return proc

    def cli(self, name: str, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run(name, [self.py, "-m", "repgls.cli", *args], **kw)

    def worker(self, mode: str, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """Run ``gpu_check.py <mode> JSON`` and return the JSON object of its last stdout line."""
        proc = self.run(mode.strip("_"), [self.py, str(Path(__file__).resolve()), mode, json.dumps(payload)], **kw)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise StepFailed(f"{mode}: no result line (log {self.logs / (mode.strip('_') + '.log')})")
        res = json.loads(lines[-1])
        if res.get("skip"):
            raise Skip(res["skip"])
        return res

    def collect_warnings(self, text: str) -> None:
        for ln in text.splitlines():
            if "Warning:" in ln and len(self.warnings) < 40:
                self.warnings.add(re.sub(r"^.*?/site-packages/", "", ln.strip())[:220])


def _text(b: Any) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def raise_for_output(name: str, rc: int, output: str, log: Path) -> NoReturn:
    """Skip for a missing third-party module, else StepFailed with the last error line."""
    m = re.findall(r"No module named '([\w.]+)'", output)
    missing = [x for x in m if not x.startswith("repgls")]
    if missing:
        raise Skip(f"missing package: {missing[-1].split('.')[0]}")
    errors = [ln.strip() for ln in output.splitlines() if re.search(r"(Error|Exception|error:)", ln)]
    last = errors[-1] if errors else (output.strip().splitlines() or ["(no output)"])[-1]
    raise StepFailed(f"{name} exited {rc}: {last[:300]} (log {log})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / "metrics.jsonl"
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()] if p.exists() else []


def steady_img_per_s(records: list[dict[str, Any]]) -> tuple[float, int]:
    """Median ``img_per_s`` of the train windows, leaving out the first one (CUDA / cuDNN / worker warm-up,
    compilation) and any window that spans the start of an epoch (loader refill, epoch-end checkpoint)."""
    train = [r for r in records if r.get("kind") == "train"]
    keep = [b["img_per_s"] for a, b in itertools.pairwise(train) if a["epoch"] == b["epoch"]]
    keep = [v for v in keep if v and math.isfinite(v)]
    return (statistics.median(keep) if keep else float("nan")), len(keep)


def compare_weights(a_path: Path, b_path: Path) -> dict[str, Any]:
    """Bitwise equality and the largest absolute / relative difference between two safetensors files."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(a_path)), load_file(str(b_path))
    if a.keys() != b.keys():
        return {"same_keys": False, "bitwise": False, "max_abs": math.inf, "max_rel": math.inf}
    bitwise, max_abs, max_rel, worst = True, 0.0, 0.0, ""
    for k in a:
        x, y = a[k].double(), b[k].double()
        if not torch.equal(a[k], b[k]):
            bitwise = False
            d = (x - y).abs()
            if float(d.max()) > max_abs:
                max_abs, worst = float(d.max()), k
            max_rel = max(max_rel, float((d / (y.abs() + 1e-12)).max()))
    return {"same_keys": True, "bitwise": bitwise, "max_abs": max_abs, "max_rel": max_rel, "worst": worst}


def allclose(a_path: Path, b_path: Path, rtol: float, atol: float) -> tuple[bool, dict[str, Any]]:
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(a_path)), load_file(str(b_path))
    cmp = compare_weights(a_path, b_path)
    ok = cmp["same_keys"] and all(torch.allclose(b[k], a[k], rtol=rtol, atol=atol) for k in a)
    return ok, cmp


# ---------------------------------------------------------------------------------------------------------
# Training configs


def train_config(ctx: Ctx, run_dir: Path, model: str, batch: int, steps: int, /, **sections: dict) -> Path:
    """A config YAML for one run on the world (sections update the defaults key by key)."""
    import yaml

    p = ctx.plan
    cfg: dict[str, dict[str, Any]] = {
        "data": {"cache_dir": str(ctx.world["cache"]), "labels": str(ctx.world["labels"]), "vocab": "chexpert14",
                 "num_workers": p.workers, "batch_size": batch, "augment": True},
        "model": {"name": model, "in_chans": 1},
        "loss": {"name": "luvit" if model.startswith("lu_") else "gls"},
        "optim": {"name": "sgd", "lr": 1e-4, "momentum": 0.9, "warmup_steps": 0},
        "train": {"epochs": 1000, "max_steps": steps, "log_every": p.log_every, "eval_every": 1000,
                  "seed": 0, "progress": False},
        "output": {"run_dir": str(run_dir)},
    }
    for sec, vals in sections.items():
        cfg[sec].update(vals)
    path = run_dir.with_suffix(".yaml")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return path


def losses_of(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir) if r.get("kind") == "train"]


# ---------------------------------------------------------------------------------------------------------
# Steps


def step_env(ctx: Ctx) -> Row:
    info = ctx.worker("_env", {}, timeout=300)
    ctx.env_info = info
    ctx.cuda = bool(info["cuda"])
    missing = [k for k, v in info["packages"].items() if not v]
    quota = f" (cgroup quota {info['cpu_quota']:.1f})" if info.get("cpu_quota") else ""
    note = (f"torch {info['torch']}, python {info['python']}, {info['cpus']} CPUs{quota}, /dev/shm free "
            f"{info['shm_free_gb']:.1f} GB; missing: {', '.join(missing) or 'none'}")
    if not ctx.cuda:
        if not ctx.dry:
            raise StepFailed("CUDA is not available (on a CPU-only machine use --dry-run). " + note)
        return Row("env", PASS, "CPU only (dry run)", note, data=info)
    fig = f"{info['gpu']} (sm_{info['capability']}, {info['gpu_mem_gb']:.0f} GB)"
    note = (f"CUDA {info['cuda_version']}, cuDNN {info['cudnn']}, NCCL {info['nccl']}, bf16 "
            f"{info['bf16']}, pinned copy + bf16 matmul ok; " + note)
    return Row("env", PASS, fig, note, data=info)


def step_world(ctx: Ctx) -> Row:
    p, root = ctx.plan, ctx.out / "world"
    cache, labels = root / "cache", root / "labels.parquet"
    paths = {"root": root, "cache": cache, "labels": labels, "reports": root / "reports.csv"}
    meta = root / "meta.json"
    if (cache / "meta.json").exists() and labels.exists() and meta.exists():
        cm, wm = json.loads((cache / "meta.json").read_text()), json.loads(meta.read_text())
        if cm.get("complete") and cm.get("n") == p.world_n and cm.get("size") == p.size and wm.get("n") == p.world_n:
            ctx.world = paths
            return Row("world", PASS, f"{p.world_n:,} studies at {p.size} px", "reused from an earlier run")
    shutil.rmtree(root, ignore_errors=True)
    w = str(usable_cpus())
    times = {}
    t0 = time.perf_counter()
    ctx.cli("phantom", "phantom", "--n", str(p.world_n), "--size", str(p.size), "--out", str(root),
            "--workers", w, "--seed", "0")
    times["phantom"] = time.perf_counter() - t0
    t = time.perf_counter()
    ctx.cli("mine", "mine", str(root / "reports.csv"), "--out", str(root / "findings.parquet"),
            "--workers", str(min(8, int(w))), "--no-progress")
    ctx.cli("rates", "rates", str(root / "findings.parquet"), "--out", str(labels), "--studies",
            str(root / "reports.csv"))
    times["mine+rates"] = time.perf_counter() - t
    t = time.perf_counter()
    ctx.cli("prepare", "prepare", "phantom", "--root", str(root), "--out", str(cache), "--size", str(p.size),
            "--workers", w)
    times["prepare"] = time.perf_counter() - t
    cm = json.loads((cache / "meta.json").read_text())
    if not cm.get("complete") or cm.get("n_done") != p.world_n:
        raise StepFailed(f"cache incomplete: {cm.get('n_done')} of {p.world_n} images")
    ctx.world = paths
    rate = p.world_n / times["phantom"]
    note = ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + f"; {w} workers"
    return Row("world", PASS, f"{p.world_n:,} studies at {p.size} px; phantom {rate:,.0f} img/s", note,
               data=times)


def timm_results(ctx: Ctx) -> dict[str, Any]:
    """The timm-style loop for every (model, precision) of the plan, in one child process (run once)."""
    if ctx.timm is None:
        p = ctx.plan
        precisions = ["bf16", "fp32"] if ctx.cuda else ["fp32"]
        try:
            ctx.timm = ctx.worker("_timm", {"models": list(p.models), "precisions": precisions, "batch": p.batch,
                                            "size": p.size, "warm": p.timm_warm, "iters": p.timm_iters,
                                            "min_s": 0.0 if ctx.dry else 3.0,
                                            "device": "cuda" if ctx.cuda else "cpu"}, timeout=900)
        except (Skip, StepFailed) as e:  # remembered, so the other rows do not run it again
            ctx.timm = {"results": {}, "error": str(e)}
    return ctx.timm


def step_train(ctx: Ctx, model: str, precision: str) -> Row:
    p = ctx.plan
    if precision == "bf16" and not ctx.cuda:
        raise Skip("needs CUDA (the trainer runs bf16 autocast on CUDA only)")
    run_dir = ctx.out / "runs" / f"throughput-{model}-{precision}"
    cfg = train_config(ctx, run_dir, model, p.batch, p.steps, data={"augment": False},
                       train={"bf16": precision == "bf16"})
    t0 = time.perf_counter()
    ctx.cli(f"train-{model}-{precision}", "train", "--config", str(cfg), timeout=900)
    wall = time.perf_counter() - t0
    recs = read_metrics(run_dir)
    ips, n = steady_img_per_s(recs)
    losses = losses_of(run_dir)
    if not losses or not all(math.isfinite(v) for v in losses):
        raise StepFailed(f"non-finite or missing train loss: {losses[:5]}")
    if not math.isfinite(ips):
        raise StepFailed("no steady img_per_s window in metrics.jsonl (raise --steps)")
    ctx.eager_ips[(model, precision)] = ips
    timm = timm_results(ctx)
    ref = timm["results"].get(f"{model}/{precision}", {}).get("img_per_s")
    fig = f"trainer {ips:,.0f} img/s"
    if ref:
        fig += f"; timm loop {ref:,.0f} img/s ({ips / ref:.0%})"
    if timm.get("error"):
        raise StepFailed(f"{fig}; the timm-style loop failed: {timm['error']}")
    where = "CUDA" if ctx.cuda else "CPU"
    note = (f"{where}, batch {p.batch}, {p.size} px, {p.steps} steps (median of {n} windows of {p.log_every}), "
            f"{p.workers} loader worker(s){', pinned memory, channels_last, cudnn.benchmark, TF32' if ctx.cuda else ''}"
            f"; augmentation off (see loader); SGD in both; run wall {wall:.0f} s")
    return Row(f"train {model} {precision}", PASS, fig, note,
               data={"trainer_img_per_s": ips, "timm_img_per_s": ref, "windows": n, "wall_s": wall})


def step_loader(ctx: Ctx) -> Row:
    """What real training gets from the CPU: the cache DataLoader with training augmentation, the trainer's
    worker count and batch, pinned memory on CUDA (the throughput rows run without augmentation)."""
    p = ctx.plan
    res = ctx.worker("_loader", {"cache": str(ctx.world["cache"]), "labels": str(ctx.world["labels"]),
                                 "batch": p.batch, "workers": p.workers, "iters": p.loader_iters, "pin": ctx.cuda},
                     timeout=600)
    fig = f"{res['img_per_s']:,.0f} img/s with augmentation"
    note = (f"CachedImageDataset train split, {p.size} px, augment=True, batch {p.batch}, {p.workers} worker(s)"
            f"{', pinned, copied to the GPU' if ctx.cuda else ''}, {res['images']} images after one batch per "
            f"worker; {res['usable_cpus']} usable CPUs; the trainer cannot go faster than this with augmentation")
    return Row("loader", PASS, fig, note, data=res)


def _kill_after_checkpoint(ctx: Ctx, cfg: Path, run_dir: Path, every: int, total: int) -> dict[str, Any]:
    """Start a run, SIGKILL its process group right after its first mid-epoch ``last`` checkpoint."""
    log = ctx.logs / "resume-killed.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([ctx.py, "-m", "repgls.cli", "train", "--config", str(cfg), "data.num_workers=1"],
                                cwd=REPO, env=ctx.env(DETERMINISTIC_ENV), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        meta_p, seen, deadline = run_dir / "checkpoints" / "last.json", None, time.time() + 600
        try:
            while time.time() < deadline and proc.poll() is None:
                with contextlib.suppress(json.JSONDecodeError, FileNotFoundError, KeyError):
                    m = json.loads(meta_p.read_text())
                    if every <= m["step"] < total and m["batch_in_epoch"] > 0:
                        seen = m
                        os.killpg(proc.pid, signal.SIGKILL)
                        break
                time.sleep(0.005)
        finally:
            if proc.poll() is None and seen is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    if seen is None:
        raise StepFailed(f"the run ended (exit {proc.returncode}) before a mid-epoch checkpoint was seen ({log})")
    if proc.returncode != -signal.SIGKILL:
        raise StepFailed(f"killed run exit code {proc.returncode}, expected SIGKILL ({log})")
    return json.loads(meta_p.read_text())


def step_resume(ctx: Ctx) -> Row:
    p = ctx.plan
    runs = ctx.out / "runs"
    sections = {
        "model": {"kwargs": {"drop_path_rate": 0.1}},  # exercises the CUDA RNG state in the checkpoint
        "loss": {"name": "luvit"},
        "optim": {"name": "adamw", "lr": 3e-4, "warmup_steps": 5, "grad_clip": 1.0, "ema": True, "ema_decay": 0.99},
        "train": {"deterministic": True, "log_every": 1, "checkpoint_every": p.resume_every},
    }
    args = (p.resume_model, p.resume_batch, p.resume_steps)
    ref, killed = runs / "resume-ref", runs / "resume-killed"
    cfg_ref = train_config(ctx, ref, *args, **sections)
    ctx.cli("resume-ref", "train", "--config", str(cfg_ref), extra_env=DETERMINISTIC_ENV)
    cfg_k = train_config(ctx, killed, *args, **sections)
    at_kill = _kill_after_checkpoint(ctx, cfg_k, killed, p.resume_every, p.resume_steps)
    res = ctx.cli("resume-resumed", "train", "--resume", str(killed), "data.num_workers=0",
                  extra_env=DETERMINISTIC_ENV)
    if f"step {at_kill['step']}" not in res.stderr:
        raise StepFailed(f"the resumed run did not report resuming at step {at_kill['step']}")
    cmp = compare_weights(ref / "checkpoints" / "last.safetensors", killed / "checkpoints" / "last.safetensors")
    if not cmp["same_keys"]:
        raise StepFailed("weight names differ between the runs")
    where = f"killed at step {at_kill['step']} of {p.resume_steps} (batch {at_kill['batch_in_epoch']} of the epoch)"
    data = {"at_kill": at_kill, "resume_vs_ref": cmp}
    if cmp["bitwise"]:
        return Row("resume", PASS, "bit-identical weights", f"{where}; {_resume_note(ctx)}", data=data)
    # Not bitwise: is the device itself deterministic for this run? Run the uninterrupted run again.
    ref2 = runs / "resume-ref2"
    ctx.cli("resume-ref2", "train", "--config", str(train_config(ctx, ref2, *args, **sections)),
            extra_env=DETERMINISTIC_ENV)
    noise = compare_weights(ref / "checkpoints" / "last.safetensors", ref2 / "checkpoints" / "last.safetensors")
    data["ref2_vs_ref"] = noise
    fig = f"max abs dw {cmp['max_abs']:.2e} (run-to-run {noise['max_abs']:.2e})"
    if noise["bitwise"]:
        return Row("resume", FAIL, fig, f"{where}; two uninterrupted runs are bit-identical but the resumed one "
                   f"differs (worst {cmp['worst']})", data=data)
    ok = cmp["max_abs"] <= 10 * noise["max_abs"]
    return Row("resume", PASS if ok else FAIL, fig, f"{where}; not bitwise: the kernels are not run-to-run "
               f"deterministic here, so the criterion is <= 10x the run-to-run difference", data=data)


def _resume_note(ctx: Ctx) -> str:
    p = ctx.plan
    dev = "CUDA bf16 autocast + channels_last" if ctx.cuda else "CPU fp32"
    return (f"{p.resume_model}, {dev}, AdamW + warm-up + clip + EMA + drop_path + augmentation, "
            f"train.deterministic=true, workers 1 -> 0, last.safetensors compared bit for bit")


def _two_proc_cmd(ctx: Ctx, *tail: str) -> list[str]:
    return [ctx.py, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{free_port()}", *tail]


def _ddp_sections() -> dict[str, dict[str, Any]]:
    # SGD (Adam would blow fp noise of zero-gradient parameters up to lr-sized steps), fp32 (bf16 rounding
    # depends on the batch shape), BCE; ViTs only (BatchNorm statistics are per process without SyncBN).
    return {"loss": {"name": "bce"}, "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "train": {"bf16": False, "deterministic": True, "log_every": 1}}


def step_nccl(ctx: Ctx) -> Row:
    if not ctx.cuda:
        raise Skip("needs CUDA")
    p = ctx.plan
    run_dir = ctx.out / "runs" / "ddp-nccl"
    cfg = train_config(ctx, run_dir, p.resume_model, p.ddp_batch, p.ddp_steps, **_ddp_sections())
    proc = ctx.run("ddp-nccl", _two_proc_cmd(ctx, "-m", "repgls.cli", "train", "--config", str(cfg),
                                             "train.device=cuda:0"), timeout=300, check=False,
                   extra_env=DETERMINISTIC_ENV)
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        ctx.two_proc_run = (run_dir, "nccl")
        return Row("nccl", PASS, "2 ranks on one GPU", "torchrun -m repgls.cli train, NCCL; equality: ddp row")
    dup = re.search(r"Duplicate GPU detected[^\n]*", out)
    if dup or "invalid usage" in out:
        msg = dup.group(0) if dup else "ncclInvalidUsage"
        return Row("nccl", SKIP, "refused", f"NCCL does not run two ranks on one GPU ({msg[:120]}); "
                   "the ddp row uses gloo on CUDA tensors instead")
    raise_for_output("ddp-nccl", proc.returncode, out, ctx.logs / "ddp-nccl.log")


def step_ddp(ctx: Ctx) -> Row:
    p = ctx.plan
    runs = ctx.out / "runs"
    single = runs / "ddp-single"
    cfg = train_config(ctx, single, p.resume_model, 2 * p.ddp_batch, p.ddp_steps, **_ddp_sections())
    ctx.cli("ddp-single", "train", "--config", str(cfg), extra_env=DETERMINISTIC_ENV)
    if ctx.two_proc_run is not None:
        multi, backend = ctx.two_proc_run
    elif ctx.cuda:  # gloo on CUDA tensors: the trainer uses a process group that is already initialised
        multi, backend = runs / "ddp-gloo", "gloo (CUDA tensors)"
        cfg_m = train_config(ctx, multi, p.resume_model, p.ddp_batch, p.ddp_steps, **_ddp_sections())
        ctx.run("ddp-gloo", _two_proc_cmd(ctx, str(Path(__file__).resolve()), "_ddp_worker", "--config",
                                          str(cfg_m), "train.device=cuda:0"), extra_env=DETERMINISTIC_ENV)
    else:
        multi, backend = runs / "ddp-gloo", "gloo (CPU)"
        cfg_m = train_config(ctx, multi, p.resume_model, p.ddp_batch, p.ddp_steps, **_ddp_sections())
        ctx.run("ddp-gloo", _two_proc_cmd(ctx, "-m", "repgls.cli", "train", "--config", str(cfg_m)))
    meta = json.loads((multi / "checkpoints" / "last.json").read_text())
    if meta["world_size"] != 2 or meta["step"] != p.ddp_steps:
        raise StepFailed(f"2-process run: world_size {meta['world_size']}, step {meta['step']}")
    # CUDA: TF32 matmuls whose kernels depend on the batch shape; measured on the H200: 3.4e-6 / 7.7e-5.
    w_atol, p_atol = (3e-5, 1e-3) if ctx.cuda else (1e-5, 1e-4)
    ok_w, cmp = allclose(single / "checkpoints" / "last.safetensors", multi / "checkpoints" / "last.safetensors",
                         rtol=1e-4, atol=w_atol)
    la, lb = losses_of(single), losses_of(multi)
    ok_l = len(la) == len(lb) == p.ddp_steps and all(
        math.isclose(a, b, rel_tol=1e-4) for a, b in zip(la, lb, strict=True))
    import pandas as pd

    pa, pb = (pd.read_parquet(d / "predictions_val.parquet").set_index("image_id").sort_index()
              for d in (single, multi))
    probs = [c for c in pa.columns if c.startswith("prob:")]
    dprob = float((pa[probs] - pb[probs]).abs().to_numpy().max()) if pa.index.equals(pb.index) else math.inf
    ok_p = pb.index.is_unique and dprob <= p_atol
    ok = ok_w and ok_l and ok_p
    fig = f"max abs dw {cmp['max_abs']:.1e}, dprob {dprob:.1e}"
    note = (f"{backend}; batch {p.ddp_batch} x 2 processes vs {2 * p.ddp_batch} x 1, {p.ddp_steps} SGD steps, fp32"
            f"{' (TF32)' if ctx.cuda else ''}, deterministic; weights rtol 1e-4 atol {w_atol:.0e}, losses rtol 1e-4, "
            f"val probs atol {p_atol:.0e}, {len(pb)} val images gathered once".replace("e-0", "e-")
            + ("" if ok else f"; FAILED: weights {ok_w}, losses {ok_l} ({la} vs {lb}), predictions {ok_p}"))
    return Row("ddp", PASS if ok else FAIL, fig, note, data={"weights": cmp, "dprob": dprob, "backend": backend})


def step_compile(ctx: Ctx) -> Row:
    if not ctx.cuda:
        raise Skip("needs CUDA (torch.compile on CPU is covered by tests/test_train.py)")
    p = ctx.plan
    model = p.models[0]
    run_dir = ctx.out / "runs" / "compile"
    cfg = train_config(ctx, run_dir, model, p.batch, p.compile_steps, data={"augment": False},
                       train={"compile": True, "bf16": True})
    t0, started = time.perf_counter(), time.time()
    ctx.cli("compile", "train", "--config", str(cfg), timeout=900)
    wall = time.perf_counter() - t0
    recs = [r for r in read_metrics(run_dir) if r.get("kind") == "train"]
    ips, n = steady_img_per_s(recs)
    losses = [r["loss"] for r in recs]
    if not losses or not all(math.isfinite(v) for v in losses):
        raise StepFailed(f"non-finite or missing train loss: {losses[:5]}")
    from safetensors.torch import load_file

    keys = list(load_file(str(run_dir / "checkpoints" / "last.safetensors")).keys())
    if any("_orig_mod" in k for k in keys):
        raise StepFailed("the checkpoint keeps torch.compile's _orig_mod. prefixes")
    first = recs[0]["time"] - started if recs else float("nan")  # not exact: includes the process start
    eager = ctx.eager_ips.get((model, "bf16"))
    fig = f"{ips:,.0f} img/s compiled" + (f" vs {eager:,.0f} eager ({ips / eager:.2f}x)" if eager else "")
    note = (f"{model} bf16, batch {p.batch}, {p.compile_steps} steps (median of {n} windows); start to first "
            f"log line {first:.0f} s (compilation), run wall {wall:.0f} s; checkpoint keys plain")
    return Row("compile", PASS, fig, note, data={"img_per_s": ips, "eager": eager, "wall_s": wall})


def step_llm(ctx: Ctx) -> Row:
    p = ctx.plan
    model = ctx.args.llm_model or os.environ.get("REPGLS_LLM_MODEL") or None
    mining_s = None  # the time left under --budget, less the model's load time (at least 20 s)
    if p.budget:
        mining_s = max(20.0, p.budget - (time.perf_counter() - ctx.t_start) - 15.0)
    res = ctx.worker("_llm", {"model": model, "reports": str(ctx.world["reports"]), "n": p.llm_reports,
                              "work": str(ctx.out / "llm"), "device": "cuda" if ctx.cuda else "cpu",
                              "mining_s": mining_s}, timeout=900)
    name = "tiny random Qwen3 (hidden 64, 2 layers; answers capped at 2 findings x 24 chars)" if not model \
        else f"{model}"
    fig = f"{res['reports_per_s']:.2f} reports/s"
    note = (f"{name} on {res['device']} ({res['dtype']}), in process (transformers + xgrammar), "
            f"{res['n']} phantom reports, {res['tokens_per_report']:.0f} generated tokens/report "
            f"({res['tokens_per_s']:,.0f} tok/s), {res['n_rows']} findings, {res['n_failed']} failed, "
            f"load {res['load_s']:.1f} s")
    if res["n"] < p.llm_reports:
        note += f"; stopped after {res['n']} of {p.llm_reports} reports: --budget"
    return Row("llm_mine", PASS if res["n_failed"] == 0 else FAIL, fig, note, data=res)


# ---------------------------------------------------------------------------------------------------------
# Child modes


def child_env(_: dict[str, Any]) -> dict[str, Any]:
    import importlib.util
    import platform

    import torch

    shm = shutil.disk_usage("/dev/shm").free / 2**30 if os.path.isdir("/dev/shm") else float("nan")
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
        "cpus": os.cpu_count(), "usable_cpus": usable_cpus(), "cpu_quota": cpu_quota(), "shm_free_gb": shm,
        "packages": {m: importlib.util.find_spec(m) is not None for m in OPTIONAL_PACKAGES},
    }
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_mem_gb=props.total_memory / 2**30, n_gpus=torch.cuda.device_count(),
                    capability=f"{props.major}{props.minor}", cuda_version=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported(),
                    nccl=_nccl_version(torch))
        host = torch.randn(1024, 1024).pin_memory()
        dev = host.to("cuda", non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            prod = dev @ dev
        torch.cuda.synchronize()
        if prod.dtype != torch.bfloat16 or not torch.isfinite(prod.float()).all():
            raise RuntimeError("bf16 autocast matmul gave a wrong dtype or non-finite values")
    return info


def _nccl_version(torch: Any) -> str:
    try:
        v = torch.cuda.nccl.version()
    except Exception as e:  # no NCCL in this build
        return f"n/a ({type(e).__name__})"
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def child_timm(a: dict[str, Any]) -> dict[str, Any]:
    """timm benchmark.py's train loop, on repgls' model (a timm backbone): fixed random batch on the device,
    channels_last, autocast in the given precision, loss + backward + SGD step, warm-up then timed iterations
    (at least ``iters`` and ``min_s`` seconds) between device synchronisations. TF32 and cudnn.benchmark as the
    trainer sets them on CUDA."""
    import torch

    from repgls import create_model

    dev = torch.device(a["device"])
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out: dict[str, Any] = {}
    for name in a["models"]:
        for prec in a["precisions"]:
            torch.manual_seed(0)
            model = create_model(name, num_classes=14, in_chans=1, img_size=a["size"]).to(dev).train()
            if cuda:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
            x = torch.randn(a["batch"], 1, a["size"], a["size"], device=dev)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            y = (torch.rand(a["batch"], 14, device=dev) < 0.3).float()
            loss_fn = torch.nn.BCEWithLogitsLoss()
            use_bf16 = prec == "bf16"

            def step(model=model, opt=opt, x=x, y=y, loss_fn=loss_fn, use_bf16=use_bf16) -> None:
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(x)
                loss_fn(logits.float(), y).backward()
                opt.step()

            for _ in range(a["warm"]):
                step()
            if cuda:
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
            while n < a["iters"] or time.perf_counter() - t0 < a["min_s"]:  # >= iters and >= min_s seconds
                for _ in range(10 if n else a["iters"]):
                    step()
                n += 10 if n else a["iters"]
                if cuda:
                    torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            out[f"{name}/{prec}"] = {"img_per_s": a["batch"] * n / dt, "ms_per_step": 1e3 * dt / n, "iters": n}
            del model, opt, x
            if cuda:
                out[f"{name}/{prec}"]["max_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    return {"results": out}


def child_loader(a: dict[str, Any]) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    from repgls.data import CachedImageDataset

    ds = CachedImageDataset(a["cache"], labels=a["labels"], split="train", augment=True, seed=0)
    dl = DataLoader(ds, batch_size=a["batch"], shuffle=True, num_workers=a["workers"], pin_memory=a["pin"],
                    drop_last=True, generator=torch.Generator().manual_seed(0))
    it = iter(dl)
    for _ in range(max(1, a["workers"])):  # every worker has started and delivered once
        next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(a["iters"]):
        try:
            batch = next(it)
        except StopIteration:
            break
        x = batch["image"].to("cuda", non_blocking=True) if a["pin"] else batch["image"]
        n += int(x.shape[0])
    if a["pin"]:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"img_per_s": n / dt, "images": n, "seconds": dt, "usable_cpus": usable_cpus()}


def child_llm(a: dict[str, Any]) -> dict[str, Any]:
    import importlib.util

    missing = [m for m in LLM_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        return {"skip": f"missing package: {', '.join(missing)}"}
    import pandas as pd
    import torch

    from repgls.mining.llm import mine_llm, run_info
    from repgls.mining.llm_backends import TransformersBackend

    model = a["model"]
    opts: dict[str, Any] = {}
    if model is None:
        from repgls.mining.llm_tiny import build_tiny_model

        model = str(build_tiny_model(Path(a["work"]) / "qwen3-tiny", seed=2))
        opts = {"max_findings": 2, "max_string": 24, "max_tokens": 1024}
    t0 = time.perf_counter()
    backend = TransformersBackend(model, device=a["device"])
    load_s = time.perf_counter() - t0
    param = next(backend.model.parameters())
    if param.device.type != torch.device(a["device"]).type:
        raise RuntimeError(f"the LLM backend put the model on {param.device}, asked for {a['device']}")
    df = pd.read_csv(a["reports"], dtype=str).fillna("").head(a["n"] + 1)
    items = [(r.study_id, f"FINDINGS: {r.findings}\nIMPRESSION: {r.impression}") for r in df.itertuples()]
    mine_llm(items[:1], "chexpert14", model="tiny", backend=backend, **opts)  # warm-up (grammar compile)
    tokens: list[int] = []
    generate = backend.generate

    def counting(*args: Any, **kw: Any) -> Any:
        comp = generate(*args, **kw)
        tokens.append(comp.completion_tokens)
        return comp

    backend.generate = counting  # type: ignore[method-assign]
    if a["device"] == "cuda":
        torch.cuda.synchronize()
    t0, n, n_failed, n_rows = time.perf_counter(), 0, 0, 0
    for i in range(1, len(items), 25):  # in chunks, so that a time limit stops between chunks
        table = mine_llm(items[i : i + 25], "chexpert14", model="tiny", backend=backend, **opts)
        n, n_failed, n_rows = n + len(items[i : i + 25]), n_failed + run_info(table)["n_failed"], n_rows + table.num_rows
        if a["mining_s"] is not None and time.perf_counter() - t0 > a["mining_s"]:
            break
    dt = time.perf_counter() - t0
    return {"n": n, "seconds": dt, "reports_per_s": n / dt, "n_failed": n_failed, "n_rows": n_rows,
            "tokens_per_report": sum(tokens) / max(1, len(tokens)), "tokens_per_s": sum(tokens) / dt,
            "load_s": load_s, "device": str(param.device), "dtype": str(param.dtype).replace("torch.", "")}


def child_ddp_worker(argv: list[str]) -> None:
    """Under torchrun: a gloo process group on CUDA tensors, then the public ``repgls.train`` (which uses a
    process group that is already initialised)."""
    import torch
    import torch.distributed as dist

    import repgls

    if argv[:1] != ["--config"]:
        raise SystemExit("usage: gpu_check.py _ddp_worker --config CFG [overrides]")
    if torch.cuda.is_available():
        torch.cuda.set_device(0)
    dist.init_process_group("gloo")
    try:
        repgls.train(argv[1], overrides=argv[2:])
    finally:
        dist.destroy_process_group()


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "_env": child_env, "_timm": child_timm, "_loader": child_loader, "_llm": child_llm,
}


# ---------------------------------------------------------------------------------------------------------
# Driver


def steps_of(ctx: Ctx) -> list[tuple[str, Callable[[], Row]]]:
    out: list[tuple[str, Callable[[], Row]]] = [
        ("env", lambda: step_env(ctx)), ("world", lambda: step_world(ctx)), ("loader", lambda: step_loader(ctx))]
    for model in ctx.plan.models:
        for prec in ("bf16", "fp32"):
            out.append((f"train {model} {prec}", lambda m=model, pr=prec: step_train(ctx, m, pr)))
    out += [("resume", lambda: step_resume(ctx)), ("nccl", lambda: step_nccl(ctx)), ("ddp", lambda: step_ddp(ctx)),
            ("compile", lambda: step_compile(ctx)), ("llm_mine", lambda: step_llm(ctx))]
    return out


def run_step(name: str, fn: Callable[[], Row], needs_world: bool, ctx: Ctx) -> Row:
    t0 = time.perf_counter()
    try:
        if needs_world and not ctx.world:
            raise Skip("no world (the world step did not pass)")
        row = fn()
    except Skip as e:
        row = Row(name, SKIP, "", str(e))
    except StepFailed as e:
        row = Row(name, FAIL, "", str(e))
    except Exception as e:  # a bug in this script or an unexpected result: a failure, never a crash
        row = Row(name, FAIL, "", f"{type(e).__name__}: {e}")
    row.step, row.seconds = name, time.perf_counter() - t0
    return row


def table_text(rows: list[Row]) -> str:
    head = ("step", "status", "figure", "seconds", "note")
    cells = [head] + [tuple(c.replace("|", "/") for c in (r.step, r.status, r.figure, f"{r.seconds:.0f}", r.note))
                      for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("| " + " | ".join(c[j].ljust(widths[j]) for j in range(4)) + f" | {c[4]} |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|---|")
    return "\n".join(lines)


def write_json(path: Path, ctx: Ctx, rows: list[Row], elapsed: float) -> None:
    doc = {"dry_run": ctx.dry, "cuda": ctx.cuda, "elapsed_s": elapsed, "plan": asdict(ctx.plan),
           "env": ctx.env_info, "steps": [asdict(r) for r in rows], "failed": any(r.status == FAIL for r in rows),
           "child_wall_s": ctx.walls, "warnings": sorted(ctx.warnings)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="See docs/gpu.md. Usually run through benchmarks/gpu_check.sh.")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on any device (CPU: CUDA steps SKIP)")
    ap.add_argument("--python", help="interpreter for the child processes (default: this one)")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary folder, removed at the end)")
    ap.add_argument("--steps", type=int, help="optimiser steps of each throughput run (default 200; dry run 6)")
    ap.add_argument("--batch", type=int, help="per-GPU batch of the throughput runs (default 128; dry run 8)")
    ap.add_argument("--workers", type=int, help="DataLoader workers per training process")
    ap.add_argument("--world-n", type=int, help="phantom studies (default 40000; dry run 300)")
    ap.add_argument("--llm-reports", type=int, help="reports mined by the LLM step (default 200; dry run 3)")
    ap.add_argument("--llm-model", help="local Hugging Face chat model folder for llm_mine (default: "
                    "$REPGLS_LLM_MODEL, else the tiny random Qwen3)")
    ap.add_argument("--only", help="comma-separated step-name prefixes to run (env and world always run)")
    ap.add_argument("--budget", type=float, help="seconds; steps not started by then are SKIPped and llm_mine "
                    "stops mining (default 470 for the real run, 0 = no limit)")
    ap.add_argument("--json", type=Path, help="also write the summary as JSON here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_ddp_worker":
        child_ddp_worker(argv[1:])
        return 0
    if argv and argv[0] in CHILDREN:
        print(json.dumps(CHILDREN[argv[0]](json.loads(argv[1])), default=str))
        return 0
    args = parse_args(argv)
    tmp = None if args.out else tempfile.mkdtemp(prefix="gpu_check-")
    out = (args.out or Path(tmp)).resolve()  # type: ignore[arg-type]
    ctx = Ctx(args, out)
    t_start = ctx.t_start
    print(f"gpu_check: {'dry run' if ctx.dry else 'real run'}, work folder {out}, python {ctx.py}", flush=True)
    rows: list[Row] = []
    only = [s.strip() for s in (args.only or "").split(",") if s.strip()]
    for name, fn in steps_of(ctx):
        if only and name not in ("env", "world") and not any(name.startswith(o) for o in only):
            continue
        if rows and rows[0].status != PASS:
            row = Row(name, SKIP, "", "not run: the env step did not pass")
        elif ctx.plan.budget and time.perf_counter() - t_start > ctx.plan.budget:
            row = Row(name, SKIP, "", f"not started: the --budget of {ctx.plan.budget:.0f} s was spent")
        else:
            row = run_step(name, fn, name not in ("env", "world"), ctx)
        rows.append(row)
        elapsed = time.perf_counter() - t_start
        print(f"[{elapsed:6.0f} s] {row.step}: {row.status} {row.figure} ({row.seconds:.1f} s) {row.note}",
              flush=True)
        if args.json:
            write_json(args.json, ctx, rows, elapsed)
    elapsed = time.perf_counter() - t_start
    failed = [r.step for r in rows if r.status == FAIL]
    print("\n" + table_text(rows))
    removed = tmp is not None and not failed
    print(f"\ntotal {elapsed:.0f} s; logs in {ctx.logs}" + (" (removed: temporary folder)" if removed else ""))
    if ctx.warnings:
        print("warnings seen in the child processes (first of each):")
        for w in sorted(ctx.warnings)[:15]:
            print(f"  {w}")
    if args.json:
        write_json(args.json, ctx, rows, elapsed)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        for r in rows:
            log = re.search(r"\(log (\S+)\)", r.note) if r.status == FAIL else None
            if log and Path(log.group(1)).exists():
                tail = Path(log.group(1)).read_text(errors="replace").splitlines()[-25:]
                print(f"--- {r.step}: last lines of {log.group(1)}\n" + "\n".join(tail))
    if removed:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
