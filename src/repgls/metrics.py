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

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GROUP_ORDER = ("head", "medium", "tail")


# ---------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Metric:
    """A summary metric: its key in ``metrics.json`` ``summary``, how tables label it, and its direction.

    Built-in metrics (``fn`` None) are computed by :func:`score` itself, vectorised and bootstrapped with
    every replicate at once. A registered metric gives ``fn(y [N, K], scores [N, K], *, typical, thresholds)
    -> float`` (NaN when undefined); :func:`score` calls it and bootstraps it by resampling rows.
    ``sides``: which scorings the bench table shows it against ("truth": hidden truth, "reference": the
    policy-free reference of :mod:`repgls.evaluation.reference`).
    """

    key: str
    label: str
    higher_is_better: bool
    fn: Callable[..., float] | None = None
    html: str = ""
    sides: tuple[str, ...] = ("truth",)

    @property
    def html_label(self) -> str:
        return self.html or self.label


METRICS: dict[str, Metric] = {}


def register_metric(key: str, label: str, higher_is_better: bool, fn: Callable[..., float] | None = None, *,
                    html: str = "", sides: Sequence[str] = ("truth",)) -> Metric:
    """Register a summary metric; it then appears in ``metrics.json``, ``repgls eval``, report.html and the
    bench table. Re-registering a key replaces it. Returns the :class:`Metric`."""
    if not key.isidentifier():
        raise ValueError(f"metric key {key!r} must be an identifier")
    m = Metric(key, label, bool(higher_is_better), fn, html, tuple(sides))
    METRICS[key] = m
    return m


def list_metrics() -> list[Metric]:
    """Registered summary metrics, in registration order (built-ins first)."""
    return list(METRICS.values())


def metric_keys() -> tuple[str, ...]:
    """Keys of every registered summary metric (each gets a bootstrap interval ``<key>_ci``)."""
    return tuple(METRICS)


register_metric("mean_auc", "Mean AUC", True, sides=("truth", "reference"))
register_metric("bacc", "bAcc (val. threshold)", True, html="Balanced accuracy (val. threshold)")
register_metric("bacc_logit0", "bAcc (logit > 0)", True, html="Balanced accuracy (logit &gt; 0)", sides=())
register_metric("mean_auc_fg", "AUC^FG", True, html="AUC<sup>FG</sup> (typical vs atypical)")
register_metric("ece", "ECE", False, sides=("truth", "reference"))
register_metric("brier", "Brier", False, html="Brier score", sides=())


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


