"""``repgls audit``: one self-contained HTML page to read mined labels against their reports before trusting them.

The page shows each report's text with every mention highlighted by status (positive / negative / uncertain);
certainty, cue, severity, change and typicality on hover and in a side panel; filters by class, status and
certainty band; per-class counts. With ``compare`` (e.g. the rule miner vs the LLM miner, or two lexicon
versions) both readings are shown side by side and the reports where they disagree come first.

Large inputs: the findings are read as Arrow columns and filtered there, the reports are streamed once (the
reader of ``repgls mine``, so ``start``/``end`` index the same text) and only the chosen reports are kept:
at most ``max_reports`` (default :data:`DEFAULT_MAX_REPORTS`), a deterministic hash sample by ``seed`` when
more match. The page holds report text: it is written only to ``out`` (mode 0600), and nothing is logged.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from repgls.mining.schema import FINDINGS_COLUMNS, STATUSES, empty_findings_table, validate_findings

__all__ = ["DEFAULT_MAX_REPORTS", "HARD_MAX_REPORTS", "AuditSummary", "Selection", "audit", "audit_page"]

DEFAULT_MAX_REPORTS = 2000
HARD_MAX_REPORTS = 20000  # ~30 MB of page: what a browser still opens comfortably
DELTA_P = 0.1  # same status, certainties this far apart: listed (after the status disagreements)
MISMATCH_LIMIT = 0.5  # more than this share of placed mentions off the text: the wrong reports file
INDEX_COLUMNS = ["study_id", "finding", "status", "certainty"]
_PLACEHOLDER = "__AUDIT_DATA__"


@dataclass
class Selection:
    """Which reports enter the page: those with at least one mention matching every given filter."""

    classes: list[str] | None = None
    statuses: list[str] | None = None
    min_certainty: float | None = None
    max_certainty: float | None = None
    disagreements_only: bool = False

    def __post_init__(self) -> None:
        bad = [s for s in self.statuses or [] if s not in STATUSES]
        if bad:
            raise ValueError(f"status {', '.join(map(repr, bad))}: choose from {', '.join(STATUSES)}")
        for v in (self.min_certainty, self.max_certainty):
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"certainty bound {v} is not in [0, 1]")

    @property
    def filters_mentions(self) -> bool:
        return bool(self.classes or self.statuses or self.min_certainty is not None
                    or self.max_certainty is not None)

    def describe(self) -> str:
        """Human-readable selection (shown on the page)."""
        parts = []
        if self.classes:
            parts.append("class " + " | ".join(self.classes))
        if self.statuses:
            parts.append("status " + " | ".join(self.statuses))
        if self.min_certainty is not None or self.max_certainty is not None:
            lo = 0.0 if self.min_certainty is None else self.min_certainty
            hi = 1.0 if self.max_certainty is None else self.max_certainty
            parts.append(f"certainty {lo:g} to {hi:g}")
        if self.disagreements_only:
            parts.append("disagreements only")
        return "; ".join(parts)

    def mask(self, index: pa.Table) -> pa.Array:
        """Boolean mask over an index table (INDEX_COLUMNS) of the mentions that match."""
        import pyarrow.compute as pc

        m = pa.array([True] * index.num_rows, pa.bool_())
        if self.classes:
            m = pc.and_(m, pc.is_in(index["finding"], value_set=pa.array(self.classes, pa.string())))
        if self.statuses:
            m = pc.and_(m, pc.is_in(index["status"], value_set=pa.array(self.statuses, pa.string())))
        if self.min_certainty is not None:
            m = pc.and_(m, pc.greater_equal(index["certainty"], self.min_certainty - 1e-6))
        if self.max_certainty is not None:
            m = pc.and_(m, pc.less_equal(index["certainty"], self.max_certainty + 1e-6))
        return pc.fill_null(m, False)


@dataclass
class AuditSummary:
    """What went into the page (counts only: never report text)."""

    out: Path
    reports_read: int = 0
    matched: int = 0
    shown: int = 0
    mentions: int = 0
    disagreements: int = 0
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        dis = f", {self.disagreements:,} with disagreements" if self.disagreements else ""
        return (f"{self.shown:,} reports shown (of {self.matched:,} matching, {self.reports_read:,} read), "
                f"{self.mentions:,} mentions{dis}")


class _Findings:
    """A findings table (Parquet path, Arrow table or DataFrame), read column by column."""

    def __init__(self, source: Any, where: str | None = None) -> None:
        import pyarrow.parquet as pq

        from repgls._io import reading

        self.pf = None
        self.table: pa.Table | None = None
        if isinstance(source, (str, Path)):
            self.where = str(source)
            if not Path(source).is_file():
                raise ValueError(f"{self.where}: file not found")
            with reading(self.where, "Parquet findings table"):
                self.pf = pq.ParquetFile(source, read_dictionary=INDEX_COLUMNS[:3])
            schema = self.pf.schema_arrow
        else:
            self.where = where or "findings"
            self.table = source if isinstance(source, pa.Table) else pa.Table.from_pandas(source,
                                                                                        preserve_index=False)
            schema = self.table.schema
        missing = [c for c in FINDINGS_COLUMNS if c not in schema.names]
        if missing:
            raise ValueError(f"{self.where}: missing column(s) {missing}; has {schema.names}")
        meta = json.loads((schema.metadata or {}).get(b"repgls", b"{}") or b"{}")
        self.source = str(meta.get("source", ""))
        self.lexicon_version = str(meta.get("lexicon_version", ""))

    def index(self) -> pa.Table:
        """The INDEX_COLUMNS of every row, strings dictionary-encoded (light: 1.3 M rows take ~25 MB)."""
        import pyarrow.compute as pc

        if self.pf is not None:
            t = self.pf.read(columns=INDEX_COLUMNS).unify_dictionaries()  # one dictionary over row groups
        else:
            t = self.table.select(INDEX_COLUMNS)
        cols = [t[c] if pa.types.is_dictionary(t[c].type) else pc.dictionary_encode(t[c].cast(pa.string()))
                for c in INDEX_COLUMNS[:3]]
        return pa.table(dict(zip(INDEX_COLUMNS, [*cols, t["certainty"].cast(pa.float32())], strict=True)))

    def rows_for(self, ids: Iterable[str]) -> pa.Table:
        """Every column of the rows of these studies, streamed batch by batch and validated."""
        import pyarrow.compute as pc

        value_set = pa.array(sorted(set(ids)), pa.string())
        cols = list(FINDINGS_COLUMNS)
        batches = self.pf.iter_batches(columns=cols, batch_size=65536) if self.pf is not None else \
            self.table.select(cols).to_batches(max_chunksize=65536)
        parts = []
        for b in batches:
            t = pa.Table.from_batches([b])
            parts.append(t.filter(pc.is_in(t["study_id"].cast(pa.string()), value_set=value_set)))
        table = pa.concat_tables(parts) if parts else empty_findings_table()
        return validate_findings(table, self.where)


def _label(f: _Findings, fallback: str) -> str:
    """Short name of a findings table for the page: file name and source (rules / llm:model)."""
    name = Path(f.where).name if f.pf is not None else fallback
    return f"{name} ({f.source})" if f.source and f.source not in name else name


def _sample_key(seed: int, sid: str) -> int:
    """A stable pseudo-random key per study: the same seed picks the same reports, in any file order."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{sid}".encode(), digest_size=8).digest(), "big")


