"""``score``: every metric of one set of predictions as a JSON-serialisable dict; comparison tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from repgls.metrics.bootstrap import bootstrap_ci, bootstrap_weights, cluster_index
from repgls.metrics.core import (
    _as_2d,
    _check_inputs,
    _nanmean,
    brier_score,
    choose_thresholds,
    expected_calibration_error,
    per_class_auc,
    per_class_auc_fg,
    per_class_balanced_accuracy,
    resolve_groups,
)
from repgls.metrics.registry import METRICS, metric_keys


# ------------------------------------------------------------------------------------------- evaluate
def json_safe(x: Any) -> Any:
    """A copy that strict JSON accepts: numpy scalars / arrays become Python values, NaN / inf become null."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
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
    return json_safe({"n": y.shape[0], "classes": classes, "settings": settings, "per_class": per_class,
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
