"""``repgls rgn train`` / ``repgls rgn predict``: the Rate Generation Network (report wording -> GLS rate)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import check_outputs, console, fail, split_csv

ORDER = 25


def register(app: typer.Typer) -> None:
    rgn_app = typer.Typer(help="Rate Generation Network: learn mined rates from the wording, apply them to new "
                          "wording.", no_args_is_help=True)
    app.add_typer(rgn_app, name="rgn")

    @rgn_app.command("train", epilog="Example: repgls rgn train reports.csv labels.parquet --out rgn/ "
                                     "--text-col findings,impression")
    def train_cmd(
        findings: Path = typer.Argument(..., help="findings.parquet (with the 'sentence' of each mention), or a "
                                        "reports file (CSV / JSONL / Parquet / MIMIC tree), mined first."),
        labels: Path | None = typer.Argument(None, help="labels.parquet whose rates are the targets (default: "
                                             "the gls mapping of the mined certainty)."),
        out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
        id_col: str | None = typer.Option(None, "--id-col", help="Reports input: id column."),
        text_col: str | None = typer.Option(None, "--text-col", help="Reports input: text column(s), comma-separated."),
        vocab: str = typer.Option("chexpert14", help="Vocabulary name or YAML path."),
        encoder: str | None = typer.Option(None, help="Hugging Face encoder name or folder (default: the "
                                           "packaged all-MiniLM-L6-v2, offline)."),
        epochs: int = typer.Option(40, min=1),
        lr: float = typer.Option(1e-3),
        hidden: int = typer.Option(256, min=1),
        batch_size: int = typer.Option(256, min=1),
        seed: int = typer.Option(0),
        r0: float = typer.Option(-0.2, help="r0 of the mined target rates (definite statements)."),
        finetune: bool = typer.Option(False, help="Also train the encoder (slow on CPU)."),
        hedge_weight: float = typer.Option(1.0, min=0.0, help="Loss weight of non-definite mentions (rare "
                                           "in reports); definite ones weigh 1."),
    ) -> None:
        """Train an RGN on the mentions of a findings table (or of reports, mined first)."""
        from repgls.rating.rgn import findings_or_reports, train_rgn

        check_outputs(("--out", out, True))

        try:
            source = findings_or_reports(findings, vocab, id_col, split_csv(text_col))
            model = train_rgn(source, labels=labels, vocab=vocab, encoder=encoder, epochs=epochs, lr=lr,
                              hidden=hidden, batch_size=batch_size, seed=seed, r0=r0, finetune=finetune,
                              hedge_weight=hedge_weight,
                              log=lambda m: console.print(m, highlight=False))
        except (ValueError, FileNotFoundError, TypeError) as exc:
            fail(str(exc))
        model.save(out)
        t = model.config["training"]
        console.print(f"wrote {out}: {t['n_mentions']} mentions of {t['n_studies']} studies, "
                      f"final train mse {model.config['history']['train_mse'][-1]:.4f}")

    @rgn_app.command("predict", epilog="Example: repgls rgn predict reports.csv --rgn rgn/ --out rates.parquet "
                                       "--text-col findings,impression")
    def predict_cmd(
        findings: Path = typer.Argument(..., help="findings.parquet (with the 'sentence' of each mention), or a "
                                        "reports file, mined first."),
        rgn: Path = typer.Option(..., "--rgn", help="Checkpoint folder from `repgls rgn train`."),
        out: Path = typer.Option(..., "--out", "-o", help="rates.parquet to write (one row per mention)."),
        id_col: str | None = typer.Option(None, "--id-col", help="Reports input: id column."),
        text_col: str | None = typer.Option(None, "--text-col", help="Reports input: text column(s), comma-separated."),
    ) -> None:
        """Predict a GLS rate per mention; writes study_id, finding, status, certainty, rate_mined, rate_rgn."""
        from repgls.rating.rgn import RGN, findings_or_reports, predict_findings

        check_outputs(("--out", out, False))

        try:
            model = RGN.load(rgn)
            df = predict_findings(model, findings_or_reports(findings, model.config.get("vocab", "chexpert14"), id_col,
                                                         split_csv(text_col)))
        except (ValueError, FileNotFoundError, TypeError) as exc:
            fail(str(exc))
        from repgls._io import atomic_write_parquet

        atomic_write_parquet(df, out)
        console.print(f"wrote {out}: {len(df)} mentions")