@dataclass
class _Picked:
    """Reports chosen while streaming the reports file (at most ``cap`` texts kept)."""

    chosen: list[tuple[int, str, str]]  # (row, study id, text)
    read: int
    matched: int
    duplicates: int
    seen: set[str]


def _pick_reports(reports: Any, read_kw: dict[str, Any], wanted: set[str] | None, priority: set[str],
                  cap: int, seed: int) -> _Picked:
    """Stream the reports once; keep the ``cap`` matching reports of smallest (priority, hash) key."""
    from repgls.mining.readers import iter_reports

    heap: list[tuple[int, int, int, str, str]] = []  # max-heap on the key via negation
    seen: set[str] = set()
    read = matched = dups = 0
    for sid, text in iter_reports(reports, allow_duplicates=True, **read_kw):
        read += 1
        if sid in seen:
            dups += 1
            continue
        seen.add(sid)
        if wanted is not None and sid not in wanted:
            continue
        matched += 1
        item = (-(0 if sid in priority else 1), -_sample_key(seed, sid), -read, sid, text)
        if len(heap) < cap:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    chosen = [(-r, sid, text) for _p, _k, r, sid, text in heap]
    return _Picked(chosen=chosen, read=read, matched=matched, duplicates=dups, seen=seen)


def _codes(a: pa.ChunkedArray, b: pa.ChunkedArray) -> tuple[Any, Any, list[str]]:
    """Integer codes of two string columns over one shared dictionary: (codes of a, codes of b, values)."""
    import pyarrow.compute as pc

    both = pa.chunked_array([*a.chunks, *b.chunks]) if a.type == b.type else \
        pa.chunked_array([*a.cast(pa.string()).chunks, *b.cast(pa.string()).chunks])
    if not pa.types.is_dictionary(both.type):
        both = pc.dictionary_encode(both)
    arr = pa.table({"c": both}).unify_dictionaries()["c"].combine_chunks()
    idx = arr.indices.to_numpy(zero_copy_only=False).astype("int64")
    return idx[:len(a)], idx[len(a):], arr.dictionary.to_pylist()


