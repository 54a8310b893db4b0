"""``repgls phantom``: write a phantom world (synthetic CXR + reports + hidden truth)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import console, fail

ORDER = 5


def register(app: typer.Typer) -> None:
    @app.command("phantom")
    def phantom(
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
        n: int = typer.Option(5000, "--n", help="Number of studies (one PA image each)."),
        size: int = typer.Option(256, "--size", help="Image side in pixels."),
        vocab: str = typer.Option("chexpert14", "--vocab",
                                  help="chexpert14 | ltml39 | nih14 (or a vocabulary YAML phantom.yaml can render)."),
        prevalence: str = typer.Option("default", "--prevalence",
                                       help="default | longtail | FILE (CSV finding,prevalence or YAML map)."),
        seed: int = typer.Option(0, "--seed", help="Seed: same seed -> byte-identical output."),
        workers: int = typer.Option(1, "--workers", help="Render processes (output does not depend on it)."),
        miss_rate: float = typer.Option(None, "--miss-rate",
                                        help="P(miss) = miss_rate x (1 - visibility)^2 (default from phantom.yaml: 0.5)."),
        overcall_rate: float = typer.Option(None, "--overcall-rate",
                                            help="P(over-call) of an absent finding (default from phantom.yaml: 0.01)."),
        hedge_calibration: str = typer.Option(None, "--hedge-calibration",
                                              help="bayes (hedges are calibrated beliefs; default) | visibility "
                                                   "(hedges track faintness only: a miscalibrated reader)."),
        hedge_fraction: float = typer.Option(None, "--hedge-fraction",
                                             help="Share of the reader's mentions of a present finding that "
                                                  "carry a hedge (0 = never hedges; default: phantom.yaml's)."),
        config: Path = typer.Option(None, "--config", help="A copy of phantom.yaml with your wording/parameters."),
    ) -> None:
        """Generate a phantom world: images/, index.csv, reports.csv, truth.parquet, split.csv, meta.json."""
        from repgls.data.phantom import make_phantom

        if n < 1:
            fail("--n must be >= 1")
        if size < 32:
            fail("--size must be >= 32")
        if workers < 1:
            fail("--workers must be >= 1")
        try:
            with console.status(f"rendering {n} studies ...") as status:
                def progress(done: int, total: int) -> None:
                    status.update(f"rendering {done}/{total} studies ...")

                path = make_phantom(out, n=n, size=size, vocab=vocab, seed=seed, prevalence=prevalence,
                                    workers=workers, miss_rate=miss_rate, overcall_rate=overcall_rate,
                                    config=config, progress=progress,
                                    hedge_calibration=hedge_calibration, hedge_fraction=hedge_fraction)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        console.print(f"phantom world written to [bold]{path}[/] ({n} studies, {size} px, vocab {vocab})")
