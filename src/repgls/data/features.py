"""Cached backbone features of an image cache, served like images: train and score heads (probes) in seconds.

A features folder (written by :func:`repgls.evaluation.features.extract_features`) holds ``features.npy``
(float32 [N, D], one row per row of the image cache, in cache order) and ``meta.json`` (the cache it was made
from, the backbone, D). :class:`FeatureDataset` joins labels onto it exactly as
:class:`repgls.data.torch_dataset.CachedImageDataset` does for images, and yields the same items with
``image`` = the feature vector [D]: the trainer, the evaluation and every loss work unchanged, and a frozen
backbone's forward pass is paid once instead of once per epoch and run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from repgls.data.adapters import labels_for_rows
from repgls.data.cache import DONE, INDEX, read_status

__all__ = ["FEATURES", "FEATURES_META", "FeatureDataset", "read_features_meta"]

FEATURES, FEATURES_META = "features.npy", "meta.json"


def read_features_meta(folder: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a features folder (clear error when it is not one)."""
    p = Path(folder) / FEATURES_META
    if not p.is_file() or not (Path(folder) / FEATURES).is_file():
        raise FileNotFoundError(f"{folder}: not a features folder ({FEATURES} and {FEATURES_META} expected)")
    return json.loads(p.read_text(encoding="utf-8"))


class FeatureDataset(Dataset):
    """Backbone features of a cache's images + labels; the item layout of ``CachedImageDataset``.

    Args:
        features_dir: a features folder. cache_dir: the image cache it was made from (index, splits, status).
        labels / split / uncertain / blank / classes: as for ``CachedImageDataset``.
    Items: ``image`` float32 [D], ``y`` / ``r`` / ``mask`` / ``mentioned`` float32 [K], ``index`` int.
    """

    seeds_itself = True  # no augmentation: nothing random to seed

    def __init__(self, features_dir: str | Path, cache_dir: str | Path, labels: Any = None,
                 split: str | Iterable[str] | None = None, uncertain: str = "ignore", blank: str = "negative",
                 classes: Sequence[str] | None = None, **_: Any) -> None:
        self.meta = read_features_meta(features_dir)
        feats = np.load(Path(features_dir) / FEATURES, mmap_mode="r")
        index = pd.read_parquet(Path(cache_dir) / INDEX)
        if feats.shape[0] != len(read_status(cache_dir)):
            raise ValueError(f"{features_dir}: {feats.shape[0]} feature rows for a cache of "
                             f"{len(read_status(cache_dir))} images ({cache_dir}); extract them again")
        keep = read_status(cache_dir)[index["row"].to_numpy()] == DONE
        if split is not None:
            keep &= index["split"].isin([split] if isinstance(split, str) else list(split)).to_numpy()
        self.index = index[keep].reset_index(drop=True)
        self.rows = self.index["row"].to_numpy(dtype=np.int64)
        self.features = np.ascontiguousarray(feats[self.rows], dtype=np.float32)
        self.epoch = 0
        self.y, self.r, self.mask, self.mentioned, self.classes = labels_for_rows(self.index, labels, classes,
                                                                                  uncertain, blank)

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def get_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """Items ``indices`` collated (``image`` [B, D])."""
        ii = np.asarray([int(i) for i in indices], dtype=np.int64)
        return {"image": torch.from_numpy(self.features[ii]), "y": torch.from_numpy(self.y[ii]),
                "r": torch.from_numpy(self.r[ii]), "mask": torch.from_numpy(self.mask[ii]),
                "mentioned": torch.from_numpy(self.mentioned[ii]), "index": torch.from_numpy(ii)}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        b = self.get_batch(indices)
        keys = ("image", "y", "r", "mask", "mentioned")
        return [{**{k: b[k][j] for k in keys}, "index": int(b["index"][j])} for j in range(len(indices))]

    def __getitem__(self, i: Any) -> dict[str, Any]:
        if isinstance(i, (list, tuple, np.ndarray, torch.Tensor)) and np.ndim(i) == 1:
            return self.get_batch(i)
        return self.__getitems__([i])[0]
