"""The elementwise losses: logits z [B, K] and targets [B, K] -> a loss per element [B, K], in float32 (float64
stays float64), written in the softplus form: finite for any logit and for targets outside [0, 1]."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ANR_VARIANTS", "anr", "bce", "class_bias", "db", "db_rebalance_weight", "focal", "gls", "gls_target",
           "pce", "up"]


def up(x: Tensor, like: Tensor | None = None) -> Tensor:
    """Compute dtype: float64 stays float64 (gradcheck), everything else (bf16, fp16, fp32) -> float32."""
    dt = torch.float64 if (like if like is not None else x).dtype == torch.float64 else torch.float32
    return x.to(dt)


# ----------------------------------------------------------------------------------------------------------
# elementwise functions: [B, K] -> [B, K], float32
# ----------------------------------------------------------------------------------------------------------
def bce(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy with logits, per element [B, K] (float32).

    ``l = t * softplus(-z) + (1 - t) * softplus(z)``; equal to ``F.binary_cross_entropy_with_logits`` for
    t in [0, 1], and the linear-in-t extension (the GLS form) for t outside [0, 1]; finite for any z, t.
    """
    z = up(logits)
    t = up(target, z)
    return t * F.softplus(-z) + (1.0 - t) * F.softplus(z)


def focal(logits: Tensor, target: Tensor, gamma: float = 2.0, balance: float = 1.0) -> Tensor:
    """Sigmoid focal loss per element [B, K] (Lin et al., ICCV 2017; form of the LTML / DB code).

    ``l = balance * (1 - p_t)^gamma * BCE(z, t)`` with ``p_t = exp(-BCE(z, t))`` (= sigma(z) for t = 1,
    1 - sigma(z) for t = 0). ``gamma = 0, balance = 1`` gives BCE. Defaults: gamma 2; balance 1 (the LTML
    ``focal_loss.py`` uses balance_param 0.25, a constant factor, equivalent to a 4x smaller learning rate).
    """
    b = bce(logits, target)
    pt = torch.exp(-b)
    return balance * (1.0 - pt).clamp_min(0.0).pow(gamma) * b


def gls_target(y: Tensor, r: Tensor) -> Tensor:
    """GLS target ``t = (1 - r) * y + r / 2`` (binary K = 2 form of Wei et al. 2022); r < 0 leaves [0, 1]."""
    return (1.0 - r) * y + 0.5 * r


def gls(logits: Tensor, y: Tensor, r: Tensor, max_logit: float | None = None) -> Tensor:
    """Generalized label smoothing (Wei et al., ICML 2022, arXiv 2106.04149), binary per class [B, K].

    ``t = (1 - r) y + r / 2``; ``l = t * softplus(-z) + (1 - t) * softplus(z)``
    ``= (1 - r) BCE(z, y) + r * (softplus(z) + softplus(-z)) / 2`` (the official code's formula with K = 2).
    Per-sample, per-class r in (-1, 1) (Rep-GLS). r = 0 gives BCE. For r < 0 the target leaves [0, 1] and the
    loss is unbounded below (the logit keeps growing); ``max_logit`` clamps z to [-max_logit, max_logit]
    inside the loss (no gradient beyond) as a safeguard. Default None (the paper's loss, unmodified).
    """
    z = up(logits)
    if max_logit is not None:
        z = z.clamp(-max_logit, max_logit)
    return bce(z, gls_target(y, r))


