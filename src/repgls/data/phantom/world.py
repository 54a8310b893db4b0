"""The phantom world: synthetic chest radiographs, reports and the hidden truth behind both.

Patients have several studies over time; each class of the vocabulary follows a two-state Markov chain
per patient (stationary prevalence = the requested one) with a latent severity in [0, 1] that drifts
between studies. A renderer (:mod:`repgls.data.phantom_render`) draws each study; a simulated
radiologist writes its report from what is *visible* (severity x conspicuity x image quality x overlap):
definite when plain, hedged when faint, sometimes missed or over-called, with severity and change words
that follow the latents. Wording and parameters live in ``phantom.yaml`` beside this module.

Public API: :func:`make_phantom` (write a world folder), :func:`simulate` (specs + reports in memory),
:func:`render_study` (one uint8 image and its truth), :func:`load_config`, :func:`resolve_prevalence`.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from repgls.data.phantom_render import KINDS, encode_png, render
from repgls.data.phantom_report import CHANGE_OF_PRIOR, SIDE_WORD, belief_tables, write_report
from repgls.vocab import load_vocab

PRIOR_STATES = ("none", "absent", "present-smaller", "present-larger", "same")
PREVALENCE_MODES = ("default", "longtail")
__all__ = ["CHANGE_OF_PRIOR", "PRIOR_STATES", "SIDE_WORD", "Study", "hedge_calibration", "load_config", "make_phantom", "miner_agreement",
           "patient_splits", "render_study", "report_text", "resolve_prevalence", "simulate", "truth_frame"]
_SPLIT_SEED, _PATIENT_SEED, _REPORT_SEED, _RENDER_SEED = 3, 1, 2, 4


# ------------------------------------------------------------------------------------------------- config
@lru_cache(maxsize=4)
def _builtin_config() -> str:
    return resources.files("repgls.data").joinpath("phantom.yaml").read_text(encoding="utf-8")


def load_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The phantom-world data file (built-in ``phantom.yaml`` or a user's copy) as a dict."""
    text = _builtin_config() if path is None else Path(path).read_text(encoding="utf-8")
    cfg = yaml.safe_load(text)
    for key in ("world", "radiologist", "hedges", "classes", "negatives", "severity_levels"):
        if key not in cfg:
            raise ValueError(f"phantom config {path or 'phantom.yaml'}: missing section {key!r}")
    for name, c in cfg["classes"].items():
        if c.get("kind") not in KINDS:
            raise ValueError(f"phantom config: class {name!r} has unknown kind {c.get('kind')!r}")
    return cfg


def resolve_prevalence(vocab: str, mode: str | os.PathLike = "default",
                       config: dict[str, Any] | None = None) -> dict[str, float]:
    """Per-class prevalence (probability a study shows the finding) for every class except No Finding.

    ``mode``: ``default`` (realistic per-class values from phantom.yaml), ``longtail`` (head / medium /
    tail ranges of phantom.yaml, spread geometrically within a group in vocabulary order), or a file:
    CSV with columns ``finding,prevalence`` or a YAML/JSON mapping class -> prevalence (missing classes
    keep their default).
    """
    cfg = config or load_config()
    voc = load_vocab(vocab)
    classes = [c for c in voc.classes if c != "No Finding"]
    missing = [c for c in classes if c not in cfg["classes"]]
    if missing:
        raise ValueError(f"phantom config has no rendering for class(es) {missing} of vocabulary {vocab!r}")
    prev = {c: float(cfg["classes"][c]["prevalence"]) for c in classes}
    mode_s = str(mode)
    if mode_s == "default":
        return prev
    if mode_s == "longtail":
        rng_cfg = cfg["world"]["longtail"]
        for g in ("head", "medium", "tail"):
            members = [c for c in classes if voc.groups.get(c) == g]
            hi, lo = rng_cfg[g]
            for i, c in enumerate(members):
                frac = i / max(1, len(members) - 1)
                prev[c] = float(hi * (lo / hi) ** frac)
        return prev
    path = Path(mode_s)
    if not path.is_file():
        raise ValueError(f"prevalence must be one of {PREVALENCE_MODES} or a file; {mode_s!r} is neither")
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
        if not {"finding", "prevalence"} <= set(df.columns):
            raise ValueError(f"{path}: needs columns finding,prevalence; has {list(df.columns)}")
        given = dict(zip(df["finding"].astype(str), df["prevalence"].astype(float), strict=True))
    else:
        given = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(given, dict):
            raise ValueError(f"{path}: expected a mapping class -> prevalence")
    for c, p in given.items():
        if c not in prev:
            raise ValueError(f"{path}: unknown class {c!r} for vocabulary {vocab!r}")
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"{path}: prevalence of {c!r} must be in [0, 1), got {p}")
        prev[c] = float(p)
    return prev


