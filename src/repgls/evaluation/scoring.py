"""``evaluate(run_dir, split="test", ...)``: score a trained run on a split of its image cache.

Loads the run (:mod:`repgls.evaluation.run`), predicts the cache's ``split`` and validation split (batched, no
grad, eval mode), and scores the predictions with :func:`repgls.metrics.score` against a **reference that does
not depend on the run's training policy** (:mod:`repgls.evaluation.reference`; per-class thresholds for the
balanced accuracy are chosen on the validation split against the same reference), and, in the phantom world,
also against the hidden truth. Bootstrap intervals resample patients. Writes ``metrics.json``,
``predictions.parquet``, Grad-CAM PNGs and one self-contained ``report.html`` into the output folder, all or
nothing (a failed evaluation leaves no half-written folder).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from repgls._io import atomic_write_bytes, atomic_write_parquet, check_writable, file_mode_mask
from repgls.evaluation.predict import pick_cam_images, prediction_columns
from repgls.evaluation.reference import (
    Reference,
    detect_source,
    findings_reference,
    labels_reference,
    official_reference,
    truth_reference,
)
from repgls.evaluation.run import LoadedRun, load_run, predict_dataset
from repgls.evaluation.truth import find_truth
from repgls.metrics.score import json_safe

__all__ = ["REFERENCE_CHOICES", "evaluate", "json_safe"]

REFERENCE_CHOICES = ("auto", "findings", "truth", "official")


@dataclass
class _Split:
    """One predicted split: its images, their ids and patients, and the run's probabilities."""

    name: str
    dataset: Any
    image_ids: list[str]
    study_ids: list[str]
    patient_ids: list[str]
    scores: np.ndarray
    rate: np.ndarray | None


def _predict_split(lr: LoadedRun, split: str, batch_size: int) -> _Split | None:
    """Predict the images of ``split`` (None when the cache has none)."""
    from repgls.data.torch_dataset import CachedImageDataset

    if lr.features is not None:
        from repgls.data.features import FeatureDataset

        ds: Any = FeatureDataset(lr.features, lr.cache_dir, split=split)  # type: ignore[arg-type]
    else:
        ds = CachedImageDataset(lr.cache_dir, labels=None, split=split, augment=False)  # type: ignore[arg-type]
    if len(ds) == 0:
        return None
    pred = predict_dataset(lr, ds, batch_size)
    idx = ds.index
    pid = idx["patient_id"] if "patient_id" in idx.columns else idx["study_id"]
    return _Split(split, ds, idx["image_id"].astype(str).tolist(), idx["study_id"].astype(str).tolist(),
                  pid.astype(str).tolist(), np.clip(pred["prob"], 0.0, 1.0), pred.get("rate"))


def _findings_path(lr: LoadedRun, findings: Any) -> Path | None:
    """The findings table: given, else ``findings.parquet`` beside the run's labels file."""
    if findings:
        p = Path(findings)
        if not p.is_file():
            raise FileNotFoundError(f"findings file not found: {p}")
        return p
    beside = lr.labels.parent / "findings.parquet" if lr.labels is not None else None
    return beside if beside is not None and beside.is_file() else None


def _truth_path(lr: LoadedRun, truth: Any) -> Path | None:
    """The phantom truth table: given, auto-detected (None), or none (False)."""
    if truth is False:
        return None
    if truth is None:
        return find_truth(lr)
    p = Path(truth)
    if not p.is_file():
        raise FileNotFoundError(f"truth file not found: {p}")
    return p


