"""``export(run_dir, format="onnx", out=...)``: a trained run's model as ONNX or TorchScript, with its metadata.

The exported network maps the normalised image ``image`` float32 [B, 1, S, S] (B dynamic) to ``prob`` =
sigmoid(logits) [B, K] and, for LU-ViT, ``rate`` = tanh(rate head) [B, K]. ``metadata.json`` beside it
(:mod:`repgls.evaluation.onnx_predict`, docs/export.md) holds the class names, image size, the exact
preprocessing (read rule, resize mode of the run's cache, ``normalize`` constants), the output names, the
thresholds chosen on validation (from ``RUN/eval-test/metrics.json`` when it matches the checkpoint, else chosen
here exactly as ``repgls eval`` does), the model file's sha256, the repgls version, the source run and
checkpoint, and the opset. Each export is checked before it is kept: the exported model and the run's own
network agree within 1e-4 on seeded inputs at a batch size other than the one traced.

ONNX: ``torch.onnx.export`` with ``dynamo=False`` (the TorchScript-based exporter: needs only torch, offline,
byte-for-byte deterministic) at opset 17 by default; ``dynamo=True`` uses the ``torch.export``-based exporter
(needs onnxscript; opset 18 by default). TorchScript: ``torch.jit.trace``. No torch at import.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from repgls._io import atomic_write_text, check_writable, file_mode_mask
from repgls.evaluation.onnx_predict import (
    FORMAT_VERSION,
    KIND,
    METADATA_FILE,
    MODEL_FILES,
    file_sha256,
    load_exported,
    metadata_checksum,
)

if TYPE_CHECKING:
    from torch import nn

    from repgls.evaluation.run import LoadedRun

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "THRESHOLD_MODES", "export", "validation_thresholds"]

#: Default ONNX opset per exporter.
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
EXPORTERS = {"torchscript": "torch.onnx.export(dynamo=False): the TorchScript-based exporter",
             "dynamo": "torch.onnx.export(dynamo=True): the torch.export-based exporter (onnxscript)"}
THRESHOLD_MODES = ("auto", "eval", "compute")
THRESHOLD_RULE = "a finding is positive when prob >= its threshold; chosen on the validation split for balanced " \
                 "accuracy against the evaluation reference (repgls.metrics.choose_thresholds, as repgls eval)"
_TOLERANCE = 1e-4


def _eval_thresholds(lr: LoadedRun) -> dict[str, Any] | None:
    """Thresholds of ``RUN/eval-test/metrics.json`` when it scored this checkpoint (same name, step, classes,
    and written after the checkpoint file); None otherwise."""
    mpath = lr.run_dir / "eval-test" / "metrics.json"
    wpath = lr.run_dir / "checkpoints" / f"{lr.checkpoint}.safetensors"
    if not mpath.is_file() or mpath.stat().st_mtime < wpath.stat().st_mtime:
        return None
    try:
        m = json.loads(mpath.read_text())
    except (OSError, ValueError):
        return None
    ck = m.get("checkpoint") or {}
    thr = m.get("thresholds") or {}
    if (ck.get("name") != lr.checkpoint or ck.get("step") != lr.checkpoint_meta.get("step")
            or m.get("classes") != list(lr.classes) or thr.get("values") is None):
        return None
    ref = m.get("reference") or {}
    return {"values": thr["values"], "origin": "eval", "file": str(mpath), "source": thr.get("source"),
            "reference": ref.get("source") if isinstance(ref, dict) else None,
            "split": lr.config.data.val_split, "rule": THRESHOLD_RULE}


def validation_thresholds(lr: LoadedRun, reference: str | os.PathLike = "auto",
                          findings: str | os.PathLike | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Thresholds chosen on the run's validation split as ``repgls eval`` chooses them: the split predicted,
    the same reference resolved by ``evaluate``'s own functions, ``repgls.metrics.choose_thresholds``.

    Returns the metadata entry: ``values`` (class -> threshold, None when the val split is empty), ``origin``
    "computed", ``source``, ``reference``, ``split``, ``rule``. Raises FileNotFoundError / ValueError when the
    cache or a reference is missing.
    """
    from repgls.evaluation import scoring
    from repgls.metrics import choose_thresholds

    if lr.cache_dir is None or not (lr.cache_dir / "meta.json").is_file():
        raise FileNotFoundError(f"{lr.run_dir}/config.yaml: data.cache_dir {lr.config.data.cache_dir!r} is not an "
                                "image cache (meta.json missing): cannot choose thresholds on validation")
    findings_p, truth_p = scoring._findings_path(lr, findings), scoring._truth_path(lr, None)
    source, ref_path = scoring._resolve_reference(reference, lr, truth_p, findings_p)
    split = lr.config.data.val_split
    val = scoring._predict_split(lr, split, batch_size)
    entry: dict[str, Any] = {"values": None, "origin": "computed", "file": None, "reference": source,
                             "split": split, "rule": THRESHOLD_RULE}
    if val is None:
        return {**entry, "source": f"none (split {split!r} empty)"}
    ref = scoring._reference(source, ref_path, val, lr, findings_p, "negative")
    thr = choose_thresholds(ref.y, val.scores)
    return {**entry, "values": {c: float(t) for c, t in zip(lr.classes, thr, strict=True)},
            "source": f"reference ({source}) of split {split!r} (balanced accuracy), chosen at export"}


