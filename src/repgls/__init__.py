"""repgls: train chest X-ray classifiers on what radiologists wrote, doubt included.

Every stage is a CLI command and a function of the same name here:

========  =======================  ==============================================================
stage     function                 what it does
========  =======================  ==============================================================
phantom   ``repgls.phantom``       a synthetic world: films, reports by a simulated reader, truth
mine      ``repgls.mine``          reports -> graded findings (``mine_report`` for one text)
compare   ``repgls.compare``       per-class agreement of two findings tables
audit     ``repgls.audit``         one HTML page: mentions highlighted on their reports (+ a comparison)
rates     ``repgls.rates``         findings -> labels, GLS rates and certainties (``train_rgn``: RGN)
prepare   ``repgls.prepare``       an image dataset -> a resized uint8 image cache
train     ``repgls.train``         cache + labels + config -> a run folder
eval      ``repgls.evaluate``      a run -> metrics.json, predictions, Grad-CAM, report.html
predict   ``repgls.predict``       image files + a run -> probabilities, rates, Grad-CAM
export    ``repgls.export``        a run's model -> ONNX / TorchScript + metadata (class names, preprocessing)
bench     ``repgls.bench``         methods x seeds on one phantom world -> one table
demo      ``repgls.demo``          the whole pipeline on the embedded default
========  =======================  ==============================================================

Heavy libraries (torch, transformers) are imported lazily, inside the functions that need them, so
``import repgls`` stays light. ``docs/architecture.md`` maps the packages.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public API, resolved lazily: name -> (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {
    "phantom": ("repgls.data.phantom.world", "make_phantom"),
    "mine": ("repgls.mining", "mine"),
    "mine_report": ("repgls.mining", "mine_report"),
    "compare": ("repgls.mining.compare", "compare_findings"),
    "audit": ("repgls.mining.audit", "audit"),
    "rates": ("repgls.rating.build", "rates"),
    "train_rgn": ("repgls.rating.rgn", "train_rgn"),
    "prepare": ("repgls.data.cache", "prepare"),
    "train": ("repgls.training.trainer", "train"),
    "evaluate": ("repgls.evaluation.scoring", "evaluate"),
    "predict": ("repgls.evaluation.predict", "predict"),
    "export": ("repgls.evaluation.export", "export"),
    "bench": ("repgls.benchmarking.run", "bench"),
    "demo": ("repgls.benchmarking.demo", "demo"),
    "load_vocab": ("repgls.vocab", "load_vocab"),
    "create_model": ("repgls.models", "create_model"),
    "create_loss": ("repgls.losses", "create_loss"),
    "write_report": ("repgls.html_report", "write_report"),
}
#: The stage functions, in pipeline order (each is also a ``repgls`` CLI command).
STAGES = ("phantom", "mine", "compare", "audit", "rates", "prepare", "train", "evaluate", "predict", "export",
          "bench", "demo")

__all__ = ["STAGES", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # resolved once
        return value
    raise AttributeError(f"module 'repgls' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
