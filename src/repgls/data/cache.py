"""The image cache: every image resized once into a memory-mapped ``uint8 [N, S, S]`` array.

Layout of ``out/``:
  * ``images.u8``   raw numpy memmap, uint8, C order, shape [N, S, S] (shape in meta.json);
  * ``index.parquet`` the image index (``row`` = position in images.u8, then the adapter's columns);
  * ``status.u8``   one byte per row: 0 pending, 1 done, 2 failed (flushed after every chunk);
  * ``errors.csv``  ``row,path,error`` of the images that could not be read (appended);
  * ``meta.json``   size, mode, n, dataset, normalisation, counts, ``complete`` (written atomically).

Resume: a rerun with the same index and settings skips the rows marked done and retries failed ones. Workers
write their rows straight into the memmap and flush before reporting, and the parent marks a row done only
after that, so a kill at any moment loses at most the chunks in flight. A missing or corrupt image is logged
with its path, counted and left black (status 2); it is never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls._io import atomic_path, atomic_write_text, check_writable, ignore_sigint
from repgls.data.images import NORM_MEAN, NORM_STD, ResizeMode, load_resized
from repgls.progress import progress_bar

log = logging.getLogger(__name__)

IMAGES = "images.u8"
INDEX = "index.parquet"
STATUS = "status.u8"
ERRORS = "errors.csv"
META = "meta.json"
PENDING, DONE, FAILED = 0, 1, 2
CACHE_VERSION = 1
NORMALISATION = (
    "read: 8-bit kept, >8-bit and DICOM (modality LUT + VOI LUT/window) min-max to uint8, MONOCHROME1 inverted; "
    f"resize: aspect kept, {{mode}}; model: (x/255 - {NORM_MEAN}) / {NORM_STD}"
)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON atomically and fsynced (the cache's meta is its resume record)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str), fsync=True)


def _index_fingerprint(paths: list[str], size: int, mode: str) -> str:
    h = hashlib.sha256(f"{size}|{mode}|{len(paths)}".encode())
    for p in paths:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def read_meta(cache_dir: str | Path) -> dict:
    """meta.json of a cache (raises a clear error when the folder is not a cache)."""
    p = Path(cache_dir) / META
    if not p.exists():
        raise FileNotFoundError(f"{cache_dir}: not an image cache (no {META}); build one with `repgls prepare`")
    return json.loads(p.read_text())


def open_images(cache_dir: str | Path, mode: str = "r") -> np.memmap:
    """The cache's images as a memmap uint8 [N, S, S]."""
    meta = read_meta(cache_dir)
    return np.memmap(Path(cache_dir) / IMAGES, dtype=np.uint8, mode=mode,
                     shape=(meta["n"], meta["size"], meta["size"]))


def read_status(cache_dir: str | Path) -> np.ndarray:
    """Per-row status uint8 [N] (0 pending, 1 done, 2 failed)."""
    return np.fromfile(Path(cache_dir) / STATUS, dtype=np.uint8)


# ------------------------------------------------------------------------------------------ workers
_W: dict[str, Any] = {}


def _init_worker(images_path: str, n: int, size: int, mode: str, pool: bool = False) -> None:
    if pool:  # Ctrl-C is the parent's to handle: no traceback per worker
        ignore_sigint()
    _W["mm"] = np.memmap(images_path, dtype=np.uint8, mode="r+", shape=(n, size, size))
    _W["size"], _W["mode"] = size, mode


def _work(task: tuple[list[int], list[str]]) -> tuple[list[int], list[int], list[tuple[int, str, str]]]:
    """Resize a chunk of rows into the memmap; returns (rows, statuses, errors)."""
    rows, paths = task
    mm, size, mode = _W["mm"], _W["size"], _W["mode"]
    status, errors = [], []
    for r, p in zip(rows, paths, strict=True):
        try:
            mm[r] = load_resized(p, size, mode)
            status.append(DONE)
        except Exception as exc:  # a bad image is logged and skipped, never fatal
            mm[r] = 0
            status.append(FAILED)
            errors.append((r, p, str(exc).replace("\n", " ")))
    mm.flush()
    return rows, status, errors


def _chunks(rows: np.ndarray, paths: list[str], chunk: int) -> Iterator[tuple[list[int], list[str]]]:
    for i in range(0, len(rows), chunk):
        sel = rows[i:i + chunk].tolist()
        yield sel, [paths[j] for j in sel]