def _thresholds(lr: LoadedRun, mode: str, reference: str | os.PathLike, findings: str | os.PathLike | None,
                batch_size: int) -> dict[str, Any]:
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"thresholds must be one of {', '.join(THRESHOLD_MODES)}, got {mode!r}")
    if mode != "compute":
        got = _eval_thresholds(lr)
        if got is not None:
            return got
        if mode == "eval":
            raise FileNotFoundError(f"{lr.run_dir / 'eval-test' / 'metrics.json'}: missing, or it scored another "
                                    "checkpoint: run `repgls eval` first, or use thresholds 'auto' / 'compute'")
    try:
        return validation_thresholds(lr, reference, findings, batch_size)
    except (FileNotFoundError, ValueError) as e:
        if mode == "compute":
            raise
        return {"values": None, "origin": "none", "file": None, "reference": None, "split": lr.config.data.val_split,
                "source": f"none: {' '.join(str(e).split())}", "rule": THRESHOLD_RULE}


def _wrap(model: nn.Module, has_rate: bool) -> nn.Module:
    """The exported network: ``image`` [B, 1, S, S] -> (prob,) or (prob, rate)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.net.forward_all(image) if hasattr(self.net, "forward_all") else {"logits": self.net(image)}
            prob = torch.sigmoid(out["logits"].float())
            return (prob, out["rate"].float()) if has_rate else (prob,)

    return Exported().eval()


def _write_model(net: nn.Module, example: Any, path: Path, fmt: str, exporter: str, opset: int,
                 outputs: list[str]) -> None:
    """Write ``net`` as ONNX (dynamic batch axis) or TorchScript (traced) to ``path``."""
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice, tracer warnings
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(net, (example,), check_trace=False), str(path))
        elif exporter == "dynamo":
            torch.onnx.export(net, (example,), str(path), input_names=["image"], output_names=outputs,
                              opset_version=opset, dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes={"image": {0: torch.export.Dim("batch")}})
        else:
            torch.onnx.export(net, (example,), str(path), input_names=["image"], output_names=outputs,
                              opset_version=opset, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in ["image", *outputs]})


def _onnx_opset(path: Path, requested: int) -> int:
    """The default-domain opset written into the ONNX file (the requested one when onnx is not installed)."""
    try:
        import onnx
    except ImportError:
        return requested
    m = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), requested)


def _metadata(lr: LoadedRun, fmt: str, exporter: str, model_file: Path, opset: int | None,
              thresholds: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    import torch

    from repgls import __version__
    from repgls.data.images import NORM_MEAN, NORM_STD
    from repgls.evaluation.predict import CERTAINTY_RULE

    k, s = len(lr.classes), lr.image_size
    meaning = {"prob": "probability per class: sigmoid of the label head's logits",
               "rate": "LU-ViT predicted report rate per class in (-1, 1): tanh of the rate head"}
    ck = lr.checkpoint_meta
    wpath = lr.run_dir / "checkpoints" / f"{lr.checkpoint}.safetensors"
    meta: dict[str, Any] = {
        "kind": KIND, "format_version": FORMAT_VERSION, "repgls_version": __version__,
        "model": {"file": model_file.name, "format": fmt, "sha256": file_sha256(model_file),
                  "bytes": model_file.stat().st_size, "opset": opset,
                  "exporter": EXPORTERS[exporter] if fmt == "onnx" else "torch.jit.trace",
                  "torch_version": torch.__version__.split("+")[0]},
        "source": {"run": str(lr.run_dir.resolve()), "checkpoint": lr.checkpoint,
                   "checkpoint_file": f"checkpoints/{wpath.name}", "checkpoint_sha256": file_sha256(wpath),
                   "step": ck.get("step"), "epoch": ck.get("epoch"), "model": lr.config.model.name},
        "classes": list(lr.classes),
        "input": {"name": "image", "shape": ["batch", 1, s, s], "dtype": "float32", "image_size": s},
        "preprocessing": {
            "read": "repgls.data.images.read_image: uint8 gray, bone bright (8-bit kept; 16-bit and DICOM "
                    "min-max scaled after modality / VOI LUT; MONOCHROME1 inverted)",
            "resize": {"function": "repgls.data.images.load_resized", "size": s, "mode": lr.resize_mode,
                       "rule": "aspect kept; pad: long side to size, short side padded with 0 symmetrically; "
                               "crop: short side to size, centre square; box reduce then bilinear (Pillow)"},
            "normalize": {"function": "repgls.data.images.normalize", "mean": NORM_MEAN, "std": NORM_STD,
                          "scale": 1.0, "formula": "x = (u8 / 255 - mean) / std * scale, float32 [B, 1, S, S]"}},
        "outputs": [{"name": n, "shape": ["batch", k], "dtype": "float32", "meaning": meaning[n]} for n in outputs],
        "thresholds": thresholds,
        "certainty_rule": CERTAINTY_RULE if "rate" in outputs else None,
    }
    meta["metadata_sha256"] = metadata_checksum(meta)
    return meta


def _check_out(out: Path) -> None:
    """``out`` may be new, empty, or a previous export (replaced); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / METADATA_FILE).is_file():
        raise FileExistsError(f"{out}: folder exists and is not a repgls export (no {METADATA_FILE}); "
                              "choose another out folder")


