"""Loading a trained run: rebuild its model from ``config.yaml`` + ``checkpoints/<tag>.safetensors``, and run it.

Why a separate loader: the trainer saves weights, not the model object; the model is rebuilt from the
config's ``model`` section with ``create_model`` at the cache's image size, and the class names come from the
run's ``predictions_val.parquet`` metadata (or the labels file).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from repgls.config import Config, ConfigError, config_from_dict, read_yaml

__all__ = ["LoadedRun", "forward_batches", "load_run", "predict_dataset", "resolve_run_path"]


def resolve_run_path(path: str | os.PathLike | None, run_dir: Path) -> Path | None:
    """A path from the run config: as written (relative to the cwd), else relative to the run folder or
    its parents (a run moved together with its data). Returns the as-written path when nothing exists."""
    if path in (None, ""):
        return None
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for base in (run_dir, *run_dir.resolve().parents):
        if (base / p).exists():
            return base / p
    return p


def _device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class LoadedRun:
    """A run's model in eval mode with what is needed to feed it.

    Attributes:
        model: the classifier (eval mode, on ``device``). classes: K class names.
        image_size: side S of the model input [B, 1, S, S]; resize_mode: "pad" | "crop" (the cache's rule).
        has_rate: True for LU-ViT (``forward_all`` returns ``rate``). cache_dir / labels: from the config,
            resolved (may not exist when only predicting). features: the features folder of a probe run
            (``image_size`` is then the feature dimension D).
    """

    run_dir: Path
    config: Config
    model: nn.Module
    classes: tuple[str, ...]
    image_size: int
    resize_mode: str
    checkpoint: str
    checkpoint_meta: dict[str, Any]
    device: torch.device
    has_rate: bool
    cache_dir: Path | None = None
    labels: Path | None = None
    cache_meta: dict[str, Any] = field(default_factory=dict)
    features: Path | None = None  # a features folder: the model is a probe over cached backbone features


def _run_classes(run_dir: Path, labels: Path | None) -> tuple[str, ...] | None:
    """Class names: predictions_val.parquet metadata (written with the best checkpoint), else labels.parquet."""
    pv = run_dir / "predictions_val.parquet"
    if pv.is_file():
        import pyarrow.parquet as pq

        raw = (pq.read_schema(pv).metadata or {}).get(b"repgls")
        if raw:
            classes = json.loads(raw).get("classes")
            if classes:
                return tuple(str(c) for c in classes)
    if labels is not None and labels.is_file():
        from repgls.rating import read_labels

        return tuple(read_labels(labels).classes)
    return None


def _vit_size_from_weights(weights: dict[str, torch.Tensor], model_name: str) -> int | None:
    """Input side of a ViT checkpoint: sqrt(patch tokens) x patch size (pos_embed holds the prefix tokens).

    The patch size comes from the architecture (a convolutional stem's kernels do not show it)."""
    pe = weights.get("backbone.pos_embed")
    if pe is None:
        return None
    from repgls.models import create_model

    probe = create_model(model_name, num_classes=1, img_size=None)
    pe_mod = getattr(getattr(probe, "backbone", probe), "patch_embed", None)
    if pe_mod is None:
        return None
    n = int(pe.shape[1])
    patch = int(pe_mod.patch_size[0])
    for prefix in (1, 0, 2, 5):
        side = math.isqrt(max(n - prefix, 0))
        if side > 0 and side * side == n - prefix:
            return side * patch
    return None


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device | None = "auto",
             image_size: int | None = None) -> LoadedRun:
    """Rebuild a run's model from ``config.yaml`` and load ``checkpoints/<checkpoint>.safetensors``.

    Image size: ``image_size`` if given, else the cache's ``meta.json`` size (what the model was trained on),
    else the config's ``data.image_size``, else (ViT) inferred from the checkpoint's position embedding.

    Raises:
        FileNotFoundError: not a run folder / checkpoint missing. ValueError: classes or size unknown, or the
            checkpoint does not fit the config's model.
    """
    from safetensors.torch import load_file

    from repgls.models import create_model
    from repgls.training.checkpoint import load_checkpoint_meta

    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    run = Path(run_dir)
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run}: not a run folder ({cfg_path.name} missing); train one with `repgls train`")
    try:
        cfg = config_from_dict(read_yaml(cfg_path))
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from None
    meta = load_checkpoint_meta(run, checkpoint)  # also finishes an interrupted checkpoint commit
    wpath = run / "checkpoints" / f"{checkpoint}.safetensors"
    if not wpath.is_file():
        raise FileNotFoundError(f"{wpath}: checkpoint weights missing")
    weights = load_file(str(wpath), device="cpu")

    cache_dir = resolve_run_path(cfg.data.cache_dir, run)
    labels = resolve_run_path(cfg.data.labels, run) if cfg.data.labels not in ("", "official") else None
    cache_meta: dict[str, Any] = {}
    if cache_dir is not None and (cache_dir / "meta.json").is_file():
        cache_meta = json.loads((cache_dir / "meta.json").read_text())
    features = resolve_run_path(cfg.data.features, run) if cfg.data.features else None
    if features is not None:  # a probe over cached features: its input is the feature vector [D]
        from repgls.data.features import read_features_meta

        size = int(read_features_meta(features)["dim"])
    else:
        size = (image_size or cache_meta.get("size") or cfg.data.image_size
                or _vit_size_from_weights(weights, cfg.model.name))
    if not size:
        raise ValueError(f"{run}: cannot tell the model's image size (no cache at {cache_dir}, no "
                         "data.image_size in config.yaml); pass image_size")
    classes = _run_classes(run, labels)
    if classes is None:
        raise ValueError(f"{run}: class names unknown (no predictions_val.parquet metadata, labels file "
                         f"{labels} not found)")
    model = create_model(cfg.model.name, num_classes=len(classes), in_chans=cfg.model.in_chans, pretrained=False,
                         img_size=int(size), **cfg.model.kwargs)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{wpath}: does not fit model {cfg.model.name!r} with {len(classes)} classes at "
                         f"{size} px: {str(e).splitlines()[0]}") from None
    dev = _device(device)
    model.to(dev).eval()
    probe_input = (torch.zeros(1, int(size), device=dev) if features is not None
                   else torch.zeros(1, cfg.model.in_chans, int(size), int(size), device=dev))
    has_rate = "rate" in getattr(model, "forward_all", lambda x: {})(probe_input)
    return LoadedRun(run_dir=run, config=cfg, model=model, classes=classes, image_size=int(size),
                     resize_mode=str(cache_meta.get("mode", "pad")), checkpoint=checkpoint, checkpoint_meta=meta,
                     device=dev, has_rate=bool(has_rate), cache_dir=cache_dir, labels=labels, cache_meta=cache_meta,
                     features=features)


@torch.no_grad()
def forward_batches(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> dict[str, np.ndarray]:
    """Probabilities (and rates, LU-ViT) [N, K] over batches of inputs [B, C, S, S]; eval mode, no grad."""
    model.eval()
    probs, rates = [], []
    fa = getattr(model, "forward_all", None)
    for x in batches:
        out = fa(x.to(device)) if fa is not None else {"logits": model(x.to(device))}
        probs.append(torch.sigmoid(out["logits"].float()).cpu().numpy())
        if "rate" in out:
            rates.append(out["rate"].float().cpu().numpy())
    res = {"prob": np.concatenate(probs).astype(np.float64) if probs else np.zeros((0, 0))}
    if rates:
        res["rate"] = np.concatenate(rates).astype(np.float64)
    return res


def predict_dataset(lr: LoadedRun, ds: Any, batch_size: int) -> dict[str, np.ndarray]:
    """Predict a CachedImageDataset in order: ``prob`` [N, K] (and ``rate`` [N, K] for LU-ViT)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    out = forward_batches(lr.model, (b["image"] for b in loader), lr.device)
    if out["prob"].size == 0:
        out["prob"] = np.zeros((0, len(lr.classes)))
    return out
