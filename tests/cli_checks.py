"""Helpers of the CLI first-contact tests: run a command in process and check how it failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from repgls.cli import app


def invoke(*args: Any, env: dict[str, str] | None = None) -> Any:
    """``repgls ARGS`` in process at 80 columns (paths and numbers as given)."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80", **(env or {})})


def tree(folder: Path) -> set[str]:
    """Every path under ``folder`` (files and folders), relative: what a failed command must leave unchanged."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def assert_one_line_error(res: Any, *names: Any, code: int = 2) -> str:
    """The command failed with ``code``, no traceback (the exception is the exit, nothing else), and wrote exactly
    one line on stderr that names each of ``names``; returns that line."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for name in names:
        assert str(name) in lines[0], (str(name), lines[0])
    return lines[0]