def _disagreements(a: pa.Table, b: pa.Table) -> dict[str, int]:
    """Per study: how many findings the two tables read differently (status differs, or only one has it).

    Integer keys (study code x finding code) and a sorted search in numpy: a join of 1.6 M string rows would
    take hundreds of MB; this takes tens.
    """
    import numpy as np

    sa, sb, ids = _codes(a["study_id"], b["study_id"])
    fa, fb, finds = _codes(a["finding"], b["finding"])
    ta, tb, _ = _codes(a["status"], b["status"])
    nf = max(len(finds), 1)
    ka, kb = sa * nf + fa, sb * nf + fb
    order = np.argsort(kb, kind="stable")
    kb_sorted, tb_sorted = kb[order], tb[order]
    pos = np.minimum(np.searchsorted(kb_sorted, ka), max(len(kb) - 1, 0))
    found = (kb_sorted[pos] == ka) if len(kb) else np.zeros(len(ka), bool)
    differ_a = ~found | (tb_sorted[pos] != ta) if len(kb) else ~found
    only_b = ~np.isin(kb, ka)
    studies = np.concatenate([ka[differ_a], kb[only_b]]) // nf
    counts = np.bincount(studies, minlength=len(ids)) if len(studies) else np.zeros(len(ids), "int64")
    return {ids[i]: int(counts[i]) for i in np.flatnonzero(counts)}


def _class_counts(index: pa.Table) -> dict[str, dict[str, int]]:
    """Mentions per class and status over a whole findings table (the page's "in file" column)."""
    g = index.group_by(["finding", "status"]).aggregate([("study_id", "count")])
    out: dict[str, dict[str, int]] = {}
    for f, s, n in zip(g["finding"].to_pylist(), g["status"].to_pylist(), g["study_id_count"].to_pylist(),
                       strict=True):
        out.setdefault(f, {})[s] = int(n)
    return out


def _placed(text: str, start: int, end: int, sentence: str) -> bool | None:
    """Does [start, end) index this text (inside its sentence)? None when the row has no span: the miner
    located none (-1) or the row is derived ("No Finding": 0..0)."""
    if start is None or end is None or start < 0 or start == end:
        return None
    if not 0 <= start < end <= len(text):
        return False
    if sentence:
        p = text.find(sentence, max(0, end - len(sentence)))
        return 0 <= p <= start
    return True