def pce(logits: Tensor, y: Tensor, tau: float = 0.3) -> Tensor:
    """Partially Huberised cross-entropy, binary sigmoid form per class [B, K] (PU-RM eq. 2, Peng et al.
    arXiv 2408.02214; Menon et al., ICLR 2020). ``tau`` is the *probability* tangent point (Menon's
    tau_M = 1 / tau).

    For y = 1 (positive, and uncertain under U-Ones: PU-RM eq. 3), with p = sigma(z):
    ``l = -(p - tau) / tau - log(tau)`` if ``p <= tau`` else ``-log p = softplus(-z)``
    (continuous with equal slope -1/tau in p at p = tau; bounded by 1 - log tau as p -> 0).
    For y = 0: CE, ``softplus(z)``. Soft y mixes the two linearly: ``y * l_pos + (1 - y) * l_neg``.
    """
    if not 0.0 < tau < 1.0:
        raise ValueError(f"pce tau must be in (0, 1), got {tau}")
    z = up(logits)
    yf = up(y, z)
    p = torch.sigmoid(z)
    lin = 1.0 - p / tau - math.log(tau)
    pos = torch.where(p <= tau, lin, F.softplus(-z))
    return yf * pos + (1.0 - yf) * F.softplus(z)


def class_bias(class_counts: Sequence[float] | Tensor, num_samples: float) -> Tensor:
    """Class prior bias ``v_i = log(N / n_i - 1)`` [K] (LTML eq. 5; DB's ``init_bias`` before scaling).

    Counts are clipped to [1, N - 1] (with a warning) so that v stays finite.
    """
    n = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if num_samples is None or num_samples <= 1:
        raise ValueError("num_samples (N, number of training images) must be > 1")
    if bool((n < 1).any() | (n > num_samples - 1).any()):
        warnings.warn("class_counts outside [1, N-1] were clipped to compute log(N/n - 1)", stacklevel=2)
        n = n.clamp(1.0, float(num_samples) - 1.0)
    return torch.log(float(num_samples) / n - 1.0).float()


ANR_VARIANTS = ("paper", "ltml-code")


def _anr_parts(logits: Tensor, y: Tensor, v: Tensor, beta: float, variant: str, bias_scale: float
               ) -> tuple[Tensor, Tensor, Tensor]:
    """(ANR-BCE [B, K], the scaled logit zz [B, K] whose BCE gives focal's p_t, float y) of one variant."""
    if variant not in ANR_VARIANTS:
        raise ValueError(f"anr variant must be one of {ANR_VARIANTS}, got {variant!r}")
    z = up(logits)
    yf = up(y, z)
    u = z - bias_scale * v.to(z.device, z.dtype)
    if variant == "paper":  # eq. 3: lambda from the adjusted logit u; the gradient of the loss as written
        lam = 1.0 + beta * (1.0 - torch.sigmoid(u))
        weight = 1.0 / lam
    else:  # the LTML code: lambda from the raw logit (before the bias), the 1/lambda weight detached
        lam = 1.0 + beta * (1.0 - torch.sigmoid(z))
        weight = 1.0 / lam.detach()
    loss = yf * F.softplus(-u) + (1.0 - yf) * F.softplus(lam * u) * weight
    return loss, yf * u + (1.0 - yf) * lam * u, yf


def anr(
    logits: Tensor,
    y: Tensor,
    v: Tensor,
    beta: float = 10.0,
    gamma: float = 2.0,
    variant: str = "paper",
    bias_scale: float = 1.0,
) -> Tensor:
    """Adaptive negative regularisation BCE with its focal term (ANR-BCE; LTML eqs. 1-5 and section 4.1,
    Lai et al. arXiv 2311.17334) per element [B, K].

    ``variant="paper"`` (default), the paper's equations: ``u = z - v`` (eq. 3, v = log(N / n_i - 1), eq. 5),
    ``lambda = 1 + beta * (1 - sigma(u))`` (eq. 3: from the *adjusted* logit u),
    ``l = y * softplus(-u) + (1 - y) * softplus(lambda * u) / lambda`` (eqs. 1-2), differentiated as written
    (lambda and 1/lambda both carry gradient). Section 4.1: "Focal loss is adopted as the loss function, with
    the hyper-parameter beta empirically set to 10": the focal factor ``(1 - p_t)^gamma`` multiplies ``l``, with
    p_t = sigma(u) for a positive and sigma(-lambda u) for a negative (the probability of the label under the
    scaled logit, as the LTML code computes it); gamma = 2 (Lin et al.'s default; the paper gives no value).

    ``variant="ltml-code"``, the authors' released code (``logit_reg_functions`` of ``*_lamda.py``): lambda from
    the raw logit z before the bias, ``u = z - bias_scale * v`` (the code scales v by init_bias / neg_scale,
    values in its missing configs), and the 1/lambda weight detached. ``gamma=0`` drops the focal factor;
    ``beta = 0`` and ``v = 0`` give BCE. v [K] broadcasts over the batch.
    """
    loss, zz, yf = _anr_parts(logits, y, v, beta, variant, bias_scale)
    if gamma > 0:  # p_t = exp(-BCE(zz, y)): sigma(u) for y = 1, sigma(-lambda u) for y = 0
        pt = torch.exp(-bce(zz, yf))
        loss = (1.0 - pt).clamp_min(0.0).pow(gamma) * loss
    return loss


