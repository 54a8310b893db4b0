"""A backbone pretrained once on a separate phantom world, and its features of the evaluation world.

Training from scratch on a few thousand CPU-sized films, every method is limited by what a small model can
learn, not by its labels (an oracle trained on the truth scores no better than U-Ones). A stand-in for
ImageNet pretraining fixes that: one backbone is trained on another world (another seed: other patients, other
films) and every method starts from it. With ``freeze`` the backbone's features of the evaluation world are
computed once and every method trains a probe on them in seconds, which buys the seeds and the sweeps that
give a comparison its power. Both are cached by content hash (``<bench out>/../_backbones/<hash>``), so benches
that share a backbone (a hedge-frequency sweep) pretrain it once.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from repgls._io import atomic_write_text
from repgls.benchmarking.spec import BackboneSpec, deep_merge
from repgls.benchmarking.world import Log, World, labels_for, prepare_world, say

__all__ = ["backbone_dir", "backbone_features", "pretrain_backbone"]

#: Trainer config of the pretraining run (``BackboneSpec.train`` is merged over it).
PRETRAIN_BASE: dict[str, Any] = {
    "data": {"augment": True, "num_workers": 0, "batch_size": 64},
    "loss": {"name": "bce"},
    "optim": {"name": "adamw", "lr": 3.0e-4, "weight_decay": 0.05, "warmup_steps": 100, "schedule": "cosine"},
    "train": {"device": "auto", "eval_every": 1, "log_every": 50},
}


def backbone_dir(spec: BackboneSpec, bench_out: Path) -> Path:
    """Where the backbone of ``spec`` lives: shared by every bench beside ``bench_out``."""
    digest = hashlib.sha256(json.dumps(spec.key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    return bench_out.resolve().parent / "_backbones" / digest


def pretrain_backbone(spec: BackboneSpec, bench_out: Path, *, log: Log | None = None, progress: bool = True,
                      device: str | None = None, prepare_workers: int = 1) -> Path:
    """Pretrain (or reuse) the backbone; returns its run folder (``checkpoints/best.safetensors``)."""
    from repgls.training import train

    root = backbone_dir(spec, bench_out)
    run_dir = root / "run"
    done = root / "backbone.json"
    if done.is_file() and (run_dir / "checkpoints" / "best.safetensors").is_file():
        return run_dir
    world = prepare_world(spec.world, root, log=log, progress=progress, prepare_workers=prepare_workers)
    labels = labels_for(world, spec.labels, log=log)
    cfg = deep_merge(PRETRAIN_BASE, {
        "data": {"cache_dir": str(world.cache), "labels": str(labels)},
        "model": {"name": spec.model},
        "train": {"epochs": spec.epochs, "progress": progress, **({"device": device} if device else {})},
        "output": {"run_dir": str(run_dir), "overwrite": True},
    })
    cfg = deep_merge(cfg, spec.train)
    say(log, f"pretraining the backbone: {spec.model}, {spec.epochs} epochs on a separate world of "
             f"{spec.world.n} studies (seed {spec.world.seed}), labels {spec.labels} ...")
    t0 = time.perf_counter()
    train(cfg)
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    atomic_write_text(done, json.dumps({"spec": spec.key(), "seconds": round(time.perf_counter() - t0, 1),
                                        "val_mean_auc": best.get("mean_auc")}, indent=2, default=str))
    say(log, f"backbone ready in {time.perf_counter() - t0:.0f}s (val mean AUC {best.get('mean_auc', float('nan')):.3f}"
             f" against its world's {spec.labels})")
    return run_dir


def backbone_features(run_dir: Path, world: World, *, device: str | None = None) -> Path:
    """The backbone's features of the evaluation world's image cache (computed once, beside the backbone)."""
    from repgls.evaluation.features import extract_features

    out = run_dir.parent / "features" / hashlib.sha256(str(world.cache.resolve()).encode()).hexdigest()[:16]
    return extract_features(run_dir, world.cache, out, device=device or "auto")
