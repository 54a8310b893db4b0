"""``evaluate(run_dir, split="test", ...)``: score a trained run on a split of its image cache.

Loads the run (:mod:`repgls.evaluation.run`), predicts the cache's ``split`` and validation split (batched, no
grad, eval mode), chooses per-class thresholds on validation, scores the split with
:func:`repgls.metrics.score` against the report labels (labels.parquet of the config; NaN = ignored) and, in
the phantom world, against the hidden truth (:mod:`repgls.evaluation.truth`), and writes ``metrics.json``,
``predictions.parquet``, Grad-CAM PNGs and one self-contained ``report.html`` (:mod:`repgls.html_report`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from repgls._io import atomic_write_bytes, atomic_write_parquet
from repgls.evaluation.predict import pick_cam_images, prediction_columns
from repgls.evaluation.run import LoadedRun, load_run, predict_dataset
from repgls.evaluation.truth import TYPICALITY_RULE, find_truth, findings_typical, truth_matrix

__all__ = ["evaluate"]


@dataclass
class _Split:
    """A scored split: datasets, predictions, thresholds and the label sources."""

    lr: LoadedRun
    name: str
    dataset: Any
    image_ids: list[str]
    study_ids: list[str]
    y_rep: np.ndarray
    scores: np.ndarray
    rate: np.ndarray | None
    thresholds: np.ndarray | None
    threshold_source: str
    labels_name: str
    vocab: str | None


def _open_split(lr: LoadedRun, split: str, batch_size: int) -> _Split:
    """Predict ``split`` (and the validation split for thresholds) with the run's own labels file."""
    from repgls.data.torch_dataset import CachedImageDataset
    from repgls.metrics import choose_thresholds
    from repgls.rating import read_labels

    run = lr.run_dir
    if lr.cache_dir is None or not (lr.cache_dir / "meta.json").is_file():
        raise FileNotFoundError(f"{run}/config.yaml: data.cache_dir {lr.config.data.cache_dir!r} is not an image "
                                "cache (meta.json missing)")
    official = lr.config.data.labels == "official"
    if not official and (lr.labels is None or not lr.labels.is_file()):
        raise FileNotFoundError(f"{run}/config.yaml: data.labels {lr.config.data.labels!r}: labels.parquet not found")
    labels: Any = "official" if official else read_labels(lr.labels)  # type: ignore[arg-type]
    test_ds = CachedImageDataset(lr.cache_dir, labels=labels, split=split, augment=False)
    if tuple(test_ds.classes) != lr.classes:
        raise ValueError(f"{lr.labels or 'official labels'}: classes {test_ds.classes} differ from the run's "
                         f"{lr.classes}")
    if len(test_ds) == 0:
        raise ValueError(f"{lr.cache_dir}: no images of split {split!r}")
    val_split = lr.config.data.val_split
    val_ds = CachedImageDataset(lr.cache_dir, labels=labels, split=val_split, augment=False)
    pred = predict_dataset(lr, test_ds, batch_size)
    y_rep, s = pred["y"], np.clip(pred["prob"], 0.0, 1.0)
    thr, thr_source = None, "none (val split empty)"
    if len(val_ds) and split != val_split:
        val = predict_dataset(lr, val_ds, batch_size)
        thr = choose_thresholds(val["y"], np.clip(val["prob"], 0.0, 1.0))
        thr_source = f"report labels of split {val_split!r} (balanced accuracy)"
    elif len(val_ds):
        thr = choose_thresholds(y_rep, s)
        thr_source = f"split {split!r} itself (it is the validation split: optimistic)"
    vocab = lr.config.data.vocab if official else (labels.meta.get("vocab") or lr.config.data.vocab)
    return _Split(lr=lr, name=split, dataset=test_ds, image_ids=test_ds.index["image_id"].astype(str).tolist(),
                  study_ids=test_ds.index["study_id"].astype(str).tolist(), y_rep=y_rep, scores=s,
                  rate=pred.get("rate"), thresholds=thr, threshold_source=thr_source,
                  labels_name="official" if official else str(lr.labels), vocab=vocab)


