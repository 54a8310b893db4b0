"""The evaluate and predict stages: score a trained run on a split, predict new images, export a run's model.

Modules: ``run`` (load a run folder's model and feed it), ``truth`` (phantom truth and typicality),
``scoring`` (:func:`evaluate`: metrics.json, predictions.parquet, Grad-CAM, report.html), ``predict``
(:func:`predict`: image files -> probabilities, LU-ViT rates, Grad-CAM), ``export`` (:func:`export`: ONNX /
TorchScript + metadata), ``onnx_predict`` (exported models, no torch). Importing this package does not import
torch: ``load_run``, ``LoadedRun`` and ``evaluate`` resolve lazily (the stages themselves need it).
"""

from __future__ import annotations

import importlib
from typing import Any

from repgls.evaluation.export import export
from repgls.evaluation.predict import (
           CERTAINTY_RULE,
           IMAGE_SUFFIXES,
           expected_certainty,
           predict,
           predict_images,
)
from repgls.evaluation.truth import TYPICALITY_RULE, truth_matrix

# Names whose modules import torch at module level: resolved on first use.
_LAZY: dict[str, str] = {
    "LoadedRun": "repgls.evaluation.run",
    "load_run": "repgls.evaluation.run",
    "evaluate": "repgls.evaluation.scoring",
}

__all__ = ["CERTAINTY_RULE", "IMAGE_SUFFIXES", "TYPICALITY_RULE", "LoadedRun", "evaluate", "expected_certainty",
           "export", "load_run", "predict", "predict_images", "truth_matrix"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repgls.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
