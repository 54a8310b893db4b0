"""Certainty -> (label y, GLS rate r): the default Rep-GLS mapping and the CheXpert baseline policies.

The per-class binary GLS target is ``t = (1 - r) * y + r / 2`` (Wei et al. 2022 with K = 2 per class;
``r > 0`` smooths toward 0.5, ``r < 0`` sharpens beyond {0, 1}).

Policy ``gls`` (default; docs/rates.md has the table with worked numbers), for a mention with
certainty p (the probability the wording conveys that the finding is present):

* p >= 0.5: y = 1, r = 2 (1 - p)           -> t = p exactly
* p <  0.5: y = 0, r = 2 p                 -> t = p exactly
* definite statements only (status ``positive`` with p = 1, or ``negative`` with p = 0): r += r0, with
  r0 <= 0, so t = 1 - r0 / 2 > 1 (definite positive) or t = r0 / 2 < 0 (definite negative). Hedged
  mentions never get r0, so their target equals the certainty the wording conveys.
* not mentioned: y = 0, r = 0 (``unmentioned="zero"``) or y = NaN = ignore (``unmentioned="ignore"``).
* r is clipped to [-clip, clip] (default 0.99) so it stays inside Rep-GLS's open range (-1, 1).

Hard-label policies (r = 0 everywhere; the certainty is kept in the labels file for reference):

* ``u-ones``:   positive -> 1, uncertain -> 1,   negative -> 0   (CheXpert U-Ones)
* ``u-zeros``:  positive -> 1, uncertain -> 0,   negative -> 0   (CheXpert U-Zeros)
* ``u-ignore``: positive -> 1, uncertain -> NaN, negative -> 0   (CheXpert U-Ignore; NaN = masked)
* ``hard``:     every mention thresholded at its certainty, y = 1[p >= 0.5] (so "likely X" -> 1,
  "cannot exclude X" (p ~ 0.35) -> 0); this is the binary label the GLS policy smooths.
"""

from __future__ import annotations

import numpy as np

POLICIES = ("gls", "u-ones", "u-zeros", "u-ignore", "hard")
UNMENTIONED = ("zero", "ignore")
DEFAULT_R0 = -0.2
DEFAULT_CLIP = 0.99
_DEFINITE_TOL = 1e-6


def gls_target(y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Binary GLS target t = (1 - r) y + r / 2 (any shape; NaN in y stays NaN)."""
    y = np.asarray(y, dtype=np.float32)
    r = np.asarray(r, dtype=np.float32)
    return (1.0 - r) * y + r / 2.0


def gls_rate(p: np.ndarray, definite: np.ndarray | bool = False, r0: float = DEFAULT_R0,
             clip: float = DEFAULT_CLIP) -> tuple[np.ndarray, np.ndarray]:
    """Default GLS mapping of certainty p [...] to (y, r), both float32 of p's shape.

    ``definite`` marks the mentions that receive the sharpening offset r0 (see module docstring).
    """
    if r0 > 0:
        raise ValueError(f"r0 must be <= 0 (it sharpens definite statements); got {r0}")
    if not 0 < clip < 1:
        raise ValueError(f"clip must be in (0, 1); got {clip}")
    p = np.asarray(p, dtype=np.float64)
    y = (p >= 0.5).astype(np.float64)
    r = np.where(y == 1, 2.0 * (1.0 - p), 2.0 * p)
    r = r + np.where(np.asarray(definite, dtype=bool), r0, 0.0)
    r = np.clip(r, -clip, clip)
    return y.astype(np.float32), r.astype(np.float32)


def is_definite(status: np.ndarray, p: np.ndarray) -> np.ndarray:
    """True for definite statements: status positive with p = 1, or negative with p = 0."""
    status = np.asarray(status, dtype=object)
    p = np.asarray(p, dtype=np.float64)
    return ((status == "positive") & (p >= 1 - _DEFINITE_TOL)) | ((status == "negative") & (p <= _DEFINITE_TOL))


def map_mentions(status: np.ndarray, p: np.ndarray, policy: str = "gls", r0: float = DEFAULT_R0,
                 clip: float = DEFAULT_CLIP) -> tuple[np.ndarray, np.ndarray]:
    """Map M mentions (status [M] str, certainty p [M]) to (y [M], r [M]) float32 under ``policy``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    status = np.asarray(status, dtype=object)
    p = np.asarray(p, dtype=np.float64)
    if policy == "gls":
        return gls_rate(p, is_definite(status, p), r0=r0, clip=clip)
    r = np.zeros(p.shape, dtype=np.float32)
    if policy == "hard":
        return (p >= 0.5).astype(np.float32), r
    uncertain_value = {"u-ones": 1.0, "u-zeros": 0.0, "u-ignore": np.nan}[policy]
    y = np.where(status == "positive", 1.0, np.where(status == "uncertain", uncertain_value, 0.0))
    return y.astype(np.float32), r


def unmentioned_value(unmentioned: str) -> float:
    """Label of a class the report does not mention: 0 (``zero``) or NaN = ignore (``ignore``)."""
    if unmentioned not in UNMENTIONED:
        raise ValueError(f"unknown unmentioned={unmentioned!r}; choose one of {', '.join(UNMENTIONED)}")
    return 0.0 if unmentioned == "zero" else float("nan")