# ------------------------------------------------------------------------ weighted (bootstrap) versions
def weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC-AUC of one class for a batch of row weights, ties counted 1/2.

    Args:
        y: labels [n] in {0, 1}; s: scores [n]; w: non-negative weights [B, n] (bootstrap counts).
    Returns:
        AUC [B], NaN where a replicate has no positive or no negative weight. Equals
        ``roc_auc_score(y, s, sample_weight=w[b])`` for each b.
    """
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    wy = w[:, order]
    if starts.size == s.size:  # no tied scores: negative weight strictly below each positive
        is_pos = y[order] == 1
        cum_neg = np.cumsum(wy * (y[order] == 0), axis=1)
        w_pos = wy[:, is_pos]
        num = np.sum(w_pos * cum_neg[:, is_pos], axis=1)
        den = w_pos.sum(axis=1) * cum_neg[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    pos = np.add.reduceat(wy * (y[order] == 1), starts, axis=1)
    neg = np.add.reduceat(wy * (y[order] == 0), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_bacc(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Balanced accuracy [B, K] of predictions ``pred`` [N, K] for row weights [B, N] (NaN labels skipped).

    One matrix product: the weighted positive, negative, true-positive and true-negative counts of every
    class at once.
    """
    pos, neg = y == 1, y == 0
    ind = np.concatenate([pos, neg, pos & pred, neg & ~pred], axis=1).astype(np.float64)
    wp, wn, tp, tn = np.split(w @ ind, 4, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 0.5 * (tp / wp + tn / wn)
    return np.where((wp > 0) & (wn > 0), out, np.nan)


def _row_calibration_sums(y: np.ndarray, s: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Per-row sums over labelled entries, so pooled ECE / Brier of a resample is ``weights @ sums``.

    Returns ``count`` / ``prob`` / ``pos`` [N, n_bins] (entries, summed probability, summed labels per bin;
    same binning as ``reliability_bins``), ``sse`` [N] (squared errors) and ``n`` [N] (labelled entries).
    """
    n = y.shape[0]
    rows, cols = np.nonzero(np.isfinite(y))
    yf, pf = y[rows, cols], s[rows, cols]
    b = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], pf, side="left")
    flat = rows * n_bins + b
    size = n * n_bins
    return {
        "count": np.bincount(flat, minlength=size).reshape(n, n_bins).astype(np.float64),
        "prob": np.bincount(flat, weights=pf, minlength=size).reshape(n, n_bins),
        "pos": np.bincount(flat, weights=yf, minlength=size).reshape(n, n_bins),
        "sse": np.bincount(rows, weights=(pf - yf) ** 2, minlength=n),
        "n": np.bincount(rows, minlength=n).astype(np.float64),
    }


def cluster_index(clusters: Any, n: int) -> np.ndarray | None:
    """Cluster (patient) number of each of n rows [n] (0..G-1), or None (every row its own cluster)."""
    if clusters is None:
        return None
    c = np.asarray(clusters)
    if c.shape != (n,):
        raise ValueError(f"clusters must give one patient per row ([{n}]); got shape {c.shape}")
    return np.unique(c.astype(str), return_inverse=True)[1]


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator, clusters: np.ndarray | None = None
                      ) -> np.ndarray:
    """Row weights [n_boot, n] of ``n_boot`` resamples with replacement.

    Without ``clusters`` rows are drawn; with ``clusters`` (:func:`cluster_index`, the patient of each row)
    patients are drawn, G of G with replacement, and every row of a drawn patient counts as often as its patient
    was drawn: images of one patient are not independent, so they are resampled together.
    """
    if clusters is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    g = int(clusters.max()) + 1 if len(clusters) else 0
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot).astype(np.float64)
    return counts[:, clusters]


def _replicate_metrics(y: np.ndarray, s: np.ndarray, w: np.ndarray, thresholds: np.ndarray | None,
                       typical: np.ndarray | None, groups: dict[str, list[int]], n_bins: int
                       ) -> dict[str, np.ndarray]:
    """All bootstrapped metrics for row weights ``w`` [B, N]: per-class [B, K] and summary [B] arrays."""
    B, K = w.shape[0], y.shape[1]
    auc = np.full((B, K), np.nan)
    auc_fg = np.full((B, K), np.nan)
    defined = np.array([_undefined_reason(y[np.isfinite(y[:, k]), k]) is None for k in range(K)])
    bacc0 = np.where(defined, _weighted_bacc(y, s > 0.5, w), np.nan)
    bacc = (np.where(defined, _weighted_bacc(y, s >= thresholds, w), np.nan) if thresholds is not None
            else np.full((B, K), np.nan))
    for k in np.flatnonzero(defined):
        m = np.isfinite(y[:, k])
        auc[:, k] = weighted_auc(y[m, k], s[m, k], w[:, m] if not m.all() else w)
        if typical is not None:
            mf = (y[:, k] == 1) & np.isfinite(typical[:, k])
            if _undefined_reason(typical[mf, k]) is None:
                auc_fg[:, k] = weighted_auc(typical[mf, k], s[mf, k], w[:, mf])
    cs = _row_calibration_sums(y, s, n_bins)
    tot = w @ cs["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        brier = (w @ cs["sse"]) / tot
        ece = np.abs(w @ cs["pos"] - w @ cs["prob"]).sum(axis=1) / tot
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {
            "auc": auc, "auc_fg": auc_fg, "bacc_k": bacc, "bacc_logit0_k": bacc0,
            "mean_auc": np.nanmean(auc, axis=1), "bacc": np.nanmean(bacc, axis=1),
            "bacc_logit0": np.nanmean(bacc0, axis=1), "mean_auc_fg": np.nanmean(auc_fg, axis=1),
            "ece": ece, "brier": brier,
        }
        for g, idx in groups.items():
            out[f"group:{g}:auc"] = np.nanmean(auc[:, idx], axis=1)
            out[f"group:{g}:bacc"] = np.nanmean(bacc[:, idx], axis=1)
            out[f"group:{g}:bacc_logit0"] = np.nanmean(bacc0[:, idx], axis=1)
    return out


def bootstrap_ci(y_true: Any, scores: Any, *, thresholds: Any = None, typical: Any = None,
                 groups: dict[str, list[int]] | None = None, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, n_bins: int = 15, chunk_elems: int = 4_000_000, clusters: Any = None
                 ) -> dict[str, np.ndarray]:
    """Percentile bootstrap intervals, resampling patients (``clusters`` [N], the patient of each row) or, without
    them, rows, with replacement (:func:`bootstrap_weights`).

    Returns, per metric key of ``_replicate_metrics`` (``auc`` [K], ``mean_auc``, ``bacc``, ...), an array
    [..., 2] of (low, high) percentiles at ``level``, computed over the replicates where the metric is
    defined (NaN if none). Deterministic given ``seed``; replicates are drawn in chunks of at most
    ``chunk_elems`` weights to bound memory.
    """
    y, s = _check_inputs(y_true, scores)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    t = None if typical is None else _as_2d("typical", typical, y.shape)
    thr = None if thresholds is None else np.broadcast_to(np.asarray(thresholds, float), y.shape[1:])
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    groups_idx = cluster_index(clusters, n)
    step = max(1, chunk_elems // max(n, 1))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n_boot, step):
        w = bootstrap_weights(n, min(step, n_boot - start), rng, groups_idx)
        parts.append(_replicate_metrics(y, s, w, thr, t, groups or {}, n_bins))
    alpha = (1.0 - level) / 2.0
    out: dict[str, np.ndarray] = {}
    for key in parts[0]:
        reps = np.concatenate([p[key] for p in parts], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanquantile(reps, alpha, axis=0)
            hi = np.nanquantile(reps, 1.0 - alpha, axis=0)
        out[key] = np.stack([lo, hi], axis=-1)
    return out


# ------------------------------------------------------------------------------------------- evaluate
def _clean(x: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    return x


_BUILTIN_KEYS = ("mean_auc", "bacc", "bacc_logit0", "mean_auc_fg", "ece", "brier")


def _custom_metrics(summary: dict[str, Any], y: np.ndarray, s: np.ndarray, t: np.ndarray | None,
                    thr: np.ndarray | None, n_boot: int, seed: int, level: float, clusters: Any) -> None:
    """Add every registered metric with a function (and its bootstrap interval, same resampling as the
    built-ins: patients when ``clusters`` is given) to ``summary``."""
    for m in METRICS.values():
        if m.fn is None:
            continue
        summary[m.key] = float(m.fn(y, s, typical=t, thresholds=thr))
        if n_boot > 0:
            w = bootstrap_weights(len(y), n_boot, np.random.default_rng([seed, 7]), cluster_index(clusters, len(y)))
            reps = []
            for wb in w:
                i = np.repeat(np.arange(len(y)), wb.astype(np.int64))
                reps.append(float(m.fn(y[i], s[i], typical=None if t is None else t[i], thresholds=thr)))
            a = np.asarray(reps)
            a = a[np.isfinite(a)]
            alpha = (1.0 - level) / 2.0
            summary[f"{m.key}_ci"] = ([float(np.quantile(a, alpha)), float(np.quantile(a, 1 - alpha))]
                                      if a.size else [None, None])


def score(y_true: Any, scores: Any, classes: Sequence[str], groups: Any = None, typical: Any = None,
             thresholds: Any = None, n_boot: int = 0, seed: int = 0, *, val_y: Any = None,
             val_scores: Any = None, n_bins: int = 15, level: float = 0.95, clusters: Any = None
             ) -> dict[str, Any]:
    """All metrics of one set of predictions, as a JSON-serialisable nested dict.

    Args:
        y_true: labels [N, K] (1 / 0 / NaN = ignore). scores: probabilities [N, K].
        classes: K class names. groups: Vocabulary / {class: group} / {group: [classes]} or None.
        typical: [N, K] 1 typical / 0 atypical / NaN, for AUC^FG (None: not computed).
        thresholds: per-class [K] (or scalar) thresholds chosen on validation; if None and ``val_y`` /
            ``val_scores`` are given they are chosen there with ``choose_thresholds``; otherwise the
            validation-threshold balanced accuracy is left undefined (null).
        n_boot: bootstrap replicates for confidence intervals (0: none). seed: bootstrap seed.
        n_bins: equal-width bins for ECE. level: confidence level of the intervals.
        clusters: the patient of each row [N]: bootstrap replicates resample patients, not images (None:
            every row is its own patient).
    Returns:
        ``{"n", "classes", "settings", "per_class": {class: {...}}, "summary": {...}, "groups": {...}}``;
        undefined values are None with a ``*_reason``; intervals are ``[low, high]`` under ``*_ci``.
    """
    y, s = _check_inputs(y_true, scores)
    classes = [str(c) for c in classes]
    if len(classes) != y.shape[1]:
        raise ValueError(f"{len(classes)} class names for {y.shape[1]} score columns")
    t = None if typical is None else _as_2d("typical", typical, y.shape)
    threshold_source = "given"
    if thresholds is None and (val_y is not None or val_scores is not None):
        if val_y is None or val_scores is None:
            raise ValueError("give both val_y and val_scores")
        thresholds = choose_thresholds(val_y, val_scores)
        threshold_source = "validation"
    thr = None if thresholds is None else np.broadcast_to(np.asarray(thresholds, float), (y.shape[1],)).copy()
    if thr is None:
        threshold_source = "none"
    grp = resolve_groups(classes, groups)
    group_of = {classes[i]: g for g, idx in grp.items() for i in idx}

    auc, auc_reason = per_class_auc(y, s)
    bacc0 = per_class_balanced_accuracy(y, s, 0.5, inclusive=False)
    bacc = per_class_balanced_accuracy(y, s, thr, inclusive=True) if thr is not None else np.full(len(classes),
                                                                                                 np.nan)
    if t is not None:
        auc_fg, fg_reason = per_class_auc_fg(y, s, t)
    else:
        auc_fg, fg_reason = np.full(len(classes), np.nan), ["typicality not given"] * len(classes)
    lab = np.isfinite(y)

    per_class: dict[str, dict[str, Any]] = {}
    for k, c in enumerate(classes):
        m = lab[:, k]
        entry: dict[str, Any] = {
            "group": group_of.get(c),
            "n_pos": int((y[:, k] == 1).sum()), "n_neg": int((y[:, k] == 0).sum()), "n_ignored": int((~m).sum()),
            "auc": auc[k], "auc_reason": auc_reason[k],
            "threshold": None if thr is None else thr[k],
            "bacc": bacc[k], "bacc_logit0": bacc0[k],
            "auc_fg": auc_fg[k], "auc_fg_reason": fg_reason[k],
            "ece": expected_calibration_error(y[m, k], s[m, k], n_bins), "brier": brier_score(y[m, k], s[m, k]),
        }
        if t is not None:
            pos = y[:, k] == 1
            entry["n_typical"] = int((pos & (t[:, k] == 1)).sum())
            entry["n_atypical"] = int((pos & (t[:, k] == 0)).sum())
        per_class[c] = entry

    summary: dict[str, Any] = {
        "mean_auc": _nanmean(auc), "n_auc_defined": int(np.isfinite(auc).sum()),
        "bacc": _nanmean(bacc), "bacc_logit0": _nanmean(bacc0),
        "mean_auc_fg": _nanmean(auc_fg), "n_auc_fg_defined": int(np.isfinite(auc_fg).sum()),
        "ece": expected_calibration_error(y[lab], s[lab], n_bins), "brier": brier_score(y[lab], s[lab]),
        "n_labelled": int(lab.sum()),
    }
    group_out: dict[str, dict[str, Any]] = {}
    for g, idx in grp.items():
        group_out[g] = {"classes": [classes[i] for i in idx], "auc": _nanmean(auc[idx]),
                        "bacc": _nanmean(bacc[idx]), "bacc_logit0": _nanmean(bacc0[idx]),
                        "auc_fg": _nanmean(auc_fg[idx])}

    if n_boot > 0:
        ci = bootstrap_ci(y, s, thresholds=thr, typical=t, groups=grp, n_boot=n_boot, seed=seed,
                          level=level, n_bins=n_bins, clusters=clusters)
        for k, c in enumerate(classes):
            per_class[c]["auc_ci"] = ci["auc"][k]
            per_class[c]["bacc_ci"] = ci["bacc_k"][k]
            per_class[c]["bacc_logit0_ci"] = ci["bacc_logit0_k"][k]
            per_class[c]["auc_fg_ci"] = ci["auc_fg"][k]
        for key in _BUILTIN_KEYS:
            summary[f"{key}_ci"] = ci[key]
        for g in grp:
            for key in ("auc", "bacc", "bacc_logit0"):
                group_out[g][f"{key}_ci"] = ci[f"group:{g}:{key}"]

    _custom_metrics(summary, y, s, t, thr, n_boot, seed, level, clusters)
    settings = {"n_bins": n_bins, "ece_binning": "equal-width (b/B, (b+1)/B]", "threshold_source": threshold_source,
                "bacc_logit0_rule": "score > 0.5 (logit > 0, LTML)", "bacc_rule": "score >= validation threshold",
                "n_boot": n_boot, "seed": seed, "ci_level": level,
                "ci_method": "percentile, " + ("patients resampled" if clusters is not None else "rows resampled")}
    return _clean({"n": y.shape[0], "classes": classes, "settings": settings, "per_class": per_class,
                   "summary": summary, "groups": group_out})


# ------------------------------------------------------------------------------------------- tables
def metrics_table(result: Mapping[str, Any]) -> Any:
    """Per-class pandas DataFrame (index = class) of an ``evaluate`` result; CIs as ``*_lo`` / ``*_hi``."""
    import pandas as pd

    rows = []
    for c, e in result["per_class"].items():
        row: dict[str, Any] = {"class": c}
        for key, v in e.items():
            if key.endswith("_ci"):
                base = key[:-3]
                row[f"{base}_lo"], row[f"{base}_hi"] = (v if v is not None else (None, None))
            elif not key.endswith("_reason"):
                row[key] = v
        rows.append(row)
    df = pd.DataFrame(rows).set_index("class")
    num = [c for c in df.columns if c != "group"]
    df[num] = df[num].apply(pd.to_numeric, errors="coerce")
    return df


def summary_table(results: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]],
                  keys: Sequence[str] | None = None, groups: bool = True) -> Any:
    """Method comparison: one row per method, ``<metric>_mean`` / ``<metric>_std`` / ``n_runs`` columns.

    ``results`` maps a method name to one :func:`score` result or a list of them (seeds); the std is the
    sample std (ddof=1; NaN for one run). With ``groups``, group AUC / bacc means are added as
    ``<group>_auc`` and ``<group>_bacc``.
    """
    import pandas as pd

    keys = metric_keys() if keys is None else keys
    rows = []
    for method, runs in results.items():
        runs = [runs] if isinstance(runs, Mapping) else list(runs)
        if not runs:
            raise ValueError(f"method {method!r} has no runs")
        vals: dict[str, list[float]] = {}
        for r in runs:
            for key in keys:
                vals.setdefault(key, []).append(r["summary"].get(key))
            if groups:
                for g, ge in r.get("groups", {}).items():
                    vals.setdefault(f"{g}_auc", []).append(ge.get("auc"))
                    vals.setdefault(f"{g}_bacc", []).append(ge.get("bacc"))
        row: dict[str, Any] = {"method": method, "n_runs": len(runs)}
        for key, v in vals.items():
            a = np.array([math.nan if x is None else x for x in v], dtype=np.float64)
            ok = a[np.isfinite(a)]
            row[f"{key}_mean"] = float(ok.mean()) if ok.size else math.nan
            row[f"{key}_std"] = float(ok.std(ddof=1)) if ok.size > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")
