"""The reference a run is scored against: labels that do not depend on how the run was trained.

Every method of a comparison must be scored on the same labels. A run's own labels file depends on its
training policy (U-Ones makes uncertain mentions positive, U-Zeros negative), so it is never the reference.
Sources (``repgls eval --reference``):

* ``findings`` (default when a findings table is found): the **policy-free reference** from the mined
  findings: definite statements only (certainty 1 -> positive, a negation -> negative), a finding the report
  does not mention -> negative (``unmentioned="negative"``, the CheXpert convention) or ignored; hedged
  mentions (0 < certainty < 1) are left out of the labels (NaN) and summarised on their own.
* ``truth``: the phantom world's hidden truth (``truth.parquet``).
* ``official``: the dataset's own labels in the image cache (uncertain -> ignored, blank -> negative).
* a ``labels.parquet`` path: those labels as they are (NaN = ignored).

AUC^FG (PU-RM) is computed over the reference's positives whose typicality is known: from the truth's latents,
or from the findings' ``typicality`` (report wording, PU-RM Table 1). ``sha256`` identifies the label arrays,
so two evaluations on the same reference carry the same ``reference_sha256``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls.evaluation.truth import TYPICALITY_RULE, truth_matrix

__all__ = ["REFERENCE_RULES", "Reference", "detect_source", "findings_reference", "labels_reference",
           "official_reference", "truth_reference"]

REFERENCE_RULES = {
    "findings": "policy-free reference from the mined findings: certainty 1 -> positive, a negation -> negative, "
                "not mentioned -> {unmentioned}; hedged mentions (0 < certainty < 1) are not labels (NaN) and are "
                "summarised separately under 'hedged'",
    "truth": "the phantom world's hidden truth: present -> positive, absent -> negative",
    "official": "the dataset's official labels in the image cache: 1 -> positive, 0 -> negative, uncertain (-1) "
                "ignored, blank (not mentioned) -> negative",
    "labels": "the given labels.parquet as it is (label:C; NaN ignored)",
}


@dataclass
class Reference:
    """Reference labels of one split: ``y`` [N, K] (1 / 0 / NaN ignored), ``typical`` [N, K] (1 typical, 0
    atypical, NaN unknown; only where y is 1) and, for findings, ``hedged`` [N, K] (the certainty of hedged
    mentions, NaN elsewhere)."""

    source: str
    path: Path | None
    rule: str
    y: np.ndarray
    typical: np.ndarray | None = None
    typicality: str = "none"
    hedged: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def sha256(self, image_ids: Sequence[str], classes: Sequence[str]) -> str:
        """Digest of the label arrays scored (image ids, classes, y and typicality; NaN canonical)."""
        h = hashlib.sha256()
        h.update("\n".join(map(str, image_ids)).encode())
        h.update(b"\x00" + "\n".join(classes).encode())
        for a in (self.y, self.typical):
            h.update(b"\x00" if a is None else np.nan_to_num(np.asarray(a, np.float64), nan=-1.0).tobytes())
        return h.hexdigest()

    def describe(self, classes: Sequence[str]) -> dict[str, Any]:
        """What metrics.json records about the reference (counts per class included)."""
        y = self.y
        out: dict[str, Any] = {
            "source": self.source, "path": None if self.path is None else str(self.path), "rule": self.rule,
            "typicality": {"source": self.typicality, "rule": TYPICALITY_RULE[self.typicality]},
            "n_positive": {c: int((y[:, k] == 1).sum()) for k, c in enumerate(classes)},
            "n_negative": {c: int((y[:, k] == 0).sum()) for k, c in enumerate(classes)},
            "n_ignored": {c: int(np.isnan(y[:, k]).sum()) for k, c in enumerate(classes)},
            **self.extra,
        }
        if self.hedged is not None:
            out["n_hedged"] = {c: int(np.isfinite(self.hedged[:, k]).sum()) for k, c in enumerate(classes)}
        return out


def detect_source(path: Path) -> str:
    """``findings`` / ``truth`` / ``labels`` from a Parquet file's columns (a clear error otherwise)."""
    import pyarrow.parquet as pq

    from repgls._io import reading

    with reading(path, "Parquet"):  # empty, truncated, not Parquet: one line naming the file
        names = set(pq.read_schema(path).names)
    if {"finding", "status", "certainty"} <= names:
        return "findings"
    if {"finding", "present"} <= names:
        return "truth"
    if "study_id" in names and any(n.startswith("label:") for n in names):
        return "labels"
    raise ValueError(f"{path}: neither findings (finding, status, certainty), a phantom truth table (finding, "
                     "present) nor labels.parquet (study_id, label:C)")


