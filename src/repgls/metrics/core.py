"""Point metrics on [N, K] labels and scores: AUC, thresholds and balanced accuracy, AUC^FG, calibration, groups."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GROUP_ORDER = ("head", "medium", "tail")


# ----------------------------------------------------------------------------------------------- helpers
def _as_2d(name: str, a: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [N, K]; got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape}")
    return arr


def _check_inputs(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _as_2d("y_true", y_true)
    s = _as_2d("scores", scores, y.shape)
    bad = np.isfinite(y) & (y != 0) & (y != 1)
    if bad.any():
        raise ValueError("y_true must hold 1, 0 or NaN (ignore); got other values, e.g. "
                         f"{y[bad][:3].tolist()}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    if s.min(initial=0.0) < 0 or s.max(initial=1.0) > 1:
        raise ValueError("scores must be probabilities in [0, 1] (apply a sigmoid to logits first)")
    return y, s


def label_mask(y_true: Any) -> np.ndarray:
    """Boolean [N, K]: True where the label is 1 or 0 (NaN = ignored)."""
    return np.isfinite(np.asarray(y_true, dtype=np.float64))


def _nanmean(values: Any) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _undefined_reason(y: np.ndarray) -> str | None:
    """Why a binary metric is undefined on labels ``y`` (finite 0/1 only), or None when defined."""
    if y.size == 0:
        return "no labelled rows"
    n_pos = int((y == 1).sum())
    if n_pos == 0:
        return "no positives"
    if n_pos == y.size:
        return "no negatives"
    return None


# ------------------------------------------------------------------------------------------- ROC-AUC
def per_class_auc(y_true: Any, scores: Any) -> tuple[np.ndarray, list[str | None]]:
    """ROC-AUC of each class on its labelled rows (sklearn ``roc_auc_score``).

    Returns:
        auc float [K] (NaN when undefined) and, per class, None or the reason it is undefined
        ("no positives", "no negatives", "no labelled rows").
    """
    from sklearn.metrics import roc_auc_score

    y, s = _check_inputs(y_true, scores)
    aucs = np.full(y.shape[1], np.nan)
    reasons: list[str | None] = []
    for k in range(y.shape[1]):
        m = np.isfinite(y[:, k])
        reason = _undefined_reason(y[m, k])
        reasons.append(reason)
        if reason is None:
            aucs[k] = roc_auc_score(y[m, k], s[m, k])
    return aucs, reasons


def mean_auc(y_true: Any, scores: Any) -> float:
    """Mean of the per-class AUCs over the classes where AUC is defined (NaN if none)."""
    return _nanmean(per_class_auc(y_true, scores)[0])


# -------------------------------------------------------------------------------- balanced accuracy
def choose_thresholds(y_val: Any, scores_val: Any, criterion: str = "balanced_accuracy") -> np.ndarray:
    """Per-class thresholds maximising balanced accuracy on validation scores.

    Balanced accuracy (TPR + TNR) / 2 equals (1 + Youden's J) / 2, so ``"balanced_accuracy"`` and
    ``"youden"`` pick the same threshold (both names are accepted). Candidates are the ROC thresholds
    of sklearn's ``roc_curve``; a row is predicted positive when ``score >= threshold``. Ties go to the
    threshold closest to 0.5. Classes without both label values on validation get 0.5.

    Returns:
        thresholds float [K] in [0, 1].
    """
    from sklearn.metrics import roc_curve

    if criterion not in ("balanced_accuracy", "youden"):
        raise ValueError(f"criterion must be 'balanced_accuracy' or 'youden', not {criterion!r}")
    y, s = _check_inputs(y_val, scores_val)
    out = np.full(y.shape[1], 0.5)
    for k in range(y.shape[1]):
        m = np.isfinite(y[:, k])
        if _undefined_reason(y[m, k]) is not None:
            continue
        fpr, tpr, thr = roc_curve(y[m, k], s[m, k], drop_intermediate=False)
        thr = np.minimum(thr, np.nextafter(1.0, 2.0))  # the first ROC threshold is +inf (predict none)
        j = tpr - fpr
        best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
        out[k] = float(thr[best[np.argmin(np.abs(thr[best] - 0.5))]])
    return out


def predict_labels(scores: Any, thresholds: Any, inclusive: bool = True) -> np.ndarray:
    """Binary predictions [N, K]: ``score >= thr`` (inclusive) or ``score > thr``; thr scalar or [K]."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), s.shape[-1:])
    return (s >= t) if inclusive else (s > t)


def per_class_balanced_accuracy(y_true: Any, scores: Any, thresholds: Any = 0.5,
                                inclusive: bool = True) -> np.ndarray:
    """Balanced accuracy (TPR + TNR) / 2 of each class at ``thresholds`` (sklearn).

    ``inclusive=False`` with threshold 0.5 is LTML's ``logit > 0`` rule. NaN when a class lacks
    positives or negatives (sklearn would silently return a one-class recall). Returns float [K].
    """
    from sklearn.metrics import balanced_accuracy_score

    y, s = _check_inputs(y_true, scores)
    pred = predict_labels(s, thresholds, inclusive)
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        m = np.isfinite(y[:, k])
        if _undefined_reason(y[m, k]) is None:
            out[k] = balanced_accuracy_score(y[m, k].astype(int), pred[m, k].astype(int))
    return out


# --------------------------------------------------------------------------------------------- AUC^FG
def per_class_auc_fg(y_true: Any, scores: Any, typical: Any) -> tuple[np.ndarray, list[str | None]]:
    """PU-RM's AUC^FG per class: among positives, AUC of atypical (0) vs typical (1).

    A row enters class k when ``y_true[:, k] == 1`` and ``typical[:, k]`` is 0 or 1. Returns AUC float [K]
    (NaN when undefined) and per class None or the reason ("no atypical positives", ...).
    """
    from sklearn.metrics import roc_auc_score

    y, s = _check_inputs(y_true, scores)
    t = _as_2d("typical", typical, y.shape)
    out = np.full(y.shape[1], np.nan)
    reasons: list[str | None] = []
    for k in range(y.shape[1]):
        m = (y[:, k] == 1) & np.isfinite(t[:, k])
        reason = _undefined_reason(t[m, k])
        if reason is not None:
            reason = {"no positives": "no typical positives", "no negatives": "no atypical positives",
                      "no labelled rows": "no positives with a typicality label"}[reason]
        reasons.append(reason)
        if reason is None:
            out[k] = roc_auc_score(t[m, k], s[m, k])
    return out, reasons


# ---------------------------------------------------------------------------------------- calibration
def reliability_bins(y: Any, prob: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width reliability bins over [0, 1] (1-D inputs; NaN labels dropped).

    Bin b holds probabilities in (b/n_bins, (b+1)/n_bins], the first bin also holds 0: the same binning
    as ``sklearn.calibration.calibration_curve(strategy="uniform")``. Returns ``count`` [B],
    ``mean_prob`` [B] and ``frac_pos`` [B] (NaN for empty bins) and ``edges`` [B + 1].
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(prob, dtype=np.float64).ravel()
    m = np.isfinite(y)
    y, p = y[m], p[m]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges[1:-1], p, side="left")
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"count": count, "mean_prob": mean_prob, "frac_pos": frac_pos, "edges": edges}


