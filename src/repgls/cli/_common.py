"""Small helpers shared by the CLI modules (no heavy imports)."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a clear error (no traceback) and exit."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def split_csv(value: str | None) -> list[str] | None:
    """'a,b , c' -> ['a', 'b', 'c']; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def is_tty() -> bool:
    return sys.stderr.isatty()