def _groups(vocab: str | None) -> Any:
    """Head / medium / tail groups of the vocabulary (None when unknown)."""
    if not vocab:
        return None
    try:
        from repgls.vocab import load_vocab

        return load_vocab(vocab).groups
    except (ValueError, OSError):
        return None


def _truth_and_typicality(sp: _Split, truth: Any, findings: Any
                          ) -> tuple[Path | None, np.ndarray | None, np.ndarray | None, str]:
    """(truth path, y_truth [N, K], typical [N, K], typicality source) for the split."""
    lr = sp.lr
    truth_path: Path | None = None
    if truth is None:
        truth_path = find_truth(lr)
    elif truth is not False:
        truth_path = Path(truth)
        if not truth_path.is_file():
            raise FileNotFoundError(f"truth file not found: {truth_path}")
    if findings and not Path(findings).is_file():
        raise FileNotFoundError(f"findings file not found: {findings}")
    y_truth = typical = None
    source = "none"
    if truth_path is not None:
        y_truth, typical = truth_matrix(truth_path, sp.image_ids, lr.classes, sp.study_ids)
        source = "truth"
        if not np.isfinite(y_truth).any():  # no image of the split is in the truth table
            if truth is not None:
                raise ValueError(f"{truth_path}: none of the {len(sp.image_ids)} images of split {sp.name!r} "
                                 f"(e.g. {sp.image_ids[0]!r}) is in this truth table")
            truth_path = y_truth = typical = None
            source = "none"
    if truth_path is None:
        fpath = Path(findings) if findings else (lr.labels.parent / "findings.parquet" if lr.labels else None)
        if fpath is not None and fpath.is_file():
            typical = findings_typical(fpath, sp.study_ids, lr.classes)
            source = "findings"
    return truth_path, y_truth, typical, source


def _write_predictions(sp: _Split, y_truth: np.ndarray | None, out: Path, checkpoint: str) -> None:
    """predictions.parquet: ids, prob / rate / expected certainty, report labels and (phantom) truth."""
    classes = sp.lr.classes
    cols: dict[str, Any] = {"image_id": sp.image_ids, "study_id": sp.study_ids,
                            **prediction_columns(classes, sp.scores, sp.rate)}
    for k, c in enumerate(classes):
        cols[f"label:{c}"] = sp.y_rep[:, k].astype(np.float32)
    if y_truth is not None:
        for k, c in enumerate(classes):
            cols[f"truth:{c}"] = y_truth[:, k].astype(np.float32)
    atomic_write_parquet(pd.DataFrame(cols), out / "predictions.parquet",
                         {"run": str(sp.lr.run_dir), "split": sp.name, "checkpoint": checkpoint,
                          "classes": list(classes)})


def _write_cams(sp: _Split, n: int, out: Path) -> list[Path]:
    """Grad-CAM PNGs of the ``n`` most confident images (distinct top classes first) under ``out/cams``."""
    from repgls.explain import save_cam_pngs

    idx, cls = pick_cam_images(sp.scores, sp.lr.classes, n)
    if not idx:
        return []
    x = torch.stack([sp.dataset[i]["image"] for i in idx])
    disp = np.stack([sp.dataset.load_uint8(i)[0].numpy() for i in idx])
    cam_dir = out / "cams"
    for old in cam_dir.glob("*.png") if cam_dir.is_dir() else []:
        old.unlink()
    return save_cam_pngs(sp.lr.model, x, cls, cam_dir, names=[sp.image_ids[i] for i in idx],
                         class_names=list(sp.lr.classes), display=disp, device=sp.lr.device)


def _write_html(sp: _Split, out: Path, res_rep: dict, res_truth: dict | None, y_truth: np.ndarray | None,
                truth_path: Path | None, cam_paths: list[Path], ck: dict[str, Any], checkpoint: str) -> None:
    from repgls.html_report import write_report

    run, lr = sp.lr.run_dir, sp.lr
    sub = (f"{run.name} · split {sp.name} · {len(sp.image_ids)} images · checkpoint {checkpoint}"
           f"{' step ' + str(ck['step']) if ck.get('step') is not None else ''} · model {lr.config.model.name}"
           f"{' · hidden truth: ' + str(truth_path) if truth_path else ''}")
    write_report(out / "report.html", res_rep, y_truth=y_truth, y_true=sp.y_rep, scores=sp.scores, truth=res_truth,
                 cams=cam_paths if cam_paths else None, title=f"repgls evaluation: {run.name} ({sp.name})",
                 subtitle=sub)


