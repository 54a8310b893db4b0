"""The phantom world: synthetic chest radiographs, reports and the hidden truth behind both.

Patients have several studies over time; each class of the vocabulary follows a two-state Markov chain
per patient (stationary prevalence = the requested one) with a latent severity in [0, 1] that drifts
between studies. A renderer (:mod:`repgls.data.phantom.render`) draws each study; a simulated
radiologist (:mod:`repgls.data.phantom.radiologist`) writes its report from what is *visible* (severity x
conspicuity x image quality x overlap): definite when plain, hedged when faint, sometimes missed or
over-called, with severity and change words that follow the latents. Wording and parameters live in
``phantom.yaml`` beside this module (:mod:`repgls.data.phantom.config`).

This module: :func:`simulate` (specs + reports in memory), :func:`make_phantom` (write a world folder),
:func:`render_study` (one uint8 image and its truth), :func:`patient_splits`, :func:`truth_frame`.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls._io import check_writable, ignore_sigint, removed_on_failure
from repgls.data.phantom.config import load_config, resolve_prevalence
from repgls.data.phantom.radiologist import belief_tables, dictate
from repgls.data.phantom.render import encode_png, render
from repgls.data.phantom.study import (
    Study,
    anatomy,
    exposure,
    onset_extras,
    render_finding,
    severity_level,
    visibility,
)
from repgls.vocab import load_vocab

PRIOR_STATES = ("none", "absent", "present-smaller", "present-larger", "same")
__all__ = ["PRIOR_STATES", "hedge_share", "make_phantom", "patient_splits", "render_study", "simulate", "truth_frame", "truth_labels"]
_SPLIT_SEED, _PATIENT_SEED, _REPORT_SEED, _RENDER_SEED, _HEDGE_SEED = 3, 1, 2, 4, 5


def _radiologist(cfg: dict[str, Any], miss_rate: float | None, overcall_rate: float | None,
                 hedge_calibration: str | None, hedge_fraction: float | None) -> None:
    """Apply the reader's overrides to ``cfg["radiologist"]`` and check them."""
    rad = cfg["radiologist"]
    for key, val in (("miss_rate", miss_rate), ("overcall_rate", overcall_rate), ("hedge_fraction", hedge_fraction)):
        if val is not None:
            rad[key] = float(val)
    if hedge_calibration is not None:
        rad["hedge_calibration"] = hedge_calibration
    if rad.setdefault("hedge_calibration", "bayes") not in ("bayes", "visibility"):
        raise ValueError(f"hedge_calibration must be 'bayes' or 'visibility', got {rad['hedge_calibration']!r}")
    for k in ("miss_rate", "overcall_rate", "hedge_fraction"):
        if rad.get(k) is not None and not 0.0 <= rad[k] <= 1.0:
            raise ValueError(f"{k} must be in [0, 1], got {rad[k]}")


def _step(c: str, cfg: dict[str, Any], p: float, state: dict[str, Any], order: int,
          rng: np.random.Generator) -> dict[str, Any]:
    """One class's truth at the next study of a patient: a two-state Markov chain with a drifting severity."""
    w, ccfg = cfg["world"], cfg["classes"][c]
    persist, step = float(w["persist"]), float(w["severity_step"])
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
        extras = onset_extras(ccfg["kind"], ccfg, cfg, rng)
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
    return {"present": now, "severity": sev, "prior_state": prior, "extras": extras}


