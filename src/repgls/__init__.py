"""repgls: train chest X-ray classifiers on what radiologists wrote, doubt included.

Stages (each a CLI command and a function of the same name): ``mine`` (reports -> graded findings),
``rates`` (findings -> GLS labels and rates), ``prepare`` (images -> cache), ``train``, ``evaluate``.
Heavy libraries (torch, transformers) are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public API, resolved lazily so ``import repgls`` stays light (no torch).
_LAZY: dict[str, str] = {
    "mine": "repgls.mining",
    "mine_report": "repgls.mining",
    "load_vocab": "repgls.vocab",
    "rates": "repgls.rates",
    "create_model": "repgls.models",
    "create_loss": "repgls.losses",
    "train": "repgls.train",
    "evaluate_run": "repgls.evaluate",
    "predict": "repgls.evaluate",
    "write_report": "repgls.report",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repgls' has no attribute {name!r}")
