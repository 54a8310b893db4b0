"""The trainer's data: datasets from the image cache and labels, and loaders whose order and augmentation are
functions of (seed, epoch, position), so a run killed mid-epoch resumes exactly (the same batches, the same
augmented images), whatever DataLoader worker produces them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from repgls.config import Config, ConfigError
from repgls.training.distributed import DistContext, sample_seed

__all__ = ["Loaders", "build_datasets", "build_loaders", "check_data_source", "check_label_coverage",
           "check_label_policy", "dataset_ids", "label_arrays", "labels_policy"]


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
                    sample_seed(self.seed, self.epoch, (b * bs + j) * self.world + self.rank),
                    self.epoch,
                )
                for j, i in enumerate(chunk)
            ]


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def label_arrays(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
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


def dataset_ids(ds: Dataset, n: int) -> tuple[list[str], list[str]]:
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


def check_data_source(cfg: Config) -> None:
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

    from repgls.data.adapters import LABEL_PREFIX
    from repgls.data.cache import INDEX, read_meta

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
    if d.labels != "official":
        check_label_coverage(d.cache_dir, d.labels, (d.train_split, d.val_split))
    if d.labels == "official" and not any(c.startswith(LABEL_PREFIX) for c in columns):
        raise ConfigError(
            f"config key 'data.labels': 'official' but the cache {d.cache_dir} (dataset {dataset!r}) has no "
            f"official label columns ({LABEL_PREFIX}<Class>); this dataset ships no label table (Open-i: "
            "reports and MeSH terms only). Mine its reports (`repgls mine` -> `repgls rates`) and set "
            "data.labels to the labels.parquet"
        )


#: Below this share of the training images with a row in the labels file, the labels belong to other studies.
MIN_LABEL_COVERAGE = 0.5


def check_label_coverage(cache_dir: str | Path, labels: str | Path, splits: tuple[str, str]) -> None:
    """Refuse labels that do not cover the cache: fewer than ``MIN_LABEL_COVERAGE`` of the train split's images,
    or none of the val split's, have a row in ``labels`` (study ids joined as the dataset joins them). The
    message says how many matched and shows two ids from each side."""
    import pyarrow.parquet as pq

    from repgls._io import reading
    from repgls.data.adapters import match_study_ids
    from repgls.data.cache import INDEX

    index = pq.read_table(Path(cache_dir) / INDEX, columns=["study_id", "split"]).to_pandas()
    try:
        with reading(labels, "labels Parquet"):
            label_ids = [str(s) for s in pq.read_table(labels, columns=["study_id"]).column("study_id").to_pylist()]
    except (ValueError, KeyError) as e:
        raise ConfigError(f"config key 'data.labels': {e}") from None
    for split, floor in zip(splits, (MIN_LABEL_COVERAGE, 0.0), strict=True):
        ids = index.loc[index["split"].astype(str) == split, "study_id"].astype(str).tolist()
        matched = int((match_study_ids(ids, label_ids) >= 0).sum())
        if ids and (matched == 0 or matched < floor * len(ids)):
            raise ConfigError(
                f"config key 'data.labels': only {matched} of the {len(ids)} {split!r} images of {cache_dir} have "
                f"labels in {labels} (cache study ids {', '.join(map(repr, ids[:2]))}; labels study ids "
                f"{', '.join(map(repr, label_ids[:2])) or 'none'}); build the labels from this dataset's reports "
                "(`repgls rates --studies REPORTS`)")


def labels_policy(cfg: Config) -> str | None:
    """The label policy the training labels were built with (labels.parquet metadata, or the official
    labels' uncertain mapping: ignore -> u-ignore, zeros -> u-zeros, ones -> u-ones); None when unknown."""
    d = cfg.data
    if d.labels == "official":
        return f"u-{d.official_uncertain}"
    if d.labels and Path(d.labels).is_file():
        from repgls.rating import read_labels

        return read_labels(d.labels).meta.get("policy")
    return None


def check_label_policy(cfg: Config, loss: Any) -> None:
    """A loss tagged with a label policy (``u-ones``, ``pu-rm`` = PCE on U-Ones labels...) must get labels built
    with that policy; anything else trains a different method under the loss's name."""
    base = getattr(loss, "base", loss)
    want = getattr(loss, "label_policy", None) or getattr(base, "label_policy", None)
    have = labels_policy(cfg)
    if want and have and want != have:
        how = ("data.official_uncertain=" + want.removeprefix("u-") if cfg.data.labels == "official"
               else f"`repgls rates --policy {want}`")
        raise ConfigError(f"config key 'loss.name': {cfg.loss.name!r} trains on labels built with policy {want!r}, "
                          f"but data.labels {cfg.data.labels!r} has policy {have!r}; build them with {how}")


def build_datasets(cfg: Config, seed: int) -> tuple[Dataset, Dataset, tuple[str, ...]]:
    """Train / val datasets from the image cache and labels.parquet (the config's data section, already checked
    by ``check_data_source`` before the run folder was written)."""
    from repgls.data import CachedImageDataset
    from repgls.rating import read_labels

    d = cfg.data
    labels: Any = "official"
    if d.labels != "official":
        labels = read_labels(d.labels)
        if d.vocab is not None and labels.meta.get("vocab") not in (None, d.vocab):
            raise ConfigError(
                f"config key 'data.vocab': {d.vocab!r} but {d.labels} uses {labels.meta.get('vocab')!r}"
            )
    kw = dict(labels=labels, uncertain=d.official_uncertain, blank=d.official_blank, classes=d.classes)
    try:
        if d.features:  # cached backbone features: the same items with image = the feature vector
            from repgls.data.features import FeatureDataset

            train_ds: Dataset = FeatureDataset(d.features, d.cache_dir, split=d.train_split, **kw)
            val_ds: Dataset = FeatureDataset(d.features, d.cache_dir, split=d.val_split, **kw)
        else:
            train_ds = CachedImageDataset(d.cache_dir, split=d.train_split, augment=d.augment, seed=seed, **kw)
            val_ds = CachedImageDataset(d.cache_dir, split=d.val_split, augment=False, **kw)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"config key 'data.{'features' if 'features' in str(e) else 'classes'}': {e}") from None
    for name, ds in (("data.train_split", train_ds), ("data.val_split", val_ds)):
        if len(ds) == 0:
            raise ConfigError(
                f"config key '{name}': no images of split {getattr(d, name.split('.')[1])!r} in {d.cache_dir}"
            )
    return train_ds, val_ds, tuple(train_ds.classes)  # type: ignore[attr-defined]


