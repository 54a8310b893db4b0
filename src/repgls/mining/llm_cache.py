"""SQLite cache of the LLM miner: validated raw JSON answers keyed by (report sha256, prompt version, model).

Why: an LLM pass over a large corpus takes hours; every answer is committed as soon as it is validated
(WAL mode), so an interrupted run resumes where it stopped and a rerun costs nothing. The report text
itself is never stored, only its SHA-256.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    report_sha256  TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    model          TEXT NOT NULL,
    response       TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (report_sha256, prompt_version, model)
) WITHOUT ROWID
"""


def report_sha256(text: str) -> str:
    """Hex SHA-256 of the report text (UTF-8), the cache key of a report."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LLMCache:
    """A SQLite file of validated answers; safe for several processes on one machine (WAL, busy timeout).

    Use from one thread at a time (the miner may hand it to its event-loop thread); open one instance
    per process / Ray actor.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise ValueError(f"LLM cache {self.path}: folder {self.path.parent} does not exist")
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=timeout, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()
        except sqlite3.DatabaseError as e:
            raise ValueError(f"LLM cache {self.path}: not a usable SQLite file ({e})") from e

    def get_many(self, shas: Iterable[str], prompt_version: str, model: str) -> dict[str, str]:
        """Cached answers for the given report hashes: sha -> raw JSON (missing ones are absent)."""
        shas = list(dict.fromkeys(shas))
        out: dict[str, str] = {}
        for i in range(0, len(shas), 500):
            chunk = shas[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT report_sha256, response FROM answers WHERE prompt_version=? AND model=? "
                f"AND report_sha256 IN ({marks})",
                [prompt_version, model, *chunk],
            )
            out.update(dict(rows))
        return out

    def put(self, sha: str, prompt_version: str, model: str, response: str) -> None:
        """Store one validated answer and commit at once (a crash after this loses nothing)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._conn.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)", (sha, prompt_version, model, response, now)
        )
        self._conn.commit()

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LLMCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
