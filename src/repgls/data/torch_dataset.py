"""``CachedImageDataset``: a torch Dataset over an image cache (see repgls.data.cache), with augmentations.

Each item is a dict: ``image`` float32 [1, S', S'] (the one normalisation of repgls.data.images),
``y``, ``r``, ``mask`` float32 [K] and ``index`` (int, position in this dataset). The memmap is opened
lazily in each process (and reopened after a fork), so the dataset is safe with DataLoader workers.

Augmentation (train, :class:`XrayAugment`): random resized crop (area 0.7-1, aspect 0.9-1.1) to
``crop_size``, rotation +-10 deg, shift +-5%, brightness / contrast jitter 0.2 (the semantics of
torchvision.transforms.v2 RandomResizedCrop + RandomAffine + ColorJitter), fused into ONE affine warp
(``affine_grid`` + ``grid_sample``, bilinear, black outside) on the tensor: 2-3x cheaper than chaining the
v2 transforms, and it also runs batched on a GPU (``XrayAugment.batch``). No flips (the heart is on the
left). Deterministic: item ``i`` at epoch ``e`` draws from a ``torch.Generator`` seeded from
(seed, e, i), whatever the worker count and whatever batch it is fetched in, without touching the global
RNG. Without augmentation the image is resized to ``crop_size`` (whole field of view, antialiased v2.Resize)
when it differs from the cache size.

Batched path (``get_batch`` / ``__getitems__``, used automatically by ``DataLoader(ds, batch_size=B)``):
one sorted read of the memmap straight into a uint8 batch, per-item parameters from per-item seeds, then
ONE batched ``grid_sample`` (in cache-sized chunks on CPU) with brightness / contrast and the model
normalisation fused into one multiply-add + clamp, and labels gathered by array indexing. ``ds[i]`` runs the
same code for a batch of one, so both give the same tensors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from repgls.data.adapters import labels_for_rows
from repgls.data.cache import DONE, IMAGES, INDEX, read_meta, read_status
from repgls.data.images import NORM_MEAN, NORM_STD, normalize


class XrayAugment:
    """Fused geometric + intensity augmentation on tensors (pixel scale 0-255 in, float 0-255 out).

    ``aug(img_u8 [1, S, S], generator) -> float32 [1, C, C]``; ``aug.batch(x [B, 1, S, S], generator)``
    does the same per image of a batch (any device). ``params`` / ``params_seeded`` draw the affine and
    intensity parameters, ``apply`` warps a batch with given parameters (so per-item seeds can be drawn
    one by one and applied in ONE batched ``grid_sample``); the output of image b depends only on
    ``x[b]`` and its parameters, not on the rest of the batch.
    """

    #: images per grid_sample call on CPU: keeps a chunk's input, grid and output in L2 (4 images ~3.4 MB;
    #: ~2x faster than one call over 64 images on a 2 MB-L2 Xeon); GPUs take the whole batch at once.
    cpu_chunk = 4

    def __init__(self, crop_size: int, scale: tuple[float, float] = (0.7, 1.0), ratio: tuple[float, float] = (0.9, 1.1),
                 degrees: float = 10.0, translate: float = 0.05, brightness: float = 0.2,
                 contrast: float = 0.2) -> None:
        self.crop_size, self.scale, self.ratio = int(crop_size), scale, ratio
        self.degrees, self.translate, self.brightness, self.contrast = degrees, translate, brightness, contrast

    def params(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random affine matrices theta [n, 2, 3] (output -> input, normalised coords) and (gain, contrast) [n, 2].

        One ``torch.rand`` call per draw (plain-float arithmetic after it): cheap enough per item.
        """
        return self._from_uniform(torch.rand(n, 9, generator=generator, dtype=torch.float64).tolist())

    def params_seeded(self, seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw per seed, stacked: row b equals ``params(1, torch.Generator().manual_seed(seeds[b]))``."""
        gen = torch.Generator()
        u: list[list[float]] = []
        for s in seeds:
            gen.manual_seed(int(s))  # resets the whole state: same as a fresh generator
            u.append(torch.rand(1, 9, generator=gen, dtype=torch.float64)[0].tolist())
        return self._from_uniform(u)

    def _from_uniform(self, u: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        theta, bc = [], []
        for r in u:  # plain floats: far cheaper than tensor ops for one image
            area = self.scale[0] + (self.scale[1] - self.scale[0]) * r[0]
            aspect = math.exp(lo + (hi - lo) * r[1])
            w = min(math.sqrt(area * aspect), 1.0)  # crop width / height as fractions of the image
            h = min(math.sqrt(area / aspect), 1.0)
            cx = (1 - w) * (2 * r[2] - 1) + 2 * self.translate * (2 * r[3] - 1)  # crop centre + shift
            cy = (1 - h) * (2 * r[4] - 1) + 2 * self.translate * (2 * r[5] - 1)
            ang = math.radians(self.degrees * (2 * r[6] - 1))
            cos, sin = math.cos(ang), math.sin(ang)
            theta.append([[w * cos, -h * sin, cx], [w * sin, h * cos, cy]])
            bc.append([1 + self.brightness * (2 * r[7] - 1), 1 + self.contrast * (2 * r[8] - 1)])
        return (torch.tensor(theta, dtype=torch.float32).view(-1, 2, 3),
                torch.tensor(bc, dtype=torch.float32).view(-1, 2))

    def _lin(self, device: torch.device) -> torch.Tensor:
        """Output pixel centres along one axis in normalised coords [C] (align_corners=False), cached."""
        cache = self.__dict__.setdefault("_lins", {})
        if device not in cache:
            c = self.crop_size
            cache[device] = (torch.arange(c, dtype=torch.float32, device=device) * 2 + 1) / c - 1
        return cache[device]

    def _warp(self, x: torch.Tensor, theta: torch.Tensor, bc: torch.Tensor, out: torch.Tensor,
              out_scale: float, out_offset: float) -> None:
        """Warp ``x`` [b, 1, S, S] into ``out`` [b, 1, C, C]: one grid_sample, then one multiply-add
        (brightness, contrast around the mean, and the output scale / offset fused) and a clamp."""
        lin = self._lin(x.device)
        t = theta[:, :, :, None]  # [b, 2, 3, 1]
        # grid[b, i, j] = theta[b] @ (lin[j], lin[i], 1): separable broadcast sums (a [N,3]x[3,2] matmul is slower)
        rows = (t[:, :, 1] * lin + t[:, :, 2])[:, :, :, None]  # [b, 2, C(i), 1]
        cols = (t[:, :, 0] * lin)[:, :, None, :]  # [b, 2, 1, C(j)]
        grid = (rows + cols).permute(0, 2, 3, 1)  # [b, C, C, 2]
        warped = F.grid_sample(x if x.is_floating_point() else x.float(), grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        gain, con = bc[:, 0].view(-1, 1, 1, 1), bc[:, 1].view(-1, 1, 1, 1)
        mean = warped.mean(dim=(1, 2, 3), keepdim=True)
        # y = clamp(x * gain * con + mean * gain * (1 - con), 0, 255) * scale + offset: one multiply into
        # ``out``, one in-place add, one clamp (faster on CPU than a broadcasting addcmul)
        mul = gain * con * out_scale
        add = mean * (gain * (1 - con) * out_scale) + out_offset
        torch.mul(warped, mul, out=out)
        lo, hi = out_offset, 255.0 * out_scale + out_offset
        out.add_(add).clamp_(min(lo, hi), max(lo, hi))

    def apply(self, x: torch.Tensor, theta: torch.Tensor, bc: torch.Tensor, out_scale: float = 1.0,
              out_offset: float = 0.0, out: torch.Tensor | None = None) -> torch.Tensor:
        """Warp x [B, 1, S, S] (uint8 or float, 0-255) with given ``params`` -> float32 [B, 1, C, C].

        The result is ``clamp(aug(x), 0, 255) * out_scale + out_offset`` (so the model normalisation can be
        fused in); ``out`` optionally receives it. On CPU the batch is warped in chunks of ``cpu_chunk``.
        """
        b, c = x.shape[0], self.crop_size
        theta, bc = theta.to(x.device), bc.to(x.device)
        if out is None:
            out = torch.empty((b, x.shape[1], c, c), dtype=torch.float32, device=x.device)
        step = b if x.device.type != "cpu" else max(1, self.cpu_chunk)
        for s in range(0, b, step):
            self._warp(x[s:s + step], theta[s:s + step], bc[s:s + step], out[s:s + step], out_scale, out_offset)
        return out

    def batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x [B, 1, S, S] (uint8 or float, 0-255 scale) -> float32 [B, 1, C, C] on x's device."""
        theta, bc = self.params(x.shape[0], generator)
        return self.apply(x, theta, bc)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lins"}

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.batch(img[None], generator)[0]


class CachedImageDataset(Dataset):
    """Images of a cache + labels (labels.parquet, a LabelTable-like object, "official" or None).

    Args:
        cache_dir: folder written by ``prepare_cache`` / ``repgls prepare``.
        labels: path of labels.parquet, an object with ``study_ids, classes, y, r``, ``"official"`` (the
            index's ``label:C`` columns; uncertain -1 per ``uncertain``) or None (K = 0).
        split: "train" / "val" / "test", a list of them, or None (all rows).
        augment: apply :class:`XrayAugment` (random crop, small affine, brightness / contrast).
        crop_size: output size (default: the cache size).
        seed: augmentation seed; ``set_epoch`` changes the draw per epoch.
        uncertain / blank: official labels only: uncertain (-1) as ignore / zeros / ones; blank (not
            mentioned) as negative (CheXpert) or ignore (PU-RM).
        classes: keep only these label columns, in this order (e.g. one finding, as PU-RM trains); None = all.
        views: keep only these canonical views (e.g. ["PA", "AP"]); None keeps all.
        scale: normalisation scale (1 -> [-1, 1], 1024 -> torchxrayvision range).
    Rows whose image failed or is still pending in the cache are left out.

    Batched fetching: ``get_batch(indices)`` (also ``ds[[i, j, ...]]``) returns a collated batch; a
    ``DataLoader(ds, batch_size=B)`` uses it through ``__getitems__`` (one memmap read, one uint8 -> float
    conversion and one batched warp per batch instead of B of each). Items are identical to ``ds[i]`` one by
    one, whatever the batch they come in.
    """

    #: augmentation draws come from per-item generators seeded from (seed, epoch, index), never from the
    #: global RNGs: a wrapper may fetch a whole batch through ``__getitems__`` without per-item re-seeding.
    seeds_itself = True

    def __init__(self, cache_dir: str | Path, labels: Any = None, split: str | Iterable[str] | None = None,
                 augment: bool = False, crop_size: int | None = None, seed: int = 0,
                 views: Iterable[str] | None = None, uncertain: str = "ignore", scale: float = 1.0,
                 blank: str = "negative", classes: Sequence[str] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.meta = read_meta(self.cache_dir)
        self.size = int(self.meta["size"])
        self.crop_size = int(crop_size or self.size)
        index = pd.read_parquet(self.cache_dir / INDEX)
        keep = read_status(self.cache_dir)[index["row"].to_numpy()] == DONE
        if split is not None:
            splits = [split] if isinstance(split, str) else list(split)
            keep &= index["split"].isin(splits).to_numpy()
        if views is not None:
            keep &= index["view"].isin(list(views)).to_numpy()
        self.index = index[keep].reset_index(drop=True)
        self.rows = self.index["row"].to_numpy(dtype=np.int64)
        self.y, self.r, self.mask, self.mentioned, self.classes = labels_for_rows(self.index, labels, classes,
                                                                                  uncertain, blank)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.scale = scale
        self.transform = XrayAugment(self.crop_size) if augment else None
        self.resize = v2.Resize(self.crop_size, antialias=True) if self.crop_size != self.size else None
        self._mm: np.memmap | None = None
        self._images_nd: np.ndarray | None = None
        self._pid: int | None = None

    # -- lazy per-process memmap ------------------------------------------------------------------
    def _images(self) -> np.memmap:
        if self._mm is None or self._pid != os.getpid():
            n = int(self.meta["n"])
            self._mm = np.memmap(self.cache_dir / IMAGES, dtype=np.uint8, mode="r", shape=(n, self.size, self.size))
            self._images_nd = self._mm.view(np.ndarray)  # plain view: cheap per-row indexing
            self._pid = os.getpid()
        return self._mm

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mm"] = None
        state["_pid"] = None
        state["_images_nd"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call before each epoch; with persistent workers, recreate them)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """Positive counts per class (supervised rows only) int64 [K]."""
        return ((self.y > 0.5) & (self.mask > 0)).sum(axis=0).astype(np.int64)

    def load_uint8(self, i: int) -> torch.Tensor:
        """Cached image of item ``i`` as uint8 tensor [1, S, S] (no augmentation)."""
        return torch.from_numpy(np.array(self._images()[self.rows[i]]))[None]

    def load_uint8_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """Cached images of items ``indices`` as uint8 tensor [B, 1, S, S]; the memmap is read in row order
        (sorted, one copy straight into the batch), whatever the order of ``indices``."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        out = torch.empty((len(rows), 1, self.size, self.size), dtype=torch.uint8)
        dst = out.numpy()
        self._images()
        src = self._images_nd
        for j in np.argsort(rows, kind="stable").tolist():
            dst[j, 0] = src[rows[j]]
        return out

    def _item_seed(self, i: int) -> int:
        return (self.seed * 1_000_003 + self.epoch) * 10_000_019 + i

    def _check(self, indices: Sequence[int]) -> list[int]:
        n = len(self)
        out = []
        for i in indices:
            i = int(i)
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise IndexError(f"index {i} out of range for a dataset of {n} images")
            out.append(j)
        return out

    def get_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """Items ``indices`` already collated: ``image`` float32 [B, 1, C, C], ``y`` / ``r`` / ``mask``
        float32 [B, K], ``mentioned`` float32 [B, K] (1 = the report mentions the finding), ``index`` int64 [B] -- equal to ``default_collate([ds[i] for i in indices])``, but
        one sorted memmap read, one uint8 -> float conversion and one batched warp for the whole batch
        (item ``i`` still gets its own augmentation draw, seeded from (seed, epoch, i)).

        Also reached as ``ds[[i, j, ...]]``; ``DataLoader(ds, batch_size=B)`` uses it through
        :meth:`__getitems__`, ``DataLoader(ds, sampler=BatchSampler(..., B, ...), batch_size=None)`` gets
        the collated dict with no re-stacking.
        """
        idx = self._check(indices)
        u8 = self.load_uint8_batch(idx)
        k = self.scale / (255.0 * NORM_STD)  # the one normalisation (repgls.data.images.normalize), fused
        b = -NORM_MEAN / NORM_STD * self.scale
        if self.transform is not None:
            theta, bc = self.transform.params_seeded([self._item_seed(i) for i in idx])
            image = self.transform.apply(u8, theta, bc, out_scale=k, out_offset=b)
        else:
            if self.resize is not None:
                u8 = self.resize(u8)
            image = normalize(u8, scale=self.scale)
        ii = np.asarray(idx, dtype=np.int64)
        return {
            "image": image,
            "y": torch.from_numpy(self.y[ii]),
            "r": torch.from_numpy(self.r[ii]),
            "mask": torch.from_numpy(self.mask[ii]),
            "mentioned": torch.from_numpy(self.mentioned[ii]),
            "index": torch.from_numpy(ii),
        }

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Batched fetch used by ``torch.utils.data.DataLoader`` (auto-collation): the items of
        :meth:`get_batch`, as a list of per-item dicts (views of the batch tensors)."""
        b = self.get_batch(indices)
        keys = ("image", "y", "r", "mask", "mentioned")
        return [{**dict(zip(keys, row, strict=True)), "index": i}
                for row, i in zip(zip(*(b[k].unbind(0) for k in keys), strict=True), b["index"].tolist(),
                                  strict=True)]

    def __getitem__(self, i: Any) -> dict[str, Any]:
        if isinstance(i, (list, tuple, np.ndarray, torch.Tensor)) and np.ndim(i) == 1:
            return self.get_batch(i)
        return self.__getitems__([i])[0]