def evaluate(run_dir: str | os.PathLike, split: str = "test", n_boot: int = 200,
             truth: str | os.PathLike | bool | None = None, cams: int = 8,
             out_dir: str | os.PathLike | None = None, *, checkpoint: str = "best",
             findings: str | os.PathLike | None = None, device: str | None = "auto", batch_size: int = 64,
             seed: int = 0, report: bool = True) -> dict[str, Any]:
    """Evaluate a run on a split of its image cache; write metrics.json, predictions.parquet, report.html.

    Args:
        run_dir: run folder of ``repgls train``. split: cache split to score ("test", "val", ...).
        n_boot: bootstrap replicates for 95% intervals (0: none).
        truth: phantom truth.parquet; None = auto-detect (the phantom world the cache was prepared from);
            False = do not score against truth.
        cams: number of ``split`` images shown with a Grad-CAM of their top class (0: none).
        out_dir: output folder (default ``RUN/eval-<split>``).
        checkpoint: "best" (default) or "last". findings: findings.parquet for the report's typicality when
            there is no truth (default: ``findings.parquet`` beside the labels file, if any).
        device: "auto" | "cpu" | "cuda[:N]". batch_size: images per forward pass. seed: bootstrap seed.
        report: also write report.html.
    Returns:
        The metrics.json content: ``{"run", "split", "checkpoint", "classes", "n_images", "thresholds",
        "typicality", "truth_path", "report_labels": score(...), "truth": score(...) | None, "files"}``.
    """
    from repgls.metrics import score

    lr = load_run(run_dir, checkpoint, device)
    sp = _open_split(lr, split, batch_size)
    truth_path, y_truth, typical, typ_source = _truth_and_typicality(sp, truth, findings)
    groups = _groups(sp.vocab)
    kw = dict(groups=groups, typical=typical, thresholds=sp.thresholds, n_boot=n_boot, seed=seed)
    res_rep = score(sp.y_rep, sp.scores, lr.classes, **kw)
    res_truth = score(y_truth, sp.scores, lr.classes, **kw) if y_truth is not None else None

    out = Path(out_dir) if out_dir is not None else lr.run_dir / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {"metrics": "metrics.json", "predictions": "predictions.parquet"}
    _write_predictions(sp, y_truth, out, checkpoint)
    cam_paths = _write_cams(sp, int(cams), out) if cams and cams > 0 else []
    if cam_paths:
        files["cams"] = "cams/"
    ck = {k: lr.checkpoint_meta.get(k) for k in ("tag", "step", "epoch", "mean_auc") if k in lr.checkpoint_meta}
    thr = sp.thresholds
    result: dict[str, Any] = {
        "run": str(lr.run_dir), "split": split, "checkpoint": {"name": checkpoint, **ck},
        "model": lr.config.model.name, "classes": list(lr.classes), "n_images": len(sp.image_ids),
        "image_size": lr.image_size, "labels": sp.labels_name, "cache": str(lr.cache_dir), "vocab": sp.vocab,
        "thresholds": {"source": sp.threshold_source,
                       "values": None if thr is None else {c: float(t) for c, t in zip(lr.classes, thr, strict=True)}},
        "typicality": {"source": typ_source, "rule": TYPICALITY_RULE[typ_source]},
        "truth_path": str(truth_path) if truth_path is not None else None,
        "report_labels": res_rep, "truth": res_truth, "files": files,
    }
    if report:
        files["report"] = "report.html"
        _write_html(sp, out, res_rep, res_truth, y_truth, truth_path, cam_paths, ck, checkpoint)
    atomic_write_bytes(out / "metrics.json", json.dumps(result, indent=2, allow_nan=False).encode())
    return result