# ------------------------------------------------------------------------------------------- prepare
def prepare_cache(
    index: pd.DataFrame,
    out: str | Path,
    *,
    size: int = 256,
    mode: ResizeMode = "pad",
    workers: int | None = None,
    dataset: str = "",
    chunk: int = 32,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Resize every image of ``index`` once into ``out`` (layout in the module docstring); resumable.

    Returns the final meta dict (``n``, ``n_done``, ``n_failed``, ``n_skipped`` = rows already done before
    this call, ``seconds``...). ``workers`` defaults to the CPU count; 1 runs in-process.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if mode not in ("pad", "crop"):
        raise ValueError(f"mode must be 'pad' or 'crop', got {mode!r}")
    if len(index) == 0:
        raise ValueError("the image index is empty: nothing to prepare (check --view / the dataset root)")
    out = check_writable(out, folder=True, what="output folder")
    out.mkdir(parents=True, exist_ok=True)
    index = index.reset_index(drop=True)
    paths = index["path"].astype(str).tolist()
    n = len(paths)
    fp = _index_fingerprint(paths, size, mode)
    meta_p = out / META
    fresh = True
    if meta_p.exists() and not overwrite:
        old = json.loads(meta_p.read_text())
        if old.get("fingerprint") != fp or old.get("n") != n or old.get("size") != size:
            raise ValueError(
                f"{out}: holds a cache built from another index or settings (n={old.get('n')}, size="
                f"{old.get('size')}, mode={old.get('mode')}); use another --out or --overwrite")
        fresh = not ((out / IMAGES).exists() and (out / STATUS).exists())
    if fresh:
        for name in (IMAGES, STATUS, ERRORS, INDEX):
            (out / name).unlink(missing_ok=True)
    meta = {
        "version": CACHE_VERSION, "dataset": dataset or index.attrs.get("dataset", ""), "size": size, "mode": mode,
        "n": n, "dtype": "uint8", "shape": [n, size, size], "fingerprint": fp, "complete": False,
        "normalisation": NORMALISATION.format(mode=mode), "norm_mean": NORM_MEAN, "norm_std": NORM_STD,
        "root": index.attrs.get("root", ""),
    }
    if fresh:
        # Allocate sparse files, then publish the index and the (incomplete) meta atomically.
        with open(out / IMAGES, "wb") as fh:
            fh.truncate(n * size * size)
        with open(out / STATUS, "wb") as fh:
            fh.truncate(n)
        tab = index.copy()
        tab.insert(0, "row", np.arange(n, dtype=np.int64))
        with atomic_path(out / INDEX) as tmp:
            tab.to_parquet(tmp, index=False)
        write_json_atomic(meta_p, meta)
    status = np.memmap(out / STATUS, dtype=np.uint8, mode="r+", shape=(n,))
    todo = np.flatnonzero(status != DONE)
    n_skipped = n - len(todo)
    if n_skipped:
        log.info("%s: resuming, %d of %d rows already done", out, n_skipped, n)
    workers = max(1, min(workers or os.cpu_count() or 1, max(1, len(todo) // chunk)))
    t0 = time.perf_counter()
    n_failed_now = 0
    err_fh = open(out / ERRORS, "a", encoding="utf-8")
    if err_fh.tell() == 0:
        err_fh.write("row,path,error\n")
    bar = progress_bar(f"prepare {out.name}" + (f" (resumed, {n_skipped} done)" if n_skipped else ""),
                       len(todo), enabled=None if progress else False).start()
    try:
        tasks = _chunks(todo, paths, chunk)
        args = (str(out / IMAGES), n, size, mode)
        if workers == 1:
            _init_worker(*args)
            results: Iterator = map(_work, tasks)
            pool = None
        else:
            # fork is fast; spawn when torch (threads) is already loaded in this process or fork is missing.
            method = "fork" if "fork" in mp.get_all_start_methods() and "torch" not in sys.modules else "spawn"
            pool = mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(*args, True))
            results = pool.imap_unordered(_work, tasks)
        try:
            for rows, st, errs in results:
                status[rows] = st
                status.flush()
                for r, p, e in errs:
                    n_failed_now += 1
                    log.warning("row %d: %s", r, e)
                    err_fh.write(pd.DataFrame([[r, p, e]]).to_csv(header=False, index=False))
                err_fh.flush()
                bar.advance(len(rows))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        err_fh.close()
        bar.close()
        _W.clear()
    final = np.asarray(status).copy()
    del status
    meta.update({
        "complete": bool((final != PENDING).all()), "n_done": int((final == DONE).sum()),
        "n_failed": int((final == FAILED).sum()), "n_skipped": n_skipped, "n_failed_this_run": n_failed_now,
        "seconds": round(time.perf_counter() - t0, 3), "workers": workers,
    })
    write_json_atomic(meta_p, meta)
    return meta


def prepare(dataset: str, root: str | Path, out: str | Path, *, size: int = 256, mode: ResizeMode = "pad",
            view: str | list[str] | None = None, workers: int | None = None, val_fraction: float = 0.1,
            test_fraction: float = 0.1, seed: int = 0, limit: int = 0, overwrite: bool = False,
            progress: bool = True, **adapter_kw: object) -> dict:
    """The prepare stage: index a dataset with its adapter (``repgls.data.adapters``) and cache its images.

    ``dataset``: an adapter name (``list_datasets()``: mimic-cxr-jpg, chexpert, nih, openi, table, phantom);
    ``root``: its folder; ``view``: all / frontal / pa / ap / lateral (or a list); ``limit``: only the first N
    images (0 = all). Other keywords go to the adapter (e.g. ``labeler="negbio"`` for MIMIC-CXR-JPG).
    Returns :func:`prepare_cache`'s meta dict plus ``splits`` (images per split).
    """
    from repgls.data.adapters import create_dataset

    check_writable(out, folder=True, what="output folder")  # before indexing the dataset
    index = create_dataset(dataset, root, view=view, val_fraction=val_fraction, test_fraction=test_fraction,
                           seed=seed, **adapter_kw)
    if limit:
        attrs = dict(index.attrs)
        index = index.iloc[:limit].copy()
        index.attrs.update(attrs)
    meta = prepare_cache(index, out, size=size, mode=mode, workers=workers, dataset=dataset, overwrite=overwrite,
                         progress=progress)
    return {**meta, "splits": index["split"].value_counts().to_dict()}
