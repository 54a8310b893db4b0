"""Paired comparisons of a bench's methods: differences of mean AUC against baselines and the gap recovered
towards the oracle, with 95% intervals that account for the test set and the seeds.

Every run of a bench predicts the same test images against the same reference (checked by sha256), and seed k
of one method is paired with seed k of another. :func:`repgls.metrics.paired_bootstrap` resamples patients and
seeds with one draw shared by every method, so a difference's interval is that of the difference, not of two
independent means. ``gap_recovered = (method - base) / (oracle - base)`` on mean AUC against the truth, base =
the first baseline (U-Ones): 0 = no better than hard labels, 1 = as good as training on the truth. It is left
undefined (NaN) when the oracle's own gain over the base holds 0 in its interval: then there is no gap to recover.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["comparison", "load_predictions"]


def load_predictions(records: Sequence[Mapping[str, Any]], side: str) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                                                 list[str], list[str]]:
    """(y [N, K], method -> scores [S, N, K] in seed order, patient ids [N], classes) from the runs'
    ``eval-test/predictions.parquet`` (``side``: "truth" or "reference" labels)."""
    by_method: dict[str, list[tuple[int, pd.DataFrame]]] = {}
    classes: list[str] = []
    for rec in records:
        pred_path = Path(rec["metrics"]).parent / "predictions.parquet"
        df = pd.read_parquet(pred_path)
        classes = json.loads(Path(rec["metrics"]).read_text())["classes"]
        by_method.setdefault(rec["method"], []).append((int(rec["seed"]), df))
    seeds = {m: sorted(s for s, _ in v) for m, v in by_method.items()}
    if len({tuple(s) for s in seeds.values()}) != 1:
        raise ValueError(f"paired comparison needs the same seeds for every method; got {seeds}")
    first = next(iter(by_method.values()))[0][1]
    y = first[[f"{side}:{c}" for c in classes]].to_numpy(dtype=np.float64)
    scores = {}
    for m, runs in by_method.items():
        runs = sorted(runs, key=lambda t: t[0])
        for _, df in runs:
            if not df["image_id"].equals(first["image_id"]):
                raise ValueError(f"method {m!r}: its test images differ from the others'")
        scores[m] = np.stack([df[[f"prob:{c}" for c in classes]].to_numpy(dtype=np.float64) for _, df in runs])
    return y, scores, first["patient_id"].astype(str).tolist(), classes


def _gap(m: str, point: dict[str, float], reps: dict[str, np.ndarray], oracle: str, base: str) -> dict[str, Any]:
    """Gap recovered of method ``m`` and its interval (replicate ratios of paired differences)."""
    from repgls.metrics import percentile_interval

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (reps[m] - reps[base]) / (reps[oracle] - reps[base])
    lo, hi = percentile_interval(ratio)
    return {"gap_recovered": (point[m] - point[base]) / (point[oracle] - point[base]),
            "gap_recovered_lo": lo, "gap_recovered_hi": hi}


def comparison(records: Sequence[Mapping[str, Any]], baselines: Sequence[str], oracle: str | None, *,
               side: str = "truth", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Method x {mean AUC, d_auc_vs_<baseline> [lo, hi], gap_recovered [lo, hi]} on ``side`` labels."""
    from repgls.metrics import paired_bootstrap, percentile_interval

    y, scores, patients, _ = load_predictions(records, side)
    pb = paired_bootstrap(y, scores, clusters=patients, n_boot=n_boot, seed=seed)
    point, reps = pb["point"], pb["reps"]
    gap_defined = True
    if oracle is not None and baselines:
        lo, _ = percentile_interval(reps[oracle] - reps[baselines[0]])
        gap_defined = lo is not None and lo > 0  # a gap exists only if the oracle is surely better
    rows = []
    for m in scores:
        row: dict[str, Any] = {"method": m, "auc": point[m], "auc_lo": None, "auc_hi": None}
        row["auc_lo"], row["auc_hi"] = percentile_interval(reps[m])
        for b in baselines:
            row[f"d_auc_vs_{b}"] = point[m] - point[b]
            row[f"d_auc_vs_{b}_lo"], row[f"d_auc_vs_{b}_hi"] = percentile_interval(reps[m] - reps[b])
        if oracle is not None and baselines:
            row.update(_gap(m, point, reps, oracle, baselines[0]) if gap_defined else
                       {"gap_recovered": float("nan"), "gap_recovered_lo": None, "gap_recovered_hi": None})
        rows.append(row)
    out = pd.DataFrame(rows).set_index("method")
    out.attrs.update(side=side, n_boot=n_boot, n_seeds=int(next(iter(scores.values())).shape[0]),
                     n_images=int(y.shape[0]), n_patients=len(set(patients)), gap_defined=bool(gap_defined))
    return out
