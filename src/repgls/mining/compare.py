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

from repgls.mining.schema import STATUSES, validate_findings

ABSENT = "absent"
LABELS = (ABSENT, *STATUSES)
COLUMNS = ("finding", "n_a", "n_b", "both", "only_a", "only_b", "status_agreement", "agreement", "kappa")


def read_findings(source: str | Path | pa.Table | pd.DataFrame, where: str | None = None) -> pd.DataFrame:
    """A findings table (Parquet path, Arrow table or DataFrame) checked against ``FINDINGS_SCHEMA``.

    Raises:
        ValueError: missing file, unreadable file, or a schema problem (naming the file and row).
    """
    import pyarrow.parquet as pq

    from repgls._io import reading

    if isinstance(source, (str, Path)):
        path = Path(source)
        where = where or str(path)
        if not path.exists():
            raise ValueError(f"{where}: file not found")
        with reading(where, "Parquet findings table"):
            table = pq.read_table(path)
    elif isinstance(source, pd.DataFrame):
        table = pa.Table.from_pandas(source, preserve_index=False)
    else:
        table = source
    table = validate_findings(table, where or "findings")
    df = table.select(["study_id", "finding", "status", "certainty"]).to_pandas()
    dup = df.duplicated(["study_id", "finding"])
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ValueError(f"{where or 'findings'}: row {i}: second row for study {df.study_id.iat[i]!r}, "
                         f"finding {df.finding.iat[i]!r} (expected one row per study and finding)")
    return df


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
    """
    da, db = read_findings(a, None if not isinstance(a, (str, Path)) else str(a)), read_findings(
        b, None if not isinstance(b, (str, Path)) else str(b))
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
