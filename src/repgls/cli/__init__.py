"""The ``repgls`` command line. Commands only parse options and call the library.

Each command group lives in its own module and registers itself on ``app``; none of them may import
torch at module level (``repgls --help`` and ``repgls mine`` must start fast).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from repgls import __version__

app = typer.Typer(
    name="repgls",
    help=(
        "Train chest X-ray classifiers on what radiologists wrote, doubt included.\n\n"
        "Pipeline: mine -> rates -> prepare -> train -> eval.  Try: repgls demo"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)

# Command modules: every public module of this package exposes ``register(app)``; ``ORDER`` sets where
# its commands appear in ``--help`` (pipeline order), so a new stage needs no edit here.
def _command_modules() -> list:
    mods = [
        importlib.import_module(f"{__name__}.{m.name}")
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_")
    ]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"repgls {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """repgls command line."""


# One worked example per command, shown at the end of its --help.
EXAMPLES = {
    "phantom": "repgls phantom --n 2000 --size 128 --out phantom/ --seed 0",
    "mine": "repgls mine reports.csv --out findings.parquet --id-col uid --text-col findings,impression --workers 2",
    "compare": "repgls compare findings_rules.parquet findings_llm.parquet --vocab chexpert14",
    "rates": "repgls rates findings.parquet --out labels.parquet --policy gls --r0 -0.2 --studies reports.csv --id-column uid",
    "prepare": "repgls prepare phantom --root phantom/ --out cache/ --size 128",
    "train": "repgls train --config configs/phantom-tiny.yaml train.epochs=3",
    "eval": "repgls eval runs/phantom-tiny --split test --n-boot 200",
    "predict": "repgls predict runs/phantom-tiny chest.png scan.dcm --cam --out predictions.parquet",
    "bench": "repgls bench --config configs/bench/phantom-small.yaml seeds=[0]",
    "demo": "repgls demo --out demo_out --n 300 --size 64 --epochs 8",
    "serve": "repgls serve path/to/tiny-qwen3 --port 8000",
}

for _module in _command_modules():
    _module.register(app)
for _info in app.registered_commands:
    if _info.name in EXAMPLES and not _info.epilog:
        _info.epilog = f"Example: {EXAMPLES[_info.name]}"


def main() -> None:
    """Console-script entry point."""
    app()
