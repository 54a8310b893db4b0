"""``repgls demo``: the whole pipeline on bundled sample reports and a small phantom world (CPU, minutes)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import check_outputs, fail

ORDER = 90


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder (reused when rerun)."),
        n: int = typer.Option(None, "--n", help="Studies of the evaluation world (default 3000)."),
        size: int = typer.Option(None, "--size", help="Image side in pixels (default 64)."),
        epochs: int = typer.Option(None, "--epochs", help="Epochs of each method's heads (default 30)."),
        seeds: int = typer.Option(None, "--seeds", help="Seeds per method (default 5)."),
        backbone_n: int = typer.Option(None, "--backbone-n", help="Studies of the backbone's world (default 6000)."),
        backbone_epochs: int = typer.Option(None, "--backbone-epochs", help="Backbone epochs (default 12)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the worlds and of training."),
        model: str = typer.Option(None, "--model", help="Backbone model (default lu_vit_tiny)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    ) -> None:
        """Mine samples; pretrain a backbone; compare the oracle, U-Ones and GLS against the truth; report."""
        from repgls.benchmarking.demo import demo

        check_outputs(("--out", out, True))

        try:
            given = {"n": n, "size": size, "epochs": epochs, "model": model, "seeds": seeds, "backbone_n": backbone_n,
                     "backbone_epochs": backbone_epochs}
            demo(
                out,
                seed=seed,
                device=device,
                progress=not no_progress,
                **{k: v for k, v in given.items() if v is not None},  # others: demo()'s defaults
            )
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