def _resolve_reference(reference: str | os.PathLike, lr: LoadedRun, truth: Path | None,
                       findings: Path | None) -> tuple[str, Path | None]:
    """(source, path) of the reference: a keyword of REFERENCE_CHOICES or a Parquet file."""
    ref = str(reference)
    if ref not in REFERENCE_CHOICES:
        p = Path(ref)
        if not p.is_file():
            raise FileNotFoundError(f"--reference {ref}: neither {', '.join(REFERENCE_CHOICES)} nor an existing file")
        return detect_source(p), p
    has_official = lr.cache_dir is not None and any(
        str(c).startswith("label:") for c in pd.read_parquet(lr.cache_dir / "index.parquet").columns)
    if ref == "auto":
        ref = "findings" if findings else "truth" if truth else "official" if has_official else "none"
    if ref == "findings" and findings is None:
        raise FileNotFoundError(f"--reference findings: no findings.parquet beside the run's labels "
                                f"({lr.labels}); pass --findings PATH (the mined findings of these reports)")
    if ref == "truth" and truth is None:
        raise FileNotFoundError("--reference truth: no phantom truth.parquet found for this cache; pass --truth PATH")
    if ref == "official" and not has_official:
        raise ValueError(f"--reference official: the cache {lr.cache_dir} has no official label columns")
    if ref == "none":
        raise FileNotFoundError(
            f"{lr.run_dir}: no reference found (no findings.parquet beside {lr.labels}, no phantom truth, no official "
            "labels); pass --reference findings --findings PATH, --reference truth --truth PATH, or a labels.parquet")
    return ref, {"findings": findings, "truth": truth, "official": None}[ref]


def _reference(source: str, path: Path | None, sp: _Split, lr: LoadedRun, findings: Path | None,
               unmentioned: str) -> Reference:
    classes = lr.classes
    if source == "findings":
        return findings_reference(path, sp.study_ids, classes, unmentioned)  # type: ignore[arg-type]
    if source == "truth":
        return truth_reference(path, sp.image_ids, sp.study_ids, classes)  # type: ignore[arg-type]
    if source == "labels":
        return labels_reference(path, sp.study_ids, classes, findings)  # type: ignore[arg-type]
    return official_reference(sp.dataset.index, classes, str(lr.cache_dir))


def _truth_reference(path: Path | None, sp: _Split, lr: LoadedRun, auto: bool) -> Reference | None:
    """The hidden truth of the split's images; an auto-detected table that holds none of them is ignored."""
    if path is None:
        return None
    try:
        return truth_reference(path, sp.image_ids, sp.study_ids, lr.classes)
    except ValueError:
        if auto:
            return None
        raise


def _hedged_summary(ref: Reference, scores: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any] | None:
    """Hedged mentions, scored on their own: per class their number, mean certainty and mean predicted
    probability; over all of them the Spearman correlation of probability with the hedge's certainty."""
    if ref.hedged is None:
        return None
    from scipy.stats import spearmanr

    h = ref.hedged
    per = {c: {"n": int(np.isfinite(h[:, k]).sum()),
               "mean_certainty": float(np.nanmean(h[:, k])) if np.isfinite(h[:, k]).any() else None,
               "mean_score": float(scores[np.isfinite(h[:, k]), k].mean()) if np.isfinite(h[:, k]).any() else None}
           for k, c in enumerate(classes)}
    m = np.isfinite(h)
    rho = float(spearmanr(h[m], scores[m]).statistic) if m.sum() > 2 and np.ptp(h[m]) > 0 else None
    return {"n": int(m.sum()), "spearman_score_vs_certainty": rho, "per_class": per,
            "rule": "mentions with 0 < certainty < 1: not reference labels; shown here so they are never folded in"}


def _groups(vocab: str | None) -> Any:
    """Head / medium / tail groups of the vocabulary (None when unknown)."""
    if not vocab:
        return None
    try:
        from repgls.vocab import load_vocab

        return load_vocab(vocab).groups
    except (ValueError, OSError):
        return None


def _vocab(lr: LoadedRun) -> str | None:
    if lr.config.data.labels == "official" or lr.labels is None or not lr.labels.is_file():
        return lr.config.data.vocab
    from repgls.rating import read_labels

    return read_labels(lr.labels).meta.get("vocab") or lr.config.data.vocab


