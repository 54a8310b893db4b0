"""The ``repgls`` command line. Commands only parse options and call the library.

Each command group lives in its own module and registers itself on ``app``; none of them may import
torch at module level (``repgls --help`` and ``repgls mine`` must start fast).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from repgls import __version__
from repgls.cli._common import GuardedGroup

# Plain (click) help, not rich panels: it wraps cleanly at 80 columns and reads the same in a log file.
app = typer.Typer(
    name="repgls",
    help=(
        "Train chest X-ray classifiers on what radiologists wrote, doubt included.\n\n"
        "Pipeline: mine -> rates -> prepare -> train -> eval.  Try: repgls demo"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    cls=GuardedGroup,
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

def _example_epilog(example: str, width: int = 76) -> str:
    """``Example: repgls ...`` kept verbatim (``\\b``: click does not rewrap it), cut into shell continuation
    lines that fit an 80-column terminal, never between an option and its value."""
    units: list[str] = []
    for word in example.split():
        is_option = word.startswith("--") or (word.startswith("-") and word[1:2].isalpha())
        if units and units[-1].startswith("-") and " " not in units[-1] and not is_option:
            units[-1] += " " + word
        else:
            units.append(word)
    lines, line = [], "Example:"
    for unit in units:
        if len(line) + 1 + len(unit) > width - 2:
            lines.append(line + " \\")
            line = "   "
        line += " " + unit
    return "\b\n" + "\n".join([*lines, line])


def _finish_commands(typer_app: typer.Typer) -> None:
    """The example of every command, as an epilog (and of the commands of sub-apps such as ``rgn``)."""
    for info in typer_app.registered_commands:
        example = info.epilog.removeprefix("Example: ") if info.epilog else EXAMPLES.get(info.name or "")
        if example:
            info.epilog = _example_epilog(example)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _finish_commands(group.typer_instance)


for _module in _command_modules():
    _module.register(app)
_finish_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()
