"""Agreement between two findings tables (e.g. the rule miner vs the LLM miner), per class.

Per class C, every study that appears in either table gets one label per table: the status of its C row
(positive / negative / uncertain) or ``absent`` when that table has no C row for it. Studies present in
neither table are invisible (a findings table has no row for a report without findings). Reported:
``n_a`` / ``n_b`` mentions, ``both`` (mentioned in both), ``only_a`` / ``only_b``, ``status_agreement``
(share of ``both`` with the same status; NaN when ``both`` is 0), ``agreement`` (share of all studies
with the same label, ``absent`` included) and Cohen's kappa on those labels (scikit-learn; NaN when it is
undefined, e.g. both tables give one same label to every study). A last row ``ALL`` pools all classes.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from repgls.mining.schema import STATUSES

ABSENT = "absent"
LABELS = (ABSENT, *STATUSES)
COLUMNS = ("finding", "n_a", "n_b", "both", "only_a", "only_b", "status_agreement", "agreement", "kappa")


def _kappa(a: list[str], b: list[str]) -> float:
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(a, b, labels=list(LABELS))
    return float(k)


def compare_findings(
    a: str | Path | pa.Table | pd.DataFrame,
    b: str | Path | pa.Table | pd.DataFrame,
    classes: list[str] | tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Per-class agreement of findings tables ``a`` and ``b`` (columns ``COLUMNS``; module doc).

    ``classes``: the classes to report, in order (e.g. a vocabulary's); default: all found, sorted.

    Raises:
        FileNotFoundError: a path that does not exist. ValueError: a bad table (naming the file and row).
    """
    from repgls.rating.findings import read_findings  # the one findings reader (names the file and row)

    da, db = read_findings(a, where="findings A"), read_findings(b, where="findings B")
    studies = sorted(set(da.study_id) | set(db.study_id))
    if classes is None:
        classes = sorted(set(da.finding) | set(db.finding))
    sa = {(s, f): st for s, f, st in zip(da.study_id, da.finding, da.status, strict=True)}
    sb = {(s, f): st for s, f, st in zip(db.study_id, db.finding, db.status, strict=True)}
    rows: list[dict[str, Any]] = []
    all_a: list[str] = []
    all_b: list[str] = []
    for c in classes:
        la = [sa.get((s, c), ABSENT) for s in studies]
        lb = [sb.get((s, c), ABSENT) for s in studies]
        all_a += la
        all_b += lb
        rows.append(_row(c, la, lb))
    rows.append(_row("ALL", all_a, all_b))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(name: str, la: list[str], lb: list[str]) -> dict[str, Any]:
    both = [(x, y) for x, y in zip(la, lb, strict=True) if x != ABSENT and y != ABSENT]
    n = len(la)
    return {
        "finding": name,
        "n_a": sum(x != ABSENT for x in la),
        "n_b": sum(y != ABSENT for y in lb),
        "both": len(both),
        "only_a": sum(x != ABSENT and y == ABSENT for x, y in zip(la, lb, strict=True)),
        "only_b": sum(x == ABSENT and y != ABSENT for x, y in zip(la, lb, strict=True)),
        "status_agreement": (sum(x == y for x, y in both) / len(both)) if both else math.nan,
        "agreement": (sum(x == y for x, y in zip(la, lb, strict=True)) / n) if n else math.nan,
        "kappa": _kappa(la, lb),
    }
