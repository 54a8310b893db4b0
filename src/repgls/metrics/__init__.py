"""Evaluation metrics for multi-label CXR classifiers trained on report labels.

Conventions (all functions):
    ``y_true`` float [N, K] with 1 (positive), 0 (negative) or NaN (ignored: uncertain / not labelled);
    ``scores`` float [N, K] probabilities in [0, 1] (sigmoid of the logits);
    ``typical`` float [N, K] with 1 (typical positive), 0 (atypical positive) or NaN (not a positive / unknown).
Each class is scored on its own labelled rows, so NaN labels never count as negatives.

Point estimates use scikit-learn (``roc_auc_score``, ``balanced_accuracy_score``, ``brier_score_loss``).
Bootstrap confidence intervals resample rows with replacement; a resample is drawn as multinomial row
counts (weights [B, N]) and every metric is computed as a weighted metric, all replicates at once.
The weighted AUC equals ``roc_auc_score(..., sample_weight=w)`` (tested), so a replicate's AUC is exactly
the AUC of the resampled rows.
"""

from repgls.metrics.bootstrap import (
    bootstrap_ci,
    bootstrap_weights,
    cluster_index,
    paired_bootstrap,
    percentile_interval,
    weighted_auc,
)
from repgls.metrics.core import (
    GROUP_ORDER,
    brier_score,
    choose_thresholds,
    expected_calibration_error,
    label_mask,
    mean_auc,
    per_class_auc,
    per_class_auc_fg,
    per_class_balanced_accuracy,
    predict_labels,
    reliability_bins,
    resolve_groups,
)
from repgls.metrics.registry import METRICS, Metric, list_metrics, metric_keys, register_metric
from repgls.metrics.score import metrics_table, score, summary_table

__all__ = ["GROUP_ORDER", "METRICS", "Metric", "bootstrap_ci", "bootstrap_weights", "brier_score",
           "choose_thresholds", "cluster_index", "expected_calibration_error", "label_mask", "list_metrics",
           "mean_auc", "metric_keys", "metrics_table", "paired_bootstrap", "per_class_auc", "per_class_auc_fg",
           "per_class_balanced_accuracy", "percentile_interval", "predict_labels", "register_metric",
           "reliability_bins", "resolve_groups", "score", "summary_table", "weighted_auc"]
