"""``repgls compare``: per-class agreement of two findings tables (audit the rule miner vs the LLM miner)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import check_outputs, fail

ORDER = 15


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare(
        findings_a: Path = typer.Argument(..., help="First findings.parquet (e.g. from --engine rules)."),
        findings_b: Path = typer.Argument(..., help="Second findings.parquet (e.g. from --engine llm)."),
        vocab: str = typer.Option(None, "--vocab", help="Report the classes of this vocabulary, in its order "
                                  "(name or YAML path); default: every class found, sorted."),
        out: Path = typer.Option(None, "--out", help="Also write the table as CSV."),
    ) -> None:
        """Per class: mentions only in A / only in B, status agreement and Cohen's kappa."""
        from rich.table import Table

        from repgls.cli._common import console
        from repgls.mining.compare import compare_findings

        check_outputs(("--out", out, False))

        try:
            classes = None
            if vocab:
                from repgls.vocab import load_vocab

                classes = list(load_vocab(vocab).classes)
            df = compare_findings(findings_a, findings_b, classes=classes)
        except (ValueError, OSError) as e:
            fail(str(e))
            return
        except ImportError as e:
            fail(f"repgls compare needs scikit-learn (pip install scikit-learn): {e}")
            return
        table = Table(title=f"A = {findings_a}   B = {findings_b}")
        for col in df.columns:
            table.add_column(col, justify="left" if col == "finding" else "right")
        for rec in df.itertuples(index=False):
            cells = []
            for v in rec:
                if isinstance(v, float):
                    cells.append("-" if v != v else f"{v:.3f}")
                else:
                    cells.append(str(v))
            table.add_row(*cells)
        console.print(table)
        if out is not None:
            df.to_csv(out, index=False)
            console.print(f"wrote {out}")
