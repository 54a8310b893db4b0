"""The one progress bar of repgls (rich, on stderr), used by every stage: train, bench, cache, mining.

``with progress_bar("mining reports", total=n) as bar: bar.advance()`` draws a bar when stderr is a terminal
(or ``REPGLS_PROGRESS=1``) and does nothing otherwise, so logs and CI output stay clean. ``enabled=False``
turns it off; ``enabled=True`` draws even when stderr is not a terminal. A bar with ``total=None`` counts
without a bar (a spinner). ``bar.callback`` adapts it to the ``progress(done, total)`` callbacks of the library.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["ProgressBar", "progress_bar", "stderr_console"]


def stderr_console() -> Any:
    """A rich Console on stderr (no markup highlighting of numbers): where status lines and bars go."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _should_draw(enabled: bool | None) -> bool:
    if enabled is False:
        return False
    if enabled is True or os.environ.get("REPGLS_PROGRESS") == "1":
        return True
    return sys.stderr.isatty()


class ProgressBar:
    """A rich progress bar with an info field (e.g. ``loss 0.31  820 img/s``) and time remaining; or a no-op."""

    def __init__(self, description: str, total: int | None = None, *, enabled: bool | None = None,
                 transient: bool = False, console: Any = None) -> None:
        self.description, self.total, self.transient = description, total, transient
        self._console = console
        self._bar: Any = None
        self._task: Any = None
        self.active = _should_draw(enabled)

    def __enter__(self) -> ProgressBar:
        return self.start()

    def start(self) -> ProgressBar:
        """Draw the bar (when active); :meth:`close` removes it. Returns self."""
        if not self.active or self._bar is not None:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = ([TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
                   if self.total is not None else
                   [SpinnerColumn(), TextColumn("[bold]{task.description}"), TextColumn("{task.completed:,}"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn()])
        self._bar = Progress(*columns, console=self._console or stderr_console(), transient=self.transient)
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def advance(self, n: int = 1, info: str | None = None) -> None:
        """Add ``n`` done items (and replace the info text when given)."""
        if self._bar is not None:
            self._bar.update(self._task, advance=n, **({"info": info} if info is not None else {}))

    def update(self, completed: int | None = None, total: int | None = None, info: str | None = None) -> None:
        """Set the done count and/or the total."""
        if self._bar is not None:
            kw: dict[str, Any] = {"completed": completed, "total": total, "info": info}
            self._bar.update(self._task, **{k: v for k, v in kw.items() if v is not None})

    def reset(self, description: str, total: int | None, completed: int = 0) -> None:
        """Start a new phase on the same bar (e.g. the next epoch)."""
        if self._bar is not None:
            self._bar.reset(self._task, total=total, completed=completed, description=description, info="")

    def callback(self, done: int, total: int | None = None) -> None:
        """``progress(done, total)`` callback form of :meth:`update`."""
        self.update(completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_bar(description: str, total: int | None = None, *, enabled: bool | None = None,
                 transient: bool = False, console: Any = None) -> ProgressBar:
    """A :class:`ProgressBar` to use as a context manager (see the module docstring)."""
    return ProgressBar(description, total, enabled=enabled, transient=transient, console=console)
