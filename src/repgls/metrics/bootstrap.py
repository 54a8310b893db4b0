"""Bootstrap: row or patient resampling, weighted (all replicates at once) metrics, intervals, paired comparisons."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from repgls.metrics.core import _as_2d, _check_inputs, _nanmean, _undefined_reason, per_class_auc


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




# ------------------------------------------------------------------------------------------- paired
def paired_bootstrap(y_true: Any, scores: Mapping[str, Any], *, clusters: Any = None, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Mean AUC of several methods on one test set, with replicates that are paired across methods.

    Args:
        y_true: labels [N, K] (1 / 0 / NaN ignored), the same for every method (one reference).
        scores: method -> probabilities [S, N, K] of S seeds; seed s of one method is paired with seed s of
            every other (same seed, same test set).
        clusters: the patient of each row [N]: replicates resample patients (None: rows).
        n_boot: replicates. Each draws patients with replacement and seeds with replacement, the same draw for
            every method, and takes each method's mean over the drawn seeds of its mean AUC over classes.
    Returns:
        ``{"point": {method: float}, "reps": {method: [n_boot]}}``: the point estimate (mean over seeds of the
        mean AUC) and the replicates, from which differences and ratios between methods get percentile
        intervals (:func:`percentile_interval`) that account for both test-set and seed variation.
    """
    y = _as_2d("y_true", y_true)
    arrays = {m: np.asarray(s, dtype=np.float64) for m, s in scores.items()}
    n_seeds = {a.shape[0] for a in arrays.values()}
    if len(n_seeds) != 1 or any(a.shape[1:] != y.shape for a in arrays.values()):
        raise ValueError(f"scores must all be [S, N, K] with the same S and [N, K] = {y.shape}; got "
                         f"{ {m: a.shape for m, a in arrays.items()} }")
    s_count = n_seeds.pop()
    rng = np.random.default_rng(seed)
    w = bootstrap_weights(y.shape[0], n_boot, rng, cluster_index(clusters, y.shape[0]))
    draw = rng.integers(0, s_count, size=(n_boot, s_count))
    defined = [k for k in range(y.shape[1]) if _undefined_reason(y[np.isfinite(y[:, k]), k]) is None]
    out: dict[str, Any] = {"point": {}, "reps": {}}
    for m, a in arrays.items():
        per_seed = np.full((s_count, n_boot), np.nan)
        point = []
        for si in range(s_count):
            aucs = np.full((n_boot, len(defined)), np.nan)
            for j, k in enumerate(defined):
                ok = np.isfinite(y[:, k])
                aucs[:, j] = weighted_auc(y[ok, k], a[si, ok, k], w[:, ok])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                per_seed[si] = np.nanmean(aucs, axis=1)
            point.append(_nanmean(per_class_auc(y, a[si])[0]))
        out["point"][m] = float(np.mean(point))
        out["reps"][m] = per_seed[draw, np.arange(n_boot)[:, None]].mean(axis=1)
    return out


def percentile_interval(values: Any, level: float = 0.95) -> list[float | None]:
    """[low, high] percentile interval of bootstrap replicates (finite ones; None when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return [None, None]
    a = (1.0 - level) / 2.0
    return [float(np.quantile(v, a)), float(np.quantile(v, 1.0 - a))]
