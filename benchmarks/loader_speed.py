"""Loader speed: images/s per core from the uint8 cache vs decoding the original files every time.

Usage:
    .venv/bin/python benchmarks/loader_speed.py [--n 256] [--orig-size 1024] [--cache-size 256] [--crop 224]
        [--formats jpeg,png] [--workers 0] [--seconds 0] [--repeat 3] [--per-item] [--batch-none]

Generates ``n`` synthetic 1024 px radiograph-like gray images (smooth anatomy-like shapes + noise, so JPEG /
PNG compress like real films) in a temp folder, unless ``--root`` names a folder of PNG/JPEG files. Then:
  * original: DataLoader over a dataset that reads + decodes + resizes (pad, 224) + normalises each file;
  * cache: ``repgls prepare``-equivalent cache at ``cache-size``, then CachedImageDataset(augment=True,
    crop 224) through ``DataLoader(ds, batch_size=64, shuffle=True)`` (batched fetch through
    ``CachedImageDataset.__getitems__``, then default_collate), and without augmentation;
  * ``--per-item``: also the per-item path (``__getitem__`` per image + default_collate, what a DataLoader
    over a wrapper dataset without ``__getitems__`` does), and ``--batch-none``: the zero-copy pattern
    ``DataLoader(ds, sampler=BatchSampler(RandomSampler(ds), 64, False), batch_size=None)``.
torch runs single-threaded and ``--workers 0`` loads in the main process, so the figures are per core.
Each figure is given per CPU-second of this process (``time.process_time``: fair on a shared, loaded
machine) and per wall-clock second, as ``cpu | wall``; the load average is printed. The cache loaders are
measured ``--repeat`` times each, taking turns, and the best run is kept (decoding: one run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synth_film(seed: int, size: int) -> np.ndarray:
    """uint8 [size, size]: two dark lung fields, a bright mediastinum, soft ribs and film noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.75 - 0.2 * yy
    for cx in (0.32, 0.68):
        lung = ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1
        img = np.where(lung, img - 0.4, img)
    img += 0.06 * np.sin(yy * 60 + 3 * np.sin(xx * 6 + seed)) * (np.abs(xx - 0.5) > 0.1)
    img += rng.normal(0, 0.02, (size, size)).astype(np.float32)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


