"""Findings writers: Parquet (streamed with ParquetWriter), CSV, and the CheXpert labeler's wide CSV.

Writes go to ``<out>.part`` and are renamed on success, so a crash never leaves a half file under the
final name; :func:`check_writable` runs before any work so an unwritable ``--out`` fails at once.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from repgls._io import check_writable as _check_writable
from repgls.mining.schema import FINDINGS_COLUMNS, FINDINGS_SCHEMA

OUT_FORMATS = ("parquet", "csv", "chexpert-csv")
# CheXpert labeler encoding (labeled_reports.csv): positive 1.0, negative 0.0, uncertain -1.0, blank = unmentioned.
CHEXPERT_CODE = {"positive": "1.0", "negative": "0.0", "uncertain": "-1.0"}


def check_writable(out: str | Path) -> Path:
    """Fail early (ValueError) if ``out`` cannot be written: missing folder, a folder, no permission, a
    read-only file system (:func:`repgls._io.check_writable`; the folder must exist)."""
    return _check_writable(out, parents=False, what="--out")


def rows_to_table(rows: list[tuple]) -> pa.Table:
    """Row tuples (FINDINGS_COLUMNS order) -> a pyarrow Table with FINDINGS_SCHEMA."""
    cols = list(zip(*rows, strict=False)) if rows else [[] for _ in FINDINGS_COLUMNS]
    return pa.table({name: pa.array(list(col), type=FINDINGS_SCHEMA.field(name).type)
                     for name, col in zip(FINDINGS_COLUMNS, cols, strict=False)}, schema=FINDINGS_SCHEMA)


class FindingsWriter:
    """Streamed writer for one output file.

    Args:
        out: output path; fmt: parquet | csv | chexpert-csv; classes: vocabulary classes (wide CSV columns);
        meta: JSON-able dict stored in the Parquet schema metadata under key ``repgls``.
    Use :meth:`write` per batch (the batch's reports and its findings rows), then :meth:`close`.
    """

    def __init__(self, out: str | Path, fmt: str = "parquet", classes: tuple[str, ...] = (),
                 meta: dict[str, Any] | None = None) -> None:
        if fmt not in OUT_FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(OUT_FORMATS)}")
        self.out = check_writable(out)
        self.fmt = fmt
        self.classes = tuple(classes)
        self.part = self.out.with_name(self.out.name + ".part")
        self.rows_written = 0
        self._pq = None
        self._fh = None
        self._csv = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            schema = FINDINGS_SCHEMA.with_metadata({"repgls": json.dumps(meta or {})})
            self._schema = schema
            self._pq = pq.ParquetWriter(self.part, schema, compression="zstd")
        else:
            self._fh = open(self.part, "w", encoding="utf-8", newline="")
            # the CheXpert labeler's file ends lines with "\n" (pandas): byte for byte the same output
            self._csv = csv.writer(self._fh, lineterminator="\n" if fmt == "chexpert-csv" else "\r\n")
            if fmt == "csv":
                self._csv.writerow(FINDINGS_COLUMNS)
            else:
                self._csv.writerow(["Reports", *self.classes])

    def write(self, reports: list[tuple[str, str]], rows: list[tuple] | pa.Table) -> None:
        """Append one batch: ``reports`` = (study_id, text) pairs, ``rows`` = their findings as row tuples
        (FINDINGS_COLUMNS order) or as a FINDINGS_SCHEMA table."""
        if isinstance(rows, pa.Table):
            if self._pq is not None:
                self.rows_written += rows.num_rows
                if rows.num_rows:
                    self._pq.write_table(rows.replace_schema_metadata(self._schema.metadata))
                return
            cols = [rows.column(c).to_pylist() for c in FINDINGS_COLUMNS]
            rows = list(zip(*cols, strict=False)) if rows.num_rows else []
        self.rows_written += len(rows)
        if self._pq is not None:
            if rows:
                self._pq.write_table(rows_to_table(rows).replace_schema_metadata(self._schema.metadata))
        elif self.fmt == "csv":
            self._csv.writerows(rows)
        else:
            by_id: dict[str, dict[str, str]] = {}
            for r in rows:
                by_id.setdefault(r[0], {})[r[1]] = CHEXPERT_CODE[r[2]]
            for sid, text in reports:
                labels = by_id.get(sid, {})
                self._csv.writerow([text, *(labels.get(c, "") for c in self.classes)])

    def write_table(self, reports: list[tuple[str, str]], table: pa.Table) -> None:
        """Append a findings table (e.g. from the LLM miner); validated against FINDINGS_SCHEMA."""
        from repgls.mining.schema import validate_findings

        self.write(reports, validate_findings(table, "findings table"))

    def close(self) -> Path:
        """Finish the file and move it to its final name."""
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()
        os.replace(self.part, self.out)
        return self.out

    def abort(self) -> None:
        """Drop the partial file (after an error)."""
        try:
            if self._pq is not None:
                self._pq.close()
            if self._fh is not None:
                self._fh.close()
        finally:
            if self.part.exists():
                self.part.unlink()
