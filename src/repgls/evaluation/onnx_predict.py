"""Exported models (``repgls export``) outside the training code: the metadata file, its checks, and prediction.

An export folder holds the model file (``model.onnx`` or ``model.pt``) and ``metadata.json`` beside it
(:data:`METADATA_FILE`; schema in docs/export.md): class names, image size, the exact preprocessing, output
names, thresholds chosen on validation, and the model file's sha256. :func:`load_exported` refuses an export
whose metadata is missing, altered (its own ``metadata_sha256`` no longer matches) or whose model file does not
match its sha256, with one line naming the file.

ONNX models run through onnxruntime and this module imports no torch: images are read, resized and normalised
by ``repgls.data.images`` (numpy, Pillow, pydicom), so a deployment needs ``repgls`` core + ``onnxruntime``.
TorchScript exports (``model.pt``) run through ``torch.jit`` (imported only then). Grad-CAM needs the run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls._io import atomic_write_parquet, check_writable
from repgls.evaluation.predict import CERTAINTY_RULE, expand_images, prediction_columns, read_images

__all__ = ["FORMAT_VERSION", "KIND", "METADATA_FILE", "MODEL_FILES", "NO_CAM", "ExportError", "ExportedModel",
           "file_sha256", "is_export", "load_exported", "metadata_checksum", "predict_exported",
           "read_export_metadata"]

METADATA_FILE = "metadata.json"
KIND = "repgls-export"
#: Version of the metadata layout; readers refuse other versions.
FORMAT_VERSION = 1
#: Model file name per export format.
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
_REQUIRED = ("model", "source", "classes", "input", "preprocessing", "outputs", "thresholds", "repgls_version")
#: Why ``--cam`` is refused for an export.
NO_CAM = ("Grad-CAM is not available from an exported model (it needs the trained network's gradients); "
           "predict with the run folder for Grad-CAM")


class ExportError(ValueError):
    """An export that cannot be used: missing or altered metadata, a model file that does not match (names it)."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def metadata_checksum(meta: dict[str, Any]) -> str:
    """sha256 of the metadata without its ``metadata_sha256`` key (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_export(path: str | os.PathLike) -> bool:
    """True when ``path`` names an export rather than a run folder: a folder with ``metadata.json`` or a model
    file of an export format (and no ``config.yaml``), a ``.onnx`` / ``.pt`` file, or a ``metadata.json``."""
    p = Path(path)
    if p.is_dir():
        return not (p / "config.yaml").is_file() and (
            (p / METADATA_FILE).is_file() or any((p / f).is_file() for f in MODEL_FILES.values()))
    return p.suffix.lower() in (".onnx", ".pt") or p.name == METADATA_FILE


def _read_json(mpath: Path) -> dict[str, Any]:
    if not mpath.is_file():
        raise ExportError(f"{mpath}: export metadata missing (`repgls export` writes it beside the model; "
                          "a model file without it is refused)")
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{mpath}: not valid JSON ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise ExportError(f"{mpath}: not a repgls export metadata file (no kind: {KIND!r})")
    return meta


def read_export_metadata(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The checked metadata and model file of an export: ``path`` is its folder, its model file or its
    ``metadata.json``.

    Raises:
        ExportError: metadata missing, not JSON, of another format version, altered (checksum), incomplete;
            model file missing, not the one the metadata describes, or its sha256 differs.
    """
    p = Path(path)
    if not p.exists():
        raise ExportError(f"{p}: no such file or folder")
    folder = p if p.is_dir() else p.parent
    mpath = folder / METADATA_FILE
    meta = _read_json(mpath)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{mpath}: format_version {meta.get('format_version')!r}; this repgls reads "
                          f"{FORMAT_VERSION} (re-export the run)")
    if meta.get("metadata_sha256") != metadata_checksum(meta):
        raise ExportError(f"{mpath}: altered since export (metadata_sha256 does not match its content); "
                          "re-export the run")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ExportError(f"{mpath}: incomplete, missing {', '.join(missing)}")
    name = str(meta["model"].get("file", ""))
    if p.is_file() and p.name != METADATA_FILE and p.name != name:
        raise ExportError(f"{p}: {mpath} describes {name!r}, not this file")
    model = folder / name
    if not name or not model.is_file():
        raise ExportError(f"{model}: model file missing (named by {mpath})")
    digest = file_sha256(model)
    if digest != meta["model"].get("sha256"):
        raise ExportError(f"{model}: sha256 {digest[:16]}... does not match {mpath.name} "
                          f"({str(meta['model'].get('sha256'))[:16]}...): the model file was altered or replaced")
    return meta, model


