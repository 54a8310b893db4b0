"""labels.parquet I/O: one row per study; per class C ``label:C``, ``rate:C``, ``certainty:C`` (float32).

Layout (docs/schemas.md): ``study_id`` then, per class in vocabulary order, ``label:C`` (1, 0 or NaN =
ignore), ``rate:C`` (GLS rate r in (-1, 1); 0 when not mentioned), ``certainty:C`` (p; NaN when not
mentioned). Parquet schema metadata key ``repgls`` holds JSON ``{"vocab", "classes", "policy", "r0",
"version", ...}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from repgls._io import atomic_path, reading

META_KEY = b"repgls"
FIELDS = ("label", "rate", "certainty")


@dataclass
class LabelTable:
    """Per-study labels for K classes.

    Attributes:
        study_ids: str array [N].
        classes: class names [K] in vocabulary order.
        y: labels float32 [N, K] (1, 0, NaN = ignore).
        r: GLS rates float32 [N, K] in (-1, 1).
        p: certainties float32 [N, K] (NaN = not mentioned).
        meta: the ``repgls`` metadata (vocab, classes, policy, r0, version, ...).
    """

    study_ids: np.ndarray
    classes: tuple[str, ...]
    y: np.ndarray
    r: np.ndarray
    p: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.study_ids)

    @property
    def mask(self) -> np.ndarray:
        """float32 [N, K]: 1 where the class is supervised (y not NaN)."""
        return (~np.isnan(self.y)).astype(np.float32)

    @property
    def target(self) -> np.ndarray:
        """GLS target t = (1 - r) y + r / 2, float32 [N, K] (NaN where ignored)."""
        return ((1.0 - self.r) * self.y + self.r / 2.0).astype(np.float32)

    def to_frame(self) -> pd.DataFrame:
        """The labels.parquet layout as a DataFrame (``attrs["repgls"]`` holds the metadata)."""
        cols: dict[str, Any] = {"study_id": self.study_ids.astype(str)}
        for k, c in enumerate(self.classes):
            cols[f"label:{c}"] = self.y[:, k]
            cols[f"rate:{c}"] = self.r[:, k]
            cols[f"certainty:{c}"] = self.p[:, k]
        df = pd.DataFrame(cols)
        df.attrs["repgls"] = dict(self.meta)
        return df

    @classmethod
    def from_frame(cls, df: pd.DataFrame, meta: dict[str, Any] | None = None,
                   where: str = "labels") -> LabelTable:
        """Build from a DataFrame in the labels layout; classes come from meta or the column order."""
        meta = dict(meta if meta is not None else df.attrs.get("repgls", {}))
        if "study_id" not in df.columns:
            raise ValueError(f"{where}: no 'study_id' column")
        classes = tuple(meta.get("classes") or [c[len("label:"):] for c in df.columns if c.startswith("label:")])
        if not classes:
            raise ValueError(f"{where}: no 'label:<class>' columns")
        missing = [f"{f}:{c}" for c in classes for f in FIELDS if f"{f}:{c}" not in df.columns]
        if missing:
            raise ValueError(f"{where}: missing column(s) {missing[:6]}{' ...' if len(missing) > 6 else ''}")

        def block(f: str) -> np.ndarray:
            arr = df[[f"{f}:{c}" for c in classes]].to_numpy(dtype=np.float32)
            return np.array(arr, dtype=np.float32, copy=True).reshape(len(df), len(classes))  # writable

        meta.setdefault("classes", list(classes))
        return cls(df["study_id"].astype(str).to_numpy(), classes, block("label"), block("rate"),
                   block("certainty"), meta)


def write_labels(labels: LabelTable | pd.DataFrame, path: str | Path) -> Path:
    """Write labels.parquet (float32 columns, metadata under the ``repgls`` key); returns the path."""
    table = labels if isinstance(labels, LabelTable) else LabelTable.from_frame(labels)
    df = table.to_frame()
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    arrow = arrow.replace_schema_metadata({META_KEY: json.dumps(table.meta).encode()})
    with atomic_path(path) as tmp:  # a failed write leaves no half file
        pq.write_table(arrow, tmp)
    return Path(path)


def read_labels(path: str | Path) -> LabelTable:
    """Read a labels.parquet written by ``repgls rates`` (or any file in that layout)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    with reading(path, "Parquet"):
        arrow = pq.read_table(path)
    raw = (arrow.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    return LabelTable.from_frame(arrow.to_pandas(), meta=meta, where=str(path))
