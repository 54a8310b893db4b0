"""``rates``: findings (one row per study and finding mentioned) -> labels (one row per study, per class)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from repgls.mining.schema import STATUSES
from repgls.rates.labels import LabelTable
from repgls.rates.mapping import DEFAULT_CLIP, DEFAULT_R0, POLICIES, map_mentions, unmentioned_value

REQUIRED = ("study_id", "finding", "status", "certainty")


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """Read a CSV / TSV / JSONL / Parquet file into a DataFrame (ids kept as strings)."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        return pd.read_parquet(path)
    if suffix.endswith(".jsonl") or suffix.endswith(".ndjson"):
        return pd.read_json(path, lines=True, dtype=False)
    if suffix.endswith(".tsv") or suffix.endswith(".tab"):
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    raise ValueError(f"{path}: unsupported {what} format (use .parquet, .csv, .tsv or .jsonl)")


def read_findings(findings: Any, vocab_classes: tuple[str, ...] | None = None,
                  where: str = "findings") -> pd.DataFrame:
    """Findings (path, pyarrow Table or DataFrame) -> DataFrame checked row by row.

    Needs ``study_id``, ``finding``, ``status``, ``certainty``; other columns of FINDINGS_SCHEMA are kept.

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
                             f"vocabulary ({', '.join(vocab_classes)})")
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


def rates(findings: Any, vocab: str = "chexpert14", policy: str = "gls", r0: float = DEFAULT_R0,
          studies: Iterable[str] | str | Path | None = None, unmentioned: str = "zero",
          clip: float = DEFAULT_CLIP, rgn: Any = None, id_column: str = "study_id") -> pd.DataFrame:
    """Turn findings into per-study labels, GLS rates and certainties (the labels.parquet layout).

    Args:
        findings: findings.parquet path, pyarrow Table or DataFrame (FINDINGS_SCHEMA; needs at least
            study_id, finding, status, certainty, and ``sentence`` when ``rgn`` is given).
        vocab: vocabulary name or YAML path; fixes the classes and their order (K).
        policy: ``gls`` (default mapping), ``u-ones``, ``u-zeros``, ``u-ignore`` or ``hard``
            (see :mod:`repgls.rates.mapping`).
        r0: sharpening offset (<= 0) added to the rate of definite statements only (gls policy).
        studies: all study ids (iterable, ``.txt`` file or a table file with ``id_column``, e.g. the
            reports file), so studies with no finding mentioned keep a row. Findings' studies are
            always included; order: the given list first, then unseen findings studies, sorted.
        unmentioned: ``zero`` (y = 0, r = 0) or ``ignore`` (y = NaN, masked) for classes not mentioned.
        clip: |r| is clipped to this value (< 1).
        rgn: an RGN checkpoint folder or a loaded :class:`repgls.rates.rgn.RGN`; its predicted rates
            replace the mapped rates of mentioned classes (gls policy only; y still from the findings).
        id_column: id column of a table file given as ``studies``.

    Returns:
        DataFrame with ``study_id``, ``label:C``, ``rate:C``, ``certainty:C`` (float32) per class C;
        ``df.attrs["repgls"]`` holds the metadata written to the parquet file.
    """
    from repgls.vocab import load_vocab

    voc = load_vocab(vocab)
    classes = voc.classes
    df = read_findings(findings, classes)
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if rgn is not None and policy != "gls":
        raise ValueError(f"an RGN gives GLS rates; it cannot be combined with policy {policy!r}")
    fill = unmentioned_value(unmentioned)

    given = read_study_ids(studies, id_column)
    seen = set(given)
    extra = sorted(set(df["study_id"]) - seen)
    study_ids = list(dict.fromkeys(given)) + extra
    row = {s: i for i, s in enumerate(study_ids)}
    col = {c: k for k, c in enumerate(classes)}
    n, k = len(study_ids), len(classes)

    y = np.full((n, k), fill, dtype=np.float32)
    r = np.zeros((n, k), dtype=np.float32)
    p = np.full((n, k), np.nan, dtype=np.float32)
    my, mr = map_mentions(df["status"].to_numpy(object), df["certainty"].to_numpy(), policy, r0, clip)
    meta: dict[str, Any] = {"vocab": voc.name, "vocab_version": voc.version, "classes": list(classes),
                            "policy": policy, "r0": r0 if policy == "gls" else 0.0, "clip": clip,
                            "unmentioned": unmentioned, "version": _version(), "rgn": None}
    if rgn is not None:
        from repgls.rates.rgn import RGN

        model = rgn if isinstance(rgn, RGN) else RGN.load(rgn)
        if tuple(model.classes) != tuple(classes):
            raise ValueError(f"RGN classes {model.classes} differ from vocabulary {voc.name!r} classes")
        mr = np.clip(model.predict(df), -clip, clip).astype(np.float32)
        meta["rgn"] = {"path": str(rgn) if not isinstance(rgn, RGN) else None, "config": model.config_summary()}
    ri = df["study_id"].map(row).to_numpy(dtype=np.int64)
    ci = df["finding"].map(col).to_numpy(dtype=np.int64)
    y[ri, ci] = my
    r[ri, ci] = mr
    p[ri, ci] = df["certainty"].to_numpy(dtype=np.float32)
    json.dumps(meta)  # metadata must stay JSON-serialisable
    return LabelTable(np.asarray(study_ids, dtype=str), tuple(classes), y, r, p, meta).to_frame()


def _version() -> str:
    from repgls import __version__

    return __version__