@dataclass
class ExportedModel:
    """An export ready to predict: metadata facts and a forward function over normalised inputs.

    Attributes:
        path: model file. meta: its metadata (checked). classes: K names. image_size: S. resize_mode: "pad" |
        "crop". has_rate: LU-ViT (a ``rate`` output). thresholds: class -> threshold (None when none were
        chosen). run_fn: normalised float32 [B, 1, S, S] -> the outputs, in ``meta["outputs"]`` order.
    """

    path: Path
    meta: dict[str, Any]
    classes: tuple[str, ...]
    image_size: int
    resize_mode: str
    has_rate: bool
    thresholds: dict[str, float | None] | None
    run_fn: Callable[[np.ndarray], Sequence[np.ndarray]]

    @property
    def format(self) -> str:
        return str(self.meta["model"]["format"])

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised float32 [B, 1, S, S] -> ``{"prob": [B, K]}`` (+ ``"rate"`` for LU-ViT), float64."""
        outs = self.run_fn(np.ascontiguousarray(x, dtype=np.float32))
        names = [o["name"] for o in self.meta["outputs"]]
        return {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, outs, strict=True)}

    def predict_pixels(self, pix: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
        """uint8 [N, S, S] (read and resized by the cache rule) -> ``prob`` [N, K] (and ``rate``), batched."""
        from repgls.data.images import normalize

        scale = float(self.meta["preprocessing"]["normalize"].get("scale", 1.0))
        parts = [self.forward(normalize(pix[i:i + batch_size], scale=scale)[:, None])
                 for i in range(0, len(pix), batch_size)]
        k = len(self.classes)
        return {n: (np.concatenate([p[n] for p in parts]) if parts else np.zeros((0, k)))
                for n in ("prob", "rate") if n == "prob" or self.has_rate}


def _onnx_runner(model: Path, device: str | None) -> Callable[[np.ndarray], Sequence[np.ndarray]]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("onnxruntime is not installed: pip install 'repgls[export]' (or onnxruntime)") from None
    available = ort.get_available_providers()
    dev = str(device or "auto")
    if dev.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(f"device {dev!r}: onnxruntime has no CUDA provider here ({', '.join(available)})")
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": int(dev.partition(":")[2] or 0)})]
    elif dev == "auto" and "CUDAExecutionProvider" in available:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif dev in ("auto", "cpu"):
        providers = ["CPUExecutionProvider"]
    else:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    sess = ort.InferenceSession(str(model), sess_options=opts, providers=providers)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def _torchscript_runner(model: Path, device: str | None) -> Callable[[np.ndarray], Sequence[np.ndarray]]:
    import torch

    dev = torch.device("cuda" if device in (None, "auto") and torch.cuda.is_available()
                       else "cpu" if device in (None, "auto") else device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        net = torch.jit.load(str(model), map_location=dev).eval()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = net(torch.from_numpy(x).to(dev))
        return [t.float().cpu().numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]

    return run


def load_exported(path: str | os.PathLike, device: str | None = "auto") -> ExportedModel:
    """Load an export (its folder, model file or metadata.json) after checking its metadata and sha256.

    ``device``: "auto" | "cpu" | "cuda[:N]" (ONNX: onnxruntime's CUDA provider when present).
    Raises ExportError (unusable export, one line naming the file) or ImportError (onnxruntime missing).
    """
    from repgls.data.images import NORM_MEAN, NORM_STD

    meta, model = read_export_metadata(path)
    norm = meta["preprocessing"].get("normalize", {})
    if (norm.get("mean"), norm.get("std")) != (NORM_MEAN, NORM_STD):
        raise ExportError(f"{model.parent / METADATA_FILE}: normalisation mean {norm.get('mean')} / std "
                          f"{norm.get('std')} differs from this repgls ({NORM_MEAN} / {NORM_STD})")
    fmt = meta["model"].get("format")
    if fmt not in MODEL_FILES:
        raise ExportError(f"{model.parent / METADATA_FILE}: unknown model format {fmt!r}")
    runner = _onnx_runner(model, device) if fmt == "onnx" else _torchscript_runner(model, device)
    names = [o["name"] for o in meta["outputs"]]
    return ExportedModel(path=model, meta=meta, classes=tuple(meta["classes"]),
                         image_size=int(meta["input"]["image_size"]),
                         resize_mode=str(meta["preprocessing"]["resize"]["mode"]), has_rate="rate" in names,
                         thresholds=meta["thresholds"].get("values"), run_fn=runner)


def predict_exported(model: ExportedModel | str | os.PathLike,
                     images: str | os.PathLike | Iterable[str | os.PathLike], out: str | os.PathLike | None = None,
                     *, batch_size: int = 32, device: str | None = "auto", skip_errors: bool = False,
                     cam: bool = False) -> pd.DataFrame:
    """Predict image files (PNG / JPEG / DICOM; folders expand) with an exported model; no torch for ONNX.

    Same table as :func:`repgls.predict` on the run folder: ``path``, ``prob:<C>`` and, for LU-ViT, ``rate:<C>``
    and ``expected_certainty:<C>``; ``df.attrs["errors"]`` maps skipped files to their error; ``out``: Parquet
    (schema metadata ``repgls``: the export, its source run, classes, preprocessing, thresholds).
    ``cam=True`` raises ValueError: Grad-CAM needs the run folder.
    """
    if cam:
        raise ValueError(NO_CAM)
    if out is not None:  # the output place checked before the model is loaded or any image read
        check_writable(out, what="output file")
    em = model if isinstance(model, ExportedModel) else load_exported(model, device)
    paths = expand_images(images)
    pix, errors = read_images(paths, em.image_size, em.resize_mode, skip_errors)
    res = em.predict_pixels(pix, batch_size)
    ok = [p for p, e in zip(paths, errors, strict=True) if not e]
    prob = np.clip(res["prob"], 0.0, 1.0)
    df = pd.DataFrame({"path": [str(p) for p in ok], **prediction_columns(em.classes, prob, res.get("rate"))})
    df.attrs["errors"] = {str(p): e for p, e in zip(paths, errors, strict=True) if e}
    if out is not None:
        src = em.meta["source"]
        meta = {"export": str(em.path), "format": em.format, "run": src.get("run"),
                "checkpoint": src.get("checkpoint"), "model": src.get("model"), "classes": list(em.classes),
                "image_size": em.image_size, "resize_mode": em.resize_mode,
                "certainty_rule": CERTAINTY_RULE if em.has_rate else None, "thresholds": em.thresholds,
                "errors": df.attrs["errors"]}
        atomic_write_parquet(df, Path(out), meta)
    return df