def expected_calibration_error(y: Any, prob: Any, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / n) * |frac_pos_b - mean_prob_b| over equal-width bins (see ``reliability_bins``).

    1-D inputs (one class, or all labelled entries of all classes pooled). NaN when nothing is labelled.
    """
    r = reliability_bins(y, prob, n_bins)
    n = r["count"].sum()
    if n == 0:
        return math.nan
    ok = r["count"] > 0
    return float(np.sum(r["count"][ok] / n * np.abs(r["frac_pos"][ok] - r["mean_prob"][ok])))


def brier_score(y: Any, prob: Any) -> float:
    """Brier score mean((prob - y)^2) over labelled entries (sklearn ``brier_score_loss``); NaN if none."""
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(prob, dtype=np.float64).ravel()
    m = np.isfinite(y)
    if not m.any():
        return math.nan
    return float(brier_score_loss(y[m].astype(int), p[m], pos_label=1))


# --------------------------------------------------------------------------------------------- groups
def resolve_groups(classes: Sequence[str], groups: Any) -> dict[str, list[int]]:
    """Class indices per group, groups in head / medium / tail order (then any others).

    ``groups`` is a ``Vocabulary`` (its ``groups`` attribute), a dict class -> group name, or a dict
    group name -> list of class names. Classes missing from the mapping belong to no group.
    """
    if groups is None:
        return {}
    mapping = getattr(groups, "groups", groups)
    if not isinstance(mapping, Mapping):
        raise TypeError("groups must be a Vocabulary, {class: group} or {group: [classes]}")
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, list[int]] = {}
    if all(isinstance(v, str) for v in mapping.values()):
        for c, g in mapping.items():
            if c in index:
                out.setdefault(g, []).append(index[c])
    else:
        for g, members in mapping.items():
            unknown = [c for c in members if c not in index]
            if unknown:
                raise ValueError(f"group {g!r} names unknown classes {unknown}")
            out[g] = [index[c] for c in members]
    order = [g for g in GROUP_ORDER if g in out] + sorted(g for g in out if g not in GROUP_ORDER)
    return {g: sorted(out[g]) for g in order}
