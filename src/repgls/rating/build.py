"""``rates``: findings (one row per study and finding mentioned) -> labels (one row per study, per class)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls.rating.findings import findings_vocab, read_findings, read_study_ids
from repgls.rating.labels import LabelTable
from repgls.rating.mapping import DEFAULT_CLIP, DEFAULT_R0, POLICIES, map_mentions, unmentioned_value


def rates(findings: Any, vocab: str | None = None, policy: str = "gls", r0: float = DEFAULT_R0,
          studies: Iterable[str] | str | Path | None = None, unmentioned: str = "zero",
          clip: float = DEFAULT_CLIP, rgn: Any = None, id_column: str = "study_id") -> pd.DataFrame:
    """Turn findings into per-study labels, GLS rates and certainties (the labels.parquet layout).

    Args:
        findings: findings.parquet path, pyarrow Table or DataFrame (FINDINGS_SCHEMA; needs at least
            study_id, finding, status, certainty, and ``sentence`` when ``rgn`` is given).
        vocab: vocabulary name or YAML path; fixes the classes and their order (K). Default: the one the
            findings were mined with (their metadata), else chexpert14.
        policy: ``gls`` (default mapping), ``u-ones``, ``u-zeros``, ``u-ignore`` or ``hard``
            (see :mod:`repgls.rating.mapping`).
        r0: sharpening offset (<= 0) added to the rate of definite statements only (gls policy).
        studies: all study ids (iterable, ``.txt`` file or a table file with ``id_column``, e.g. the
            reports file), so studies with no finding mentioned keep a row. Findings' studies are
            always included; order: the given list first, then unseen findings studies, sorted.
        unmentioned: ``zero`` (y = 0, r = 0) or ``ignore`` (y = NaN, masked) for classes not mentioned.
        clip: |r| is clipped to this value (< 1).
        rgn: an RGN checkpoint folder or a loaded :class:`repgls.rating.rgn.RGN`; its predicted rates
            replace the mapped rates of mentioned classes (gls policy only; y still from the findings).
        id_column: id column of a table file given as ``studies``.

    Returns:
        DataFrame with ``study_id``, ``label:C``, ``rate:C``, ``certainty:C`` (float32) per class C;
        ``df.attrs["repgls"]`` holds the metadata written to the parquet file.
    """
    voc, hint = _vocabulary(findings, vocab)
    classes = voc.classes
    df = read_findings(findings, classes, vocab_hint=hint)
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
        from repgls.rating.rgn import RGN

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


def _vocabulary(findings: Any, vocab: str | None) -> tuple[Any, str]:
    """The vocabulary to build labels in (given, else the findings' own, else chexpert14) and the hint an
    unknown-class error ends with (which vocabulary the findings were mined with)."""
    from repgls.vocab import load_vocab

    mined = findings_vocab(findings)
    where = str(findings) if isinstance(findings, (str, Path)) else "the findings"
    if vocab is None and mined is not None:
        try:
            return load_vocab(mined), ""
        except ValueError:
            raise ValueError(f"{where}: mined with vocabulary {mined!r}, which is not built in; pass --vocab "
                             "with its YAML file") from None
    voc = load_vocab(vocab or "chexpert14")
    hint = ""
    if mined is not None and mined != voc.name:
        hint = (f"; {where} was mined with vocabulary {mined!r}, not {voc.name!r}: pass --vocab {mined} "
                "(or leave --vocab out)")
    return voc, hint


def _version() -> str:
    from repgls import __version__

    return __version__
