"""``repgls demo``: the whole pipeline on bundled sample reports and a small phantom world (CPU, minutes)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import fail

ORDER = 90


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder (reused when rerun)."),
        n: int = typer.Option(300, "--n", help="Phantom studies (one image each)."),
        size: int = typer.Option(64, "--size", help="Image side in pixels."),
        epochs: int = typer.Option(8, "--epochs", help="Training epochs per method."),
        seed: int = typer.Option(0, "--seed", help="Seed of the world and of training."),
        model: str = typer.Option(
            "lu_vit_tiny_test", "--model", help="Model name (repgls.models.list_models())."
        ),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    ) -> None:
        """Mine samples, make a phantom world, train GLS vs a hard-label baseline, evaluate vs truth, report."""
        from repgls.demo import run_demo

        try:
            run_demo(
                out,
                n=n,
                size=size,
                epochs=epochs,
                seed=seed,
                model=model,
                device=device,
                progress=not no_progress,
            )
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
