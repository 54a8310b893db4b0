"""Run logs: ``metrics.jsonl`` (one JSON record a line) and TensorBoard, written by rank 0 only.

``n_records`` is checkpointed, so a resumed run truncates the log to the checkpoint's records and continues
without duplicates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from repgls._io import atomic_write_bytes

__all__ = ["MetricsLog"]


class MetricsLog:
    """metrics.jsonl + TensorBoard (rank 0 only). ``n_records`` is checkpointed so resume can truncate."""

    def __init__(
        self, run_dir: Path, enabled: bool, keep_records: int | None, purge_step: int | None
    ) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.n_records = 0
        self.tb = None
        if not enabled:
            return
        if keep_records is not None and self.path.exists():
            lines = self.path.read_text().splitlines(keepends=True)[:keep_records]
            atomic_write_bytes(self.path, "".join(lines).encode(), fsync=True)
            self.n_records = len(lines)
        elif keep_records is None:
            self.path.unlink(missing_ok=True)
        self._f = open(self.path, "a")  # closed in close()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)
        except Exception as e:  # tensorboard missing: jsonl only
            print(f"repgls.train: TensorBoard disabled ({e})")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._f.write(json.dumps(record, default=float) + "\n")
        self._f.flush()
        self.n_records += 1
        if self.tb is not None:
            kind, step = record.get("kind", "train"), int(record.get("step", 0))
            for k, v in record.items():
                if k in ("kind", "step", "epoch", "time") or not isinstance(v, (int, float)):
                    continue
                if isinstance(v, float) and not math.isfinite(v):
                    continue
                self.tb.add_scalar(f"{kind}/{k}", v, step)
            for k, v in (record.get("auc") or {}).items():
                if v is not None and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}_auc/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self._f.close()
            if self.tb is not None:
                self.tb.close()