# ----------------------------------------------------------------------------------------------- world
@dataclass
class Study:
    """One simulated study: what the renderer needs (``spec``) and what the truth table records."""

    index: int
    study_id: str
    image_id: str
    patient_id: str
    order: int
    spec: dict[str, Any]
    truth: dict[str, dict[str, Any]]  # class -> present, severity, prior_state, visibility, extras
    findings_text: str = ""
    impression_text: str = ""
    reported: dict[str, dict[str, Any]] = field(default_factory=dict)


def _anatomy(rng: np.random.Generator) -> dict[str, Any]:
    """Per-patient anatomy in normalised coordinates (see phantom_render)."""
    la = rng.uniform(0.26, 0.31)
    return {
        "lung_cx": [-rng.uniform(0.34, 0.38), rng.uniform(0.35, 0.39)], "lung_a": la,
        "lung_b": rng.uniform(0.72, 0.80), "lung_cy": rng.uniform(-0.01, 0.05),
        "dome_r": rng.uniform(0.36, 0.44), "dome_l": 0.0, "ctr": rng.uniform(0.41, 0.47),
        "heart_cx": rng.uniform(0.10, 0.15), "heart_cy": rng.uniform(0.31, 0.35), "heart_hh": rng.uniform(0.25, 0.29),
        "mediast_w": rng.uniform(0.06, 0.08), "knob_r": rng.uniform(0.05, 0.065), "body_w": rng.uniform(0.88, 0.97),
        "marking_idx": int(rng.integers(0, 6)), "rib_gap": rng.uniform(0.115, 0.13),
        "clav_y": rng.uniform(-0.70, -0.62), "bubble_dx": rng.uniform(-0.05, 0.05),
    }


def _exposure(rng: np.random.Generator) -> tuple[dict[str, float], float]:
    """Per-study exposure/positioning and the image quality q in [0.5, 1] it implies."""
    ex = {
        "heel": float(rng.uniform(-0.03, 0.05)), "contrast": float(rng.uniform(0.95, 1.3)),
        "brightness": float(rng.uniform(-0.04, 0.06)), "gamma": float(rng.uniform(0.8, 1.25)),
        "noise": float(rng.uniform(0.006, 0.045)), "blur": float(rng.choice([0.0, 0.0, 0.0, 0.7])),
        "angle": float(rng.normal(0, 2.0)), "dx": float(rng.normal(0, 0.02)), "dy": float(rng.normal(0, 0.02)),
    }
    q = 1.1 - 4.0 * ex["noise"] - 0.2 * ex["blur"] - 0.3 * abs(ex["contrast"] - 1.12) - 0.2 * abs(ex["gamma"] - 1)
    return ex, float(np.clip(q, 0.5, 1.0))