def _study(idx: int, pid: int, order: int, anat: dict[str, Any], state: dict[str, Any], cfg: dict[str, Any],
           prev: dict[str, float], voc: Any, rng: np.random.Generator) -> Study:
    """The next study of a patient: exposure, truth per class (with implications and overlaps), render spec."""
    classes = list(prev)
    ex, quality = exposure(rng)
    an = dict(anat)
    an["dome_r"] += rng.normal(0, 0.015)  # inspiration varies between studies
    an["dome_l"] += rng.normal(0, 0.015)
    truth = {c: _step(c, cfg, prev[c], state, order, rng) for c in classes}
    for c in classes:  # implications (e.g. Massive Cardiomegaly -> Cardiomegaly)
        tgt = cfg["classes"][c].get("implies")
        if tgt and truth[c]["present"] and tgt in truth:
            t = truth[tgt]
            t["present"], t["severity"] = True, max(t["severity"], 0.85)
            if not t["extras"]:
                t["extras"] = onset_extras(cfg["classes"][tgt]["kind"], cfg["classes"][tgt], cfg, rng)
    over = {c: 1.0 for c in classes}
    for src, (strength, targets) in cfg.get("overlap", {}).items():
        if src in truth and truth[src]["present"]:
            for t in targets:
                if t in over:
                    over[t] *= 1.0 - strength * truth[src]["severity"]
    spec_f = []
    for c in classes:
        t = truth[c]
        t["visibility"] = visibility(cfg, c, t["severity"], quality, over[c]) if t["present"] else 0.0
        t["severity_level"] = severity_level(cfg, t["severity"], t["present"])
        if t["present"]:
            spec_f.append(render_finding(cfg["classes"][c]["kind"], t["severity"], t["extras"]))
    if "No Finding" in voc.classes:
        nf = not any(t["present"] for c, t in truth.items() if c != "Support Devices")
        truth = {"No Finding": {"present": nf, "severity": 0.0, "prior_state": "none", "extras": {},
                                "visibility": 1.0 if nf else 0.0, "severity_level": "none"}, **truth}
    sid = f"s{idx:07d}"
    return Study(index=idx, study_id=sid, image_id=f"{sid}_pa", patient_id=f"p{pid:06d}", order=order,
                 spec={"anatomy": an, "exposure": ex, "findings": spec_f, "quality": quality}, truth=truth)


def _calibrate_hedging(cfg: dict[str, Any], studies: list[Study], seed: int) -> None:
    """With ``radiologist.hedge_fraction`` = f: state as fact every finding perceived above the f-quantile of
    the perceived visibility of present findings (``definite_above``), so about f of the mentions of present
    findings are hedged; over-calls are hedged at the same rate. f = 0: the reader never hedges."""
    rad = cfg["radiologist"]
    f = rad.get("hedge_fraction")
    if f is None:
        return
    vis = np.array([t["visibility"] for st in studies for c, t in st.truth.items()
                    if t["present"] and c != "No Finding" and cfg["classes"][c]["kind"] != "devices"])
    seen = vis + np.random.default_rng([seed, _HEDGE_SEED]).normal(0, rad["perception_sd"], vis.shape)
    rad["definite_above"] = float(np.quantile(seen, f)) if f > 0 and len(seen) else -1.0
    rad["overcall_hedged"] = float(f)


