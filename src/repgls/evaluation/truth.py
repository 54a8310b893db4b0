"""Hidden truth (phantom world) and typicality (PU-RM's typical vs atypical positives) for scoring a run.

``truth_matrix`` reads a phantom ``truth.parquet`` into per-image labels and typicality; ``find_truth``
locates the truth table of the world an image cache was prepared from. ``TYPICALITY_RULE`` says how
typicality is read from the truth's latents or from the findings' wording.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from repgls.evaluation.run import LoadedRun

__all__ = ["TYPICALITY_RULE", "find_truth", "truth_matrix"]

#: Severity levels (truth.parquet ``severity_level``) and prior states that make a positive atypical.
ATYPICAL_LEVELS = ("trace", "mild")

ATYPICAL_PRIOR_STATES = ("present-larger",)  # the finding was larger before: improving

#: Upper bound of the phantom's "mild" level (phantom.yaml ``severity_levels``), used without levels.
MILD_MAX = 0.40

TYPICALITY_RULE = {
    "truth": "hidden truth (phantom): a present finding is atypical (0) when its severity_level is trace or mild "
             "or its prior_state is present-larger (improving since the prior study), typical (1) otherwise; "
             "absent findings are left out (NaN). PU-RM Table 1 read onto the phantom's latents.",
    "findings": "the report: findings.parquet 'typicality' of the mention (typical 1 / atypical 0, PU-RM Table 1 "
                "words mined from the report); unmentioned or negative findings are left out (NaN).",
    "none": "no truth.parquet and no findings.parquet found: AUC^FG is not computed.",
}


def find_truth(lr: LoadedRun) -> Path | None:
    """truth.parquet of the phantom world the cache came from (cache meta ``root``, else the images' folder)."""
    cands = []
    if lr.cache_meta.get("root"):
        cands.append(Path(lr.cache_meta["root"]) / "truth.parquet")
    if lr.cache_dir is not None and (lr.cache_dir / "index.parquet").is_file():
        paths = pd.read_parquet(lr.cache_dir / "index.parquet", columns=["path"])["path"].head(1).tolist()
        if paths:
            cands.append(Path(paths[0]).parent.parent / "truth.parquet")
    if lr.cache_dir is not None:
        cands.append(lr.cache_dir.parent / "truth.parquet")
    return next((c for c in cands if c.is_file()), None)


def truth_matrix(truth: pd.DataFrame | str | os.PathLike, image_ids: Sequence[str], classes: Sequence[str],
                 study_ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hidden truth per image and class from a phantom truth table.

    Args:
        truth: truth.parquet (path or DataFrame; one row per image and finding with ``image_id``,
            ``finding``, ``present`` and optionally ``study_id``, ``severity``, ``severity_level``, ``prior_state``).
        image_ids: [N] images to score; ``study_ids`` [N]: fallback key when an image id is not in the table.
        classes: K class names (the run's vocabulary); a class the table lacks stays NaN.
    Returns:
        ``y`` float [N, K] (1 present / 0 absent / NaN unknown) and ``typical`` float [N, K] (1 / 0 for
        present findings per :data:`TYPICALITY_RULE` ["truth"], NaN otherwise).
    """
    if isinstance(truth, pd.DataFrame):
        df = truth
    else:
        from repgls._io import reading

        with reading(truth, "Parquet truth table"):
            df = pd.read_parquet(truth)
    missing = [c for c in ("image_id", "finding", "present") if c not in df.columns]
    if missing:
        raise ValueError(f"truth table {truth if not isinstance(truth, pd.DataFrame) else ''}: missing column(s) "
                         f"{missing}; has {list(df.columns)}")
    n, k = len(image_ids), len(classes)
    col = {c: j for j, c in enumerate(classes)}
    df = df[df["finding"].isin(col)]
    # Map table rows -> image positions (by image id, else by study id).
    img_pos = {s: i for i, s in enumerate(map(str, image_ids))}
    pos = df["image_id"].astype(str).map(img_pos)
    if study_ids is not None and "study_id" in df.columns and pos.isna().any():
        st_pos = {s: i for i, s in enumerate(map(str, study_ids))}
        pos = pos.fillna(df["study_id"].astype(str).map(st_pos))
    keep = pos.notna().to_numpy()
    d = df[keep]
    ri = pos[keep].to_numpy(dtype=np.int64)
    ci = d["finding"].map(col).to_numpy(dtype=np.int64)
    present = d["present"].astype(bool).to_numpy()
    y = np.full((n, k), np.nan)
    y[ri, ci] = present.astype(np.float64)
    atyp = np.zeros(len(d), dtype=bool)
    if "severity_level" in d.columns:
        atyp |= d["severity_level"].astype(str).isin(ATYPICAL_LEVELS).to_numpy()
    elif "severity" in d.columns:
        atyp |= d["severity"].to_numpy(dtype=np.float64) < MILD_MAX
    if "prior_state" in d.columns:
        atyp |= d["prior_state"].astype(str).isin(ATYPICAL_PRIOR_STATES).to_numpy()
    typical = np.full((n, k), np.nan)
    typical[ri[present], ci[present]] = np.where(atyp[present], 0.0, 1.0)
    return y, typical
