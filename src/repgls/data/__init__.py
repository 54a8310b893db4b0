"""Images, dataset adapters, the image cache and the torch dataset (imported lazily: no torch at import).

Public names: ``read_image``, ``load_resized``, ``normalize`` (images.py); ``create_dataset``,
``list_datasets``, ``align_labels`` (adapters.py); ``prepare`` and ``prepare_cache`` (cache.py);
``CachedImageDataset``, ``XrayAugment`` (torch_dataset.py, needs torch). Other modules of this package:
features.py (cached backbone features), sampling.py (class-aware sampler), phantom/ (the phantom world).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "read_image": "repgls.data.images",
    "load_resized": "repgls.data.images",
    "load_for_model": "repgls.data.images",
    "normalize": "repgls.data.images",
    "resize_square": "repgls.data.images",
    "ImageReadError": "repgls.data.images",
    "create_dataset": "repgls.data.adapters",
    "list_datasets": "repgls.data.adapters",
    "register_dataset": "repgls.data.adapters",
    "align_labels": "repgls.data.adapters",
    "official_labels": "repgls.data.adapters",
    "read_table": "repgls.data.adapters",
    "prepare": "repgls.data.cache",
    "prepare_cache": "repgls.data.cache",
    "read_meta": "repgls.data.cache",
    "open_images": "repgls.data.cache",
    "CachedImageDataset": "repgls.data.torch_dataset",
    "XrayAugment": "repgls.data.torch_dataset",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repgls.data' has no attribute {name!r}")