def _verify(lr: LoadedRun, net: nn.Module, folder: Path) -> float:
    """Max abs difference between the written export and ``net`` on 3 seeded inputs (batch 3, not the traced 2)."""
    import torch

    x = np.random.default_rng(0).standard_normal((3, 1, lr.image_size, lr.image_size)).astype(np.float32)
    with torch.no_grad():
        ref = [t.numpy() for t in net(torch.from_numpy(x))]
    got = load_exported(folder, device="cpu").run_fn(x)
    diff = max(float(np.abs(np.asarray(a) - b).max()) for a, b in zip(got, ref, strict=True))
    if not diff <= _TOLERANCE:
        raise RuntimeError(f"{folder}: the exported model differs from the run's network by {diff:.3g} "
                           f"(> {_TOLERANCE})")
    return diff


def export(run_dir: str | os.PathLike, format: str = "onnx", out: str | os.PathLike | None = None, *,
           checkpoint: str = "best", opset: int | None = None, dynamo: bool = False, thresholds: str = "auto",
           reference: str | os.PathLike = "auto", findings: str | os.PathLike | None = None,
           batch_size: int = 64) -> Path:
    """Export a trained run's model (ONNX or TorchScript) with ``metadata.json`` beside it; returns the model file.

    Args:
        run_dir: run folder of ``repgls train``. format: "onnx" | "torchscript".
        out: folder to write (default ``RUN/export-<format>``); new, empty or a previous export (replaced whole,
            all or nothing). checkpoint: "best" | "last".
        opset: ONNX opset (default 17; 18 with ``dynamo``). dynamo: ONNX through the ``torch.export``-based
            exporter instead of the TorchScript-based one.
        thresholds: "auto" (``RUN/eval-test/metrics.json`` when it scored this checkpoint, else chosen on val
            here, else none with the reason recorded), "eval" (metrics.json only), "compute" (always chosen here).
        reference, findings: the reference thresholds are chosen against, as for ``evaluate``.
        batch_size: images per forward pass when predicting the validation split.
    Raises:
        FileNotFoundError / ValueError (run, checkpoint, reference), FileExistsError (``out``), RuntimeError
        (the export does not reproduce the network within 1e-4).
    """
    import torch

    from repgls.evaluation.run import load_run

    if format not in MODEL_FILES:
        raise ValueError(f"format must be one of {', '.join(MODEL_FILES)}, got {format!r}")
    if opset is not None and not 7 <= int(opset) <= 23:
        raise ValueError(f"opset must be between 7 and 23, got {opset}")
    if thresholds not in THRESHOLD_MODES:
        raise ValueError(f"thresholds must be one of {', '.join(THRESHOLD_MODES)}, got {thresholds!r}")
    exporter = "dynamo" if dynamo else "torchscript"
    folder = Path(out) if out is not None else Path(run_dir) / f"export-{format}"
    _check_out(folder)
    check_writable(folder, folder=True, what="out folder")
    lr = load_run(run_dir, checkpoint, device="cpu")
    if lr.features is not None:
        raise ValueError(f"{lr.run_dir}: a probe over cached features ({lr.features}); export needs an image model")
    thr = _thresholds(lr, thresholds, reference, findings, batch_size)
    outputs = ["prob", "rate"] if lr.has_rate else ["prob"]
    net = _wrap(lr.model, lr.has_rate)
    example = torch.zeros(2, lr.config.model.in_chans, lr.image_size, lr.image_size)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(tmp, 0o777 & ~file_mode_mask())
    try:
        model_file = tmp / MODEL_FILES[format]
        op = (opset or DEFAULT_OPSET[exporter]) if format == "onnx" else None
        _write_model(net, example, model_file, format, exporter, op or 0, outputs)
        os.chmod(model_file, 0o666 & ~file_mode_mask())
        if op is not None:
            op = _onnx_opset(model_file, op)
        meta = _metadata(lr, format, exporter, model_file, op, thr, outputs)
        atomic_write_text(tmp / METADATA_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n")
        _verify(lr, net, tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / MODEL_FILES[format]
