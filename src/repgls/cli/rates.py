"""``repgls rates``: findings.parquet -> labels.parquet (per study and class: label y, GLS rate r, certainty p)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import check_outputs, console, fail

ORDER = 20


def register(app: typer.Typer) -> None:
    @app.command("rates")
    def rates_cmd(
        findings: Path = typer.Argument(..., help="findings.parquet (or .csv/.jsonl) from `repgls mine`."),
        out: Path = typer.Option(..., "--out", "-o", help="labels.parquet to write."),
        vocab: str | None = typer.Option(None, help="Vocabulary name (chexpert14, nih14, ltml39) or YAML path "
                                         "(default: the one the findings were mined with, else chexpert14)."),
        policy: str = typer.Option("gls", help="gls | u-ones | u-zeros | u-ignore | hard."),
        r0: float = typer.Option(-0.2, help="Sharpening offset (<= 0) added to the rate of definite statements "
                                 "only (gls)."),
        unmentioned: str = typer.Option("zero", help="Classes not mentioned: zero (y=0, r=0) or ignore (y=NaN)."),
        clip: float = typer.Option(0.99, help="Clip |r| to this value (< 1)."),
        studies: Path | None = typer.Option(None, help="All study ids (.txt one per line, or a table file, e.g. "
                                            "the reports) so studies without findings keep a row."),
        id_column: str = typer.Option("study_id", help="Id column of a table file given as --studies."),
        rgn: Path | None = typer.Option(None, help="RGN checkpoint folder: its rates replace the mapped rates "
                                        "of mentioned classes (gls only; reads the findings' sentences)."),
    ) -> None:
        """Turn findings into per-study labels, GLS rates and certainties (labels.parquet)."""
        from repgls.rating import rates, write_labels

        check_outputs(("--out", out, False))
        try:
            df = rates(findings, vocab=vocab, policy=policy, r0=r0, studies=studies, unmentioned=unmentioned,
                       clip=clip, rgn=rgn, id_column=id_column)
        except (ValueError, FileNotFoundError, TypeError) as exc:
            fail(str(exc))
        write_labels(df, out)
        classes = df.attrs["repgls"]["classes"]
        mentioned = int(sum(df[f"certainty:{c}"].notna().sum() for c in classes))
        console.print(f"wrote {out}: {len(df)} studies x {len(classes)} classes ({df.attrs['repgls']['vocab']}), "
                      f"{mentioned} mentions, policy {policy}" + (f", RGN {rgn}" if rgn else ""))
