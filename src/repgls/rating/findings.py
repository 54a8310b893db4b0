"""Readers of the rates stage's inputs: findings tables and study lists (CSV / TSV / JSONL / Parquet).

Kept apart from :mod:`repgls.rating.build` and :mod:`repgls.rating.rgn` so that both read findings the same
way without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from repgls._io import check_text_file, reading
from repgls.mining.schema import STATUSES

REQUIRED = ("study_id", "finding", "status", "certainty")


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """Read a CSV / TSV / JSONL / Parquet file into a DataFrame (ids kept as strings)."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    suffix = "".join(path.suffixes[-2:]).lower()
    kind = next((k for ends, k in _KINDS if suffix.endswith(ends)), None)
    if kind is None:
        raise ValueError(f"{path}: unsupported {what} format (use .parquet, .csv, .tsv or .jsonl)")
    if kind != "Parquet" and not suffix.endswith(".gz"):
        check_text_file(path, kind)  # empty or binary: one line, never its bytes
    with reading(path, kind):
        if kind == "Parquet":
            return pd.read_parquet(path)
        if kind == "JSON lines":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_csv(path, sep="\t" if kind == "TSV" else ",", dtype=str, keep_default_na=False)


_KINDS = ((".parquet", "Parquet"), (".pq", "Parquet"), (".jsonl", "JSON lines"), (".ndjson", "JSON lines"),
          (".tsv", "TSV"), (".tab", "TSV"), (".csv", "CSV"), (".csv.gz", "CSV"))


def findings_vocab(findings: Any) -> str | None:
    """The vocabulary a findings table was mined with (its ``repgls`` metadata: Parquet file, pyarrow Table or
    ``DataFrame.attrs``), or None when it does not say (CSV, JSONL, a table built by hand)."""
    import json

    meta: Any = None
    if isinstance(findings, (str, Path)) and Path(findings).suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        with reading(findings, "Parquet"):
            raw = (pq.read_schema(findings).metadata or {}).get(b"repgls")
        meta = json.loads(raw) if raw else None
    elif isinstance(findings, pa.Table):
        raw = (findings.schema.metadata or {}).get(b"repgls")
        meta = json.loads(raw) if raw else None
    elif isinstance(findings, pd.DataFrame):
        meta = findings.attrs.get("repgls")
    vocab = meta.get("vocab") if isinstance(meta, dict) else None
    return str(vocab) if vocab else None


def read_findings(findings: Any, vocab_classes: tuple[str, ...] | None = None,
                  where: str = "findings", vocab_hint: str = "") -> pd.DataFrame:
    """Findings (path, pyarrow Table or DataFrame) -> DataFrame checked row by row.

    Needs ``study_id``, ``finding``, ``status``, ``certainty``; other columns of FINDINGS_SCHEMA are kept.

    ``vocab_hint`` ends the message of a finding that is not a class of ``vocab_classes`` (e.g. which
    vocabulary the file was mined with).

    Raises:
        ValueError: naming the file, the row and the problem (unknown class, bad status, certainty
            outside [0, 1], a (study, finding) pair listed twice).
    """
    if isinstance(findings, (str, Path)):
        where = str(findings)
        df = _read_table(Path(findings), "findings")
    elif isinstance(findings, pa.Table):
        df = findings.to_pandas()
    elif isinstance(findings, pd.DataFrame):
        df = findings.copy()
    else:
        raise TypeError(f"findings must be a path, a pyarrow Table or a DataFrame; got {type(findings).__name__}")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; has {list(df.columns)}")
    df = df.reset_index(drop=True)
    df["study_id"] = df["study_id"].astype(str)
    cert = pd.to_numeric(df["certainty"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~((cert >= 0) & (cert <= 1)))
    if bad.size:
        i = int(bad[0])
        raw = df["certainty"].iloc[i]
        raw = raw.item() if hasattr(raw, "item") else raw
        raise ValueError(f"{where}: row {i}: certainty={raw!r} is not a number in [0, 1]")
    df["certainty"] = cert
    bad_status = ~df["status"].isin(STATUSES)
    if bad_status.any():
        i = int(np.flatnonzero(bad_status.to_numpy())[0])
        raise ValueError(f"{where}: row {i}: status={df['status'].iloc[i]!r} is not one of {STATUSES}")
    if vocab_classes is not None:
        unknown = ~df["finding"].isin(vocab_classes)
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise ValueError(f"{where}: row {i}: finding {df['finding'].iloc[i]!r} is not a class of the "
                             f"vocabulary ({', '.join(vocab_classes)}){vocab_hint}")
    dup = df.duplicated(["study_id", "finding"], keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)[:2].tolist()
        raise ValueError(f"{where}: rows {rows}: study {df['study_id'].iloc[rows[0]]!r} lists finding "
                         f"{df['finding'].iloc[rows[0]]!r} twice (findings must be merged per study)")
    return df


def read_study_ids(source: Any, id_column: str = "study_id") -> list[str]:
    """Study ids from an iterable, a ``.txt`` file (one id a line) or a table file with ``id_column``."""
    if source is None:
        return []
    if not isinstance(source, (str, Path)):
        return [str(s) for s in source]
    path = Path(source)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise FileNotFoundError(f"study list not found: {path}")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    df = _read_table(path, "study list")
    if id_column not in df.columns:
        raise ValueError(f"{path}: no id column {id_column!r} (columns: {list(df.columns)}); pass id_column")
    return df[id_column].astype(str).tolist()
