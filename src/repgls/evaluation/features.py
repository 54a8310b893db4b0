"""``extract_features``: run a trained model's backbone once over every image of a cache (no head, no grad) and
write a features folder (:mod:`repgls.data.features`) that probes train on in seconds."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repgls._io import atomic_path, atomic_write_text
from repgls.data.features import FEATURES, FEATURES_META, read_features_meta

__all__ = ["extract_features"]


def _fingerprint(path: Path) -> str:
    """sha256 of a file (the backbone checkpoint), to recognise features of the same weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract_features(run_dir: str | os.PathLike, cache_dir: str | os.PathLike, out: str | os.PathLike, *,
                     checkpoint: str = "best", batch_size: int = 256, device: str | None = "auto") -> Path:
    """Features [N, D] of every image of ``cache_dir`` (cache order; failed images are zero rows) under the
    backbone of a trained run; written atomically to ``out``. Reused when ``out`` already holds the features of
    the same checkpoint and cache. Returns ``out``.
    """
    from repgls.data.cache import open_images, read_meta
    from repgls.data.images import normalize
    from repgls.evaluation.run import load_run
    from repgls.models import embed

    out, cache_dir = Path(out), Path(cache_dir)
    weights = Path(run_dir) / "checkpoints" / f"{checkpoint}.safetensors"
    lr = load_run(run_dir, checkpoint, device)
    cmeta = read_meta(cache_dir)
    if int(cmeta["size"]) != lr.image_size:
        raise ValueError(f"{cache_dir}: {cmeta['size']} px images, but the backbone of {run_dir} takes "
                         f"{lr.image_size} px")
    ident = {"checkpoint_sha256": _fingerprint(weights), "cache": str(cache_dir.resolve()),
             "cache_n": int(cmeta["n"]), "cache_size": int(cmeta["size"])}
    try:
        old = read_features_meta(out)
        if all(old.get(k) == v for k, v in ident.items()):
            return out
    except FileNotFoundError:
        pass
    images = open_images(cache_dir)
    chunks: list[np.ndarray] = []
    with torch.no_grad():
        lr.model.eval()
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(normalize(np.asarray(images[i:i + batch_size])))[:, None].to(lr.device)
            chunks.append(embed(lr.model, x).float().cpu().numpy())
    feats = np.concatenate(chunks).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / FEATURES) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    meta: dict[str, Any] = {**ident, "run": str(Path(run_dir).resolve()), "checkpoint": checkpoint,
                            "model": lr.config.model.name, "dim": int(feats.shape[1]), "n": int(feats.shape[0])}
    atomic_write_text(out / FEATURES_META, json.dumps(meta, indent=2))
    return out