class FileDataset:
    """Decode the original file each time: read, resize (pad) to ``size``, normalise -> [1, S, S]."""

    def __init__(self, paths: list[str], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        import torch

        from repgls.data.images import normalize, read_image, resize_square

        return {"image": normalize(torch.from_numpy(resize_square(read_image(self.paths[i]), self.size))[None]),
                "index": i}


def rate(loader, min_images: int, seconds: float) -> tuple[float, float]:
    """(images per CPU-second of this process, images per wall second) over whole epochs."""
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while n < min_images or time.perf_counter() - t0 < seconds:
        for b in loader:
            n += b["image"].shape[0]
    return n / (time.process_time() - c0), n / (time.perf_counter() - t0)


def best_rates(loaders: list, min_images: int, seconds: float, repeat: int) -> list[tuple[float, float]]:
    """Best (by CPU) of ``repeat`` measurements of each loader, the loaders taking turns (round-robin), so a
    slow spell of a shared machine hits them all alike. One warm-up batch each first."""
    for dl in loaders:
        next(iter(dl))
    runs: list[list[tuple[float, float]]] = [[] for _ in loaders]
    for _ in range(repeat):
        for k, dl in enumerate(loaders):
            runs[k].append(rate(dl, min_images, seconds))
    return [max(r) for r in runs]


def fmt_rate(r: tuple[float, float]) -> str:
    return f"{r[0]:.0f} | {r[1]:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--orig-size", type=int, default=1024)
    ap.add_argument("--cache-size", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--formats", default="jpeg,png")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (0 = main process, per core)")
    ap.add_argument("--seconds", type=float, default=0.0, help="minimum seconds per measurement")
    ap.add_argument("--root", default=None, help="folder of real PNG/JPEG files instead of synthetic ones")
    ap.add_argument("--repeat", type=int, default=3, help="cache measurements per loader (best kept)")
    ap.add_argument("--per-item", action="store_true", help="also time the per-item __getitem__ path")
    ap.add_argument("--batch-none", action="store_true", help="also time BatchSampler + batch_size=None")
    args = ap.parse_args()

    import pandas as pd
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    from repgls.data.cache import prepare_cache
    from repgls.data.torch_dataset import CachedImageDataset

    torch.set_num_threads(1)
    print(f"# loader_speed torch {torch.__version__}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    print(f"# n={args.n} orig={args.orig_size}px cache={args.cache_size}px crop={args.crop} "
          f"workers={args.workers}")
    cols = ["original", "cache+aug", "cache noaug"]
    if args.per_item:
        cols += ["per-item+aug", "per-item noaug"]
    if args.batch_none:
        cols += ["bs=None+aug", "bs=None noaug"]
    print("# img/s as 'per CPU-second | wall'; speed-up = cache+aug / original, per CPU-second")
    print(f"{'format':<8} " + " ".join(f"{c:>15}" for c in cols) + f" {'speed-up':>9} {'prepare':>11} {'orig MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        formats = ["real"] if args.root else [f.strip() for f in args.formats.split(",")]
        for fmt in formats:
            if args.root:
                paths = sorted(str(p) for p in Path(args.root).rglob("*") if p.suffix.lower() in
                               (".png", ".jpg", ".jpeg"))[: args.n]
            else:
                from PIL import Image

                paths = []
                for i in range(args.n):
                    p = tmp / fmt / f"{i:05d}.{'jpg' if fmt == 'jpeg' else 'png'}"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(synth_film(i, args.orig_size)).save(p, **({"quality": 90} if fmt == "jpeg" else {}))
                    paths.append(str(p))
            mb = sum(os.path.getsize(p) for p in paths) / 1e6
            kw = {"num_workers": args.workers, "persistent_workers": args.workers > 0}
            orig = best_rates([DataLoader(FileDataset(paths, args.crop), batch_size=64, **kw)], len(paths),
                              args.seconds, 1)[0]
            idx = pd.DataFrame({"path": paths, "image_id": [f"i{i}" for i in range(len(paths))],
                                "study_id": [f"s{i}" for i in range(len(paths))],
                                "patient_id": [f"p{i}" for i in range(len(paths))], "view": "PA", "split": "train"})
            t0 = time.perf_counter()
            prepare_cache(idx, tmp / f"cache_{fmt}", size=args.cache_size, workers=1, progress=False)
            prep = len(paths) / (time.perf_counter() - t0)
            n_min = max(2048, len(paths))
            dss = {aug: CachedImageDataset(tmp / f"cache_{fmt}", augment=aug, crop_size=args.crop) for aug in (True, False)}
            loaders = [DataLoader(dss[aug], batch_size=64, shuffle=True, **kw) for aug in (True, False)]
            if args.per_item:
                loaders += [DataLoader(PerItem(dss[aug]), batch_size=64, shuffle=True, **kw) for aug in (True, False)]
            if args.batch_none:
                loaders += [DataLoader(dss[aug], sampler=BatchSampler(RandomSampler(dss[aug]), 64, drop_last=False),
                                       batch_size=None, **kw) for aug in (True, False)]
            res = [orig, *best_rates(loaders, n_min, args.seconds, args.repeat)]
            print(f"{fmt:<8} " + " ".join(f"{fmt_rate(r):>15}" for r in res)
                  + f" {res[1][0] / orig[0]:>8.1f}x {prep:>11.0f} {mb:>8.1f}")
            sys.stdout.flush()
    print(f"# load average at the end: {os.getloadavg()[0]:.1f}")


class PerItem:
    """A dataset wrapper without ``__getitems__``: the DataLoader fetches item by item (the old path)."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        return self.ds[i]


if __name__ == "__main__":
    main()
