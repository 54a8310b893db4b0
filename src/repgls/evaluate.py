"""Evaluate a trained run on a cached split, and predict on new image files.

``evaluate_run(run_dir, split="test", ...)`` loads a run folder written by ``repgls.train`` (its
``config.yaml`` and ``checkpoints/best.safetensors``), predicts the cache's ``split`` and ``val`` split
(batched, no grad, eval mode), chooses per-class thresholds on val, scores the split with
``repgls.metrics.evaluate`` against the report labels (labels.parquet of the config; NaN = ignored) and, in
the phantom world, against the hidden truth (truth.parquet), and writes ``metrics.json``,
``predictions.parquet``, Grad-CAM PNGs and one self-contained ``report.html`` (``repgls.report``).

``predict(run_dir, images, ...)`` reads PNG / JPEG / DICOM files with the data package's reader and the
cache's resize rule (``repgls.data.images.load_resized`` + ``normalize``: exactly what ``repgls prepare``
and the torch dataset do), and returns per-image probabilities and, for LU-ViT, the predicted report rate
and the certainty a radiologist's report would convey (see :func:`expected_certainty`).

Why a separate loader (:func:`load_run`): the trainer saves weights, not the model object; the model is
rebuilt from the config's ``model`` section with ``create_model`` at the cache's image size, and the class
names come from the run's ``predictions_val.parquet`` metadata (or the labels file).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from repgls._io import atomic_path, atomic_write_bytes
from repgls.config import Config, ConfigError, config_from_dict, read_yaml

__all__ = [
    "CERTAINTY_RULE",
    "IMAGE_SUFFIXES",
    "TYPICALITY_RULE",
    "LoadedRun",
    "evaluate_run",
    "expected_certainty",
    "load_run",
    "predict",
    "predict_images",
    "truth_matrix",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dic", ".tif", ".tiff", ".bmp")
#: Severity levels (truth.parquet ``severity_level``) and prior states that make a positive atypical.
ATYPICAL_LEVELS = ("trace", "mild")
ATYPICAL_PRIOR_STATES = ("present-larger",)  # the finding was larger before: improving
#: Upper bound of the phantom's "mild" level (phantom.yaml ``severity_levels``), used without levels.
MILD_MAX = 0.40
TYPICALITY_RULE = {
    "truth": "hidden truth (phantom): a present finding is atypical (0) when its severity_level is trace or mild "
             "or its prior_state is present-larger (improving since the prior study), typical (1) otherwise; "
             "absent findings are left out (NaN). PU-RM Table 1 read onto the phantom's latents.",
    "findings": "the report: findings.parquet 'typicality' of the mention (typical 1 / atypical 0, PU-RM Table 1 "
                "words mined from the report); unmentioned or negative findings are left out (NaN).",
    "none": "no truth.parquet and no findings.parquet found: AUC^FG is not computed.",
}
CERTAINTY_RULE = (
    "expected_certainty = clip(q * (1 - r/2) + (1 - q) * (r/2), 0, 1) with q = prob and r = rate: the GLS "
    "target t = (1 - r) y + r/2 with the label y replaced by its predicted probability. It inverts the rates "
    "mapping (repgls.rates.mapping, policy gls): a positive report (y = 1) has r = 2 (1 - p), so p = 1 - r/2; a "
    "negative one (y = 0) has r = 2p, so p = r/2. Definite statements carry r0 < 0, hence the clip to [0, 1]."
)


# ---------------------------------------------------------------------------------------------- helpers
def _atomic_parquet(df: pd.DataFrame, path: Path, meta: dict[str, Any]) -> Path:
    """Write ``df`` as Parquet (schema metadata key ``repgls`` = JSON ``meta``) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"repgls": json.dumps(meta, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def _resolve(path: str | os.PathLike | None, run_dir: Path) -> Path | None:
    """A path from the run config: as written (relative to the cwd), else relative to the run folder or
    its parents (a run moved together with its data). Returns the as-written path when nothing exists."""
    if path in (None, ""):
        return None
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for base in (run_dir, *run_dir.resolve().parents):
        if (base / p).exists():
            return base / p
    return p


def _device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def expected_certainty(prob: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Certainty p in [0, 1] a report would convey, from probability q and predicted GLS rate r (any shape).

    ``clip(q (1 - r/2) + (1 - q) r/2, 0, 1)``; see :data:`CERTAINTY_RULE` (inverse of the rates mapping).
    """
    q = np.asarray(prob, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    return np.clip(q * (1.0 - r / 2.0) + (1.0 - q) * (r / 2.0), 0.0, 1.0).astype(np.float32)


# -------------------------------------------------------------------------------------------- the run
@dataclass
class LoadedRun:
    """A run's model in eval mode with what is needed to feed it.

    Attributes:
        model: the classifier (eval mode, on ``device``). classes: K class names.
        image_size: side S of the model input [B, 1, S, S]; resize_mode: "pad" | "crop" (the cache's rule).
        has_rate: True for LU-ViT (``forward_all`` returns ``rate``). cache_dir / labels: from the config,
            resolved (may not exist when only predicting).
    """

    run_dir: Path
    config: Config
    model: nn.Module
    classes: tuple[str, ...]
    image_size: int
    resize_mode: str
    checkpoint: str
    checkpoint_meta: dict[str, Any]
    device: torch.device
    has_rate: bool
    cache_dir: Path | None = None
    labels: Path | None = None
    cache_meta: dict[str, Any] = field(default_factory=dict)


def _run_classes(run_dir: Path, labels: Path | None) -> tuple[str, ...] | None:
    """Class names: predictions_val.parquet metadata (written with the best checkpoint), else labels.parquet."""
    pv = run_dir / "predictions_val.parquet"
    if pv.is_file():
        import pyarrow.parquet as pq

        raw = (pq.read_schema(pv).metadata or {}).get(b"repgls")
        if raw:
            classes = json.loads(raw).get("classes")
            if classes:
                return tuple(str(c) for c in classes)
    if labels is not None and labels.is_file():
        from repgls.rates import read_labels

        return tuple(read_labels(labels).classes)
    return None


def _vit_size_from_weights(weights: dict[str, torch.Tensor], model_name: str) -> int | None:
    """Input side of a ViT checkpoint: sqrt(patch tokens) x patch size (pos_embed holds the prefix tokens).

    The patch size comes from the architecture (a convolutional stem's kernels do not show it)."""
    pe = weights.get("backbone.pos_embed")
    if pe is None:
        return None
    from repgls.models import create_model

    probe = create_model(model_name, num_classes=1, img_size=None)
    pe_mod = getattr(getattr(probe, "backbone", probe), "patch_embed", None)
    if pe_mod is None:
        return None
    n = int(pe.shape[1])
    patch = int(pe_mod.patch_size[0])
    for prefix in (1, 0, 2, 5):
        side = math.isqrt(max(n - prefix, 0))
        if side > 0 and side * side == n - prefix:
            return side * patch
    return None


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device | None = "auto",
             image_size: int | None = None) -> LoadedRun:
    """Rebuild a run's model from ``config.yaml`` and load ``checkpoints/<checkpoint>.safetensors``.

    Image size: ``image_size`` if given, else the cache's ``meta.json`` size (what the model was trained on),
    else the config's ``data.image_size``, else (ViT) inferred from the checkpoint's position embedding.

    Raises:
        FileNotFoundError: not a run folder / checkpoint missing. ValueError: classes or size unknown, or the
            checkpoint does not fit the config's model.
    """
    from safetensors.torch import load_file

    from repgls.models import create_model
    from repgls.train import load_checkpoint_meta

    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    run = Path(run_dir)
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run}: not a run folder ({cfg_path.name} missing); train one with `repgls train`")
    try:
        cfg = config_from_dict(read_yaml(cfg_path))
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from None
    meta = load_checkpoint_meta(run, checkpoint)  # also finishes an interrupted checkpoint commit
    wpath = run / "checkpoints" / f"{checkpoint}.safetensors"
    if not wpath.is_file():
        raise FileNotFoundError(f"{wpath}: checkpoint weights missing")
    weights = load_file(str(wpath), device="cpu")

    cache_dir = _resolve(cfg.data.cache_dir, run)
    labels = _resolve(cfg.data.labels, run) if cfg.data.labels not in ("", "official") else None
    cache_meta: dict[str, Any] = {}
    if cache_dir is not None and (cache_dir / "meta.json").is_file():
        cache_meta = json.loads((cache_dir / "meta.json").read_text())
    size = image_size or cache_meta.get("size") or cfg.data.image_size or _vit_size_from_weights(weights, cfg.model.name)
    if not size:
        raise ValueError(f"{run}: cannot tell the model's image size (no cache at {cache_dir}, no "
                         "data.image_size in config.yaml); pass image_size")
    classes = _run_classes(run, labels)
    if classes is None:
        raise ValueError(f"{run}: class names unknown (no predictions_val.parquet metadata, labels file "
                         f"{labels} not found)")
    model = create_model(cfg.model.name, num_classes=len(classes), in_chans=cfg.model.in_chans, pretrained=False,
                         img_size=int(size), **cfg.model.kwargs)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{wpath}: does not fit model {cfg.model.name!r} with {len(classes)} classes at "
                         f"{size} px: {str(e).splitlines()[0]}") from None
    dev = _device(device)
    model.to(dev).eval()
    has_rate = "rate" in getattr(model, "forward_all", lambda x: {})(
        torch.zeros(1, cfg.model.in_chans, int(size), int(size), device=dev))
    return LoadedRun(run_dir=run, config=cfg, model=model, classes=classes, image_size=int(size),
                     resize_mode=str(cache_meta.get("mode", "pad")), checkpoint=checkpoint, checkpoint_meta=meta,
                     device=dev, has_rate=bool(has_rate), cache_dir=cache_dir, labels=labels, cache_meta=cache_meta)


@torch.no_grad()
def _forward(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> dict[str, np.ndarray]:
    """Probabilities (and rates, LU-ViT) [N, K] over batches of inputs [B, C, S, S]; eval mode, no grad."""
    model.eval()
    probs, rates = [], []
    fa = getattr(model, "forward_all", None)
    for x in batches:
        out = fa(x.to(device)) if fa is not None else {"logits": model(x.to(device))}
        probs.append(torch.sigmoid(out["logits"].float()).cpu().numpy())
        if "rate" in out:
            rates.append(out["rate"].float().cpu().numpy())
    res = {"prob": np.concatenate(probs).astype(np.float64) if probs else np.zeros((0, 0))}
    if rates:
        res["rate"] = np.concatenate(rates).astype(np.float64)
    return res


def _predict_dataset(lr: LoadedRun, ds: Any, batch_size: int) -> dict[str, np.ndarray]:
    """Predict a CachedImageDataset in order; also returns its labels ``y`` (NaN where unsupervised)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    ys: list[np.ndarray] = []

    def images() -> Iterable[torch.Tensor]:
        for b in loader:
            ys.append(np.where(b["mask"].numpy() > 0, b["y"].numpy(), np.nan))
            yield b["image"]

    out = _forward(lr.model, images(), lr.device)
    k = len(lr.classes)
    out["y"] = np.concatenate(ys).astype(np.float64) if ys else np.zeros((0, k))
    if out["prob"].size == 0:
        out["prob"] = np.zeros((0, k))
    return out


# ------------------------------------------------------------------------------------------ truth
def _find_truth(lr: LoadedRun) -> Path | None:
    """truth.parquet of the phantom world the cache came from (cache meta ``root``, else the images' folder)."""
    cands = []
    if lr.cache_meta.get("root"):
        cands.append(Path(lr.cache_meta["root"]) / "truth.parquet")
    if lr.cache_dir is not None and (lr.cache_dir / "index.parquet").is_file():
        paths = pd.read_parquet(lr.cache_dir / "index.parquet", columns=["path"])["path"].head(1).tolist()
        if paths:
            cands.append(Path(paths[0]).parent.parent / "truth.parquet")
    if lr.cache_dir is not None:
        cands.append(lr.cache_dir.parent / "truth.parquet")
    return next((c for c in cands if c.is_file()), None)


def truth_matrix(truth: pd.DataFrame | str | os.PathLike, image_ids: Sequence[str], classes: Sequence[str],
                 study_ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hidden truth per image and class from a phantom truth table.

    Args:
        truth: truth.parquet (path or DataFrame; one row per image and finding with ``image_id``,
            ``finding``, ``present`` and optionally ``study_id``, ``severity``, ``severity_level``, ``prior_state``).
        image_ids: [N] images to score; ``study_ids`` [N]: fallback key when an image id is not in the table.
        classes: K class names (the run's vocabulary); a class the table lacks stays NaN.
    Returns:
        ``y`` float [N, K] (1 present / 0 absent / NaN unknown) and ``typical`` float [N, K] (1 / 0 for
        present findings per :data:`TYPICALITY_RULE` ["truth"], NaN otherwise).
    """
    df = pd.read_parquet(truth) if not isinstance(truth, pd.DataFrame) else truth
    missing = [c for c in ("image_id", "finding", "present") if c not in df.columns]
    if missing:
        raise ValueError(f"truth table {truth if not isinstance(truth, pd.DataFrame) else ''}: missing column(s) "
                         f"{missing}; has {list(df.columns)}")
    n, k = len(image_ids), len(classes)
    col = {c: j for j, c in enumerate(classes)}
    df = df[df["finding"].isin(col)]
    # Map table rows -> image positions (by image id, else by study id).
    img_pos = {s: i for i, s in enumerate(map(str, image_ids))}
    pos = df["image_id"].astype(str).map(img_pos)
    if study_ids is not None and "study_id" in df.columns and pos.isna().any():
        st_pos = {s: i for i, s in enumerate(map(str, study_ids))}
        pos = pos.fillna(df["study_id"].astype(str).map(st_pos))
    keep = pos.notna().to_numpy()
    d = df[keep]
    ri = pos[keep].to_numpy(dtype=np.int64)
    ci = d["finding"].map(col).to_numpy(dtype=np.int64)
    present = d["present"].astype(bool).to_numpy()
    y = np.full((n, k), np.nan)
    y[ri, ci] = present.astype(np.float64)
    atyp = np.zeros(len(d), dtype=bool)
    if "severity_level" in d.columns:
        atyp |= d["severity_level"].astype(str).isin(ATYPICAL_LEVELS).to_numpy()
    elif "severity" in d.columns:
        atyp |= d["severity"].to_numpy(dtype=np.float64) < MILD_MAX
    if "prior_state" in d.columns:
        atyp |= d["prior_state"].astype(str).isin(ATYPICAL_PRIOR_STATES).to_numpy()
    typical = np.full((n, k), np.nan)
    typical[ri[present], ci[present]] = np.where(atyp[present], 0.0, 1.0)
    return y, typical


def _findings_typical(findings: Path, study_ids: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """typical [N, K] from a findings table's ``typicality`` column (report wording), NaN where not given."""
    from repgls.rates import read_findings

    df = read_findings(findings)
    n, k = len(study_ids), len(classes)
    out = np.full((n, k), np.nan)
    if "typicality" not in df.columns:
        return out
    col = {c: j for j, c in enumerate(classes)}
    val = {(str(s), str(f)): (1.0 if t == "typical" else 0.0)
           for s, f, t in zip(df["study_id"], df["finding"], df["typicality"], strict=True)
           if t in ("typical", "atypical") and f in col}
    for i, s in enumerate(map(str, study_ids)):
        for c, j in col.items():
            v = val.get((s, c))
            if v is not None:
                out[i, j] = v
    return out


def _top_classes(prob: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Index of each row's most probable class [N]; "No Finding" only when it is the sole class."""
    p = np.asarray(prob, dtype=np.float64).copy()
    if len(classes) > 1 and "No Finding" in classes:
        p[:, list(classes).index("No Finding")] = -np.inf
    return p.argmax(axis=1) if p.shape[0] else np.zeros(0, dtype=np.int64)


def _pick_cam_images(prob: np.ndarray, classes: Sequence[str], n: int) -> tuple[list[int], list[int]]:
    """``n`` images and their top class for the CAM grid: the most confident predictions, distinct top classes
    first. "No Finding" is never the CAM class when other classes exist. Deterministic (ties by position)."""
    if n <= 0 or prob.shape[0] == 0:
        return [], []
    top = _top_classes(prob, classes)
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


# ---------------------------------------------------------------------------------------- evaluate_run
def evaluate_run(run_dir: str | os.PathLike, split: str = "test", n_boot: int = 200,
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
        "typicality", "truth_path", "report_labels": evaluate(...), "truth": evaluate(...) | None, "files"}``.
    """
    from repgls.data.dataset import CachedImageDataset
    from repgls.metrics import choose_thresholds
    from repgls.metrics import evaluate as score
    from repgls.rates import read_labels

    lr = load_run(run_dir, checkpoint, device)
    run = lr.run_dir
    if lr.cache_dir is None or not (lr.cache_dir / "meta.json").is_file():
        raise FileNotFoundError(f"{run}/config.yaml: data.cache_dir {lr.config.data.cache_dir!r} is not an image "
                                "cache (meta.json missing)")
    official = lr.config.data.labels == "official"
    if not official and (lr.labels is None or not lr.labels.is_file()):
        raise FileNotFoundError(f"{run}/config.yaml: data.labels {lr.config.data.labels!r}: labels.parquet not found")
    truth_path: Path | None = None
    if truth is None:
        truth_path = _find_truth(lr)
    elif truth is not False:
        truth_path = Path(truth)  # type: ignore[arg-type]
        if not truth_path.is_file():
            raise FileNotFoundError(f"truth file not found: {truth_path}")
    if findings and not Path(findings).is_file():
        raise FileNotFoundError(f"findings file not found: {findings}")
    labels: Any = "official" if official else read_labels(lr.labels)  # type: ignore[arg-type]
    test_ds = CachedImageDataset(lr.cache_dir, labels=labels, split=split, augment=False)
    if tuple(test_ds.classes) != lr.classes:
        raise ValueError(f"{lr.labels or 'official labels'}: classes {test_ds.classes} differ from the run's "
                         f"{lr.classes}")
    if len(test_ds) == 0:
        raise ValueError(f"{lr.cache_dir}: no images of split {split!r}")
    val_split = lr.config.data.val_split
    val_ds = CachedImageDataset(lr.cache_dir, labels=labels, split=val_split, augment=False)

    pred = _predict_dataset(lr, test_ds, batch_size)
    y_rep, s = pred["y"], np.clip(pred["prob"], 0.0, 1.0)
    thr = None
    thr_source = "none (val split empty)"
    if len(val_ds) and split != val_split:
        val = _predict_dataset(lr, val_ds, batch_size)
        thr = choose_thresholds(val["y"], np.clip(val["prob"], 0.0, 1.0))
        thr_source = f"report labels of split {val_split!r} (balanced accuracy)"
    elif len(val_ds):
        thr = choose_thresholds(y_rep, s)
        thr_source = f"split {split!r} itself (it is the validation split: optimistic)"

    image_ids = test_ds.index["image_id"].astype(str).tolist()
    study_ids = test_ds.index["study_id"].astype(str).tolist()
    groups = None
    vocab_name = lr.config.data.vocab if official else (labels.meta.get("vocab") or lr.config.data.vocab)
    if vocab_name:
        try:
            from repgls.vocab import load_vocab

            groups = load_vocab(vocab_name).groups
        except (ValueError, OSError):
            groups = None

    y_truth = typical = None
    typ_source = "none"
    if truth_path is not None:
        y_truth, typical = truth_matrix(truth_path, image_ids, lr.classes, study_ids)
        typ_source = "truth"
        if not np.isfinite(y_truth).any():  # no image of the split is in the truth table
            if truth is not None:
                raise ValueError(f"{truth_path}: none of the {len(image_ids)} images of split {split!r} "
                                 f"(e.g. {image_ids[0]!r}) is in this truth table")
            truth_path = y_truth = typical = None
            typ_source = "none"
    if truth_path is None:
        fpath = Path(findings) if findings else (lr.labels.parent / "findings.parquet" if lr.labels else None)
        if fpath is not None and fpath.is_file():
            typical = _findings_typical(fpath, study_ids, lr.classes)
            typ_source = "findings"

    res_rep = score(y_rep, s, lr.classes, groups=groups, typical=typical, thresholds=thr, n_boot=n_boot, seed=seed)
    res_truth = None
    if y_truth is not None:
        res_truth = score(y_truth, s, lr.classes, groups=groups, typical=typical, thresholds=thr, n_boot=n_boot,
                          seed=seed)

    out = Path(out_dir) if out_dir is not None else run / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    cols: dict[str, Any] = {"image_id": image_ids, "study_id": study_ids,
                            **_prediction_columns(lr.classes, s, pred.get("rate"))}
    for k, c in enumerate(lr.classes):
        cols[f"label:{c}"] = y_rep[:, k].astype(np.float32)
    if y_truth is not None:
        for k, c in enumerate(lr.classes):
            cols[f"truth:{c}"] = y_truth[:, k].astype(np.float32)
    files: dict[str, str] = {"metrics": "metrics.json", "predictions": "predictions.parquet"}
    _atomic_parquet(pd.DataFrame(cols), out / "predictions.parquet",
                    {"run": str(run), "split": split, "checkpoint": checkpoint, "classes": list(lr.classes)})

    cam_paths: list[Path] = []
    if cams and cams > 0:
        from repgls.explain import save_cam_pngs

        idx, cls = _pick_cam_images(s, lr.classes, int(cams))
        if idx:
            x = torch.stack([test_ds[i]["image"] for i in idx])
            disp = np.stack([test_ds.load_uint8(i)[0].numpy() for i in idx])
            cam_dir = out / "cams"
            for old in cam_dir.glob("*.png") if cam_dir.is_dir() else []:
                old.unlink()
            cam_paths = save_cam_pngs(lr.model, x, cls, cam_dir, names=[image_ids[i] for i in idx],
                                      class_names=list(lr.classes), display=disp, device=lr.device)
            files["cams"] = "cams/"

    ck = {k: lr.checkpoint_meta.get(k) for k in ("tag", "step", "epoch", "mean_auc") if k in lr.checkpoint_meta}
    result: dict[str, Any] = {
        "run": str(run), "split": split, "checkpoint": {"name": checkpoint, **ck}, "model": lr.config.model.name,
        "classes": list(lr.classes), "n_images": len(test_ds), "image_size": lr.image_size,
        "labels": "official" if official else str(lr.labels), "cache": str(lr.cache_dir), "vocab": vocab_name,
        "thresholds": {"source": thr_source,
                       "values": None if thr is None else {c: float(t) for c, t in zip(lr.classes, thr, strict=True)}},
        "typicality": {"source": typ_source, "rule": TYPICALITY_RULE[typ_source]},
        "truth_path": str(truth_path) if truth_path is not None else None,
        "report_labels": res_rep, "truth": res_truth, "files": files,
    }
    if report:
        from repgls.report import write_report

        files["report"] = "report.html"
        sub = (f"{run.name} · split {split} · {len(test_ds)} images · checkpoint {checkpoint}"
               f"{' step ' + str(ck['step']) if ck.get('step') is not None else ''} · model {lr.config.model.name}"
               f"{' · hidden truth: ' + str(truth_path) if truth_path else ''}")
        write_report(out / "report.html", res_rep, y_truth=y_truth, y_true=y_rep, scores=s, truth=res_truth,
                     cams=cam_paths if cam_paths else None, title=f"repgls evaluation: {run.name} ({split})",
                     subtitle=sub)
    atomic_write_bytes(out / "metrics.json", json.dumps(result, indent=2, allow_nan=False).encode())
    return result


# --------------------------------------------------------------------------------------------- predict
def _prediction_columns(classes: Sequence[str], prob: np.ndarray, rate: np.ndarray | None) -> dict[str, Any]:
    """Per-class output columns: ``prob:C`` [N] and, for LU-ViT, ``rate:C`` and ``expected_certainty:C``."""
    cols: dict[str, Any] = {f"prob:{c}": prob[:, k].astype(np.float32) for k, c in enumerate(classes)}
    if rate is not None:
        ec = expected_certainty(prob, rate)
        cols.update({f"rate:{c}": rate[:, k].astype(np.float32) for k, c in enumerate(classes)})
        cols.update({f"expected_certainty:{c}": ec[:, k] for k, c in enumerate(classes)})
    return cols


def _expand_images(images: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
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


def predict_images(lr: LoadedRun, paths: Sequence[str | os.PathLike], batch_size: int = 32,
                   skip_errors: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Read, resize (cache rule), normalise and predict image files with a loaded run.

    Returns ``{"prob": [N, K], "rate": [N, K] (LU-ViT)}`` for the readable files, their uint8 pixels
    [N, S, S], and one error message per file ("" when read), in input order. Unreadable files raise
    ``ImageReadError`` unless ``skip_errors`` (then they are left out of the arrays).
    """
    from repgls.data.images import ImageReadError, load_resized, normalize

    u8: list[np.ndarray] = []
    errors: list[str] = []
    for p in paths:
        try:
            u8.append(load_resized(p, lr.image_size, lr.resize_mode))  # type: ignore[arg-type]
            errors.append("")
        except ImageReadError as e:
            if not skip_errors:
                raise
            errors.append(str(e))
    pix = np.stack(u8) if u8 else np.zeros((0, lr.image_size, lr.image_size), np.uint8)

    def batches() -> Iterable[torch.Tensor]:
        for i in range(0, len(pix), batch_size):
            yield torch.from_numpy(normalize(pix[i:i + batch_size]))[:, None]

    res = _forward(lr.model, batches(), lr.device)
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
    from repgls.data.images import normalize
    from repgls.explain import save_cam_pngs

    lr = load_run(run_dir, checkpoint, device, image_size=image_size)
    unknown = [c for c in cam_classes or [] if c not in lr.classes]
    if unknown:
        raise ValueError(f"unknown CAM class(es) {unknown}; the run's classes: {', '.join(lr.classes)}")
    paths = _expand_images(images)
    res, pix, errors = predict_images(lr, paths, batch_size, skip_errors)
    ok = [p for p, e in zip(paths, errors, strict=True) if not e]
    prob = np.clip(res["prob"], 0.0, 1.0)
    cols: dict[str, Any] = {"path": [str(p) for p in ok], **_prediction_columns(lr.classes, prob, res.get("rate"))}
    df = pd.DataFrame(cols)
    df.attrs["errors"] = {str(p): e for p, e in zip(paths, errors, strict=True) if e}

    if cam and ok:
        cdir = Path(cam_dir) if cam_dir is not None else (
            Path(out).parent / f"{Path(out).stem}-cams" if out is not None else Path("predict-cams"))
        names = _unique_names(ok)
        x = torch.from_numpy(normalize(pix))[:, None]
        if cam_classes:
            targets = [[lr.classes.index(c)] * len(ok) for c in cam_classes]
        else:
            targets = [_top_classes(prob, lr.classes).tolist()]
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
        _atomic_parquet(df, Path(out), meta)
    return df
