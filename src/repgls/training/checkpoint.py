"""Atomic checkpoints: ``{tag}.safetensors`` (weights) + ``{tag}.state.pt`` (optimiser, scheduler, EMA, loss,
RNG and loop position; ``last`` only) + ``{tag}.json`` (meta), committed together.

All files are written to temporary files first; a ``{tag}.pending.json`` marker is written atomically once
they are complete (the commit point), then the files are renamed in place and the marker becomes
``{tag}.json``. A crash at any point leaves either the old or the new checkpoint (a pending marker found at
load time means "finish the renames").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from repgls._io import atomic_write_bytes

__all__ = ["CHECKPOINT_FILES", "clean_state_dict", "load_checkpoint_meta", "recover", "save_checkpoint"]

CHECKPOINT_FILES = ("last.safetensors", "last.state.pt", "last.json")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def clean_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies (safetensors refuses shared storage); strips compile prefixes."""
    out = {}
    for k, v in sd.items():
        k = k.replace("_orig_mod.", "")
        out[k] = v.detach().to("cpu").clone().contiguous()
    return out


def recover(ckpt_dir: Path, tag: str) -> None:
    """Finish an interrupted commit (pending marker present) or drop stale temporary files."""
    pending = ckpt_dir / f"{tag}.pending.json"
    names = (f"{tag}.safetensors", f"{tag}.state.pt")
    if pending.exists():
        for n in names:
            tmp = ckpt_dir / f"{n}.tmp"
            if tmp.exists():
                os.replace(tmp, ckpt_dir / n)
        os.replace(pending, ckpt_dir / f"{tag}.json")
    else:
        for n in names:
            (ckpt_dir / f"{n}.tmp").unlink(missing_ok=True)


def save_checkpoint(
    ckpt_dir: Path,
    tag: str,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any] | None,
    meta: dict[str, Any],
) -> None:
    """Write ``{tag}.safetensors`` (+ ``{tag}.state.pt``) + ``{tag}.json`` as one atomic commit."""
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    recover(ckpt_dir, tag)
    w_tmp = ckpt_dir / f"{tag}.safetensors.tmp"
    save_file(
        clean_state_dict(weights),
        str(w_tmp),
        metadata={k: str(v) for k, v in meta.items() if isinstance(v, (int, float, str))},
    )
    _fsync_file(w_tmp)
    files = [(w_tmp, ckpt_dir / f"{tag}.safetensors")]
    if state is not None:
        s_tmp = ckpt_dir / f"{tag}.state.pt.tmp"
        with open(s_tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        files.append((s_tmp, ckpt_dir / f"{tag}.state.pt"))
    pending = ckpt_dir / f"{tag}.pending.json"
    atomic_write_bytes(pending, json.dumps(meta, indent=2, default=str).encode(), fsync=True)  # commit point
    for tmp, final in files:
        os.replace(tmp, final)
    os.replace(pending, ckpt_dir / f"{tag}.json")


def load_checkpoint_meta(run_dir: str | os.PathLike, tag: str = "last") -> dict[str, Any]:
    """The JSON meta of a run's ``last`` or ``best`` checkpoint (step, epoch, metrics...)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    recover(ckpt_dir, tag)
    p = ckpt_dir / f"{tag}.json"
    if not p.is_file():
        raise FileNotFoundError(f"no {tag} checkpoint in {ckpt_dir} ({p.name} missing)")
    return json.loads(p.read_text())