def _grid(df: pd.DataFrame, study_ids: Sequence[str], classes: Sequence[str], column: str) -> np.ndarray:
    """A per-(study, finding) column of a findings table as [N, K] over image rows (NaN where absent); the
    images of one study share its values."""
    col = {c: k for k, c in enumerate(classes)}
    uniq, inv = np.unique(np.asarray([str(s) for s in study_ids], dtype=object), return_inverse=True)
    pos = {s: i for i, s in enumerate(uniq)}
    d = df[df["finding"].isin(col)]
    rows = d["study_id"].astype(str).map(pos)
    keep = rows.notna().to_numpy()
    grid = np.full((len(uniq), len(classes)), np.nan)
    grid[rows[keep].to_numpy(dtype=np.int64), d["finding"][keep].map(col).to_numpy(dtype=np.int64)] = \
        d[column][keep].to_numpy(dtype=np.float64)
    return grid[inv.reshape(-1)] if len(study_ids) else np.zeros((0, len(classes)))


def _typicality(df: pd.DataFrame, study_ids: Sequence[str], classes: Sequence[str]) -> np.ndarray | None:
    """Typicality of every mention [N, K] (1 typical, 0 atypical, NaN unknown), or None without the column."""
    if "typicality" not in df.columns:
        return None
    t = df.assign(t=df["typicality"].map({"typical": 1.0, "atypical": 0.0}))
    return _grid(t, study_ids, classes, "t")


def findings_reference(findings: Path, study_ids: Sequence[str], classes: Sequence[str],
                       unmentioned: str = "negative") -> Reference:
    """The policy-free reference from a findings table (see the module docstring)."""
    from repgls.rating import read_findings

    if unmentioned not in ("negative", "ignore"):
        raise ValueError(f"unmentioned must be negative or ignore, got {unmentioned!r}")
    df = read_findings(findings)
    cert = _grid(df, study_ids, classes, "certainty")
    neg = _grid(df.assign(neg=(df["status"] == "negative").astype(float)), study_ids, classes, "neg") == 1
    mentioned = np.isfinite(cert)
    y = np.full(cert.shape, 0.0 if unmentioned == "negative" else np.nan)
    y[mentioned] = np.nan  # hedged unless definite
    y[mentioned & (cert >= 1.0) & ~neg] = 1.0
    y[mentioned & ((cert <= 0.0) | neg)] = 0.0
    hedged = np.where(mentioned & np.isnan(y), cert, np.nan)
    t = _typicality(df, study_ids, classes)
    typical = None if t is None else np.where(y == 1, t, np.nan)
    return Reference("findings", Path(findings), REFERENCE_RULES["findings"].format(unmentioned=unmentioned), y,
                     typical, "findings" if typical is not None else "none", hedged,
                     {"unmentioned": unmentioned})


def truth_reference(truth: Path, image_ids: Sequence[str], study_ids: Sequence[str],
                    classes: Sequence[str]) -> Reference:
    """The phantom world's hidden truth (typicality from its latents)."""
    y, typical = truth_matrix(truth, image_ids, classes, study_ids)
    if not np.isfinite(y).any():
        raise ValueError(f"{truth}: none of the {len(image_ids)} images (e.g. {image_ids[0]!r}) is in this truth "
                         "table")
    return Reference("truth", Path(truth), REFERENCE_RULES["truth"], y, typical, "truth")


def labels_reference(labels: Path, study_ids: Sequence[str], classes: Sequence[str],
                     findings: Path | None = None) -> Reference:
    """A labels.parquet as the reference (typicality from ``findings`` when given)."""
    from repgls.rating import read_labels

    table = read_labels(labels)
    missing = [c for c in classes if c not in table.classes]
    if missing:
        raise ValueError(f"{labels}: no label column for class(es) {missing}")
    pos = {s: i for i, s in enumerate(table.study_ids.tolist())}
    idx = np.array([pos.get(str(s), -1) for s in study_ids])
    cols = [table.classes.index(c) for c in classes]
    y = np.where(idx[:, None] >= 0, table.y[np.maximum(idx, 0)][:, cols], np.nan).astype(np.float64)
    typical, source = None, "none"
    if findings is not None:
        from repgls.rating import read_findings

        t = _typicality(read_findings(findings), study_ids, classes)
        if t is not None:
            typical, source = np.where(y == 1, t, np.nan), "findings"
    return Reference("labels", Path(labels), REFERENCE_RULES["labels"], y, typical, source)


def official_reference(index: pd.DataFrame, classes: Sequence[str], where: str) -> Reference:
    """The official ``label:C`` columns of an image cache's index (uncertain ignored, blank negative)."""
    missing = [c for c in classes if f"label:{c}" not in index.columns]
    if missing:
        raise ValueError(f"{where}: no official label column for class(es) {missing}")
    y = index[[f"label:{c}" for c in classes]].to_numpy(dtype=np.float64).copy()
    y[y == -1] = np.nan
    y = np.where(np.isnan(index[[f"label:{c}" for c in classes]].to_numpy(dtype=np.float64)), 0.0, y)
    return Reference("official", None, REFERENCE_RULES["official"], y)
