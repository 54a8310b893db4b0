"""Report readers: CSV / TSV / JSONL / Parquet tables, a MIMIC-CXR ``files/pXX/pN/sN.txt`` tree, text files, stdin.

Every reader streams ``(study_id, text)`` pairs in batches (bounded memory), so the miners (rules and LLM)
share one input path: :func:`iter_reports` (pairs) and :func:`iter_report_batches` (lists of pairs).
Undecodable bytes are replaced (U+FFFD) and counted, never fatal. A file that cannot be read (missing, empty,
binary, truncated, malformed) raises one ``ValueError("<path>: <what is wrong>")`` and never echoes its bytes.
A one-column CSV whose first row reads like a report has no header (the CheXpert labeler's input format).
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from repgls._io import check_text_file, reading

ID_CANDIDATES = ("study_id", "id", "uid", "report_id", "filename", "accession", "dicom_id")
TEXT_CANDIDATES = ("report", "text", "reports", "report_text", "Report Impression", "Reports", "impression",
                   "findings")
FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt", "mimic")
_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
        ".parquet": "parquet", ".pq": "parquet", ".txt": "txt"}


@dataclass
class ReadStats:
    """Counters filled while reading (shared by the CLI summary)."""

    reports: int = 0
    undecodable: int = 0
    headerless: bool = False  # a CSV / TSV read without a header row (detected or --no-header)
    seen: set[str] = field(default_factory=set, repr=False)


def detect_format(source: str | Path, input_format: str | None = None) -> str:
    """The input format: explicit, else from the path (directory = MIMIC tree, "-" = txt)."""
    if input_format:
        if input_format not in FORMATS:
            raise ValueError(f"unknown input format {input_format!r}; choose one of {', '.join(FORMATS)}")
        return input_format
    if str(source) == "-":
        return "txt"
    p = Path(source)
    if p.is_dir():
        return "mimic"
    suffixes = [s.lower() for s in p.suffixes]
    for s in reversed(suffixes):
        if s in _EXT:
            return _EXT[s]
    raise ValueError(f"{source}: cannot tell the format from the name; pass --input-format ({', '.join(FORMATS)})")


def _reads_like_text(name: str) -> bool:
    """A header cell that is rather a report (several words, or a sentence): never shown, maybe no header."""
    return len(name.split()) >= 4 or ". " in name or len(name) > 60


def _show_columns(columns: list[str], limit: int = 12) -> str:
    """Column names for an error message; a name that reads like report text is not printed (patient data)."""
    shown = [f"<{len(c)} characters>" if _reads_like_text(c) else
             "".join(ch if ch.isprintable() else "?" for ch in c) for c in map(str, columns[:limit])]
    return ", ".join(shown) + (f", ... ({len(columns)} columns)" if len(columns) > limit else "")


def _pick(columns: list[str], wanted: list[str] | None, candidates: tuple[str, ...], what: str,
          where: str, required: bool) -> list[str]:
    if wanted:
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise ValueError(f"{where}: no {what} column {', '.join(map(repr, missing))}; "
                             f"columns are: {_show_columns(columns)}")
        return list(wanted)
    for c in candidates:
        if c in columns:
            return [c]
    if required:
        hint = " (or --no-header if its first row is a report)" if len(columns) == 1 else ""
        raise ValueError(f"{where}: no {what} column found (tried {', '.join(candidates)}); pass --{what}-col"
                         f"{hint}; columns are: {_show_columns(columns)}")
    return []


def headerless(columns: list[str], header: bool | None, text_cols: list[str] | None, id_col: str | None) -> bool:
    """Whether a CSV / TSV has no header row: ``header=False``, or (``header=None``, no column named by the
    caller) one column whose name is no known id / text column and reads like a report."""
    if header is not None:
        return not header
    if text_cols or id_col or len(columns) != 1:
        return False
    name = str(columns[0])
    return name not in TEXT_CANDIDATES + ID_CANDIDATES and _reads_like_text(name)


def _clean(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def join_text(values: list[Any], columns: list[str]) -> str:
    """One report text from several columns: "FINDINGS:\\n...\\n\\nIMPRESSION:\\n..." (headers only if > 1 column).

    The headers let ``--sections`` pick the parts; spans index this joined text.
    """
    if len(columns) == 1:
        return _clean(values[0])
    parts = []
    for col, v in zip(columns, values, strict=False):
        t = _clean(v).strip()
        if t:
            parts.append(f"{col.replace('_', ' ').upper()}:\n{t}")
    return "\n\n".join(parts)


def _open_binary(source: str | Path) -> BinaryIO:
    if str(source) == "-":
        return sys.stdin.buffer
    return open(source, "rb")


def _table_batches(source: str | Path, fmt: str, batch_size: int,
                   no_header: Any = None) -> tuple[list[str], Iterator[Any]]:
    """(column names, iterator of pandas DataFrames) for csv/tsv/jsonl/parquet. ``no_header(columns)`` says
    whether a CSV / TSV has no header row (its one column is then named ``report``)."""
    import pandas as pd

    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(sys.stdin.buffer if str(source) == "-" else source)
        cols = pf.schema_arrow.names

        def gen_pq(columns: list[str]) -> Iterator[Any]:
            for b in pf.iter_batches(batch_size=batch_size, columns=columns):
                yield b.to_pandas()

        return cols, gen_pq  # type: ignore[return-value]
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        fh = _open_binary(source)
        if str(source) == "-":
            fh = io.BytesIO(fh.read())  # pandas needs to read the header twice
        head = pd.read_csv(fh, sep=sep, nrows=0, encoding="utf-8", encoding_errors="replace")
        cols = [str(c) for c in head.columns]
        fh.seek(0)
        names: dict[str, Any] = {}
        if no_header is not None and no_header(cols):
            cols, names = ["report"], {"header": None, "names": ["report"]}

        def gen_csv(columns: list[str]) -> Iterator[Any]:
            yield from pd.read_csv(fh, sep=sep, usecols=columns, dtype=str, keep_default_na=False,
                                   na_values=[""], chunksize=batch_size, encoding="utf-8",
                                   encoding_errors="replace", **names)

        return cols, gen_csv  # type: ignore[return-value]
    if fmt == "jsonl":
        fh = _open_binary(source)
        data = fh.read() if str(source) == "-" else None
        stream = io.BytesIO(data) if data is not None else fh
        first = b""
        for line in stream:
            if line.strip():
                first = line
                break
        try:
            cols = list(json.loads(first.decode("utf-8", errors="replace")).keys()) if first else []
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: line 1 is not JSON ({e.msg})") from None
        stream.seek(0)

        def gen_jsonl(columns: list[str]) -> Iterator[Any]:
            buf: list[dict[str, Any]] = []
            for n, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8", errors="replace"))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{source}: line {n} is not JSON ({e.msg})") from None
                buf.append({c: obj.get(c) for c in columns})
                if len(buf) >= batch_size:
                    yield pd.DataFrame(buf, columns=columns)
                    buf = []
            if buf:
                yield pd.DataFrame(buf, columns=columns)

        return cols, gen_jsonl  # type: ignore[return-value]
    raise ValueError(f"not a table format: {fmt}")


def _iter_table(source: str | Path, fmt: str, id_col: str | None, text_cols: list[str] | None,
                batch_size: int, header: bool | None, stats: ReadStats) -> Iterator[list[tuple[str, str]]]:
    where = str(source) if str(source) != "-" else "<stdin>"

    def no_header(columns: list[str]) -> bool:
        stats.headerless = headerless(columns, header, text_cols, id_col)
        return stats.headerless

    cols, gen = _table_batches(source, fmt, batch_size, no_header)
    tcols = _pick(cols, text_cols, TEXT_CANDIDATES, "text", where, required=True)
    icols = _pick(cols, [id_col] if id_col else None, ID_CANDIDATES, "id", where, required=False)
    use = list(dict.fromkeys(icols + tcols))
    row0 = 0
    for df in gen(use):
        n = len(df)
        ids = df[icols[0]].map(_clean).tolist() if icols else [str(row0 + i + 1) for i in range(n)]
        if len(tcols) == 1:
            texts = df[tcols[0]].map(_clean).tolist()
        else:
            cols_vals = [df[c].tolist() for c in tcols]
            texts = [join_text([cv[i] for cv in cols_vals], tcols) for i in range(n)]
        row0 += n
        yield list(zip(ids, texts, strict=False))


def _iter_txt(source: str | Path, batch_size: int) -> Iterator[list[tuple[str, str]]]:
    """A .txt file or stdin: one report per line, ids are line numbers (1-based)."""
    fh = _open_binary(source)
    batch: list[tuple[str, str]] = []
    try:
        for n, raw in enumerate(fh, start=1):
            batch.append((str(n), raw.decode("utf-8", errors="replace").rstrip("\r\n")))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def _iter_tree(root: Path, batch_size: int) -> Iterator[list[tuple[str, str]]]:
    """A MIMIC-CXR reports tree (``files/pXX/pNNNNNNNN/sNNNNNNNN.txt``) or any folder of .txt reports.

    Study id = file stem (``sNNNNNNNN``); files are read in sorted path order (deterministic).
    """
    paths = sorted(root.rglob("*.txt"))
    if not paths:
        raise ValueError(f"{root}: no .txt reports found under this folder")
    batch: list[tuple[str, str]] = []
    for p in paths:
        batch.append((p.stem, p.read_bytes().decode("utf-8", errors="replace")))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


#: What each format is called in error messages.
KINDS = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSON lines", "parquet": "Parquet", "txt": "text", "mimic": "folder"}


def _guarded(batches: Iterator[list[tuple[str, str]]], where: str, kind: str) -> Iterator[list[tuple[str, str]]]:
    """``batches`` with any reader failure, at open or mid-file, turned into ``ValueError("<where>: ...")``."""
    it = iter(batches)
    while True:
        with reading(where, kind):
            batch = next(it, None)
        if batch is None:
            return
        yield batch


def iter_report_batches(source: Any, *, id_col: str | None = None, text_col: str | list[str] | None = None,
                        input_format: str | None = None, allow_duplicates: bool = False,
                        stats: ReadStats | None = None, batch_size: int = 2000,
                        header: bool | None = None) -> Iterator[list[tuple[str, str]]]:
    """Stream ``(study_id, text)`` batches from a file path, folder, "-" (stdin), a DataFrame or pairs.

    Args:
        source: path (CSV/TSV/JSONL/Parquet/.txt), MIMIC-CXR folder, "-", a pandas DataFrame, or an iterable of
            ``(study_id, text)`` pairs or of plain strings (ids "1", "2", ...).
        id_col: id column (default: the first of ID_CANDIDATES present, else the row number).
        text_col: text column(s); several are joined with section headers (see :func:`join_text`).
        allow_duplicates: if False a repeated study id raises ValueError naming the row.
        stats: counters to fill (reports, undecodable, headerless).
        header: CSV / TSV: the first row is a header (True), a report (False), or detected (None: a one-column
            file whose first row reads like a report has no header, as the CheXpert labeler's input).

    Raises:
        ValueError: unknown format, missing column (names the columns that exist), duplicate id, bad JSON line,
            a file that is missing, empty, binary or truncated (always ``"<path>: <what is wrong>"``).
    """
    stats = stats if stats is not None else ReadStats()
    tcols = [text_col] if isinstance(text_col, str) else (list(text_col) if text_col else None)
    gen: Iterator[list[tuple[str, str]]]
    where = "input"
    if isinstance(source, (str, Path)):
        where = str(source) if str(source) != "-" else "<stdin>"
        if str(source) != "-" and not Path(source).exists():
            raise ValueError(f"{source}: no such file or folder")
        fmt = detect_format(source, input_format)
        if fmt == "mimic":
            gen = _iter_tree(Path(source), batch_size)
        else:
            if str(source) != "-" and fmt != "parquet":
                check_text_file(source, KINDS[fmt])
            inner = (_iter_txt(source, batch_size) if fmt == "txt"
                     else _iter_table(source, fmt, id_col, tcols, batch_size, header, stats))
            gen = _guarded(inner, where, KINDS[fmt])
    elif hasattr(source, "columns") and hasattr(source, "iloc"):  # pandas DataFrame
        cols = [str(c) for c in source.columns]
        tc = _pick(cols, tcols, TEXT_CANDIDATES, "text", "DataFrame", required=True)
        ic = _pick(cols, [id_col] if id_col else None, ID_CANDIDATES, "id", "DataFrame", required=False)

        def gen_df() -> Iterator[list[tuple[str, str]]]:
            for s in range(0, len(source), batch_size):
                df = source.iloc[s:s + batch_size]
                ids = df[ic[0]].map(_clean).tolist() if ic else [str(s + i + 1) for i in range(len(df))]
                vals = [df[c].tolist() for c in tc]
                yield [(ids[i], join_text([v[i] for v in vals], tc)) for i in range(len(df))]

        gen = gen_df()
    else:
        def gen_pairs() -> Iterator[list[tuple[str, str]]]:
            batch: list[tuple[str, str]] = []
            for n, item in enumerate(source, start=1):
                if isinstance(item, (tuple, list)) and len(item) == 2:
                    batch.append((_clean(item[0]), _clean(item[1])))
                else:
                    batch.append((str(n), _clean(item)))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch

        gen = gen_pairs()
    for batch in gen:
        for sid, text in batch:
            stats.reports += 1
            if "\ufffd" in text:
                stats.undecodable += 1
            if not allow_duplicates:
                if sid in stats.seen:
                    raise ValueError(f"{where}: row {stats.reports}: duplicate study id {sid!r} "
                                     "(pass --allow-duplicates to keep every row)")
                stats.seen.add(sid)
        yield batch


def iter_reports(source: Any, **kwargs: Any) -> Iterator[tuple[str, str]]:
    """Stream ``(study_id, text)`` pairs; same arguments as :func:`iter_report_batches`."""
    for batch in iter_report_batches(source, **kwargs):
        yield from batch