def _onset_extras(kind: str, ccfg: dict[str, Any], cfg: dict[str, Any], rng: np.random.Generator) -> dict:
    """Where a finding sits (drawn once at onset; persists over the patient's studies)."""
    side_mode = ccfg.get("side")
    side = int(rng.choice([-1, 1])) if side_mode in ("lr", "lrb") else 0
    if side_mode == "lrb" and rng.random() < 0.3:
        side = 0
    ex: dict[str, Any] = {"side": side}
    if ccfg.get("lobe") or ccfg.get("zone"):
        lobes = list(cfg["lobes"])
        lobe = lobes[int(rng.integers(0, len(lobes)))]
        lx, ly, rx, ry = cfg["lobes"][lobe]
        ex.update(lobe=lobe, x=side * lx, y=ly, rx=rx, ry=ry, tex_dx=int(rng.integers(-40, 40)),
                  tex_dy=int(rng.integers(-40, 40)), bronchogram=bool(rng.random() < 0.4))
    if kind == "lesion":
        mass = ccfg["mass"] if "mass" in ccfg else bool(rng.random() < 0.4)
        ex.update(px=side * rng.uniform(0.22, 0.50), py=rng.uniform(-0.45, 0.2), mass=bool(mass))
        ex["lobe"] = "upper lobe" if ex["py"] < -0.1 else "lower lobe"
    elif kind in ("nodules", "small_nodules", "bronchiectasis", "mucoid_impaction"):
        m = {"nodules": (5, 12), "small_nodules": (1, 3), "bronchiectasis": (4, 8), "mucoid_impaction": (1, 2)}[kind]
        k = int(rng.integers(m[0], m[1] + 1))
        ylo = 0.0 if kind == "bronchiectasis" else -0.5
        ex["pts"] = [(float(rng.choice([-1, 1]) * rng.uniform(0.18, 0.5)), float(rng.uniform(ylo, 0.3)))
                     for _ in range(k)]
        ex["radii"] = [float(rng.uniform(0, 1)) for _ in range(k)]
    elif kind == "atelectasis":
        bands = []
        for _ in range(int(rng.integers(1, 3))):
            y = rng.uniform(*cfg["bases_y"])
            bands.append((side * rng.uniform(0.28, 0.36), y, side * rng.uniform(0.52, 0.62), y + rng.normal(0, 0.04)))
        ex["bands"] = bands
    elif kind == "fracture":
        ex.update(rib=int(rng.integers(3, 8)), at=float(rng.uniform(0.55, 0.9)))
    elif kind == "devices":
        devs = [d for d, p in cfg["device_rates"].items() if rng.random() < p] or ["central_line"]
        ex.update(devices=devs, line_side=int(rng.choice([-1, 1])))
    elif kind == "pleural_calcification":
        ex["plaques"] = [bool(b) for b in rng.random(6) < 0.6]
        ex["plaques"][int(rng.integers(0, 6))] = True  # at least one plaque
    elif kind == "embolism":
        ex.update(side=int(rng.choice([-1, 1])), y=float(rng.uniform(-0.3, 0.2)))
    return ex


def _render_finding(kind: str, sev: float, ex: dict[str, Any]) -> dict[str, Any]:
    """The renderer's finding record for one study (geometry scaled by the current severity)."""
    f: dict[str, Any] = {"kind": kind, "severity": float(sev), **{k: v for k, v in ex.items() if k != "lobe"}}
    if "rx" in ex:
        grow = 0.6 + 0.6 * sev
        f.update(rx=ex["rx"] * grow, ry=ex["ry"] * grow)
    if kind == "lesion":
        r = (0.05 + 0.08 * sev) if ex["mass"] else (0.018 + 0.02 * sev)
        f["spots"] = [(ex["px"], ex["py"], r)]
    elif kind in ("nodules", "small_nodules"):
        base = (0.015, 0.02) if kind == "nodules" else (0.012, 0.008)
        f["spots"] = [(x, y, base[0] + base[1] * (0.5 * sev + 0.5 * r)) for (x, y), r in zip(ex["pts"], ex["radii"], strict=True)]
    elif kind in ("bronchiectasis", "mucoid_impaction"):
        f["spots"] = ex["pts"]
    return f


