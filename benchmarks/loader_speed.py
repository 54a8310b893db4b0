"""Loader speed: images/s per core from the uint8 cache vs decoding the original files every time.

Usage:
    .venv/bin/python benchmarks/loader_speed.py [--n 256] [--orig-size 1024] [--cache-size 256] [--crop 224]
        [--formats jpeg,png] [--workers 0] [--seconds 0]

Generates ``n`` synthetic 1024 px radiograph-like gray images (smooth anatomy-like shapes + noise, so JPEG /
PNG compress like real films) in a temp folder, unless ``--root`` names a folder of PNG/JPEG files. Then:
  * original: DataLoader over a dataset that reads + decodes + resizes (pad, 224) + normalises each file;
  * cache: ``repgls prepare``-equivalent cache at ``cache-size``, then CachedImageDataset(augment=True,
    crop 224) through a DataLoader (batch 64).
torch runs single-threaded and ``--workers 0`` loads in the main process, so the figures are per core.
Prints a small table; the machine's load makes every figure provisional.
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


def rate(loader, min_images: int, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while n < min_images or time.perf_counter() - t0 < seconds:
        for b in loader:
            n += b["image"].shape[0]
    return n / (time.perf_counter() - t0)


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
    args = ap.parse_args()

    import pandas as pd
    import torch
    from torch.utils.data import DataLoader

    from repgls.data.cache import prepare_cache
    from repgls.data.dataset import CachedImageDataset

    torch.set_num_threads(1)
    print(f"# loader_speed (provisional: shared, loaded machine) torch {torch.__version__}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    print(f"# n={args.n} orig={args.orig_size}px cache={args.cache_size}px crop={args.crop} "
          f"workers={args.workers}")
    print(f"{'format':<8} {'original img/s':>15} {'cache img/s':>12} {'cache(noaug)':>13} {'speed-up':>9} "
          f"{'prepare img/s':>14} {'orig MB':>8}")
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
            orig = rate(DataLoader(FileDataset(paths, args.crop), batch_size=64, **kw), len(paths), args.seconds)
            idx = pd.DataFrame({"path": paths, "image_id": [f"i{i}" for i in range(len(paths))],
                                "study_id": [f"s{i}" for i in range(len(paths))],
                                "patient_id": [f"p{i}" for i in range(len(paths))], "view": "PA", "split": "train"})
            t0 = time.perf_counter()
            prepare_cache(idx, tmp / f"cache_{fmt}", size=args.cache_size, workers=1, progress=False)
            prep = len(paths) / (time.perf_counter() - t0)
            ds = CachedImageDataset(tmp / f"cache_{fmt}", augment=True, crop_size=args.crop)
            cached = rate(DataLoader(ds, batch_size=64, shuffle=True, **kw), max(2048, len(paths)), args.seconds)
            ds0 = CachedImageDataset(tmp / f"cache_{fmt}", augment=False, crop_size=args.crop)
            cached0 = rate(DataLoader(ds0, batch_size=64, shuffle=True, **kw), max(2048, len(paths)), args.seconds)
            print(f"{fmt:<8} {orig:>15.0f} {cached:>12.0f} {cached0:>13.0f} {cached / orig:>8.1f}x {prep:>14.0f} "
                  f"{mb:>8.1f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
