"""The run folder: created (or checked for resume) by rank 0 before training starts.

Layout: ``config.yaml``, ``checkpoints/{last,best}.safetensors`` + ``last.state.pt`` + ``{last,best}.json``,
``metrics.jsonl``, ``tb/`` (TensorBoard), ``predictions_val.parquet`` (best model).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from repgls.config import Config, save_config
from repgls.training.checkpoint import recover

__all__ = ["prepare_run_folder"]


def prepare_run_folder(cfg: Config, resuming: bool) -> Path:
    """Check or create ``output.run_dir`` and write ``config.yaml``; returns the folder.

    A fresh run refuses a non-empty folder unless ``output.overwrite`` (then the previous run's checkpoints,
    logs and predictions are removed); a resumed run needs ``checkpoints/last.json``.
    """
    run_dir = Path(cfg.output.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if resuming:
        recover(ckpt_dir, "last")
        if not (ckpt_dir / "last.json").is_file():
            raise FileNotFoundError(f"--resume {run_dir}: no checkpoints/last.json to resume from")
    elif run_dir.exists() and any(run_dir.iterdir()) and not cfg.output.overwrite:
        raise FileExistsError(
            f"run folder {run_dir} exists and is not empty; use --resume {run_dir}, another "
            "output.run_dir, or output.overwrite=true"
        )
    elif run_dir.exists() and cfg.output.overwrite:
        for sub in ("checkpoints", "tb"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        for f in ("metrics.jsonl", "predictions_val.parquet"):
            (run_dir / f).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir
