"""Class-aware re-sampling for long-tailed multi-label data (DB / LTML ``ClassAwareSampler``), DDP-ready.

Algorithm (Wu et al., ECCV 2020 and LTML; ``mllt/datasets/loader/sampler.py``): visit classes in a random
order that is reshuffled after each full cycle over the classes; at each visit take ``samples_per_class``
(3) consecutive images from that class's own cyclic list of positive images, itself reshuffled after each
full pass. Every class is therefore drawn about equally often, whatever its prevalence. Epoch length
defaults to ``max_i n_i * C / reduce`` with ``reduce = 4`` (C = classes with at least one positive).

Unlike the reference (fixed seed, ``set_epoch`` a no-op, single process), the draw here is a pure function of
``(seed, epoch)``: every rank computes the same global draw of ``num_replicas * ceil(num_samples /
num_replicas)`` indices and keeps positions ``rank, rank + R, ...``, so the shards are disjoint slices whose
union is the global draw. No numpy/torch global RNG state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ClassAwareSampler"]


def _cyclic_draw(rng: np.random.Generator, items: np.ndarray, n: int) -> np.ndarray:
    """n items from ``items`` taken in order from consecutive fresh permutations (a reshuffled cycle)."""
    reps = math.ceil(n / len(items)) if n > 0 else 0
    if reps == 0:
        return items[:0]
    return np.concatenate([rng.permutation(items) for _ in range(reps)])[:n]


class ClassAwareSampler(Sampler[int]):
    """Class-aware sampler over a multi-label table.

    Args:
        labels: [N, K] array; an element > 0.5 marks image n positive for class k (NaN / 0 / -1: not).
        num_samples: global epoch length; default ``max_i n_i * C / reduce``.
        seed: base seed; the draw depends only on (seed, epoch).
        num_replicas, rank: DDP world size and rank; default from ``torch.distributed`` when initialised,
            else 1 and 0. ``len(sampler)`` is the per-rank count ``ceil(num_samples / num_replicas)``.
        samples_per_class: consecutive draws per class visit (3 in the reference).
        reduce: epoch-length divisor (4 in the reference).
    """

    def __init__(
        self,
        labels: Any,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        samples_per_class: int = 3,
        reduce: int = 4,
    ) -> None:
        lab = np.asarray(labels, dtype=np.float32)
        if lab.ndim != 2:
            raise ValueError(f"labels must be [N, K], got shape {lab.shape}")
        pos = np.nan_to_num(lab, nan=0.0) > 0.5
        self.class_indices = [np.flatnonzero(pos[:, k]) for k in range(pos.shape[1])]
        self.classes = np.array(
            [k for k, idx in enumerate(self.class_indices) if len(idx) > 0], dtype=np.int64
        )
        if len(self.classes) == 0:
            raise ValueError("no class has a positive image: class-aware sampling is undefined")
        if samples_per_class < 1 or reduce < 1:
            raise ValueError("samples_per_class and reduce must be >= 1")
        if num_replicas is None or rank is None:
            dist = torch.distributed
            on = dist.is_available() and dist.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if on else 1)
            rank = rank if rank is not None else (dist.get_rank() if on else 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        max_n = max(len(i) for i in self.class_indices)
        self.num_samples_global = (
            int(num_samples) if num_samples is not None else max(1, max_n * len(self.classes) // reduce)
        )
        if self.num_samples_global < 1:
            raise ValueError("num_samples must be >= 1")
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.num_samples = math.ceil(self.num_samples_global / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.seed, self.epoch = int(seed), 0
        self.samples_per_class = int(samples_per_class)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; each epoch gives a different draw, identical on every rank."""
        self.epoch = int(epoch)

    def global_indices(self) -> np.ndarray:
        """The global draw of this epoch: int64 [total_size] (total_size = num_replicas * len(self))."""
        rng = np.random.default_rng([self.seed, self.epoch])
        spc = self.samples_per_class
        visits = math.ceil(self.total_size / spc)
        order = _cyclic_draw(rng, self.classes, visits)  # class of each visit
        out = np.empty((visits, spc), dtype=np.int64)
        for k in self.classes:  # fill each class's visits from its own reshuffled cycle
            rows = np.flatnonzero(order == k)
            if len(rows):
                out[rows] = _cyclic_draw(rng, self.class_indices[k], len(rows) * spc).reshape(len(rows), spc)
        return out.reshape(-1)[: self.total_size]

    def __iter__(self) -> Iterator[int]:
        shard = self.global_indices()[self.rank :: self.num_replicas]
        return iter(shard.tolist())

    def __len__(self) -> int:
        return self.num_samples
