"""``repgls bench``: many methods x seeds on one phantom world; one table (CSV + Markdown) + report.html."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import check_outputs, console, fail, split_csv

ORDER = 80


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        config: Path = typer.Option(..., "--config", "-c", help="Bench config YAML (configs/bench/*.yaml)."),
        out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: the config's 'out')."),
        methods: str = typer.Option(None, "--methods", help="Only these methods (comma list)."),
        device: str = typer.Option(None, "--device", help="Trainer device override: auto | cpu | cuda."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
        overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. world.n=200 seeds=[0]."),
    ) -> None:
        """Train and evaluate every method per seed (finished runs are reused); write results.* and report.html."""
        from rich.markup import escape

        from repgls._io import read_yaml_file
        from repgls.benchmarking import bench, load_bench_config

        try:
            read_yaml_file(config)  # missing, empty, binary, malformed: one line naming it
            where = out if out is not None else load_bench_config(config, overrides or None).out
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        check_outputs(("--out", where, True))

        def log(msg: str) -> None:
            console.print(f"[dim]·[/] {escape(msg)}")

        try:
            res = bench(
                config,
                out=out,
                overrides=overrides or None,
                methods=split_csv(methods),
                log=log,
                progress=not no_progress,
                device=device,
            )
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        typer.echo(res.files["markdown"].read_text(encoding="utf-8"))
        console.print(
            f"table: {res.files['csv']}  {res.files['markdown']}  report: {res.files.get('report')}  "
            f"({res.seconds:.0f}s)"
        )
