"""``repgls audit``: one self-contained HTML page to read mined findings against their reports."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import check_outputs, console, split_csv

ORDER = 16
EPILOG = "Example: repgls audit findings.parquet --reports reports.csv --out audit.html --sample 200"


def _many(values: list[str] | None) -> list[str] | None:
    """Repeated and/or comma-separated option values, in order (None when not given)."""
    out = [v for raw in values or [] for v in split_csv(raw) or []]
    return out or None


def register(app: typer.Typer) -> None:
    app.command("audit", epilog=EPILOG)(audit_cmd)


def audit_cmd(
    findings: Path = typer.Argument(..., help="findings.parquet written by repgls mine."),
    reports: str = typer.Option(..., "--reports", help="The reports file (or MIMIC folder) that repgls mine read."),
    out: Path = typer.Option(..., "--out", "-o", help="The HTML page to write (it holds report text)."),
    compare: Path | None = typer.Option(None, "--compare", help="A second findings.parquet (e.g. the LLM miner, "
                                        "another lexicon version): disagreements first, side by side."),
    sample: int | None = typer.Option(None, "--sample", min=1, help="Show a random sample of N matching reports."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample (same seed, same reports)."),
    classes: list[str] | None = typer.Option(None, "--class", help="Only reports mentioning this class "
                                             "(repeat or comma-separate)."),
    statuses: list[str] | None = typer.Option(None, "--status", help="Only reports with a mention of this status: "
                                              "positive | negative | uncertain (repeat or comma-separate)."),
    min_certainty: float | None = typer.Option(None, "--min-certainty", min=0.0, max=1.0,
                                               help="Only reports with a mention of certainty >= this."),
    max_certainty: float | None = typer.Option(None, "--max-certainty", min=0.0, max=1.0,
                                               help="Only reports with a mention of certainty <= this."),
    disagreements_only: bool = typer.Option(False, "--disagreements-only",
                                            help="With --compare: only the reports where the two disagree."),
    max_reports: int = typer.Option(2000, "--max-reports", min=1, help="Cap on reports in one page (at most "
                                    "20000); past it the matching reports are sampled down (a line says so)."),
    id_col: str | None = typer.Option(None, "--id-col", help="Id column, as given to repgls mine."),
    text_col: str | None = typer.Option(None, "--text-col", help="Text column(s), as given to repgls mine "
                                        "('findings,impression'), so that the offsets index the same text."),
    input_format: str | None = typer.Option(None, "--input-format", help="csv | tsv | jsonl | parquet | txt | "
                                            "mimic (default: from the name), as given to repgls mine."),
    header: bool | None = typer.Option(None, "--header/--no-header", help="CSV / TSV: the first row is a header, "
                                       "or a report (default: detected), as given to repgls mine."),
) -> None:
    """Write one HTML page to check mined labels against the report text.

    Every mention highlighted by status, with its certainty, cue, severity, change and typicality; filters by
    class, status and certainty; per-class counts; with --compare, disagreements first, side by side.
    """
    from repgls.mining.audit import Selection, audit_page

    check_outputs(("--out", out, False))

    def note(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    try:
        sel = Selection(classes=_many(classes), statuses=_many(statuses), min_certainty=min_certainty,
                        max_certainty=max_certainty, disagreements_only=disagreements_only)
        summary = audit_page(findings, reports, out, compare=compare, sample=sample, seed=seed, selection=sel,
                             max_reports=max_reports, id_col=id_col, text_col=split_csv(text_col),
                             input_format=input_format, header=header, notify=note)
    except (ValueError, OSError) as e:
        from rich.markup import escape

        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)  # one line
        raise typer.Exit(2) from None
    console.print(f"[green]wrote[/] {out}: {summary}. It holds report text: keep it where the reports may be "
                  "kept.", highlight=False, soft_wrap=True)