def _visibility(cfg: dict[str, Any], cls: str, sev: float, quality: float, overlap: float) -> float:
    cons = float(cfg["classes"][cls].get("conspicuity", 0.8))
    return float(np.clip(cons * (0.3 + 0.9 * sev) * quality * overlap, 0.0, 1.0))


def _severity_level(cfg: dict[str, Any], sev: float, present: bool) -> str:
    if not present:
        return "none"
    for lvl, hi in cfg["severity_levels"].items():
        if sev < hi:
            return lvl
    return "severe"


def simulate(n: int, vocab: str = "chexpert14", seed: int = 0, prevalence: str | os.PathLike = "default",
             miss_rate: float | None = None, overcall_rate: float | None = None,
             config: dict[str, Any] | None = None, hedge_calibration: str | None = None) -> list[Study]:
    """Simulate ``n`` studies (patients, latents, rendering specs and reports) without drawing images.

    Deterministic by ``seed``: each patient's timeline uses the seed (seed, 1, patient), each report
    (seed, 2, study) and the split (seed, 3).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cfg = deepcopy(config) if config is not None else load_config()
    if miss_rate is not None:
        cfg["radiologist"]["miss_rate"] = float(miss_rate)
    if overcall_rate is not None:
        cfg["radiologist"]["overcall_rate"] = float(overcall_rate)
    if hedge_calibration is not None:
        cfg["radiologist"]["hedge_calibration"] = hedge_calibration
    if cfg["radiologist"].setdefault("hedge_calibration", "bayes") not in ("bayes", "visibility"):
        raise ValueError(f"hedge_calibration must be 'bayes' or 'visibility', got "
                         f"{cfg['radiologist']['hedge_calibration']!r}")
    for k in ("miss_rate", "overcall_rate"):
        if not 0.0 <= cfg["radiologist"][k] <= 1.0:
            raise ValueError(f"{k} must be in [0, 1], got {cfg['radiologist'][k]}")
    voc = load_vocab(vocab)
    prev = resolve_prevalence(vocab, prevalence, cfg)
    classes = list(prev)
    w = cfg["world"]
    lo, hi = w["studies_per_patient"]
    persist, step = float(w["persist"]), float(w["severity_step"])
    studies: list[Study] = []
    pid = 0
    while len(studies) < n:
        rng = np.random.default_rng([seed, _PATIENT_SEED, pid])
        anat = _anatomy(rng)
        anat["dome_l"] = anat["dome_r"] + rng.uniform(0.02, 0.08)
        n_st = min(int(rng.integers(lo, hi + 1)), n - len(studies))
        state: dict[str, tuple[bool, float, dict[str, Any]]] = {}
        for order in range(n_st):
            idx = len(studies)
            ex, quality = _exposure(rng)
            an = dict(anat)
            an["dome_r"] += rng.normal(0, 0.015)  # inspiration varies between studies
            an["dome_l"] += rng.normal(0, 0.015)
            truth: dict[str, dict[str, Any]] = {}
            for c in classes:
                p = prev[c]
                ccfg = cfg["classes"][c]
                was, sev0, extras = state.get(c, (False, 0.0, {}))
                if order == 0:
                    now = rng.random() < p
                    sev = float(rng.beta(2.0, 2.2)) if now else 0.0
                elif was:
                    now = rng.random() < persist
                    sev = float(np.clip(sev0 + rng.normal(0, step), 0.03, 1.0)) if now else 0.0
                else:
                    onset = min(1.0, p * (1 - persist) / max(1e-9, 1 - p))
                    now = rng.random() < onset
                    sev = float(rng.beta(1.6, 2.4)) if now else 0.0
                if now and not was:
                    extras = _onset_extras(ccfg["kind"], ccfg, cfg, rng)
                sev = max(sev, 0.03) if now else 0.0
                if order == 0:
                    prior = "none"
                elif not was:
                    prior = "absent"
                elif not now:
                    prior = "present-larger"
                elif abs(sev - sev0) < w["same_threshold"]:
                    prior = "same"
                else:
                    prior = "present-smaller" if sev > sev0 else "present-larger"
                state[c] = (now, sev, extras)
                truth[c] = {"present": now, "severity": sev, "prior_state": prior, "extras": extras}
            for c in classes:  # implications (e.g. Massive Cardiomegaly -> Cardiomegaly)
                tgt = cfg["classes"][c].get("implies")
                if tgt and truth[c]["present"] and tgt in truth:
                    t = truth[tgt]
                    t["present"], t["severity"] = True, max(t["severity"], 0.85)
                    if not t["extras"]:
                        t["extras"] = _onset_extras(cfg["classes"][tgt]["kind"], cfg["classes"][tgt], cfg, rng)
            over = {c: 1.0 for c in classes}
            for src, (strength, targets) in cfg.get("overlap", {}).items():
                if src in truth and truth[src]["present"]:
                    for t in targets:
                        if t in over:
                            over[t] *= 1.0 - strength * truth[src]["severity"]
            spec_f = []
            for c in classes:
                t = truth[c]
                t["visibility"] = _visibility(cfg, c, t["severity"], quality, over[c]) if t["present"] else 0.0
                t["severity_level"] = _severity_level(cfg, t["severity"], t["present"])
                if t["present"]:
                    spec_f.append(_render_finding(cfg["classes"][c]["kind"], t["severity"], t["extras"]))
            if "No Finding" in voc.classes:
                nf = not any(t["present"] for c, t in truth.items() if c != "Support Devices")
                truth = {"No Finding": {"present": nf, "severity": 0.0, "prior_state": "none", "extras": {},
                                        "visibility": 1.0 if nf else 0.0, "severity_level": "none"}, **truth}
            sid = f"s{idx:07d}"
            studies.append(Study(index=idx, study_id=sid, image_id=f"{sid}_pa", patient_id=f"p{pid:06d}",
                                 order=order, spec={"anatomy": an, "exposure": ex, "findings": spec_f,
                                                    "quality": quality}, truth=truth))
        pid += 1
    if cfg["radiologist"]["hedge_calibration"] == "bayes":
        cfg["_belief"] = belief_tables(cfg, studies, voc.classes)
    by_patient_prev: dict[str, Study] = {}
    for st in studies:
        prior = by_patient_prev.get(st.patient_id)
        write_report(st, prior, cfg, voc.classes, np.random.default_rng([seed, _REPORT_SEED, st.index]))
        by_patient_prev[st.patient_id] = st
    return studies


def patient_splits(patient_ids: list[str], seed: int, fractions: dict[str, float]) -> dict[str, str]:
    """Patient-wise split (each patient in exactly one split), deterministic by seed."""
    uniq = sorted(set(patient_ids))
    rng = np.random.default_rng([seed, _SPLIT_SEED])
    order = rng.permutation(len(uniq))
    names = list(fractions)
    total = float(sum(fractions.values()))
    cuts = np.cumsum([fractions[k] / total for k in names]) * len(uniq)
    out = {}
    for rank, i in enumerate(order):
        k = int(np.searchsorted(cuts, rank, side="right"))
        out[uniq[i]] = names[min(k, len(names) - 1)]
    return out


# -------------------------------------------------------------------------------------------- rendering
def render_study(study: Study, size: int = 256, seed: int = 0) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """Render one simulated study: uint8 image [size, size] and its truth (class -> dict)."""
    img = render(study.spec, size, [seed, _RENDER_SEED, study.index])
    return img, study.truth


def _render_chunk(args: tuple[list[tuple[int, dict[str, Any], str]], int, int, int]) -> int:
    """Worker: render and write a chunk of studies as PNG (``encode_png``: Up filter + Huffman-only zlib)."""
    jobs, size, seed, level = args
    for idx, spec, path in jobs:
        img = render(spec, size, [seed, _RENDER_SEED, idx])
        Path(path).write_bytes(encode_png(img, compress=level > 0))
    return len(jobs)


def make_phantom(out: str | os.PathLike, n: int = 5000, size: int = 256, vocab: str = "chexpert14",
                 seed: int = 0, prevalence: str | os.PathLike = "default", workers: int = 1,
                 miss_rate: float | None = None, overcall_rate: float | None = None,
                 config: str | os.PathLike | None = None, compress_level: int = 1,
                 progress: Any = None, hedge_calibration: str | None = None) -> Path:
    """Write a phantom world folder (see docs/architecture.md "Phantom world folder").

    Files: ``images/<image_id>.png``, ``index.csv``, ``reports.csv``, ``truth.parquet``, ``split.csv``,
    ``meta.json``. Same arguments -> byte-identical files, whatever ``workers`` is.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cfg = load_config(config)
    studies = simulate(n, vocab=vocab, seed=seed, prevalence=prevalence, miss_rate=miss_rate,
                       overcall_rate=overcall_rate, config=cfg, hedge_calibration=hedge_calibration)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(s.index, s.spec, str(out / "images" / f"{s.image_id}.png")) for s in studies]
    chunk = max(1, min(256, math.ceil(len(jobs) / (workers * 4))))
    chunks = [(jobs[i:i + chunk], size, seed, compress_level) for i in range(0, len(jobs), chunk)]
    done = 0
    if workers == 1:
        for c in chunks:
            done += _render_chunk(c)
            if progress:
                progress(done, len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            for k in ex.map(_render_chunk, chunks):
                done += k
                if progress:
                    progress(done, len(jobs))
    split = patient_splits([s.patient_id for s in studies], seed, cfg["world"]["splits"])
    _write_tables(out, studies, split, vocab)
    meta = {
        "generator": "repgls.phantom", "version": cfg.get("version", "1"), "n": n, "size": size, "vocab": vocab,
        "seed": seed, "prevalence": str(prevalence),
        "prevalence_used": resolve_prevalence(vocab, prevalence, cfg),
        "radiologist": {**cfg["radiologist"], **({"miss_rate": miss_rate} if miss_rate is not None else {}),
                        **({"overcall_rate": overcall_rate} if overcall_rate is not None else {}),
                        **({"hedge_calibration": hedge_calibration} if hedge_calibration is not None else {})},
        "world": cfg["world"], "n_patients": len(split), "config": str(config) if config else "built-in",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return out


def truth_frame(studies: list[Study], split: dict[str, str] | None = None) -> pd.DataFrame:
    """Long truth table: one row per (image, finding), columns as in truth.parquet."""
    rows = []
    for s in studies:
        for c, t in s.truth.items():
            r = s.reported.get(c, {})
            rows.append({
                "image_id": s.image_id, "study_id": s.study_id, "patient_id": s.patient_id, "finding": c,
                "present": bool(t["present"]), "severity": float(t["severity"]),
                "severity_level": t["severity_level"], "prior_state": t["prior_state"],
                "visibility": float(t["visibility"]), "reported_status": r.get("status", ""),
                "reported_cue": r.get("cue", ""), "reported_certainty": float(r.get("certainty", np.nan)),
                "reported_severity": r.get("severity", ""), "reported_change": r.get("change", ""),
                "report_error": r.get("error", ""),
            })
    df = pd.DataFrame(rows)
    df["severity"] = df["severity"].astype("float32")
    df["visibility"] = df["visibility"].astype("float32")
    df["reported_certainty"] = df["reported_certainty"].astype("float32")
    return df


def _write_tables(out: Path, studies: list[Study], split: dict[str, str], vocab: str) -> None:
    view = ["AP" if any(f["kind"] == "devices" and "et_tube" in f.get("devices", []) for f in s.spec["findings"])
            else "PA" for s in studies]
    index = pd.DataFrame({
        "path": [f"images/{s.image_id}.png" for s in studies], "image_id": [s.image_id for s in studies],
        "study_id": [s.study_id for s in studies], "patient_id": [s.patient_id for s in studies],
        "view": view, "split": [split[s.patient_id] for s in studies],
        "study_order": [s.order for s in studies],
    })
    index.to_csv(out / "index.csv", index=False)
    pd.DataFrame({"study_id": index["study_id"], "patient_id": index["patient_id"],
                  "findings": [s.findings_text for s in studies],
                  "impression": [s.impression_text for s in studies]}).to_csv(out / "reports.csv", index=False)
    pd.DataFrame(sorted(split.items()), columns=["patient_id", "split"]).to_csv(out / "split.csv", index=False)
    truth_frame(studies).to_parquet(out / "truth.parquet", index=False)


def report_text(study: Study) -> str:
    """The study's report as one text with FINDINGS / IMPRESSION headers (what a miner reads)."""
    return f"FINDINGS: {study.findings_text}\n\nIMPRESSION: {study.impression_text}\n"


def hedge_calibration(studies: list[Study]) -> tuple[pd.DataFrame, float]:
    """How well the reader's hedges are calibrated: per cue certainty p, P(finding present | cue).

    Returns (table indexed by p with columns ``present`` = share truly present and ``mentions``, and the
    mention-weighted mean |p - P(present | cue)|) over every reported hedged mention.
    """
    rows = [(r["certainty"], bool(s.truth[c]["present"])) for s in studies for c, r in s.reported.items()
            if r.get("status") in ("positive", "uncertain") and r.get("cue")]
    d = pd.DataFrame(rows, columns=["p", "present"])
    g = d.groupby(d["p"].round(2))["present"].agg(present="mean", mentions="size")
    err = float((abs(g.index.to_numpy() - g["present"].to_numpy()) * g["mentions"]).sum() / max(len(d), 1))
    return g, err


def miner_agreement(studies: list[Study], vocab: str = "chexpert14") -> dict[str, Any]:
    """Check a report miner against the radiologist's intent on the phantom reports.

    Runs ``repgls.mining.mine_report`` on every report and compares, for each finding the radiologist
    wrote about: status, cue (the hedge/negation phrase; "" for plain positives), severity level (when a
    severity word was written) and change (when a change word was written).
    Returns rates and up to 20 examples of each kind of disagreement.
    """
    from repgls.mining import mine_report

    counts = {k: [0, 0] for k in ("status", "cue", "severity", "change")}
    extra = 0
    bad: dict[str, list[dict[str, Any]]] = {k: [] for k in counts}
    for s in studies:
        mined = {r["finding"]: r for r in mine_report(report_text(s), vocab=vocab, study_id=s.study_id)}
        for c, r in s.reported.items():
            if not r.get("status"):
                continue
            m = mined.get(c, {})
            checks = {"status": (r["status"], m.get("status", ""))}
            if r["status"] != "negative" or r.get("cue") not in ("no", ""):
                checks["cue"] = (r.get("cue", ""), m.get("cue", ""))
            if r.get("severity", "none") != "none":
                checks["severity"] = (r["severity"], m.get("severity", ""))
            if r.get("change", "none") != "none":
                checks["change"] = (r["change"], m.get("change", ""))
            for k, (want, got) in checks.items():
                w, g = str(want).lower(), str(got).lower()
                ok = w == g or (k == "cue" and w != "" and (w in g or (w == "resolved" and "resol" in g)))
                counts[k][0] += ok
                counts[k][1] += 1
                if not ok and len(bad[k]) < 20:
                    bad[k].append({"study_id": s.study_id, "finding": c, "want": want, "got": got,
                                   "text": report_text(s)})
        extra += sum(1 for c in mined if c not in s.reported or not s.reported[c].get("status"))
    return {"agreement": {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in counts.items()},
            "n": {k: v[1] for k, v in counts.items()}, "extra_mentions": extra, "disagreements": bad}
