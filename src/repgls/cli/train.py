"""``repgls train``: train a classifier from a YAML config (single GPU, or many under torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import console, fail

ORDER = 50


def register(app: typer.Typer) -> None:
    @app.command(
        "train",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
    )
    def train_cmd(
        ctx: typer.Context,
        config: Path = typer.Option(None, "--config", "-c", help="YAML config (see configs/)."),
        resume: Path = typer.Option(None, "--resume", help="Run folder to continue from checkpoints/last."),
        print_config: bool = typer.Option(
            False, "--print-config", help="Print the resolved config and exit."
        ),
        overrides: list[str] = typer.Argument(None, help="Overrides key.path=value, e.g. train.epochs=3."),
    ) -> None:
        """Train; writes a run folder (config.yaml, checkpoints/, metrics.jsonl, tb/, predictions_val.parquet).

        Multi-GPU: torchrun --nproc_per_node=8 -m repgls.cli train --config CFG (see docs/training.md).
        """
        from repgls.config import ConfigError, dump_config, load_config

        ov = list(overrides or []) + list(ctx.args or [])
        if config is None and resume is None:
            fail("give --config CONFIG.yaml (or --resume RUN_DIR)")
        try:
            if print_config:
                if resume is not None:
                    from repgls.config import apply_overrides, config_from_dict, read_yaml

                    cfg = config_from_dict(apply_overrides(read_yaml(resume / "config.yaml"), ov))
                else:
                    cfg = load_config(config, ov)
                typer.echo(dump_config(cfg), nl=False)
                return
            if resume is None:
                load_config(config, ov)  # validate before importing torch
        except ConfigError as e:
            fail(str(e))
        from repgls.training import train

        try:
            run_dir = train(config if resume is None else None, overrides=ov, resume=resume)
        except (ConfigError, FileExistsError, FileNotFoundError) as e:
            fail(str(e))
        import os

        if int(os.environ.get("RANK", "0")) == 0:
            console.print(f"[green]done:[/] {run_dir}")