def _mentions(rows: pa.Table, texts: dict[str, str]) -> tuple[dict[str, list[dict[str, Any]]], int, int]:
    """Page mentions per study, with the offset check; returns (by study, n placed-checked, n off the text)."""
    by: dict[str, list[dict[str, Any]]] = {}
    checked = bad = 0
    for r in rows.to_pylist():
        text = texts.get(r["study_id"])
        if text is None:
            continue
        ok = _placed(text, r["start"], r["end"], r["sentence"] or "")
        if ok is not None:
            checked += 1
            bad += not ok
        m = {"f": r["finding"], "s": r["status"], "p": round(float(r["certainty"]), 3), "cue": r["cue"],
             "sev": r["severity"], "sevc": r["severity_cue"], "chg": r["change"], "chgc": r["change_cue"],
             "typ": r["typicality"], "n": int(r["n_mentions"]), "b": int(r["start"]), "e": int(r["end"]),
             "ok": ok}
        if not ok:
            m["sent"] = r["sentence"] or ""
        by.setdefault(r["study_id"], []).append(m)
    return by, checked, bad


def _check_offsets(checked: int, bad: int, findings: str, reports: str, notes: list[str]) -> None:
    """Refuse a page of garbage highlights; note a few stray spans."""
    if checked and bad / checked > MISMATCH_LIMIT:
        raise ValueError(f"{reports}: the start/end offsets of {bad:,} of {checked:,} mentions in {findings} do "
                         "not match this file's text (wrong reports file, or not the --id-col / --text-col "
                         "that repgls mine used); no page written")
    if bad:
        notes.append(f"{bad:,} of {checked:,} mentions in {findings} have offsets that do not match the text of "
                     f"{reports}; they are listed under their report but not highlighted")


