"""Validation during training: predict the val split on every rank, gather on rank 0, score, and write the
best model's ``predictions_val.parquet``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from repgls._io import atomic_write_parquet
from repgls.training.distributed import DistContext


def _to_numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


__all__ = ["ForwardAll", "gather_predictions", "predict_loader", "val_metrics", "write_val_predictions"]


class ForwardAll(nn.Module):
    """``forward`` returns ``model.forward_all(x)`` (or ``{"logits": model(x)}``) so DDP sees one forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fa = getattr(self.model, "forward_all", None)
        return fa(x) if fa is not None else {"logits": self.model(x)}


@torch.no_grad()
def predict_loader(
    model: nn.Module, loader: DataLoader, device: torch.device, autocast: Any, channels_last: bool
) -> dict[str, np.ndarray]:
    """Positions, probabilities, rates (if the model has a rate head), y and mask over a loader."""
    model.eval()
    pos, prob, rate, ys, ms = [], [], [], [], []
    for batch in loader:
        x = batch["image"].to(device, non_blocking=True)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = ForwardAll(model)(x)
        prob.append(torch.sigmoid(out["logits"].float()).cpu().numpy())
        if "rate" in out:
            rate.append(out["rate"].float().cpu().numpy())
        pos.append(_to_numpy(batch["_pos"]).astype(np.int64))
        ys.append(_to_numpy(batch["y"]).astype(np.float32))
        ms.append(_to_numpy(batch["mask"]).astype(np.float32))
    res = {
        "pos": np.concatenate(pos) if pos else np.zeros(0, np.int64),
        "prob": np.concatenate(prob) if prob else None,
        "y": np.concatenate(ys) if ys else None,
        "mask": np.concatenate(ms) if ms else None,
    }
    if rate:
        res["rate"] = np.concatenate(rate)
    return res


def gather_predictions(local: dict[str, Any], dd: DistContext) -> dict[str, Any] | None:
    """All ranks' predictions on rank 0, de-duplicated and sorted by position (None on other ranks)."""
    parts = [local]
    if dd.enabled:
        parts = [None] * dd.world  # type: ignore[list-item]
        dist.all_gather_object(parts, local)
    if not dd.main:
        return None
    parts = [p for p in parts if p is not None and p["prob"] is not None]
    out: dict[str, Any] = {}
    pos = np.concatenate([p["pos"] for p in parts])
    uniq, first = np.unique(pos, return_index=True)
    out["pos"] = uniq
    for k in ("prob", "rate", "y", "mask"):
        if all(k in p and p[k] is not None for p in parts):
            out[k] = np.concatenate([p[k] for p in parts])[first]
    return out


def val_metrics(pred: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """Per-class ROC-AUC on supervised rows (mask 1) and their mean over classes where AUC is defined."""
    from repgls.metrics import per_class_auc

    y = np.where(pred["mask"] > 0, (pred["y"] >= 0.5).astype(np.float64), np.nan)
    aucs, _ = per_class_auc(y, pred["prob"])
    finite = aucs[np.isfinite(aucs)]
    return {
        "mean_auc": float(finite.mean()) if finite.size else float("nan"),
        "n_classes_scored": int(finite.size),
        "auc": {c: (float(a) if np.isfinite(a) else None) for c, a in zip(classes, aucs, strict=True)},
    }


def write_val_predictions(
    path: Path,
    pred: dict[str, Any],
    ids: tuple[list[str], list[str]],
    classes: Sequence[str],
    meta: dict[str, Any],
) -> None:
    """predictions_val.parquet: image_id, study_id, prob:C, rate:C (if any), label:C (NaN = unsupervised)."""
    import pandas as pd

    pos = pred["pos"]
    cols: dict[str, Any] = {
        "image_id": [ids[0][i] for i in pos],
        "study_id": [ids[1][i] for i in pos],
    }
    for k, c in enumerate(classes):
        cols[f"prob:{c}"] = pred["prob"][:, k].astype(np.float32)
    if "rate" in pred:
        for k, c in enumerate(classes):
            cols[f"rate:{c}"] = pred["rate"][:, k].astype(np.float32)
    for k, c in enumerate(classes):
        cols[f"label:{c}"] = np.where(pred["mask"][:, k] > 0, pred["y"][:, k], np.nan).astype(np.float32)
    atomic_write_parquet(pd.DataFrame(cols), path, {**meta, "classes": list(classes)})
