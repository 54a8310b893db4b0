"""The run folder: checked before the trainer's set-up, created (or reused, for ``--resume``) by rank 0 only once
the data, the model and the loss are set up, so a start that fails validation leaves nothing behind.

Layout: ``config.yaml``, ``checkpoints/{last,best}.safetensors`` + ``last.state.pt`` + ``{last,best}.json``,
``metrics.jsonl``, ``tb/`` (TensorBoard), ``predictions_val.parquet`` (best model).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from repgls._io import check_writable
from repgls.config import Config, ConfigError, save_config
from repgls.training.checkpoint import recover

__all__ = ["check_run_folder", "never_trained", "prepare_run_folder"]

#: What a start that never trained can leave: its config, an empty log, TensorBoard's first event file.
_START_ONLY = {"config.yaml", "metrics.jsonl", "tb", "checkpoints"}


def never_trained(run_dir: Path) -> bool:
    """True for a run folder of a start that stopped before its first logged step or checkpoint (killed during
    set-up or the first step): only ``config.yaml``, an empty ``metrics.jsonl``, ``tb/``, no checkpoint."""
    names = {p.name for p in run_dir.iterdir()}
    if not names <= _START_ONLY or "config.yaml" not in names:
        return False
    log = run_dir / "metrics.jsonl"
    if log.exists() and (not log.is_file() or log.stat().st_size > 0):
        return False
    ckpt = run_dir / "checkpoints"
    return not ckpt.exists() or (ckpt.is_dir() and not any(ckpt.iterdir()))


def check_run_folder(cfg: Config, resuming: bool) -> Path:
    """Check ``output.run_dir`` before any work, changing nothing: writable; a fresh run needs it missing, empty,
    left by a start that never trained, or ``output.overwrite``; a resumed run needs ``checkpoints/last.json``.

    Raises:
        ConfigError: the folder cannot be written (one line naming it).
        FileExistsError / FileNotFoundError: as above.
    """
    run_dir = Path(cfg.output.run_dir)
    try:
        check_writable(run_dir, folder=True, what="output.run_dir")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if resuming:
        recover(run_dir / "checkpoints", "last")
        if not (run_dir / "checkpoints" / "last.json").is_file():
            raise FileNotFoundError(f"--resume {run_dir}: no checkpoints/last.json to resume from")
    elif run_dir.exists() and any(run_dir.iterdir()) and not cfg.output.overwrite and not never_trained(run_dir):
        raise FileExistsError(
            f"run folder {run_dir} exists and is not empty; use --resume {run_dir}, another "
            "output.run_dir, or output.overwrite=true"
        )
    return run_dir


def prepare_run_folder(cfg: Config, resuming: bool) -> Path:
    """Create ``output.run_dir`` (after :func:`check_run_folder` and the trainer's set-up) and write
    ``config.yaml``; a fresh run over an old one (``output.overwrite``, or a start that never trained) first
    removes its checkpoints, logs and predictions. Returns the folder."""
    run_dir = Path(cfg.output.run_dir)
    if not resuming and run_dir.exists():
        for sub in ("checkpoints", "tb"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        for f in ("metrics.jsonl", "predictions_val.parquet"):
            (run_dir / f).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir
