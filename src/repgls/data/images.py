"""Reading chest X-ray images (PNG, JPEG, DICOM) and the ONE normalisation used everywhere.

Two documented steps, applied identically by ``prepare`` (cache), the torch dataset, ``predict`` and
``explain``:

1. **Read time** (:func:`read_image`, :func:`load_resized`): any image becomes ``uint8 [H, W]`` gray,
   bright = dense (bone white).

   * 8-bit gray PNG / JPEG: pixel values kept unchanged (RGB / palette -> luminance "L").
   * 16-bit PNG / TIFF and 32-bit integer images: linear min-max scaling of the image's own range to
     [0, 255] (a constant image becomes 0).
   * DICOM: modality LUT (rescale slope / intercept), then VOI LUT or window centre / width when the file
     has one, then linear min-max scaling of the result to [0, 255]; ``MONOCHROME1`` is inverted so that
     bone is bright, like ``MONOCHROME2``.

2. **Model time** (:func:`normalize`): ``x = (u8 / 255 - 0.5) / 0.5`` -> float32 in [-1, 1] (MEAN = STD =
   0.5 on the [0, 1] scale). ``scale=1024`` gives torchxrayvision's [-1024, 1024] convention.

Resizing (:func:`resize_square`): the aspect ratio is kept. ``mode="pad"`` (default) scales the long side
to S and pads the short side symmetrically with black (0), so nothing is cut (costophrenic angles stay);
``mode="crop"`` scales the short side to S and cuts the centre square. Downscaling uses Pillow's
``reduce`` (box filter by an integer factor) then a bilinear resize with antialiasing; JPEG files are
decoded at reduced size with ``Image.draft`` (DCT scaling, 2-8x faster on large images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

NORM_MEAN = 0.5
NORM_STD = 0.5
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
ResizeMode = Literal["pad", "crop"]


class ImageReadError(ValueError):
    """An image file could not be read or decoded (message names the file)."""


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Linear min-max scaling of any numeric 2-D array to uint8 [0, 255] (constant -> 0)."""
    a = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip(np.rint((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def read_dicom(path: str | Path) -> np.ndarray:
    """DICOM -> uint8 [H, W]: modality LUT, VOI LUT / windowing, MONOCHROME1 inverted, min-max to uint8."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, force=True)
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise ImageReadError(f"{path}: cannot decode DICOM ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 3:  # multi-frame or colour: keep the first frame / luminance
        arr = arr[0] if arr.shape[-1] not in (3, 4) else arr[..., :3].mean(axis=-1)
    if arr.ndim != 2:
        raise ImageReadError(f"{path}: DICOM pixel data has shape {arr.shape}, expected a 2-D image")
    out = apply_modality_lut(arr, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        out = apply_voi_lut(out, ds, prefer_lut=True)
    img = to_uint8(out)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1":
        img = 255 - img
    return img


def _pil_to_uint8(img: Any, path: Path) -> np.ndarray:
    """A decoded Pillow image -> uint8 [H, W] per the read-time rule above."""
    if img.mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return to_uint8(np.asarray(img))
    if img.mode in ("1", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "PA"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    raise ImageReadError(f"{path}: unsupported image mode {img.mode!r}")


def _open_pil(path: Path, draft_size: int | None = None) -> Any:
    from PIL import Image

    try:
        img = Image.open(path)
        if draft_size and img.format == "JPEG":
            # DCT-domain downscale while decoding: keeps >= draft_size pixels on each side.
            img.draft("L", (draft_size, draft_size))
        img.load()
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found") from exc
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read PNG / JPEG / TIFF / DICOM -> uint8 [H, W] (read-time rule of this module). Raises ImageReadError."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if _is_dicom(path):
        return read_dicom(path)
    return _pil_to_uint8(_open_pil(path), path)


def resize_square(img: np.ndarray | Any, size: int, mode: ResizeMode = "pad") -> np.ndarray:
    """uint8 [H, W] (array or Pillow "L" image) -> uint8 [size, size], aspect kept (pad or centre crop)."""
    from PIL import Image

    if mode not in ("pad", "crop"):
        raise ValueError(f"resize mode must be 'pad' or 'crop', got {mode!r}")
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    w, h = pil.size
    scale = size / max(w, h) if mode == "pad" else size / min(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    factor = int(min(w / nw, h / nh))
    if factor >= 2:  # cheap integer box reduction first, exact bilinear resize after
        pil = pil.reduce(factor)
    if pil.size != (nw, nh):
        pil = pil.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    arr = np.asarray(pil, dtype=np.uint8)
    out = np.zeros((size, size), dtype=np.uint8)
    if mode == "pad":
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top:top + nh, left:left + nw] = arr
    else:
        top, left = (nh - size) // 2, (nw - size) // 2
        out[:] = arr[top:top + size, left:left + size]
    return out


def load_resized(path: str | Path, size: int, mode: ResizeMode = "pad") -> np.ndarray:
    """Read any supported file and resize it -> uint8 [size, size] (JPEG decoded with draft for speed)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if _is_dicom(path):
        return resize_square(read_dicom(path), size, mode)
    pil = _open_pil(path, draft_size=size)
    if pil.mode != "L":
        pil = Image.fromarray(_pil_to_uint8(pil, path))
    return resize_square(pil, size, mode)


def normalize(x: Any, scale: float = 1.0) -> Any:
    """Pixels on the 0-255 scale (uint8, or float after augmentation; numpy or torch, any shape) -> float32
    ``((x/255 - 0.5) / 0.5) * scale``.

    The one model-time normalisation: [-1, 1] by default, [-1024, 1024] with ``scale=1024``
    (torchxrayvision). Used by the cached dataset, predict and explain.
    """
    k = scale / (255.0 * NORM_STD)
    b = -NORM_MEAN / NORM_STD * scale
    if isinstance(x, np.ndarray):
        return (x.astype(np.float32) * np.float32(k) + np.float32(b)).astype(np.float32)
    import torch

    return x.to(torch.float32) * k + b


def load_for_model(path: str | Path, size: int = 224, mode: ResizeMode = "pad", scale: float = 1.0) -> np.ndarray:
    """File -> float32 [1, size, size] model input (read, resize, normalise), for predict / explain."""
    return normalize(load_resized(path, size, mode), scale=scale)[None]
