"""The evaluate and predict stages: score a trained run on a split, predict new images.

Modules: ``run`` (load a run folder's model and feed it), ``truth`` (phantom truth and typicality),
``scoring`` (:func:`evaluate`: metrics.json, predictions.parquet, Grad-CAM, report.html), ``predict``
(:func:`predict`: image files -> probabilities, LU-ViT rates, Grad-CAM). Imports torch.
"""

from repgls.evaluation.predict import (
           CERTAINTY_RULE,
           IMAGE_SUFFIXES,
           expected_certainty,
           predict,
           predict_images,
)
from repgls.evaluation.run import LoadedRun, load_run
from repgls.evaluation.scoring import evaluate
from repgls.evaluation.truth import TYPICALITY_RULE, truth_matrix

__all__ = ["CERTAINTY_RULE", "IMAGE_SUFFIXES", "TYPICALITY_RULE", "LoadedRun", "evaluate", "expected_certainty",
           "load_run", "predict", "predict_images", "truth_matrix"]