def _write_cams(lr: LoadedRun, sp: _Split, n: int, out: Path) -> list[Path]:
    """Grad-CAM PNGs of the ``n`` most confident images (distinct top classes first) under ``out/cams``."""
    from repgls.explain import save_cam_pngs

    idx, cls = pick_cam_images(sp.scores, lr.classes, n)
    if not idx:
        return []
    x = torch.stack([sp.dataset[i]["image"] for i in idx])
    disp = np.stack([sp.dataset.load_uint8(i)[0].numpy() for i in idx])
    return save_cam_pngs(lr.model, x, cls, out / "cams", names=[sp.image_ids[i] for i in idx],
                         class_names=list(lr.classes), display=disp, device=lr.device)


def _write_predictions(lr: LoadedRun, sp: _Split, ref: Reference, truth: Reference | None, out: Path,
                       checkpoint: str) -> None:
    """predictions.parquet: ids, prob / rate / expected certainty, reference labels and (phantom) truth."""
    cols: dict[str, Any] = {"image_id": sp.image_ids, "study_id": sp.study_ids, "patient_id": sp.patient_ids,
                            **prediction_columns(lr.classes, sp.scores, sp.rate)}
    for name, r in (("reference", ref), ("truth", truth)):
        if r is not None:
            cols.update({f"{name}:{c}": r.y[:, k].astype(np.float32) for k, c in enumerate(lr.classes)})
    atomic_write_parquet(pd.DataFrame(cols), out / "predictions.parquet",
                         {"run": str(lr.run_dir), "split": sp.name, "checkpoint": checkpoint,
                          "classes": list(lr.classes), "reference": ref.source})


def _write_html(lr: LoadedRun, sp: _Split, out: Path, result: dict[str, Any], ref: Reference,
                truth: Reference | None, cam_paths: list[Path]) -> None:
    from repgls.html_report import write_report

    ck = result["checkpoint"]
    sub = (f"{lr.run_dir.name} · split {sp.name} · {len(sp.image_ids)} images · checkpoint {ck['name']}"
           f"{' step ' + str(ck['step']) if ck.get('step') is not None else ''} · model {lr.config.model.name}"
           f" · reference: {ref.source}")
    show_truth = truth is not None and ref.source != "truth"
    write_report(out / "report.html", result["vs_reference"], y_true=ref.y, scores=sp.scores,
                 truth=result["vs_truth"] if show_truth else None, y_truth=truth.y if show_truth else None,
                 cams=cam_paths or None, title=f"repgls evaluation: {lr.run_dir.name} ({sp.name})", subtitle=sub)