def _simulate(n: int, vocab: str, seed: int, prevalence: str | os.PathLike, miss_rate: float | None,
              overcall_rate: float | None, config: dict[str, Any] | None, hedge_calibration: str | None,
              hedge_fraction: float | None) -> tuple[list[Study], dict[str, Any]]:
    """``simulate`` plus the configuration the reader actually used."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cfg = deepcopy(config) if config is not None else load_config()
    _radiologist(cfg, miss_rate, overcall_rate, hedge_calibration, hedge_fraction)
    voc = load_vocab(vocab)
    prev = resolve_prevalence(vocab, prevalence, cfg)
    lo, hi = cfg["world"]["studies_per_patient"]
    studies: list[Study] = []
    pid = 0
    while len(studies) < n:
        rng = np.random.default_rng([seed, _PATIENT_SEED, pid])
        anat = anatomy(rng)
        anat["dome_l"] = anat["dome_r"] + rng.uniform(0.02, 0.08)
        n_st = min(int(rng.integers(lo, hi + 1)), n - len(studies))
        state: dict[str, Any] = {}
        for order in range(n_st):
            studies.append(_study(len(studies), pid, order, anat, state, cfg, prev, voc, rng))
        pid += 1
    _calibrate_hedging(cfg, studies, seed)
    if cfg["radiologist"]["hedge_calibration"] == "bayes":
        cfg["_belief"] = belief_tables(cfg, studies, voc.classes)
    by_patient_prev: dict[str, Study] = {}
    for st in studies:
        prior = by_patient_prev.get(st.patient_id)
        dictate(st, prior, cfg, voc.classes, np.random.default_rng([seed, _REPORT_SEED, st.index]))
        by_patient_prev[st.patient_id] = st
    return studies, cfg


def simulate(n: int, vocab: str = "chexpert14", seed: int = 0, prevalence: str | os.PathLike = "default",
             miss_rate: float | None = None, overcall_rate: float | None = None,
             config: dict[str, Any] | None = None, hedge_calibration: str | None = None,
             hedge_fraction: float | None = None) -> list[Study]:
    """Simulate ``n`` studies (patients, latents, rendering specs and reports) without drawing images.

    Deterministic by ``seed``: each patient's timeline uses the seed (seed, 1, patient), each report
    (seed, 2, study) and the split (seed, 3). The images and the truth do not depend on the reader's settings
    (``miss_rate``, ``overcall_rate``, ``hedge_calibration``, ``hedge_fraction``): worlds that differ only in
    them share their films and differ in their reports.
    """
    return _simulate(n, vocab, seed, prevalence, miss_rate, overcall_rate, config, hedge_calibration,
                     hedge_fraction)[0]


def hedge_share(studies: list[Study]) -> float:
    """Share of the reader's mentions of a finding as present (definite or hedged) that carry a hedge."""
    said = [r for st in studies for r in st.reported.values() if r.get("status") in ("positive", "uncertain")]
    return float(np.mean([r.get("certainty", 1.0) < 1.0 for r in said])) if said else 0.0


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
                 progress: Any = None, hedge_calibration: str | None = None,
                 hedge_fraction: float | None = None) -> Path:
    """Write a phantom world folder (see docs/schemas.md "Phantom world folder").

    Files: ``images/<image_id>.png``, ``index.csv``, ``reports.csv``, ``truth.parquet``, ``split.csv``,
    ``meta.json``. Same arguments -> byte-identical files, whatever ``workers`` is.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = check_writable(out, folder=True, what="output folder")  # before any work
    studies, used = _simulate(n, vocab, seed, prevalence, miss_rate, overcall_rate, load_config(config),
                              hedge_calibration, hedge_fraction)
    with removed_on_failure(out):  # a failed or interrupted world leaves no half folder
        _render_all(out, studies, size, seed, compress_level, workers, progress)
        split = patient_splits([s.patient_id for s in studies], seed, used["world"]["splits"])
        _write_tables(out, studies, split, vocab)
        meta = {
            "generator": "repgls.phantom", "version": used.get("version", "1"), "n": n, "size": size,
            "vocab": vocab, "seed": seed, "prevalence": str(prevalence),
            "prevalence_used": resolve_prevalence(vocab, prevalence, used),
            "radiologist": {**used["radiologist"], "hedge_share": round(hedge_share(studies), 4)},
            "world": used["world"], "n_patients": len(split), "config": str(config) if config else "built-in",
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return out


def _render_all(out: Path, studies: list[Study], size: int, seed: int, compress_level: int, workers: int,
                progress: Any) -> None:
    """Render every study's film into ``out/images`` (in ``workers`` processes; Ctrl-C is the parent's)."""
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
        return
    ex = ProcessPoolExecutor(max_workers=workers, initializer=ignore_sigint)
    try:
        for k in ex.map(_render_chunk, chunks):
            done += k
            if progress:
                progress(done, len(jobs))
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


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


def truth_labels(world: str | os.PathLike, vocab: str | None = None) -> pd.DataFrame:
    """The hidden truth of a world folder as labels (the labels.parquet layout, policy ``truth``): y = 1 where
    the finding is present, 0 where absent; rate 0; certainty 1 / 0. What an oracle trains on."""
    from repgls.rating.labels import LabelTable

    world = Path(world)
    meta = json.loads((world / "meta.json").read_text(encoding="utf-8"))
    voc = load_vocab(vocab or meta["vocab"])
    truth = pd.read_parquet(world / "truth.parquet", columns=["study_id", "finding", "present"])
    wide = truth.pivot_table(index="study_id", columns="finding", values="present", aggfunc="max")
    wide = wide.reindex(columns=list(voc.classes)).astype(float)
    y = wide.to_numpy(dtype=np.float32)
    return LabelTable(wide.index.astype(str).to_numpy(), tuple(voc.classes), y, np.zeros_like(y), y.copy(),
                      {"vocab": voc.name, "classes": list(voc.classes), "policy": "truth", "r0": 0.0,
                       "source": "phantom truth.parquet"}).to_frame()
