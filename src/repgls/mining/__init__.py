"""Report mining: radiology report text -> graded findings (one row per study and finding, FINDINGS_SCHEMA).

Public API:
    mine_report(text, vocab="chexpert14", sections=None) -> list[dict]
    mine(reports, vocab=..., ...) -> pyarrow.Table                    (in memory)
    mine_to_file(reports, out, fmt="parquet", ...) -> MineSummary     (streamed, bounded memory, --workers)
The rule engine is :mod:`repgls.mining.rules`; readers/writers are shared with the LLM miner (llm.py).
No heavy imports here: ``repgls mine`` starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from repgls._io import ignore_sigint
from repgls.mining.readers import ReadStats, iter_report_batches, iter_reports
from repgls.mining.rules import RuleMiner, get_miner
from repgls.mining.schema import FINDINGS_SCHEMA, validate_findings
from repgls.mining.writers import FindingsWriter, rows_to_table

__all__ = ["FINDINGS_SCHEMA", "MineSummary", "RuleMiner", "iter_reports", "mine", "mine_report", "mine_to_file",
           "validate_findings"]


@dataclass
class MineSummary:
    """Counts of a mining run (printed by the CLI; never contains report text)."""

    reports: int = 0
    findings: int = 0
    empty: int = 0
    undecodable: int = 0
    seconds: float = 0.0
    out: str = ""
    headerless: bool = False  # the CSV input was read without a header row

    @property
    def reports_per_s(self) -> float:
        return self.reports / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.reports} reports, {self.findings} findings, {self.empty} empty, "
                f"{self.undecodable} with undecodable bytes, {self.reports_per_s:,.0f} reports/s"
                + ("; the input has no header row (one report per row)" if self.headerless else ""))


def _sections(sections: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if sections is None:
        return None
    if isinstance(sections, str):
        sections = [s for s in sections.split(",")]
    out = tuple(s.strip().lower() for s in sections if s.strip())
    return out or None


def mine_report(text: str, vocab: str = "chexpert14", sections: str | list[str] | None = None,
                study_id: str = "") -> list[dict[str, Any]]:
    """Mine one report; returns one dict per finding mentioned (FINDINGS_SCHEMA columns).

    Example:
        >>> [(f["finding"], f["status"]) for f in mine_report("No effusion. Mild cardiomegaly.")]
        [('Cardiomegaly', 'positive'), ('Pleural Effusion', 'negative')]
    """
    return get_miner(vocab, _sections(sections)).mine_report(text, study_id)


# --------------------------------------------------------------------------- multiprocessing
_WORKER: dict[str, Any] = {}


def _init_worker(vocab: str, sections: tuple[str, ...] | None, pool: bool = False) -> None:
    if pool:  # Ctrl-C is the parent's to handle: no traceback per worker
        ignore_sigint()
    _WORKER["miner"] = get_miner(vocab, sections)


def _work(batch: list[tuple[str, str]]) -> tuple[pa.Table, int]:
    """Mine one batch into an Arrow table. Building the table here (in the worker) keeps the parent's share
    of the work (read, dispatch, write) small, so throughput scales with workers."""
    miner: RuleMiner = _WORKER["miner"]
    rows: list[tuple] = []
    empty = 0
    for sid, text in batch:
        if not text or not text.strip():
            empty += 1
            continue
        rows.extend(miner.mine_rows(text, sid))
    return rows_to_table(rows), empty


def _mine_batches(batches: Iterator[list[tuple[str, str]]], vocab: str, sections: tuple[str, ...] | None,
                  workers: int) -> Iterator[tuple[list[tuple[str, str]], pa.Table, int]]:
    """Yield (batch, findings table, n_empty) in input order; ``workers`` > 1 uses a process pool over batches."""
    if workers <= 1:
        _init_worker(vocab, sections)
        for b in batches:
            rows, empty = _work(b)
            yield b, rows, empty
        return
    import multiprocessing as mp
    from collections import deque

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(vocab, sections, True)) as pool:
        pending: deque = deque()
        for b in batches:  # bounded read-ahead: at most 2 batches per worker in flight
            pending.append((b, pool.apply_async(_work, (b,))))
            while len(pending) >= 2 * workers:
                pb, res = pending.popleft()
                yield (pb, *res.get())
        while pending:
            pb, res = pending.popleft()
            yield (pb, *res.get())


def mine(reports: Any, *, vocab: str = "chexpert14", sections: str | list[str] | None = None,
         id_col: str | None = None, text_col: str | list[str] | None = None, input_format: str | None = None,
         workers: int = 1, allow_duplicates: bool = False, header: bool | None = None) -> pa.Table:
    """Mine many reports into one in-memory findings table (FINDINGS_SCHEMA).

    Args:
        reports: a file path (CSV/TSV/JSONL/Parquet/.txt), a MIMIC-CXR folder, a DataFrame, or an iterable of
            ``(study_id, text)`` pairs or plain strings. See :func:`repgls.mining.readers.iter_report_batches`.
        vocab: chexpert14 | nih14 | ltml39 | a YAML path.
        sections: mine only these sections ("impression,findings"); whole text when none is present.
        workers: processes (1 = in-process).
        header: CSV / TSV has a header row (True), none (False), or detected (None).
    """
    secs = _sections(sections)
    get_miner(vocab, secs)  # compile (and validate) before reading
    batches = iter_report_batches(reports, id_col=id_col, text_col=text_col, input_format=input_format,
                                  allow_duplicates=allow_duplicates, header=header)
    tables = [t for _b, t, _e in _mine_batches(batches, vocab, secs, workers)]
    return pa.concat_tables(tables) if tables else rows_to_table([])


def mine_to_file(reports: Any, out: str | Path, *, fmt: str = "parquet", vocab: str = "chexpert14",
                 sections: str | list[str] | None = None, id_col: str | None = None,
                 text_col: str | list[str] | None = None, input_format: str | None = None, workers: int = 1,
                 allow_duplicates: bool = False, batch_size: int = 2000,
                 progress: Callable[[int], None] | None = None, header: bool | None = None) -> MineSummary:
    """Stream reports through the rule miner into ``out`` (parquet | csv | chexpert-csv); bounded memory.

    ``progress`` (optional) is called with the number of reports done after each batch; ``header`` as in
    :func:`mine`.
    Raises ValueError (bad input, unwritable out) before writing anything under the final name.
    """
    secs = _sections(sections)
    miner = get_miner(vocab, secs)
    writer = FindingsWriter(out, fmt, miner.classes, meta={"vocab": miner.lex.vocab.name, "classes":
                                                           list(miner.classes), "source": "rules",
                                                           "lexicon_version": miner.lexicon_version})
    stats = ReadStats()
    summary = MineSummary(out=str(out))
    t0 = time.perf_counter()
    try:
        batches = iter_report_batches(reports, id_col=id_col, text_col=text_col, input_format=input_format,
                                      allow_duplicates=allow_duplicates, stats=stats, batch_size=batch_size,
                                      header=header)
        for batch, table, empty in _mine_batches(batches, vocab, secs, workers):
            writer.write(batch, table)
            summary.findings += table.num_rows
            summary.empty += empty
            summary.reports += len(batch)
            if progress is not None:
                progress(summary.reports)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    summary.undecodable = stats.undecodable
    summary.headerless = stats.headerless
    summary.seconds = time.perf_counter() - t0
    return summary