@dataclass
class Loaders:
    """Train / val loaders of one process and what the loop needs to know about them."""

    train: DataLoader
    val: DataLoader
    batch_sampler: _EpochBatchSampler
    steps_per_epoch: int  # optimiser steps per epoch
    n_batches: int  # micro-batches per epoch (steps_per_epoch x grad_accum)
    class_counts: np.ndarray  # positives per class in the train split [K] (supervised entries only)
    num_train: int
    val_ids: tuple[list[str], list[str]]  # image ids, study ids of val positions (rank 0 only)


def build_loaders(cfg: Config, train_ds: Dataset, val_ds: Dataset, dd: DistContext) -> Loaders:
    """Samplers and loaders: uniform shuffling (``DistributedSampler``) or class-aware re-sampling (LTML), a
    batch sampler that yields (index, sample seed, epoch) keys, and a val loader over this rank's shard."""
    dc, tc = cfg.data, cfg.train
    cuda = dd.device.type == "cuda"
    y_tr, m_tr = label_arrays(train_ds)
    pos_tr = ((y_tr >= 0.5) & (m_tr > 0)).astype(np.float32)
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
    accum = cfg.optim.grad_accum
    steps_per_epoch = len(index_sampler) // bs // accum
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config: {len(index_sampler)} training samples per process are fewer than one optimiser step "
            f"(data.batch_size={bs} x optim.grad_accum={accum}); lower the batch size"
        )
    n_batches = steps_per_epoch * accum
    batch_sampler = _EpochBatchSampler(index_sampler, bs, n_batches, tc.seed, dd.rank, dd.world)
    nw = dc.num_workers
    common = dict(num_workers=nw, pin_memory=dc.pin_memory and cuda, persistent_workers=nw > 0)
    train_loader = DataLoader(_SeededDataset(train_ds), batch_sampler=batch_sampler,
                              generator=torch.Generator().manual_seed(tc.seed), **common)
    val_positions = list(range(dd.rank, len(val_ds), dd.world))  # type: ignore[arg-type]
    val_loader = DataLoader(_PositionDataset(val_ds), batch_size=dc.eval_batch_size or 2 * bs,
                            sampler=val_positions, **common)
    val_ids = dataset_ids(val_ds, len(val_ds)) if dd.main else ([], [])  # type: ignore[arg-type]
    return Loaders(train=train_loader, val=val_loader, batch_sampler=batch_sampler,
                   steps_per_epoch=steps_per_epoch, n_batches=n_batches, class_counts=pos_tr.sum(0),
                   num_train=len(train_ds), val_ids=val_ids)  # type: ignore[arg-type]
