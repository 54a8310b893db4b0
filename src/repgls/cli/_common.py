"""Small helpers shared by the CLI modules (no heavy imports): one-line errors, output places checked before
any work, and the command group that turns an interruption or an OS error into one line."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

console = Console(stderr=True, soft_wrap=True)  # one message, one line: terminals and log files wrap it


def say_error(message: str) -> None:
    """``error: <message>`` on stderr, on one line (never wrapped, markup in the message kept literal)."""
    console.print(f"[bold red]error:[/] {escape(' '.join(str(message).split()))}", soft_wrap=True,
                  highlight=False)


def fail(message: str, code: int = 2) -> None:
    """Print a clear one-line error (no traceback) and exit."""
    say_error(message)
    raise typer.Exit(code)


def check_outputs(*places: tuple[str, Any, bool]) -> None:
    """Check output places before any work: ``(option, path, is_folder)`` each (a None path is skipped);
    the first that cannot be written stops the command with one line naming it (exit 2)."""
    from repgls._io import check_writable

    for what, path, folder in places:
        if path is None:
            continue
        try:
            check_writable(path, folder=folder, what=what)
        except ValueError as e:
            fail(str(e))


#: Value placeholders in --help by typer's type label (typer writes ``<str>``, ``<int range>``...).
_PLACEHOLDERS = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "FLOAT",
                 "float range": "FLOAT", "path": "PATH", "Path": "PATH", "list[str]": "TEXT",
                 "list[Path]": "PATH"}


class _PlainOption(TyperOption):
    """An option shown as ``--out PATH`` in --help (click style), never ``<path>``."""

    def display_type(self, ctx: Any) -> str:
        label = super().display_type(ctx).strip("<>")
        return _PLACEHOLDERS.get(label, label.upper().replace(" ", "_"))


class _PlainArgument(TyperArgument):
    """An argument shown by its upper-case name (``REPORTS``, ``[LABELS]``, ``IMAGES...``), with no type
    placeholder and no braces."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def _plain_help(command: Any) -> None:
    """Plain --help for ``command`` and every sub-command: click-style placeholders, full one-paragraph
    summaries in command lists (click would cut them at 45 characters with "...")."""
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
        if not sub.short_help and sub.help:
            sub.short_help = " ".join(sub.help.strip().split("\n\n")[0].split())
    for param in command.params:
        if type(param) is TyperOption:
            param.__class__ = _PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = _PlainArgument


class GuardedGroup(TyperGroup):
    """The root command group: plain help that fits 80 columns; Ctrl-C ends any command with one line and exit
    130; an OS error a command did not handle (a disk filling up, a folder made read-only mid-run) with one line
    naming the path, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            console.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
        except OSError as e:
            where = e.filename if e.filename is not None else None
            why = e.strerror or str(e)
            say_error(f"{os.fsdecode(where)}: {why}" if where is not None else why)
            raise typer.Exit(2) from None


def split_csv(value: str | None) -> list[str] | None:
    """'a,b , c' -> ['a', 'b', 'c']; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def is_tty() -> bool:
    return sys.stderr.isatty()
