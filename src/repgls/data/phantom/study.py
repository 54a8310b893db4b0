"""One simulated study and the world model's primitives: anatomy, exposure, where a finding sits, what is visible.

Shared by the world simulation (:mod:`.world`) and the simulated radiologist (:mod:`.radiologist`), which
therefore do not import each other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Study", "anatomy", "exposure", "onset_extras", "render_finding", "severity_level", "visibility"]


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


def anatomy(rng: np.random.Generator) -> dict[str, Any]:
    """Per-patient anatomy in normalised coordinates (see repgls.data.phantom.render)."""
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


def exposure(rng: np.random.Generator) -> tuple[dict[str, float], float]:
    """Per-study exposure/positioning and the image quality q in [0.5, 1] it implies."""
    ex = {
        "heel": float(rng.uniform(-0.03, 0.05)), "contrast": float(rng.uniform(0.95, 1.3)),
        "brightness": float(rng.uniform(-0.04, 0.06)), "gamma": float(rng.uniform(0.8, 1.25)),
        "noise": float(rng.uniform(0.006, 0.045)), "blur": float(rng.choice([0.0, 0.0, 0.0, 0.7])),
        "angle": float(rng.normal(0, 2.0)), "dx": float(rng.normal(0, 0.02)), "dy": float(rng.normal(0, 0.02)),
    }
    q = 1.1 - 4.0 * ex["noise"] - 0.2 * ex["blur"] - 0.3 * abs(ex["contrast"] - 1.12) - 0.2 * abs(ex["gamma"] - 1)
    return ex, float(np.clip(q, 0.5, 1.0))


def onset_extras(kind: str, ccfg: dict[str, Any], cfg: dict[str, Any], rng: np.random.Generator) -> dict:
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


def render_finding(kind: str, sev: float, ex: dict[str, Any]) -> dict[str, Any]:
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


def visibility(cfg: dict[str, Any], cls: str, sev: float, quality: float, overlap: float) -> float:
    cons = float(cfg["classes"][cls].get("conspicuity", 0.8))
    return float(np.clip(cons * (0.3 + 0.9 * sev) * quality * overlap, 0.0, 1.0))


def severity_level(cfg: dict[str, Any], sev: float, present: bool) -> str:
    if not present:
        return "none"
    for lvl, hi in cfg["severity_levels"].items():
        if sev < hi:
            return lvl
    return "severe"
