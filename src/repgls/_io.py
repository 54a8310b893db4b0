"""File I/O shared by every stage and the CLI: atomic writes (nothing half-written survives), output places
checked before any work (:func:`check_writable`), reader failures turned into one line naming the file
(:func:`reading`, :func:`check_text_file`), and clean interruption of worker pools (:func:`ignore_sigint`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def file_mode_mask() -> int:
    """The process umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 minus the umask); mkstemp files are 0o600."""
    return 0o666 & ~file_mode_mask()


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it over ``path``.

    The temporary file lives in the same folder (so ``os.replace`` is atomic) and gets the usual file mode.
    On any error it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + ``os.replace``)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_parquet(frame: Any, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write a DataFrame or pyarrow Table as Parquet atomically; ``meta`` goes to schema metadata key ``repgls``
    as JSON (merged over the table's own metadata)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    if meta is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"repgls": json.dumps(meta, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


# ------------------------------------------------------------------------------------ outputs: checked first
def _label(path: Path, what: str) -> str:
    return f"{what} {path}" if what else str(path)


def check_writable(path: str | os.PathLike, *, folder: bool = False, parents: bool = True, what: str = "") -> Path:
    """Fail early, before any work, when ``path`` cannot be written; returns it as a Path.

    ``folder``: ``path`` is a folder to create or write into (else a file to create or replace). ``parents``:
    missing folders above it may be created (else the file's folder must exist). Nothing is created: the
    nearest existing folder gets a probe file, removed at once. ``what`` (e.g. ``"--out"``) prefixes the message.

    Raises:
        ValueError: one line naming the path and what is wrong (a file where a folder is needed, a missing
            folder, a read-only file system, no permission).
    """
    p = Path(path)
    label = _label(p, what)
    if folder and p.exists() and not p.is_dir():
        raise ValueError(f"{label}: exists and is not a folder")
    if not folder and p.is_dir():
        raise ValueError(f"{label}: is a folder, give a file name")
    target = p if folder else (p.parent if str(p.parent) else Path("."))
    if not parents and not folder and not target.is_dir():
        raise ValueError(f"{label}: folder {target} does not exist")
    here = target
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise ValueError(f"{label}: cannot be created, {here} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".repgls-write-test-", dir=here)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ValueError(f"{label}: cannot write in {here} ({why})") from None
    os.close(fd)
    os.unlink(probe)
    return p


@contextmanager
def removed_on_failure(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield ``folder``; if the block fails (or is interrupted) and the folder did not exist before, remove it,
    so a failed or interrupted stage leaves nothing half-made behind."""
    import shutil

    folder = Path(folder)
    existed = folder.exists()
    try:
        yield folder
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def ignore_sigint() -> None:
    """Pool initializer: workers ignore Ctrl-C, so only the parent handles it (one clean message, no
    traceback per worker); the parent then terminates the pool."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ------------------------------------------------------------------------------------- inputs: clear errors
#: File signatures of formats a user may hand a text reader by mistake.
_MAGIC = {b"PAR1": "a Parquet file", b"PK\x03\x04": "a ZIP archive (an .xlsx workbook?)", b"\x1f\x8b": "gzip data",
          b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"%PDF": "a PDF document",
          b"SQLite format 3": "an SQLite database"}


def check_text_file(path: str | os.PathLike, kind: str = "text") -> None:
    """Raise ValueError naming ``path`` when it is missing, empty or binary (so no reader echoes raw bytes);
    ``kind`` ("CSV", "JSON lines", ...) goes into the message. Undecodable bytes in text are left to readers."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such file")
    if p.is_dir():
        raise ValueError(f"{p}: is a folder, not a {kind} file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8192)
    except OSError as e:
        raise ValueError(f"{p}: cannot read ({e.strerror or type(e).__name__})") from None
    if not head.strip():
        raise ValueError(f"{p}: empty file (expected {kind})")
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            raise ValueError(f"{p}: is {name}, not a {kind} file")
    text = head.decode("utf-8", errors="replace")
    if "\x00" in text or text.count("\ufffd") > max(8, len(text) // 10):
        raise ValueError(f"{p}: binary content, not a {kind} file")


def _one_line(message: str, limit: int = 200) -> str:
    """First line of a library's message, printable characters only, at most ``limit`` characters."""
    line = next((s.strip() for s in str(message).splitlines() if s.strip()), "")
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_error(path: str | os.PathLike, exc: BaseException, kind: str = "file") -> ValueError:
    """A reader's exception (pandas, pyarrow, codecs, OS, JSON) as ``ValueError("<path>: <what is wrong>")``."""
    where = str(path)
    if isinstance(exc, ValueError) and str(exc).startswith(f"{where}:"):
        return exc  # already says where
    name = type(exc).__name__
    msg = _one_line(str(exc).replace(f"Could not open Parquet input source '{where}': ", ""))
    try:
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        what = f"empty file (expected {kind})"
    elif isinstance(exc, FileNotFoundError):
        what = "no such file"
    elif isinstance(exc, IsADirectoryError):
        what = f"is a folder, not a {kind} file"
    elif isinstance(exc, PermissionError):
        what = "cannot read it (permission denied)"
    elif isinstance(exc, UnicodeDecodeError):
        what = f"not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at position {exc.start})"
    elif isinstance(exc, OSError) and not name.startswith("Arrow"):
        what = f"cannot read it ({exc.strerror or msg})"
    elif name == "EmptyDataError":
        what = f"empty file (expected {kind})"
    elif name == "ParserError":
        what = f"not a valid {kind} file ({msg})"
    elif "magic bytes" in msg:
        what = "not a Parquet file, or a truncated one (no Parquet footer)"
    elif "Parquet" in kind and name.startswith("Arrow"):
        what = f"not a readable Parquet file ({msg})"
    elif "JSON" in kind or name == "JSONDecodeError":
        what = f"not valid {kind} ({msg})"
    else:
        what = f"cannot read it as {kind} ({msg})"
    return ValueError(f"{where}: {what}")


@contextmanager
def reading(path: str | os.PathLike, kind: str = "file") -> Iterator[None]:
    """Run a read of ``path``; any reader failure becomes one ``ValueError("<path>: <what is wrong>")``."""
    try:
        yield
    except (OSError, ValueError, UnicodeError) as e:
        raise read_error(path, e, kind) from None
    except Exception as e:  # pandas / pyarrow errors that are not ValueError subclasses
        if type(e).__module__.split(".")[0] in ("pandas", "pyarrow", "json"):
            raise read_error(path, e, kind) from None
        raise


def read_yaml_file(path: str | os.PathLike, kind: str = "YAML") -> Any:
    """Parse a YAML (or JSON) file; a missing, empty, binary or malformed file is one ``ValueError`` naming it
    (with the line and column of a syntax error)."""
    import yaml

    check_text_file(path, kind)
    with reading(path, kind):
        text = Path(path).read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or _one_line(str(e))
        raise ValueError(f"{path}: invalid {kind} ({at}{problem})") from None
