"""The trainer: ``repgls.train(config) -> run_dir``.

One loop for one GPU, many GPUs and many nodes (PyTorch DDP under ``torchrun``; the process group is
initialised from RANK / WORLD_SIZE / LOCAL_RANK). Design choices, and why:

* **Exact resume, mid-epoch.** An epoch's sample order is a pure function of (seed, epoch, rank): a
  ``DistributedSampler`` (or the class-aware sampler) re-seeded per epoch. Each sample's augmentation RNG is
  seeded from (seed, epoch, global position), so the images do not depend on which DataLoader worker
  produced them. A checkpoint stores the position in the epoch, the optimiser / scheduler / EMA / loss
  state and every RNG state, so a run killed mid-epoch and resumed ends with the same weights.
* **Atomic checkpoints.** ``checkpoints/last.safetensors`` (weights), ``last.state.pt`` (everything else),
  ``last.json`` (meta). All are written to temporary files first; a ``last.pending.json`` marker is written
  atomically once they are complete, then the files are renamed in place, and the marker becomes
  ``last.json``. A crash at any point leaves either the old or the new checkpoint (a pending marker found at
  load time means "finish the renames").
* **Only rank 0 writes**; validation predictions are gathered from all ranks (each rank predicts a shard)
  and de-duplicated by dataset position before computing AUCs.

Run folder: ``config.yaml``, ``checkpoints/{last,best}.safetensors`` + ``last.state.pt`` + ``{last,best}.json``,
``metrics.jsonl``, ``tb/`` (TensorBoard), ``predictions_val.parquet`` (best model).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from repgls._io import atomic_path, atomic_write_bytes
from repgls.config import (
    Config,
    ConfigError,
    config_from_dict,
    load_config,
    read_yaml,
    save_config,
)

__all__ = ["CHECKPOINT_FILES", "load_checkpoint_meta", "train"]

CHECKPOINT_FILES = ("last.safetensors", "last.state.pt", "last.json")
_TARGET_KEYS = ("y", "r", "mask")


# ---------------------------------------------------------------------------------------------------------
# Small utilities


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Checkpoint metadata and logs: atomic and fsynced (a kill must leave either old or new bytes)."""
    atomic_write_bytes(path, data, fsync=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 32-bit seed for one sample draw, independent of DataLoader workers."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party augmentations use the global RNG
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # a different GPU count: keep the fresh CUDA RNG
            torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------
# Distributed setup


@dataclass
class _Dist:
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


def _setup_dist(device_cfg: str) -> _Dist:
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
        torch.cuda.set_device(device)
    owns = False
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    elif world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return _Dist(rank=rank, world=world, local_rank=local_rank, device=device, owns_group=owns)


# ---------------------------------------------------------------------------------------------------------
# Data


class _SeededDataset(Dataset):
    """Wraps a dataset so item ``(index, seed, epoch)`` is produced under RNGs seeded with ``seed``.

    Augmentations drawn from python ``random``, numpy's global RNG or torch's CPU generator become a function
    of the sample draw, not of the worker that happened to load it (needed for exact resume).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, seed, epoch = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None and getattr(self.dataset, "epoch", None) != epoch:
            set_epoch(epoch)  # datasets that seed their own augmentation per (seed, epoch, item)
        in_main = torch.utils.data.get_worker_info() is None
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state()) if in_main else None  # noqa: NPY002
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            if saved is not None:
                random.setstate(saved[0])
                np.random.set_state(saved[1])  # noqa: NPY002
                torch.set_rng_state(saved[2])

    def __getitems__(self, keys: list[tuple[int, int, int]]) -> list[Any]:
        """Batched fetch (DataLoader calls it per batch) for datasets that seed their own augmentation per
        (seed, epoch, item): one memmap read and one batched augmentation instead of B single ones."""
        getitems = getattr(self.dataset, "__getitems__", None)
        if not keys or getitems is None or not getattr(self.dataset, "seeds_itself", False) \
                or len({k[2] for k in keys}) != 1:
            return [self[k] for k in keys]
        epoch = keys[0][2]
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None and getattr(self.dataset, "epoch", None) != epoch:
            set_epoch(epoch)
        return getitems([k[0] for k in keys])


class _PositionDataset(Dataset):
    """Adds ``_pos`` (the dataset position) to each item, to align gathered predictions with ids."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.dataset[i])
        item["_pos"] = i
        return item


class _EpochBatchSampler:
    """Batches of ``(index, sample_seed, epoch)`` for one rank; the order is a function of (seed, epoch, rank).

    ``set_epoch(epoch, start)`` selects the epoch and skips the first ``start`` batches (mid-epoch resume).
    """

    def __init__(
        self, index_sampler: Any, batch_size: int, num_batches: int, seed: int, rank: int, world: int
    ) -> None:
        self.index_sampler = index_sampler
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        self.index_sampler.set_epoch(self.epoch)
        indices = list(self.index_sampler)
        bs = self.batch_size
        for b in range(self.start, self.num_batches):
            chunk = indices[b * bs : (b + 1) * bs]
            yield [
                (
                    int(i),
                    _sample_seed(self.seed, self.epoch, (b * bs + j) * self.world + self.rank),
                    self.epoch,
                )
                for j, i in enumerate(chunk)
            ]


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _label_arrays(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Training labels y and mask [N, K] (from dataset attributes when present, else by iterating)."""
    for y_attr, m_attr in (("y", "mask"), ("labels_y", "labels_mask")):
        y, m = getattr(ds, y_attr, None), getattr(ds, m_attr, None)
        if y is not None and m is not None and not callable(y) and not callable(m):
            return _to_numpy(y).astype(np.float32), _to_numpy(m).astype(np.float32)
    ys, ms = [], []
    for i in range(len(ds)):  # type: ignore[arg-type]
        item = ds[i]
        ys.append(_to_numpy(item["y"]))
        ms.append(_to_numpy(item["mask"]))
    return np.stack(ys).astype(np.float32), np.stack(ms).astype(np.float32)


def _ids(ds: Dataset, n: int) -> tuple[list[str], list[str]]:
    """Per-position image_id and study_id of a dataset (attributes or an index frame); positions otherwise."""
    for attr in ("index", "frame", "index_df", "df", "table"):
        df = getattr(ds, attr, None)
        if df is not None and hasattr(df, "columns") and "image_id" in df.columns:
            sid = df["study_id"] if "study_id" in df.columns else df["image_id"]
            return [str(v) for v in df["image_id"]], [str(v) for v in sid]
    img = getattr(ds, "image_ids", None)
    if img is not None:
        st = getattr(ds, "study_ids", None)
        return [str(v) for v in img], [str(v) for v in (st if st is not None else img)]
    pos = [str(i) for i in range(n)]
    return pos, pos


def _check_data_source(cfg: Config) -> None:
    """Cheap checks of ``data.cache_dir`` / ``data.labels`` (run before the run folder is created)."""
    d = cfg.data
    if not d.cache_dir:
        raise ConfigError("config key 'data.cache_dir' is required (an image cache from `repgls prepare`)")
    if not d.labels:
        raise ConfigError(
            "config key 'data.labels' is required (labels.parquet from `repgls rates`, or "
            "'official' for a dataset's own labels)"
        )
    if not Path(d.cache_dir).is_dir():
        raise ConfigError(f"config key 'data.cache_dir': folder not found: {d.cache_dir}")
    if d.labels != "official" and not Path(d.labels).is_file():
        raise ConfigError(f"config key 'data.labels': file not found: {d.labels}")
    import pyarrow.parquet as pq

    from repgls.data.cache import INDEX, read_meta
    from repgls.data.datasets import LABEL_PREFIX

    try:
        dataset = read_meta(d.cache_dir).get("dataset") or "?"
        columns = pq.read_schema(Path(d.cache_dir) / INDEX).names
        splits = set(pq.read_table(Path(d.cache_dir) / INDEX, columns=["split"]).column("split").to_pylist())
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"config key 'data.cache_dir': {d.cache_dir} is not an image cache ({e})") from e
    for key in ("train_split", "val_split"):
        if getattr(d, key) not in splits:
            raise ConfigError(
                f"config key 'data.{key}': no images of split {getattr(d, key)!r} in {d.cache_dir} "
                f"(its splits: {', '.join(sorted(map(str, splits)))})"
            )
    if d.labels == "official" and not any(c.startswith(LABEL_PREFIX) for c in columns):
        raise ConfigError(
            f"config key 'data.labels': 'official' but the cache {d.cache_dir} (dataset {dataset!r}) has no "
            f"official label columns ({LABEL_PREFIX}<Class>); this dataset ships no label table (Open-i: "
            "reports and MeSH terms only). Mine its reports (`repgls mine` -> `repgls rates`) and set "
            "data.labels to the labels.parquet"
        )


def _build_datasets(cfg: Config, seed: int) -> tuple[Dataset, Dataset, tuple[str, ...]]:
    """Train / val datasets from the image cache and labels.parquet (the config's data section, already checked
    by ``_check_data_source`` before the run folder was written)."""
    from repgls.data import CachedImageDataset
    from repgls.rates import read_labels

    d = cfg.data
    labels: Any = "official"
    if d.labels != "official":
        labels = read_labels(d.labels)
        if d.vocab is not None and labels.meta.get("vocab") not in (None, d.vocab):
            raise ConfigError(
                f"config key 'data.vocab': {d.vocab!r} but {d.labels} uses {labels.meta.get('vocab')!r}"
            )
    train_ds = CachedImageDataset(
        d.cache_dir, labels=labels, split=d.train_split, augment=d.augment, seed=seed
    )
    val_ds = CachedImageDataset(d.cache_dir, labels=labels, split=d.val_split, augment=False)
    for name, ds in (("data.train_split", train_ds), ("data.val_split", val_ds)):
        if len(ds) == 0:
            raise ConfigError(
                f"config key '{name}': no images of split {getattr(d, name.split('.')[1])!r} in {d.cache_dir}"
            )
    return train_ds, val_ds, tuple(train_ds.classes)


# ---------------------------------------------------------------------------------------------------------
# Model wrapper, schedule


class _ForwardAll(nn.Module):
    """``forward`` returns ``model.forward_all(x)`` (or ``{"logits": model(x)}``) so DDP sees one forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fa = getattr(self.model, "forward_all", None)
        return fa(x) if fa is not None else {"logits": self.model(x)}


def _lr_factor(step: int, total: int, warmup: int, init: float, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based): linear warm-up, then cosine/constant."""
    if warmup > 0 and step < warmup:
        return init + (1.0 - init) * (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, tokens and embeddings (1-d parameters)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith((".cls_token", ".pos_embed")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = _param_groups(model, o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=o.betas)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def _clean_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies (safetensors refuses shared storage); strips compile prefixes."""
    out = {}
    for k, v in sd.items():
        k = k.replace("_orig_mod.", "")
        out[k] = v.detach().to("cpu").clone().contiguous()
    return out


def _recover(ckpt_dir: Path, tag: str) -> None:
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


def _save_checkpoint(
    ckpt_dir: Path,
    tag: str,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any] | None,
    meta: dict[str, Any],
) -> None:
    """Write ``{tag}.safetensors`` (+ ``{tag}.state.pt``) + ``{tag}.json`` as one atomic commit."""
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _recover(ckpt_dir, tag)
    w_tmp = ckpt_dir / f"{tag}.safetensors.tmp"
    save_file(
        _clean_state_dict(weights),
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
    _atomic_write_bytes(pending, json.dumps(meta, indent=2, default=str).encode())  # the commit point
    for tmp, final in files:
        os.replace(tmp, final)
    os.replace(pending, ckpt_dir / f"{tag}.json")


def load_checkpoint_meta(run_dir: str | os.PathLike, tag: str = "last") -> dict[str, Any]:
    """The JSON meta of a run's ``last`` or ``best`` checkpoint (step, epoch, metrics...)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    _recover(ckpt_dir, tag)
    p = ckpt_dir / f"{tag}.json"
    if not p.is_file():
        raise FileNotFoundError(f"no {tag} checkpoint in {ckpt_dir} ({p.name} missing)")
    return json.loads(p.read_text())


# ---------------------------------------------------------------------------------------------------------
# Logging


class _MetricsLog:
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
            _atomic_write_bytes(self.path, "".join(lines).encode())
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


class _Progress:
    """A rich progress bar with img/s and ETA (rank 0, interactive terminals or REPGLS_PROGRESS=1)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        self.task = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        if not (console.is_terminal or os.environ.get("REPGLS_PROGRESS") == "1"):
            return
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.bar.start()

    def epoch(self, desc: str, total: int, completed: int) -> None:
        if self.bar is None:
            return
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(desc, total=total, completed=completed, info="")

    def advance(self, info: str | None) -> None:
        if self.bar is not None and self.task is not None:
            if info is None:
                self.bar.update(self.task, advance=1)
            else:
                self.bar.update(self.task, advance=1, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _say(msg: str, enabled: bool) -> None:
    if enabled:
        from rich.console import Console

        Console(stderr=True, highlight=False).print(msg)


# ---------------------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def _predict(
    model: nn.Module, loader: DataLoader, device: torch.device, autocast: Any, channels_last: bool
) -> dict[str, np.ndarray]:
    """Positions, probabilities, rates (if the model has a rate head), y and mask over a loader."""
    model.eval()
    pos, prob, rate, ys, ms = [], [], [], [], []
    for batch in loader:
        x = batch["image"].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = _ForwardAll(model)(x)
        prob.append(torch.sigmoid(out["logits"].float()).cpu().numpy())
        if "rate" in out:
            rate.append(out["rate"].float().cpu().numpy())
        pos.append(_to_numpy(batch["_pos"]).astype(np.int64))
        ys.append(_to_numpy(batch["y"]).astype(np.float32))
        ms.append(_to_numpy(batch["mask"]).astype(np.float32))
    res = {
        "pos": np.concatenate(pos) if pos else np.zeros(0, np.int64),
        "prob": np.concatenate(prob) if prob else None,
        "y": np.concatenate(ys) if ys else None,
        "mask": np.concatenate(ms) if ms else None,
    }
    if rate:
        res["rate"] = np.concatenate(rate)
    return res


def _gather_predictions(local: dict[str, Any], dd: _Dist) -> dict[str, Any] | None:
    """All ranks' predictions on rank 0, de-duplicated and sorted by position (None on other ranks)."""
    parts = [local]
    if dd.enabled:
        parts = [None] * dd.world  # type: ignore[list-item]
        dist.all_gather_object(parts, local)
    if not dd.main:
        return None
    parts = [p for p in parts if p is not None and p["prob"] is not None]
    out: dict[str, Any] = {}
    pos = np.concatenate([p["pos"] for p in parts])
    uniq, first = np.unique(pos, return_index=True)
    out["pos"] = uniq
    for k in ("prob", "rate", "y", "mask"):
        if all(k in p and p[k] is not None for p in parts):
            out[k] = np.concatenate([p[k] for p in parts])[first]
    return out


def _val_metrics(pred: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """Per-class ROC-AUC on supervised rows (mask 1) and their mean over classes where AUC is defined."""
    from repgls.metrics import per_class_auc

    y = np.where(pred["mask"] > 0, (pred["y"] >= 0.5).astype(np.float64), np.nan)
    aucs, _ = per_class_auc(y, pred["prob"])
    finite = aucs[np.isfinite(aucs)]
    return {
        "mean_auc": float(finite.mean()) if finite.size else float("nan"),
        "n_classes_scored": int(finite.size),
        "auc": {c: (float(a) if np.isfinite(a) else None) for c, a in zip(classes, aucs, strict=True)},
    }


def _write_predictions(
    path: Path,
    pred: dict[str, Any],
    ids: tuple[list[str], list[str]],
    classes: Sequence[str],
    meta: dict[str, Any],
) -> None:
    """predictions_val.parquet: image_id, study_id, prob:C, rate:C (if any), label:C (NaN = unsupervised)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    pos = pred["pos"]
    cols: dict[str, Any] = {
        "image_id": [ids[0][i] for i in pos],
        "study_id": [ids[1][i] for i in pos],
    }
    for k, c in enumerate(classes):
        cols[f"prob:{c}"] = pred["prob"][:, k].astype(np.float32)
    if "rate" in pred:
        for k, c in enumerate(classes):
            cols[f"rate:{c}"] = pred["rate"][:, k].astype(np.float32)
    for k, c in enumerate(classes):
        cols[f"label:{c}"] = np.where(pred["mask"][:, k] > 0, pred["y"][:, k], np.nan).astype(np.float32)
    table = pa.Table.from_pandas(pd.DataFrame(cols), preserve_index=False)
    table = table.replace_schema_metadata(
        {"repgls": json.dumps({**meta, "classes": list(classes)}, default=str)}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


# ---------------------------------------------------------------------------------------------------------
# The loop


def _resolve_config(
    config: Config | dict | str | os.PathLike | None,
    overrides: list[str] | None,
    resume: str | os.PathLike | None,
) -> Config:
    if resume is not None:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {resume}: {saved} not found (not a run folder?)")
        from repgls.config import apply_overrides

        raw = apply_overrides(read_yaml(saved), [f"output.run_dir={Path(resume)}", *(overrides or [])])
        return config_from_dict(raw)
    if isinstance(config, Config):
        if overrides:
            from repgls.config import apply_overrides

            return config_from_dict(apply_overrides(config.to_dict(), overrides))
        return config
    if isinstance(config, dict):
        from repgls.config import apply_overrides

        return config_from_dict(apply_overrides(config, overrides))
    if config is None:
        raise ConfigError("train: give a config (path, dict or Config) or resume=RUN_DIR")
    return load_config(config, overrides)


def train(
    config: Config | dict | str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    resume: str | os.PathLike | None = None,
    *,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
    classes: Sequence[str] | None = None,
) -> Path:
    """Train a classifier and return its run folder.

    Args:
        config: a :class:`repgls.config.Config`, a nested dict, or a YAML path.
        overrides: ``["optim.lr=3e-4", "train.epochs=2"]`` (YAML-typed values).
        resume: a run folder; continues from ``checkpoints/last`` exactly (mid-epoch included) with the
            run's saved ``config.yaml`` (plus ``overrides``, e.g. ``train.epochs=20`` to extend it).
        train_dataset, val_dataset, classes: train on in-memory datasets instead of ``data.cache_dir`` /
            ``data.labels``; items are dicts ``{"image" [C,S,S], "y", "r", "mask" [K], "index"}``.

    Under ``torchrun`` every process calls this; the process group is initialised here from the environment
    (and destroyed at the end if it was initialised here).
    """
    cfg = _resolve_config(config, overrides, resume)
    dd = _setup_dist(cfg.train.device)
    try:
        return _run(cfg, dd, resume is not None, train_dataset, val_dataset, classes)
    finally:
        if dd.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _run(
    cfg: Config,
    dd: _Dist,
    resuming: bool,
    train_ds: Dataset | None,
    val_ds: Dataset | None,
    classes: Sequence[str] | None,
) -> Path:
    from repgls.losses import create_loss
    from repgls.models import create_model

    tc, oc, dc = cfg.train, cfg.optim, cfg.data
    run_dir = Path(cfg.output.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    device = dd.device
    cuda = device.type == "cuda"

    if train_ds is None and val_ds is None:
        _check_data_source(cfg)  # a bad data section stops the run before the run folder is written

    # --- run folder
    if dd.main:
        if resuming:
            _recover(ckpt_dir, "last")
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
    if dd.enabled:
        dist.barrier()

    # --- determinism
    _seed_all(tc.seed)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif cuda:
        torch.backends.cudnn.benchmark = True
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # --- data
    if train_ds is None or val_ds is None:
        if train_ds is not None or val_ds is not None:
            raise ValueError("train(): give both train_dataset and val_dataset, or neither")
        train_ds, val_ds, classes = _build_datasets(cfg, tc.seed)
    first = train_ds[0]
    num_classes = int(first["y"].shape[-1])
    img_size = int(first["image"].shape[-1])
    if dc.image_size is not None and dc.image_size != img_size:
        raise ConfigError(f"config key 'data.image_size': {dc.image_size} but the images are {img_size} px")
    if classes is None:
        classes = tuple(getattr(train_ds, "classes", None) or [f"class_{k}" for k in range(num_classes)])
    classes = tuple(classes)
    if len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names for {num_classes} label columns")
    y_tr, m_tr = _label_arrays(train_ds)
    pos_tr = ((y_tr >= 0.5) & (m_tr > 0)).astype(np.float32)
    class_counts = pos_tr.sum(0)

    bs = dc.batch_size
    if dc.class_aware:
        from repgls.data.sampling import ClassAwareSampler

        index_sampler: Any = ClassAwareSampler(
            pos_tr, num_samples=dc.class_aware_num_samples, seed=tc.seed, num_replicas=dd.world, rank=dd.rank
        )
    else:
        from torch.utils.data import DistributedSampler

        index_sampler = DistributedSampler(
            train_ds, num_replicas=dd.world, rank=dd.rank, shuffle=True, seed=tc.seed, drop_last=True
        )
    accum = oc.grad_accum
    steps_per_epoch = len(index_sampler) // bs // accum
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config: {len(index_sampler)} training samples per process are fewer than one optimiser step "
            f"(data.batch_size={bs} x optim.grad_accum={accum}); lower the batch size"
        )
    n_batches = steps_per_epoch * accum
    batch_sampler = _EpochBatchSampler(index_sampler, bs, n_batches, tc.seed, dd.rank, dd.world)
    nw = dc.num_workers
    loader_gen = torch.Generator().manual_seed(tc.seed)
    train_loader = DataLoader(
        _SeededDataset(train_ds),
        batch_sampler=batch_sampler,
        num_workers=nw,
        pin_memory=dc.pin_memory and cuda,
        persistent_workers=nw > 0,
        generator=loader_gen,
    )
    val_positions = list(range(dd.rank, len(val_ds), dd.world))  # type: ignore[arg-type]
    val_loader = DataLoader(
        _PositionDataset(val_ds),
        batch_size=dc.eval_batch_size or 2 * bs,
        sampler=val_positions,
        num_workers=nw,
        pin_memory=dc.pin_memory and cuda,
        persistent_workers=nw > 0,
    )
    val_ids = _ids(val_ds, len(val_ds)) if dd.main else ([], [])  # type: ignore[arg-type]

    # --- model, loss, optimiser
    model = create_model(
        cfg.model.name,
        num_classes=num_classes,
        in_chans=cfg.model.in_chans,
        pretrained=cfg.model.pretrained,
        img_size=img_size,
        **cfg.model.kwargs,
    )
    channels_last = tc.channels_last and cuda
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = create_loss(
        cfg.loss.name,
        class_counts=class_counts,
        num_samples=len(train_ds),  # type: ignore[arg-type]
        **cfg.loss.kwargs,
    )
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)
    ema = None
    if oc.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=oc.ema_decay)
    optimizer = _make_optimizer(cfg, model)
    total_steps = steps_per_epoch * tc.epochs
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)
    min_ratio = oc.min_lr / oc.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: _lr_factor(s, total_steps, oc.warmup_steps, oc.warmup_init_factor, oc.schedule, min_ratio),
    )
    fwd: nn.Module = _ForwardAll(model)
    if tc.compile:
        fwd = torch.compile(fwd)  # type: ignore[assignment]
    if dd.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd = DDP(fwd, device_ids=[device.index] if cuda else None)
    use_bf16 = tc.bf16 and cuda

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    # --- state (fresh or resumed)
    step, epoch, batch_in_epoch = 0, 0, 0
    best: dict[str, Any] = {"mean_auc": -math.inf, "epoch": None, "step": None}
    keep_records: int | None = None
    rng_to_restore = None
    last_val_step: int | None = None
    if resuming:
        from safetensors.torch import load_file

        _recover(ckpt_dir, "last")
        state = torch.load(ckpt_dir / "last.state.pt", map_location="cpu", weights_only=False)
        weights = load_file(str(ckpt_dir / "last.safetensors"))
        if int(state["step"]) != int(json.loads((ckpt_dir / "last.json").read_text())["step"]):
            raise RuntimeError(
                f"{ckpt_dir}: last.state.pt and last.json disagree on the step (corrupt checkpoint)"
            )
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
        if state.get("loss") and isinstance(loss_fn, nn.Module):
            loss_fn.load_state_dict(state["loss"])
        step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        best = state["best"]
        keep_records = int(state["n_records"])
        last_val_step = state.get("last_val_step")
        if int(state.get("world_size", dd.world)) != dd.world:
            _say(
                f"[yellow]warning:[/] resuming a {state['world_size']}-process run with {dd.world} processes: "
                "the data order differs from the uninterrupted run",
                dd.main,
            )
        rngs = state["rng"]
        rng_to_restore = rngs[dd.rank] if len(rngs) == dd.world else rngs[0]
        _say(
            f"resumed {run_dir} at epoch {epoch}, step {step} (batch {batch_in_epoch} of {n_batches})",
            dd.main,
        )
    else:
        _seed_all(tc.seed + 1_000_003 * dd.rank)  # per-rank stream for dropout etc.

    log = _MetricsLog(run_dir, dd.main, keep_records, step if resuming else None)
    progress = _Progress(tc.progress and dd.main)
    img_per_step = bs * accum * dd.world

    def save_last(ep: int, b_in_ep: int) -> None:
        rngs = [_rng_state()]
        if dd.enabled:
            gathered: list[Any] = [None] * dd.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if not dd.main:
            return
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "loss": loss_fn.state_dict() if isinstance(loss_fn, nn.Module) else None,
            "step": step,
            "epoch": ep,
            "batch_in_epoch": b_in_ep,
            "best": best,
            "rng": rngs,
            "world_size": dd.world,
            "n_records": log.n_records,
            "last_val_step": last_val_step,
            "config": cfg.to_dict(),
        }
        meta = {
            "tag": "last",
            "step": step,
            "epoch": ep,
            "batch_in_epoch": b_in_ep,
            "batches_per_epoch": n_batches,
            "best_mean_auc": best["mean_auc"],
            "world_size": dd.world,
            "time": time.time(),
        }
        _save_checkpoint(ckpt_dir, "last", model.state_dict(), state, meta)

    def validate(ep: int) -> None:
        eval_model = ema.module if (ema is not None and oc.ema_eval) else model
        local = _predict(eval_model, val_loader, device, autocast, channels_last)
        pred = _gather_predictions(local, dd)
        is_best = False
        if dd.main:
            m = _val_metrics(pred, classes)
            rec = {
                "kind": "val",
                "step": step,
                "epoch": ep,
                "mean_auc": m["mean_auc"],
                "n_classes_scored": m["n_classes_scored"],
                "auc": m["auc"],
                "time": time.time(),
            }
            log.write(rec)
            score = m["mean_auc"] if math.isfinite(m["mean_auc"]) else -math.inf
            is_best = best["epoch"] is None or score > best["mean_auc"]
            if is_best:
                best.update(mean_auc=score, epoch=ep, step=step)
                meta = {
                    "tag": "best",
                    "step": step,
                    "epoch": ep,
                    "mean_auc": m["mean_auc"],
                    "ema": eval_model is not model,
                    "auc": m["auc"],
                    "time": time.time(),
                }
                _save_checkpoint(ckpt_dir, "best", eval_model.state_dict(), None, meta)
                _write_predictions(
                    run_dir / "predictions_val.parquet",
                    pred,
                    val_ids,
                    classes,
                    {"epoch": ep, "step": step, "mean_auc": m["mean_auc"]},
                )
            _say(
                f"epoch {ep} step {step}: val mean AUC {m['mean_auc']:.4f}"
                f" ({m['n_classes_scored']} classes){' [best]' if is_best else ''}",
                True,
            )
        if dd.enabled:
            obj = [best]
            dist.broadcast_object_list(obj, src=0)
            best.update(obj[0])

    # --- train
    if rng_to_restore is not None:
        _set_rng_state(rng_to_restore)
    done = tc.max_steps is not None and step >= tc.max_steps
    try:
        while epoch < tc.epochs and not done:
            if hasattr(loss_fn, "set_epoch"):
                loss_fn.set_epoch(epoch)
            batch_sampler.set_epoch(epoch, batch_in_epoch)
            progress.epoch(f"epoch {epoch + 1}/{tc.epochs}", steps_per_epoch, batch_in_epoch // accum)
            fwd.train()
            # window sums stay on the device; they are read (one sync) only at log steps
            window_loss, window_n, window_steps = torch.zeros((), device=device), 0, 0
            t0 = time.perf_counter()
            it = iter(train_loader) if batch_in_epoch < n_batches else iter(())
            micro = 0
            for batch in it:
                x = batch["image"].to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                tgt = {k: batch[k].to(device, non_blocking=True) for k in _TARGET_KEYS}
                sync = micro == accum - 1
                ctx = fwd.no_sync() if (dd.enabled and not sync) else contextlib.nullcontext()  # type: ignore[operator]
                with ctx:
                    with autocast():
                        out = fwd(x)
                    out = {k: v.float() for k, v in out.items()}
                    loss = loss_fn(out, tgt)
                    if "rate" in out:  # keep the rate head in the graph for losses that ignore it (DDP)
                        loss = loss + 0.0 * out["rate"].sum()
                    (loss / accum).backward()
                window_loss += loss.detach()
                window_n += 1
                micro += 1
                batch_in_epoch += 1
                if not sync:
                    continue
                micro = 0
                grad_norm = None
                if oc.grad_clip is not None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), oc.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                if ema is not None:
                    ema.update(model, step=step)
                window_steps += 1
                if step % tc.log_every == 0:
                    mean_loss = window_loss / max(window_n, 1)
                    if dd.enabled:
                        dist.all_reduce(mean_loss)
                        mean_loss = mean_loss / dd.world
                    loss_val = float(mean_loss)  # syncs the device: the window's time is then exact
                    dt = time.perf_counter() - t0
                    ips = img_per_step * window_steps / dt if dt > 0 else float("nan")
                    rec = {
                        "kind": "train",
                        "step": step,
                        "epoch": epoch,
                        "loss": loss_val,
                        "lr": scheduler.get_last_lr()[0],
                        "img_per_s": ips,
                        "time": time.time(),
                    }
                    if grad_norm is not None:
                        rec["grad_norm"] = float(grad_norm)
                    log.write(rec)
                    progress.advance(f"loss {loss_val:.4f}  {ips:,.0f} img/s")
                    window_loss, window_n, window_steps = torch.zeros((), device=device), 0, 0
                    t0 = time.perf_counter()
                else:
                    progress.advance(None)
                if tc.max_steps is not None and step >= tc.max_steps:
                    done = True
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and batch_in_epoch < n_batches:
                    save_last(epoch, batch_in_epoch)
                if done:
                    break
            epoch_finished = batch_in_epoch >= n_batches
            if epoch_finished and ((epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs):
                validate(epoch)
                last_val_step = step
            if epoch_finished:
                epoch, batch_in_epoch = epoch + 1, 0
            save_last(epoch, batch_in_epoch)
        if last_val_step != step:
            validate(max(0, epoch - 1) if batch_in_epoch == 0 else epoch)
            last_val_step = step
            save_last(epoch, batch_in_epoch)
    finally:
        progress.close()
        log.close()
    if dd.enabled:
        dist.barrier()
    return run_dir


class _CallableModule(types.ModuleType):
    """Makes ``repgls.train(...)`` call :func:`train` even once ``repgls.train`` resolves to this module
    (importing a submodule binds it on the package, shadowing the lazy function export)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
