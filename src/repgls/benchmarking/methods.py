"""One benchmark run: the trainer config of a (method, seed), training it and evaluating it, once.

A finished run (``runs/<method>/seed<k>/bench.json`` with the same spec hash and an ``eval-test/metrics.json``)
is reused, so an interrupted bench continues where it stopped.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repgls._io import atomic_write_text
from repgls.benchmarking.spec import DEFAULT_BASE, BenchConfig, MethodSpec, WorldSpec, deep_merge
from repgls.benchmarking.world import Log, World, labels_for, say

__all__ = ["Start", "load_eval", "run_method", "trainer_config"]


@dataclass
class Start:
    """Where every method of a bench starts: from scratch (the default), from a pretrained backbone that it
    fine-tunes (``pretrained`` weights of ``backbone_model``), or from that backbone's cached features, on which
    it trains a probe (``features``, model ``probe``)."""

    features: Path | None = None
    pretrained: Path | None = None
    backbone_model: str | None = None
    probe: str = "lu_probe"


def trainer_config(
    bench: BenchConfig,
    method: MethodSpec,
    seed: int,
    world: World,
    labels: Path,
    run_dir: Path,
    progress: bool = True,
    start: Start | None = None,
) -> dict[str, Any]:
    """The full trainer config dict (``repgls.training.train``) of one method and seed."""
    from repgls.config import apply_overrides

    start = start or Start()
    raw = deep_merge(DEFAULT_BASE, bench.base)
    raw = deep_merge(
        raw,
        {
            "data": {
                "cache_dir": str(world.cache),
                "labels": str(labels),
                "class_aware": bool(method.class_aware),
            },
            "loss": {"name": method.loss, "kwargs": dict(method.loss_kwargs)},
            "train": {"seed": int(seed), "progress": bool(progress)},
            "output": {"run_dir": str(run_dir), "overwrite": True},
        },
    )
    if start.features is not None:
        raw["data"].update(features=str(start.features), augment=False)
        raw["model"]["name"] = start.probe
    elif start.pretrained is not None:
        raw["model"].update(name=start.backbone_model, pretrained=str(start.pretrained))
    if method.model:
        raw["model"]["name"] = method.model
    return apply_overrides(raw, list(method.overrides))


def _spec_hash(cfg: Mapping[str, Any], world: WorldSpec) -> str:
    ident = copy.deepcopy(dict(cfg))
    ident.get("train", {}).pop("progress", None)
    ident.get("data", {}).pop("num_workers", None)
    blob = json.dumps({"cfg": ident, "world": world.key()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_method(
    bench: BenchConfig,
    method: MethodSpec,
    seed: int,
    world: World,
    *,
    log: Log | None = None,
    progress: bool = True,
    device: str | None = None,
    start: Start | None = None,
) -> dict[str, Any]:
    """Train and evaluate one (method, seed); reuse a finished run with the same spec. Returns a record."""
    labels = labels_for(
        world, method.policy, method.rates, rgn_epochs=bench.rgn_epochs, rgn_seed=bench.rgn_seed, r0=method.r0,
        log=log,
    )
    run_dir = world.root / "runs" / method.name / f"seed{seed}"
    cfg = trainer_config(bench, method, seed, world, labels, run_dir, progress, start)
    if device:
        cfg["train"]["device"] = device
    digest = _spec_hash(cfg, world.spec)
    done_p = run_dir / "bench.json"
    if done_p.is_file():
        rec = json.loads(done_p.read_text(encoding="utf-8"))
        if rec.get("spec_hash") == digest and (run_dir / "eval-test" / "metrics.json").is_file():
            say(log, f"[{method.name} seed {seed}] finished before: reused")
            rec["reused"] = True
            return rec
    from repgls.evaluation import evaluate
    from repgls.training import train

    say(
        log,
        f"[{method.name} seed {seed}] training: policy {method.policy}, rates {method.rates}, "
        f"loss {method.loss}, model {cfg['model']['name']}, class-aware {method.class_aware}",
    )
    done_p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    train(cfg)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = evaluate(
        run_dir,
        split="test",
        n_boot=bench.n_boot,
        truth=world.truth,
        reference=world.findings,
        cams=0,
        device=cfg["train"]["device"],
        seed=seed,
        report=False,
    )
    t_eval = time.perf_counter() - t1
    rec = {
        "method": method.name,
        "seed": seed,
        "spec_hash": digest,
        "run_dir": str(run_dir),
        "policy": method.policy,
        "rates": method.rates,
        "loss": method.loss,
        "model": cfg["model"]["name"],
        "class_aware": method.class_aware,
        "train_seconds": round(t_train, 2),
        "eval_seconds": round(t_eval, 2),
        "metrics": str(run_dir / "eval-test" / "metrics.json"),
        "reused": False,
    }
    ref, tru = res["vs_reference"]["summary"], (res.get("vs_truth") or {}).get("summary", {})
    say(
        log,
        f"[{method.name} seed {seed}] done in {t_train:.0f}s + {t_eval:.0f}s eval: mean AUC "
        f"reference {_f(ref.get('mean_auc'))}, truth {_f(tru.get('mean_auc'))}",
    )
    atomic_write_text(done_p, json.dumps(rec, indent=2))
    return rec


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def load_eval(rec: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(Path(rec["metrics"]).read_text(encoding="utf-8"))