def _commit(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` folder."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def evaluate(run_dir: str | os.PathLike, split: str = "test", n_boot: int = 200,
             truth: str | os.PathLike | bool | None = None, cams: int = 8,
             out_dir: str | os.PathLike | None = None, *, reference: str | os.PathLike = "auto",
             checkpoint: str = "best", findings: str | os.PathLike | None = None, unmentioned: str = "negative",
             device: str | None = "auto", batch_size: int = 64, seed: int = 0, report: bool = True) -> dict[str, Any]:
    """Evaluate a run on a split of its image cache; write metrics.json, predictions.parquet, report.html.

    Args:
        run_dir: run folder of ``repgls train``. split: cache split to score ("test", "val", ...).
        n_boot: bootstrap replicates (patients resampled) for 95% intervals (0: none).
        truth: phantom truth.parquet; None = auto-detect (the phantom world the cache was prepared from);
            False = do not score against truth.
        cams: number of ``split`` images shown with a Grad-CAM of their top class (0: none).
        out_dir: output folder (default ``RUN/eval-<split>``), replaced as a whole when the evaluation succeeds.
        reference: ``auto`` (findings, else phantom truth, else official labels), ``findings``, ``truth``,
            ``official``, or a findings / truth / labels.parquet file (:mod:`repgls.evaluation.reference`).
        checkpoint: "best" (default) or "last". findings: the findings table of the reports (default:
            ``findings.parquet`` beside the labels file). unmentioned: findings reference, a finding the report
            does not mention: "negative" (default) or "ignore".
        device: "auto" | "cpu" | "cuda[:N]". batch_size: images per forward pass. seed: bootstrap seed.
        report: also write report.html.
    Returns:
        The metrics.json content: run facts, ``reference`` (source, rule, counts), ``reference_sha256``,
        ``thresholds``, ``vs_reference`` and ``vs_truth`` (:func:`repgls.metrics.score` results; vs_truth None
        without a truth), ``hedged`` (hedged mentions, findings reference), ``files``.
    """
    from repgls.metrics import choose_thresholds, score

    out = Path(out_dir) if out_dir is not None else Path(run_dir) / f"eval-{split}"
    check_writable(out, folder=True, what="evaluation output folder")  # before loading the model
    lr = load_run(run_dir, checkpoint, device)
    if lr.cache_dir is None or not (lr.cache_dir / "meta.json").is_file():
        raise FileNotFoundError(f"{lr.run_dir}/config.yaml: data.cache_dir {lr.config.data.cache_dir!r} is not an "
                                "image cache (meta.json missing)")
    findings_p, truth_p = _findings_path(lr, findings), _truth_path(lr, truth)
    source, ref_path = _resolve_reference(reference, lr, truth_p, findings_p)
    sp = _predict_split(lr, split, batch_size)
    if sp is None:
        raise ValueError(f"{lr.cache_dir}: no images of split {split!r}")
    ref = _reference(source, ref_path, sp, lr, findings_p, unmentioned)
    val_split = lr.config.data.val_split
    val = _predict_split(lr, val_split, batch_size) if val_split != split else sp
    thr, thr_source = None, "none (val split empty)"
    if val is not None:
        val_ref = ref if val is sp else _reference(source, ref_path, val, lr, findings_p, unmentioned)
        thr = choose_thresholds(val_ref.y, val.scores)
        thr_source = (f"reference ({source}) of split {val_split!r} (balanced accuracy)" if val is not sp else
                      f"split {split!r} itself (it is the validation split: optimistic)")
    tru = ref if source == "truth" else _truth_reference(truth_p, sp, lr, auto=truth is None)
    kw = dict(groups=_groups(_vocab(lr)), thresholds=thr, n_boot=n_boot, seed=seed, clusters=sp.patient_ids)
    res_ref = score(ref.y, sp.scores, lr.classes, typical=ref.typical, **kw)
    res_truth = score(tru.y, sp.scores, lr.classes, typical=tru.typical, **kw) if tru is not None else None
    ck = {k: lr.checkpoint_meta.get(k) for k in ("tag", "step", "epoch", "mean_auc") if k in lr.checkpoint_meta}
    result: dict[str, Any] = {
        "run": str(lr.run_dir), "split": split, "checkpoint": {"name": checkpoint, **ck},
        "model": lr.config.model.name, "classes": list(lr.classes), "n_images": len(sp.image_ids),
        "n_patients": len(set(sp.patient_ids)), "image_size": lr.image_size,
        "training_labels": "official" if lr.config.data.labels == "official" else str(lr.labels),
        "cache": str(lr.cache_dir), "vocab": _vocab(lr),
        "reference": ref.describe(lr.classes), "reference_sha256": ref.sha256(sp.image_ids, lr.classes),
        "truth_path": str(tru.path) if tru is not None else None,
        "truth_sha256": tru.sha256(sp.image_ids, lr.classes) if tru is not None else None,
        "thresholds": {"source": thr_source,
                       "values": None if thr is None else dict(zip(lr.classes, map(float, thr), strict=True))},
        "vs_reference": res_ref, "vs_truth": res_truth, "hedged": _hedged_summary(ref, sp.scores, lr.classes),
        "files": {"metrics": "metrics.json", "predictions": "predictions.parquet"},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~file_mode_mask())
    try:
        _write_predictions(lr, sp, ref, tru, tmp, checkpoint)
        cam_paths = _write_cams(lr, sp, int(cams), tmp) if cams and cams > 0 and lr.features is None else []
        if cam_paths:
            result["files"]["cams"] = "cams/"
        if report:
            result["files"]["report"] = "report.html"
            _write_html(lr, sp, tmp, result, ref, tru, cam_paths)
        result = json_safe(result)
        atomic_write_bytes(tmp / "metrics.json", json.dumps(result, indent=2, allow_nan=False).encode())
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result
