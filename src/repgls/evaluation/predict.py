"""Predict new image files with a trained run: probabilities, LU-ViT report rates and expected certainty, Grad-CAM.

``predict(run_dir, images, ...)`` reads PNG / JPEG / DICOM files with the data package's reader and the
cache's resize rule (``repgls.data.images.load_resized`` + ``normalize``: exactly what ``repgls prepare``
and the torch dataset do), and returns per-image probabilities and, for LU-ViT, the predicted report rate
and the certainty a radiologist's report would convey (see :func:`expected_certainty`).

No torch at import: the helpers here (:func:`read_images`, :func:`prediction_columns`, :func:`expand_images`)
also serve the torch-free ONNX predictor (:mod:`repgls.evaluation.onnx_predict`); torch loads inside
:func:`predict` and :func:`predict_images`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from repgls._io import atomic_write_parquet, check_writable

if TYPE_CHECKING:
    import torch

    from repgls.evaluation.run import LoadedRun

__all__ = ["CERTAINTY_RULE", "IMAGE_SUFFIXES", "expand_images", "expected_certainty", "pick_cam_images", "predict",
           "predict_images", "prediction_columns", "read_images", "top_classes"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dic", ".tif", ".tiff", ".bmp")

CERTAINTY_RULE = (
    "expected_certainty = clip(q * (1 - r/2) + (1 - q) * (r/2), 0, 1) with q = prob and r = rate: the GLS "
    "target t = (1 - r) y + r/2 with the label y replaced by its predicted probability. It inverts the rates "
    "mapping (repgls.rating.mapping, policy gls): a positive report (y = 1) has r = 2 (1 - p), so p = 1 - r/2; a "
    "negative one (y = 0) has r = 2p, so p = r/2. Definite statements carry r0 < 0, hence the clip to [0, 1]."
)


def expected_certainty(prob: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Certainty p in [0, 1] a report would convey, from probability q and predicted GLS rate r (any shape).

    ``clip(q (1 - r/2) + (1 - q) r/2, 0, 1)``; see :data:`CERTAINTY_RULE` (inverse of the rates mapping).
    """
    q = np.asarray(prob, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    return np.clip(q * (1.0 - r / 2.0) + (1.0 - q) * (r / 2.0), 0.0, 1.0).astype(np.float32)


def prediction_columns(classes: Sequence[str], prob: np.ndarray, rate: np.ndarray | None) -> dict[str, Any]:
    """Per-class output columns: ``prob:C`` [N] and, for LU-ViT, ``rate:C`` and ``expected_certainty:C``."""
    cols: dict[str, Any] = {f"prob:{c}": prob[:, k].astype(np.float32) for k, c in enumerate(classes)}
    if rate is not None:
        ec = expected_certainty(prob, rate)
        cols.update({f"rate:{c}": rate[:, k].astype(np.float32) for k, c in enumerate(classes)})
        cols.update({f"expected_certainty:{c}": ec[:, k] for k, c in enumerate(classes)})
    return cols


def top_classes(prob: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Index of each row's most probable class [N]; "No Finding" only when it is the sole class."""
    p = np.asarray(prob, dtype=np.float64).copy()
    if len(classes) > 1 and "No Finding" in classes:
        p[:, list(classes).index("No Finding")] = -np.inf
    return p.argmax(axis=1) if p.shape[0] else np.zeros(0, dtype=np.int64)


def pick_cam_images(prob: np.ndarray, classes: Sequence[str], n: int) -> tuple[list[int], list[int]]:
    """``n`` images and their top class for the CAM grid: the most confident predictions, distinct top classes
    first. "No Finding" is never the CAM class when other classes exist. Deterministic (ties by position)."""
    if n <= 0 or prob.shape[0] == 0:
        return [], []
    top = top_classes(prob, classes)
    conf = prob[np.arange(len(prob)), top]
    order = np.argsort(-conf, kind="stable")
    chosen: list[int] = []
    used: set[int] = set()
    for i in order:
        if top[i] not in used:
            chosen.append(int(i))
            used.add(int(top[i]))
        if len(chosen) == n:
            break
    for i in order:
        if len(chosen) == n:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return chosen, [int(top[i]) for i in chosen]


def expand_images(images: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders expand to their image files (IMAGE_SUFFIXES, sorted, not recursive)."""
    items = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{p}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise ValueError("no images given")
    return out


def read_images(paths: Sequence[str | os.PathLike], size: int, mode: str = "pad",
                skip_errors: bool = False) -> tuple[np.ndarray, list[str]]:
    """Read and resize image files by the cache's rule (``repgls.data.images.load_resized``; no torch).

    Returns the uint8 pixels [N, S, S] of the readable files and one error message per file ("" when read),
    in input order. Unreadable files raise ``ImageReadError`` unless ``skip_errors`` (then they are left out).
    The model input is ``repgls.data.images.normalize(pixels)[:, None]``.
    """
    from repgls.data.images import ImageReadError, load_resized

    u8: list[np.ndarray] = []
    errors: list[str] = []
    for p in paths:
        try:
            u8.append(load_resized(p, size, mode))  # type: ignore[arg-type]
            errors.append("")
        except ImageReadError as e:
            if not skip_errors:
                raise
            errors.append(str(e))
    return (np.stack(u8) if u8 else np.zeros((0, size, size), np.uint8)), errors


def predict_images(lr: LoadedRun, paths: Sequence[str | os.PathLike], batch_size: int = 32,
                   skip_errors: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Read, resize (cache rule), normalise and predict image files with a loaded run.

    Returns ``{"prob": [N, K], "rate": [N, K] (LU-ViT)}`` for the readable files, their uint8 pixels
    [N, S, S], and one error message per file ("" when read), in input order. Unreadable files raise
    ``ImageReadError`` unless ``skip_errors`` (then they are left out of the arrays).
    """
    import torch

    from repgls.data.images import normalize
    from repgls.evaluation.run import forward_batches

    pix, errors = read_images(paths, lr.image_size, lr.resize_mode, skip_errors)

    def batches() -> Iterable[torch.Tensor]:
        for i in range(0, len(pix), batch_size):
            yield torch.from_numpy(normalize(pix[i:i + batch_size]))[:, None]

    res = forward_batches(lr.model, batches(), lr.device)
    if res["prob"].size == 0:
        res["prob"] = np.zeros((0, len(lr.classes)))
    return res, pix, errors


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """File stems made unique (``name``, ``name_2``...) for CAM file names."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = p.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return out


def predict(run_dir: str | os.PathLike, images: str | os.PathLike | Iterable[str | os.PathLike], cam: bool = False,
            out: str | os.PathLike | None = None, *, checkpoint: str = "best", cam_dir: str | os.PathLike | None = None,
            cam_classes: Sequence[str] | None = None, batch_size: int = 32, device: str | None = "auto",
            image_size: int | None = None, skip_errors: bool = False) -> pd.DataFrame:
    """Predict image files (PNG / JPEG / DICOM; folders expand to their images) with a trained run.

    Args:
        run_dir: run folder. images: file(s) / folder(s). cam: also write Grad-CAM overlay PNGs.
        out: Parquet file to write (atomic; schema metadata ``repgls`` = run, classes, rules), or None.
        checkpoint: "best" | "last". cam_dir: CAM folder (default ``<out stem>-cams/`` beside ``out``, or
            ``./predict-cams``). cam_classes: classes to explain for every image (default: each image's top
            class, "No Finding" excluded when other classes exist).
        image_size: override the model input size (default: the run's cache size).
        skip_errors: leave unreadable files out (with a warning row in ``error``) instead of raising.
    Returns:
        DataFrame, one row per readable image: ``path``, then per class ``prob:<C>``; for LU-ViT also
        ``rate:<C>`` (predicted GLS report rate in (-1, 1)) and ``expected_certainty:<C>`` (:data:`CERTAINTY_RULE`);
        ``cam`` (when ``cam``): the overlay PNG path(s), ";"-joined when several ``cam_classes`` are given.
        ``df.attrs["errors"]`` maps skipped files to their error.
    """
    import torch

    from repgls.data.images import normalize
    from repgls.evaluation.run import load_run
    from repgls.explain import save_cam_pngs

    cdir = Path(cam_dir) if cam_dir is not None else (
        Path(out).parent / f"{Path(out).stem}-cams" if out is not None else Path("predict-cams"))
    if out is not None:  # output places checked before the model is loaded or any image read
        check_writable(out, what="output file")
    if cam:
        check_writable(cdir, folder=True, what="CAM folder")
    lr = load_run(run_dir, checkpoint, device, image_size=image_size)
    unknown = [c for c in cam_classes or [] if c not in lr.classes]
    if unknown:
        raise ValueError(f"unknown CAM class(es) {unknown}; the run's classes: {', '.join(lr.classes)}")
    paths = expand_images(images)
    res, pix, errors = predict_images(lr, paths, batch_size, skip_errors)
    ok = [p for p, e in zip(paths, errors, strict=True) if not e]
    prob = np.clip(res["prob"], 0.0, 1.0)
    cols: dict[str, Any] = {"path": [str(p) for p in ok], **prediction_columns(lr.classes, prob, res.get("rate"))}
    df = pd.DataFrame(cols)
    df.attrs["errors"] = {str(p): e for p, e in zip(paths, errors, strict=True) if e}

    if cam and ok:
        names = _unique_names(ok)
        x = torch.from_numpy(normalize(pix))[:, None]
        if cam_classes:
            targets = [[lr.classes.index(c)] * len(ok) for c in cam_classes]
        else:
            targets = [top_classes(prob, lr.classes).tolist()]
        cam_col: list[list[str]] = [[] for _ in ok]
        for idx in targets:
            written = save_cam_pngs(lr.model, x, idx, cdir, names=names, class_names=list(lr.classes),
                                    display=pix, device=lr.device)
            for i, w in enumerate(written):
                cam_col[i].append(str(w))
        df["cam"] = [";".join(c) for c in cam_col]

    if out is not None:
        meta = {"run": str(lr.run_dir), "checkpoint": checkpoint, "model": lr.config.model.name,
                "classes": list(lr.classes), "image_size": lr.image_size, "resize_mode": lr.resize_mode,
                "certainty_rule": CERTAINTY_RULE if lr.has_rate else None, "errors": df.attrs["errors"]}
        atomic_write_parquet(df, Path(out), meta)
    return df