def _write_private(out: Path, content: str) -> None:
    """Write ``out`` atomically, readable by the owner only (the page holds report text)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def render_html(data: dict[str, Any]) -> str:
    """The page: the packaged template with ``data`` as one JSON blob (every ``<``, ``>``, ``&`` escaped, so no
    report text can close the script element) and a CSP that lets only the template's own script run."""
    template = resources.files("repgls.mining").joinpath("audit.html").read_text(encoding="utf-8")
    if template.count(_PLACEHOLDER) != 1:
        raise RuntimeError("mining/audit.html must hold the data placeholder exactly once")
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    blob = (blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    head, _, rest = template.partition("<script>")
    code, _, tail = rest.partition("</script>")
    digest = base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode("ascii")
    head = head.replace("__SCRIPT_HASH__", f"'sha256-{digest}'")
    return f"{head}<script>{code}</script>{tail}".replace(_PLACEHOLDER, blob)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def audit_page(findings: Any, reports: Any, out: str | Path, *, compare: Any = None, sample: int | None = None,
               seed: int = 0, selection: Selection | None = None, max_reports: int = DEFAULT_MAX_REPORTS,
               id_col: str | None = None, text_col: str | list[str] | None = None,
               input_format: str | None = None, header: bool | None = None,
               notify: Callable[[str], None] | None = _stderr) -> AuditSummary:
    """Write the audit page and return what went into it (see :func:`audit` for the arguments)."""
    sel = selection or Selection()
    out = Path(out)
    if max_reports < 1 or (sample is not None and sample < 1):
        raise ValueError("--sample and --max-reports must be >= 1")
    if sel.disagreements_only and compare is None:
        raise ValueError("disagreements only needs a second findings table (--compare)")
    rep_name = str(reports) if isinstance(reports, (str, Path)) else "reports"
    fa = _Findings(findings)
    fb = _Findings(compare, "compare findings") if compare is not None else None
    summary = AuditSummary(out=out)
    ia = fa.index()
    ib = fb.index() if fb is not None else None
    dis = _disagreements(ia, ib) if ib is not None else {}
    wanted = _wanted(sel, ia, ib, dis)
    if max_reports > HARD_MAX_REPORTS:
        summary.notes.append(f"--max-reports {max_reports:,} is above the ceiling of {HARD_MAX_REPORTS:,} reports "
                             f"per page; using {HARD_MAX_REPORTS:,} (filter with --class / --status, or sample)")
        max_reports = HARD_MAX_REPORTS
    cap = min(sample or max_reports, max_reports)
    if sample is not None and sample > max_reports:
        summary.notes.append(f"--sample {sample:,} is above the cap of {max_reports:,} reports per page; "
                             f"sampling {max_reports:,} (raise --max-reports to show more)")
    read_kw = {"id_col": id_col, "text_col": text_col, "input_format": input_format, "header": header}
    picked = _pick_reports(reports, read_kw, wanted, set(dis), cap, seed)
    _reading_notes(picked, ia, ib, sel, summary, rep_name, cap, sample, seed, fa.where, max_reports)
    data = _page_data(picked, fa, fb, dis, sel, summary, rep_name, ia, ib, seed)
    _write_private(out, render_html(data))
    if notify is not None:
        for line in summary.notes:
            notify(line)
    return summary


def _wanted(sel: Selection, ia: pa.Table, ib: pa.Table | None, dis: dict[str, int]) -> set[str] | None:
    """Study ids the selection admits (None: every report, mentioned or not)."""
    import pyarrow.compute as pc

    wanted: set[str] | None = None
    if sel.filters_mentions:
        wanted = set(pc.unique(ia.filter(sel.mask(ia))["study_id"]).to_pylist())
        if ib is not None:
            wanted |= set(pc.unique(ib.filter(sel.mask(ib))["study_id"]).to_pylist())
    if sel.disagreements_only:
        wanted = set(dis) if wanted is None else wanted & set(dis)
    return wanted


def _reading_notes(picked: _Picked, ia: pa.Table, ib: pa.Table | None, sel: Selection, summary: AuditSummary,
                   rep_name: str, cap: int, sample: int | None, seed: int, fname: str, max_reports: int) -> None:
    """Counts and the lines that say what was dropped or sampled (never report text)."""
    import pyarrow.compute as pc

    ids = set(pc.unique(ia["study_id"]).to_pylist()) | (set(pc.unique(ib["study_id"]).to_pylist())
                                                         if ib is not None else set())
    summary.reports_read, summary.matched, summary.shown = picked.read, picked.matched, len(picked.chosen)
    missing = len(ids - picked.seen)
    if ids and missing == len(ids):
        raise ValueError(f"{rep_name}: none of the {len(ids):,} study ids of {fname} is in this file (wrong "
                         "reports file, or not the --id-col that repgls mine used); no page written")
    if missing:
        summary.notes.append(f"{missing:,} studies with findings are not in {rep_name}; they are left out")
    if picked.duplicates:
        summary.notes.append(f"{picked.duplicates:,} repeated study ids in {rep_name}: the first report of "
                             "each is shown")
    if picked.matched > cap:
        why = f"--sample {sample:,}" if sample is not None and sample <= max_reports else \
            f"the cap of {max_reports:,} reports per page (--max-reports)"
        summary.notes.append(f"{picked.matched:,} reports match{f' ({sel.describe()})' if sel.describe() else ''}; "
                             f"the page holds a sample of {cap:,} (seed {seed}, by {why})")


def _certainty_gaps(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    """Findings both readings give the same status but certainties at least DELTA_P apart."""
    pb = {m["f"]: (m["s"], m["p"]) for m in b}
    return sum(1 for m in a if m["f"] in pb and pb[m["f"]][0] == m["s"] and abs(pb[m["f"]][1] - m["p"]) >= DELTA_P)


def _page_data(picked: _Picked, fa: _Findings, fb: _Findings | None, dis: dict[str, int], sel: Selection,
               summary: AuditSummary, rep_name: str, ia: pa.Table, ib: pa.Table | None, seed: int) -> dict:
    """The JSON blob of the page: chosen reports and their mentions; with a second table, the reports with
    most status disagreements first, then those with certainty gaps (>= DELTA_P), then file order."""
    texts = {sid: text for _r, sid, text in picked.chosen}
    rows_a = fa.rows_for(texts)
    ma, checked, bad = _mentions(rows_a, texts)
    _check_offsets(checked, bad, fa.where, rep_name, summary.notes)
    mb: dict[str, list[dict[str, Any]]] = {}
    if fb is not None:
        mb, checked, bad = _mentions(fb.rows_for(texts), texts)
        _check_offsets(checked, bad, fb.where, rep_name, summary.notes)
    dp = {sid: _certainty_gaps(ma.get(sid, []), mb.get(sid, [])) for sid in texts} if fb is not None else {}
    order = sorted(picked.chosen, key=lambda t: (-dis.get(t[1], 0), -dp.get(t[1], 0), t[0]))
    reps = []
    for _r, sid, text in order:
        rec: dict[str, Any] = {"id": sid, "text": text, "a": ma.get(sid, [])}
        if fb is not None:
            rec.update(b=mb.get(sid, []), dis=dis.get(sid, 0), dp=dp[sid])
        reps.append(rec)
    summary.mentions = sum(len(r["a"]) + len(r.get("b", [])) for r in reps)
    summary.disagreements = sum(1 for r in reps if r.get("dis"))
    classes = sorted(set(_class_counts(ia)) | (set(_class_counts(ib)) if ib is not None else set()))
    return {
        "version": 1, "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "reports_file": Path(rep_name).name, "labels": [_label(fa, "A")] + ([_label(fb, "B")] if fb else []),
        "lexicon": [fa.lexicon_version] + ([fb.lexicon_version] if fb else []),
        "selection": sel.describe(), "seed": seed, "delta_p": DELTA_P, "notes": list(summary.notes), "classes": classes,
        "file_counts": [_class_counts(ia)] + ([_class_counts(ib)] if ib is not None else []),
        "matched": summary.matched, "read": summary.reports_read, "reports": reps,
    }


def audit(findings: Any, reports: Any, out: str | Path, *, compare: Any = None, sample: int | None = None,
          seed: int = 0, classes: list[str] | None = None, statuses: list[str] | None = None,
          min_certainty: float | None = None, max_certainty: float | None = None,
          disagreements_only: bool = False, max_reports: int = DEFAULT_MAX_REPORTS, id_col: str | None = None,
          text_col: str | list[str] | None = None, input_format: str | None = None, header: bool | None = None,
          notify: Callable[[str], None] | None = _stderr) -> Path:
    """Write one self-contained HTML page to audit mined findings against the reports they came from.

    Args:
        findings: findings.parquet path (or Arrow table / DataFrame in FINDINGS_SCHEMA).
        reports: the reports ``repgls mine`` read (any source of :func:`repgls.mining.readers.iter_reports`),
            read with the same ``id_col`` / ``text_col`` / ``input_format`` / ``header`` so that the offsets
            line up (``header=False``: a CSV / TSV whose first row is a report, as the CheXpert labeler reads it;
            None: detected, as ``repgls mine`` does).
        out: the page to write (the only file written; owner-only permissions).
        compare: a second findings table; reports where the two disagree come first, side by side.
        sample: show a random sample of this many matching reports (deterministic by ``seed``).
        classes, statuses, min_certainty, max_certainty: keep the reports with a mention matching them all
            (in either table); disagreements_only: keep the reports where the two tables disagree.
        max_reports: the cap; past it the matching reports are sampled down and a line says so.
        notify: called with each note (sampled down, offsets off the text, ...); never with report text.

    Raises:
        ValueError: unreadable input, no common study ids, or offsets that do not match the reports' text.
    """
    sel = Selection(classes=classes, statuses=statuses, min_certainty=min_certainty, max_certainty=max_certainty,
                    disagreements_only=disagreements_only)
    return audit_page(findings, reports, out, compare=compare, sample=sample, seed=seed, selection=sel,
                      max_reports=max_reports, id_col=id_col, text_col=text_col, input_format=input_format,
                      header=header, notify=notify).out
