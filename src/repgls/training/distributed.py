"""Processes and devices: one process, or many under ``torchrun`` (PyTorch DDP), and the seeds and RNG states.

The process group is initialised from RANK / WORLD_SIZE / LOCAL_RANK (nccl on CUDA, gloo on CPU). An epoch's
sample order and each sample's augmentation are functions of (seed, epoch, position), so runs resume exactly.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from repgls.config import ConfigError

__all__ = ["DistContext", "rng_state", "sample_seed", "seed_all", "set_rng_state", "setup_distributed"]


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 32-bit seed for one sample draw, independent of DataLoader workers."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party augmentations use the global RNG
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # a different GPU count: keep the fresh CUDA RNG
            torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class DistContext:
    """Rank, world size and device of this process; ``owns_group`` when it initialised the process group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_cfg: str) -> DistContext:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (torchrun) and initialise the process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_cfg == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_cfg)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"config key 'train.device': {device_cfg!r} requested but CUDA is not available"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"process with LOCAL_RANK {local_rank} wants {device} but this machine has "
                f"{torch.cuda.device_count()} GPU(s): start at most one process per GPU (torchrun "
                "--nproc_per_node), or set train.device=cpu to use gloo"
            )
        torch.cuda.set_device(device)
    owns = False
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    elif world > 1:
        if device.type == "cuda":  # device_id binds the group to this GPU (no guessing at the first barrier)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
        owns = True
    return DistContext(rank=rank, world=world, local_rank=local_rank, device=device, owns_group=owns)
