"""``repgls mine``: radiology reports -> findings.parquet (rule miner by default, or the LLM miner)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from repgls.cli._common import console, fail, is_tty, split_csv
from repgls.progress import progress_bar

ORDER = 10


def register(app: typer.Typer) -> None:
    app.command("mine")(mine_cmd)


def mine_cmd(
    reports: str = typer.Argument(..., help="CSV / TSV / JSONL / Parquet file, a MIMIC-CXR reports folder "
                                            "(files/pXX/pN/sN.txt), a .txt file (one report per line), or - (stdin)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (findings.parquet, .csv, or CheXpert CSV)."),
    id_col: str | None = typer.Option(None, "--id-col", help="Id column (default: study_id/id/uid/... or row number)."),
    text_col: str | None = typer.Option(None, "--text-col",
                                        help="Text column(s), comma-separated: 'findings,impression' joins them "
                                             "with section headers."),
    vocab: str = typer.Option("chexpert14", "--vocab", help="chexpert14 | nih14 | ltml39 | a vocabulary YAML path."),
    sections: str | None = typer.Option(None, "--sections",
                                        help="Only mine these sections, e.g. 'impression,findings' (whole text "
                                             "when none is found)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes (rules engine)."),
    fmt: str = typer.Option("parquet", "--format", help="parquet | csv | chexpert-csv (the CheXpert labeler's "
                                                        "wide table: 1.0 / 0.0 / -1.0 / blank)."),
    input_format: str | None = typer.Option(None, "--input-format",
                                            help="csv | tsv | jsonl | parquet | txt | mimic (default: from the "
                                                 "name; stdin defaults to txt)."),
    allow_duplicates: bool = typer.Option(False, "--allow-duplicates", help="Keep rows with a repeated study id."),
    header: bool | None = typer.Option(None, "--header/--no-header",
                                       help="CSV / TSV: the first row is a header, or a report (default: "
                                            "detected; a one-column file whose first row reads like a report, "
                                            "as the CheXpert labeler's input, has none)."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress",
                                         help="Progress bar on stderr (default: only when stderr is a terminal)."),
    engine: str = typer.Option("rules", "--engine", help="rules (fast, default) | llm (see --model)."),
    model: str = typer.Option("Qwen/Qwen3-4B", "--model", help="LLM engine: model name."),
    base_url: str | None = typer.Option(None, "--base-url", help="LLM engine: OpenAI-compatible server URL."),
    api_key: str | None = typer.Option(None, "--api-key", help="LLM engine: API key (or env var of the backend)."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="LLM engine: parallel requests."),
    cache: Path | None = typer.Option(None, "--cache", help="LLM engine: cache file of answers."),
) -> None:
    """Mine radiology reports into graded findings (status, certainty, severity, change, typicality)."""
    from repgls.mining import _sections, mine_to_file
    from repgls.mining.writers import OUT_FORMATS, check_writable

    if fmt not in OUT_FORMATS:
        fail(f"--format {fmt!r}: choose one of {', '.join(OUT_FORMATS)}")
    if engine not in ("rules", "llm"):
        fail(f"--engine {engine!r}: choose rules or llm")
    text_cols = split_csv(text_col)
    show = is_tty() if progress is None else progress
    try:
        check_writable(out)
        if engine == "llm":
            summary = _run_llm(reports, out, fmt, vocab, id_col, text_cols, input_format, allow_duplicates,
                               model, base_url, api_key, concurrency, cache, show, header)
        else:
            from repgls.mining.rules import get_miner

            get_miner(vocab, _sections(sections))  # validate the vocabulary before reading
            with progress_bar("mining reports", enabled=show, transient=True, console=console) as bar:
                summary = mine_to_file(reports, out, fmt=fmt, vocab=vocab, sections=sections, id_col=id_col,
                                       text_col=text_cols, input_format=input_format, workers=workers,
                                       allow_duplicates=allow_duplicates, progress=bar.callback, header=header)
    except (ValueError, OSError) as e:
        fail(str(e))
        return
    console.print(f"[green]wrote[/] {out}: {summary}")


def _run_llm(reports, out, fmt, vocab, id_col, text_cols, input_format, allow_duplicates, model, base_url,
             api_key, concurrency, cache, show, header=None):
    """--engine llm: read every report, call repgls.mining.llm.mine_llm, write with the same writer."""
    from repgls.mining import MineSummary
    from repgls.mining.readers import ReadStats, iter_reports
    from repgls.mining.writers import FindingsWriter
    from repgls.vocab import load_vocab

    try:
        from repgls.mining.llm import mine_llm
    except ImportError as e:
        raise ValueError(f"--engine llm is not available: {e}") from None
    voc = load_vocab(vocab)
    stats = ReadStats()
    items = list(iter_reports(reports, id_col=id_col, text_col=text_cols, input_format=input_format,
                              allow_duplicates=allow_duplicates, stats=stats, header=header))
    t0 = time.perf_counter()
    table = mine_llm(items, voc, model=model, base_url=base_url, api_key=api_key, concurrency=concurrency,
                     cache=cache, progress=show)
    writer = FindingsWriter(out, fmt, voc.classes, meta={"vocab": voc.name, "classes": list(voc.classes),
                                                         "source": f"llm:{model}"})
    try:
        writer.write_table(items, table)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return MineSummary(reports=len(items), findings=table.num_rows,
                       empty=sum(1 for _, t in items if not t.strip()), undecodable=stats.undecodable,
                       seconds=time.perf_counter() - t0, out=str(out), headerless=stats.headerless)
