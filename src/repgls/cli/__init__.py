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


for _module in _command_modules():
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