def db_rebalance_weight(
    y: Tensor, class_counts: Tensor, alpha: float = 0.1, beta: float = 10.0, mu: float = 0.2
) -> Tensor:
    """DB re-balanced weight [B, K] (Wu et al., ECCV 2020; ``rebalance_weight`` in the DB / LTML code).

    ``R_i = sum_k y_ik / n_k`` (sample i's repeat rate under class-aware sampling); ``r_ik = (1/n_k) / R_i``;
    ``w_ik = alpha + sigmoid(beta * (r_ik - mu))`` for positive and negative terms alike. A sample with no
    positive has R_i = 0, r = inf, so w = alpha + 1 (what the reference code computes). Not differentiated.
    """
    yf = (y.float() > 0.5).float()
    freq_inv = 1.0 / class_counts.to(yf.device, torch.float32).clamp_min(1.0)
    rr = (yf * freq_inv).sum(dim=1, keepdim=True)
    ratio = freq_inv.unsqueeze(0) / rr.clamp_min(torch.finfo(torch.float32).tiny)
    w = torch.where(rr > 0, torch.sigmoid(beta * (ratio - mu)), torch.ones_like(ratio))
    return (alpha + w).detach()


def db(
    logits: Tensor,
    y: Tensor,
    class_counts: Tensor,
    num_samples: float,
    alpha: float = 0.1,
    beta: float = 10.0,
    mu: float = 0.2,
    neg_scale: float = 2.0,
    init_bias: float = 0.05,
    gamma: float = 2.0,
    balance: float = 2.0,
) -> Tensor:
    """Distribution-balanced loss per element [B, K] (Wu et al., ECCV 2020; ``ResampleLoss`` in the DB and
    LTML code; formulas and defaults: training-anchors section 2.6, COCO-MLT config).

    ``w`` = ``db_rebalance_weight(y; alpha, beta, mu)``; negative-tolerant regularisation with
    ``z' = z - init_bias * v / neg_scale``, ``zz = z'`` for y = 1 and ``neg_scale * z'`` for y = 0, weight
    ``w`` for y = 1 and ``w / neg_scale`` for y = 0; then focal on top:
    ``l = balance * (1 - p_t)^gamma * weight * BCE(zz, y)`` with ``p_t = exp(-BCE(zz, y))``.
    So a negative costs ``balance * (1 - p_t)^gamma * (w / lambda) * softplus(lambda z')``.
    Defaults (COCO config): alpha 0.1, beta 10, mu 0.2, neg_scale (lambda) 2, init_bias (kappa) 0.05,
    gamma 2, balance 2.
    """
    z = up(logits)
    yf = up(y, z)
    counts = torch.as_tensor(class_counts, device=z.device).to(z.dtype)
    w = db_rebalance_weight(yf, counts, alpha, beta, mu)
    v = class_bias(counts, num_samples).to(z.device, z.dtype)
    zp = z - init_bias * v / neg_scale
    zz = zp * (1.0 - yf) * neg_scale + zp * yf
    weight = w / neg_scale * (1.0 - yf) + w * yf
    b = bce(zz, yf)
    pt = torch.exp(-b)
    return balance * (1.0 - pt).clamp_min(0.0).pow(gamma) * weight * b
