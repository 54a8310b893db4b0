"""Multi-label losses for report-derived labels: bce, focal, gls, pce, anr, db, llr (LLA / LLM), luvit.

Two layers, one contract:

* plain elementwise functions (``bce``, ``focal``, ``gls``, ``pce``, ``anr``, ``db``) map logits z [B, K]
  and targets [B, K] to a loss per element [B, K]; they compute in float32 whatever the input dtype
  (bf16 / fp16 autocast safe), and are written in the softplus form, finite for any logit and for targets
  outside [0, 1];
* ``create_loss(name, class_counts=None, num_samples=None, **kw) -> nn.Module``, called as
  ``loss(outputs, batch) -> scalar`` with ``outputs = {"logits": [B, K], "rate": [B, K] (LU-ViT)}`` and
  ``batch = {"y": [B, K], "r": [B, K], "mask": [B, K]}`` (``r`` defaults to 0, ``mask`` to 1).

Masking and reduction: mask 0 marks an ignored element (U-Ignore, NaN labels). Ignored targets are zeroed
before use, so NaN there cannot leak into gradients. ``reduction="mean"`` (default) = sum of the loss over
supervised elements / number of supervised elements (the mean over B*K when nothing is masked, which is what
``BCEWithLogitsLoss`` and the LTML / DB code do); ``"sample"`` = mean over a sample's supervised elements,
then mean over samples that have any; ``"sum"``; ``"none"`` returns the masked [B, K] tensor.

Notation: z logit, sigma the sigmoid, softplus(x) = log(1 + e^x), so -log sigma(z) = softplus(-z) and
-log(1 - sigma(z)) = softplus(z). N training images, n_i positives of class i (``class_counts``; take them
from the *train* split), class prior bias v_i = log(N / n_i - 1), so sigma(-v_i) = n_i / N.

Label policies U-Ignore / U-Zeros / U-Ones (CheXpert; PU-RM section 4.3) act on the labels, not the loss:
``repgls rates --policy`` writes them into labels.parquet (U-Ignore -> mask 0, U-Zeros -> y 0, U-Ones ->
y 1). ``create_loss("u-ones")`` etc. return BCE tagged with ``label_policy`` so a trainer can check that the
labels were built with that policy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "ANRLoss",
    "BCELoss",
    "DBLoss",
    "FocalLoss",
    "GLSLoss",
    "LUViTLoss",
    "LargeLossReconsideration",
    "LossEntry",
    "MaskedLoss",
    "PCELoss",
    "anr",
    "bce",
    "class_bias",
    "create_loss",
    "db",
    "db_rebalance_weight",
    "focal",
    "gls",
    "gls_target",
    "list_losses",
    "llr_k",
    "pce",
    "reduce_masked",
    "register_loss",
]


def _up(x: Tensor, like: Tensor | None = None) -> Tensor:
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
    z = _up(logits)
    t = _up(target, z)
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
    z = _up(logits)
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
    z = _up(logits)
    yf = _up(y, z)
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


def _anr_parts(
    logits: Tensor, y: Tensor, v: Tensor, beta: float, bias_scale: float, lambda_from: str
) -> tuple[Tensor, Tensor]:
    """(ANR loss [B, K], unweighted BCE of the scaled logit [B, K]: the focal p_t = exp(-it) in the code)."""
    if lambda_from not in ("logit", "biased"):
        raise ValueError("lambda_from must be 'logit' or 'biased'")
    z = _up(logits)
    yf = _up(y, z)
    u = z - bias_scale * v.to(z.device, z.dtype)
    s = torch.sigmoid(z if lambda_from == "logit" else u)
    lam = 1.0 + beta * (1.0 - s)
    pos, neg_raw = F.softplus(-u), F.softplus(lam * u)
    loss = yf * pos + (1.0 - yf) * neg_raw / lam.detach()
    return loss, yf * pos + (1.0 - yf) * neg_raw


def anr(
    logits: Tensor,
    y: Tensor,
    v: Tensor,
    beta: float = 10.0,
    bias_scale: float = 1.0,
    lambda_from: str = "logit",
) -> Tensor:
    """Adaptive negative regularisation BCE (ANR-BCE; LTML eqs. 1-5, Lai et al. arXiv 2311.17334) [B, K].

    ``u = z - bias_scale * v``; ``lambda = 1 + beta * (1 - sigma(s))`` with s = z (``lambda_from="logit"``,
    the LTML code: sigma of the raw logit, taken before the bias is added) or s = u (``"biased"``, the paper's
    eq. 3); ``l = y * softplus(-u) + (1 - y) * softplus(lambda * u) / lambda``. As in the code the 1/lambda
    weight is detached while lambda inside the softplus keeps its gradient. Defaults: beta = 10 (paper and
    code), bias_scale = 1 (paper eq. 3: u = p - v; the code scales v by init_bias / neg_scale, whose values for
    ANR are in the missing configs). beta = 0 and v = 0 give BCE exactly. v [K] broadcasts over the batch.
    """
    return _anr_parts(logits, y, v, beta, bias_scale, lambda_from)[0]


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
    z = _up(logits)
    yf = _up(y, z)
    counts = torch.as_tensor(class_counts, device=z.device).to(z.dtype)
    w = db_rebalance_weight(yf, counts, alpha, beta, mu)
    v = class_bias(counts, num_samples).to(z.device, z.dtype)
    zp = z - init_bias * v / neg_scale
    zz = zp * (1.0 - yf) * neg_scale + zp * yf
    weight = w / neg_scale * (1.0 - yf) + w * yf
    b = bce(zz, yf)
    pt = torch.exp(-b)
    return balance * (1.0 - pt).clamp_min(0.0).pow(gamma) * weight * b


# ----------------------------------------------------------------------------------------------------------
# modules: loss(outputs, batch) -> scalar
# ----------------------------------------------------------------------------------------------------------
def reduce_masked(loss: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
    """Reduce a [B, K] loss over supervised elements (mask > 0); see the module docstring."""
    m = mask.to(loss.dtype)
    lm = torch.where(m > 0, loss, torch.zeros_like(loss)) * m
    if reduction == "mean":
        return lm.sum() / m.sum().clamp_min(1.0)
    if reduction == "sample":
        per = m.sum(dim=1)
        has = per > 0
        vals = lm.sum(dim=1) / per.clamp_min(1.0)
        return (vals * has).sum() / has.sum().clamp_min(1)
    if reduction == "sum":
        return lm.sum()
    if reduction == "none":
        return lm
    raise ValueError(f"unknown reduction {reduction!r} (mean | sample | sum | none)")


def _targets(outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(y, r, mask) as float32 [B, K]; ignored / NaN targets zeroed so they cannot poison gradients."""
    if "logits" not in outputs:
        raise KeyError("outputs must contain 'logits' [B, K]")
    logits = outputs["logits"]
    if "y" not in batch:
        raise KeyError("batch must contain 'y' [B, K]")
    y = batch["y"].to(logits.device, torch.float32)
    if y.shape != logits.shape:
        raise ValueError(f"y shape {tuple(y.shape)} != logits shape {tuple(logits.shape)}")
    mask = batch.get("mask")
    mask = torch.ones_like(y) if mask is None else mask.to(y.device, torch.float32)
    mask = torch.where(torch.isnan(y), torch.zeros_like(mask), mask)
    r = batch.get("r")
    r = torch.zeros_like(y) if r is None else r.to(y.device, torch.float32)
    ok = mask > 0
    y = torch.where(ok, torch.nan_to_num(y), torch.zeros_like(y))
    r = torch.where(ok, torch.nan_to_num(r), torch.zeros_like(r))
    return y, r, mask


class MaskedLoss(nn.Module):
    """Base: subclasses implement ``elementwise(outputs, batch) -> [B, K]``; forward masks and reduces."""

    label_policy: str | None = None

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sample", "sum", "none"):
            raise ValueError(f"unknown reduction {reduction!r} (mean | sample | sum | none)")
        self.reduction = reduction

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        _, _, mask = _targets(outputs, batch)
        return reduce_masked(self.elementwise(outputs, batch), mask, self.reduction)


class BCELoss(MaskedLoss):
    """Masked BCE-with-logits on y (``bce``). Also serves the u-ignore / u-zeros / u-ones label policies."""

    def __init__(self, reduction: str = "mean", label_policy: str | None = None) -> None:
        super().__init__(reduction)
        self.label_policy = label_policy

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = _targets(outputs, batch)
        return bce(outputs["logits"], y)


class FocalLoss(MaskedLoss):
    """Masked focal loss on y (``focal``)."""

    def __init__(self, gamma: float = 2.0, balance: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.gamma, self.balance = gamma, balance

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = _targets(outputs, batch)
        return focal(outputs["logits"], y, self.gamma, self.balance)


class GLSLoss(MaskedLoss):
    """Masked GLS with per-sample, per-class rates from ``batch["r"]`` (``gls``)."""

    def __init__(self, max_logit: float | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.max_logit = max_logit

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, r, _ = _targets(outputs, batch)
        return gls(outputs["logits"], y, r, self.max_logit)


class PCELoss(MaskedLoss):
    """Masked PCE (``pce``); PU-RM = PCE on labels built with U-Ones (``create_loss("pu-rm")``)."""

    def __init__(self, tau: float = 0.3, reduction: str = "mean", label_policy: str | None = None) -> None:
        super().__init__(reduction)
        if not 0.0 < tau < 1.0:
            raise ValueError(f"pce tau must be in (0, 1), got {tau}")
        self.tau = tau
        self.label_policy = label_policy

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = _targets(outputs, batch)
        return pce(outputs["logits"], y, self.tau)


def _counts(class_counts: Any, num_samples: Any, name: str) -> tuple[Tensor, float]:
    if class_counts is None or num_samples is None:
        raise ValueError(f"loss {name!r} needs class_counts [K] and num_samples N (from the train split)")
    return torch.as_tensor(class_counts, dtype=torch.float32).flatten(), float(num_samples)


class ANRLoss(MaskedLoss):
    """Masked ANR-BCE (``anr``); v = log(N / n_i - 1) from train counts. ``reweight=True`` multiplies by the
    DB re-balanced weight and ``gamma > 0`` adds DB-style focal (as the LTML code does on top of ANR)."""

    def __init__(
        self,
        class_counts: Any,
        num_samples: Any,
        beta: float = 10.0,
        bias_scale: float = 1.0,
        lambda_from: str = "logit",
        reweight: bool = False,
        gamma: float = 0.0,
        balance: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        counts, n = _counts(class_counts, num_samples, "anr")
        self.register_buffer("counts", counts)
        self.register_buffer("v", class_bias(counts, n))
        self.beta, self.bias_scale, self.lambda_from = beta, bias_scale, lambda_from
        self.reweight, self.gamma, self.balance = reweight, gamma, balance

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = _targets(outputs, batch)
        loss, raw = _anr_parts(outputs["logits"], y, self.v, self.beta, self.bias_scale, self.lambda_from)
        if self.gamma > 0:  # DB-code focal: p_t from the unweighted BCE of the (scaled) logit
            loss = (1.0 - torch.exp(-raw)).clamp_min(0.0).pow(self.gamma) * loss
        loss = self.balance * loss
        if self.reweight:
            loss = loss * db_rebalance_weight(y, self.counts)
        return loss


class DBLoss(MaskedLoss):
    """Masked distribution-balanced loss (``db``); defaults of the DB COCO-MLT config."""

    def __init__(
        self,
        class_counts: Any,
        num_samples: Any,
        alpha: float = 0.1,
        beta: float = 10.0,
        mu: float = 0.2,
        neg_scale: float = 2.0,
        init_bias: float = 0.05,
        gamma: float = 2.0,
        balance: float = 2.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        counts, n = _counts(class_counts, num_samples, "db")
        self.register_buffer("counts", counts)
        self.num_samples = n
        self.kw = dict(
            alpha=alpha,
            beta=beta,
            mu=mu,
            neg_scale=neg_scale,
            init_bias=init_bias,
            gamma=gamma,
            balance=balance,
        )

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = _targets(outputs, batch)
        return db(outputs["logits"], y, self.counts, self.num_samples, **self.kw)


class LUViTLoss(MaskedLoss):
    """LU-ViT joint loss (our reading of Rep-GLS): ``GLS(logits; y, r) + rate_weight * reg(rate, r)``.

    The GLS term is reduced over ``mask``; the regression term (``"mse"``: (rate - r)^2, or ``"smooth_l1"``)
    is averaged over *mentioned* elements: ``batch["mentioned"]`` when the dataset provides it, else ``mask``.
    Default rate_weight (lambda) = 0.5: our choice (the paper gives no value), so that the rate term (at most
    4, typically < 0.1) stays below the GLS term (~0.1-0.7). ``outputs`` must contain ``"rate"`` [B, K].
    """

    def __init__(
        self,
        rate_weight: float = 0.5,
        rate_loss: str = "mse",
        max_logit: float | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        if rate_loss not in ("mse", "smooth_l1"):
            raise ValueError("rate_loss must be 'mse' or 'smooth_l1'")
        self.rate_weight, self.rate_loss, self.max_logit = rate_weight, rate_loss, max_logit

    def _parts(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        if "rate" not in outputs:
            raise KeyError("loss 'luvit' needs outputs['rate'] [B, K] (use an lu_vit_* model's forward_all)")
        y, r, mask = _targets(outputs, batch)
        lg = gls(outputs["logits"], y, r, self.max_logit)
        rate = _up(outputs["rate"])
        if self.rate_loss == "mse":
            lr = (rate - r) ** 2
        else:
            lr = F.smooth_l1_loss(rate, r, reduction="none", beta=0.1)
        mentioned = batch.get("mentioned")
        m_rate = mask if mentioned is None else mentioned.to(mask.device, torch.float32) * mask
        return lg, lr, m_rate

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        lg, lr, m_rate = self._parts(outputs, batch)
        return lg + self.rate_weight * lr * m_rate

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        _, _, mask = _targets(outputs, batch)
        lg, lr, m_rate = self._parts(outputs, batch)
        return reduce_masked(lg, mask, self.reduction) + self.rate_weight * reduce_masked(
            lr, m_rate, self.reduction
        )


def llr_k(num_elements: int, epoch: int, delta: float = 0.1, max_rate: float = 0.8) -> int:
    """Number of negative losses to reconsider: ``ceil(B*K * min(delta * epoch, max_rate))``, 0 at epoch 0.

    LTML (``noise_resample_loss_lamda.py``): clean_rate = 1 - 0.1 * epoch, i.e. delta = 0.1 (10% of the
    batch's B*K entries per epoch); the non-lamda file caps it at 80% (epoch 8). The original Large Loss
    Matters paper uses delta of 0.001-0.005.
    """
    if epoch <= 0:
        return 0
    rate = min(delta * epoch, max_rate)
    return min(num_elements, math.ceil(num_elements * rate - 1e-9))


class LargeLossReconsideration(MaskedLoss):
    """LLR over any base loss (LTML section 3.1; code: ``forward`` in ``noise_resample_loss*.py``).

    Candidates are supervised negatives (y = 0, mask 1). Per batch the k = ``llr_k(B*K, epoch)`` candidates
    with the largest base loss are ``mode="abandon"`` (LLA: their loss set to 0) or ``mode="modify"`` (LLM:
    their loss recomputed with label 1). Epoch 0 (``set_epoch``; 0-based) leaves the loss unchanged. The
    denominator is unchanged (LTML takes ``final.mean()`` over all B*K entries).

    Under DDP (``torch.distributed`` initialised, ``global_topk=True``) the candidates' losses of all ranks
    are all-gathered and k is taken over the global B*K, so the threshold (the k-th largest loss) is global;
    each rank then reconsiders its candidates at or above it. Single-process: exact top-k (ties broken by
    ``torch.topk``). ``last_selected`` holds the [B, K] bool mask of reconsidered elements.
    """

    def __init__(
        self,
        base: MaskedLoss,
        mode: str = "abandon",
        delta: float = 0.1,
        max_rate: float = 0.8,
        global_topk: bool = True,
    ) -> None:
        super().__init__(base.reduction)
        if mode not in ("abandon", "modify"):
            raise ValueError("llr mode must be 'abandon' (LLA) or 'modify' (LLM)")
        self.base, self.mode, self.delta, self.max_rate = base, mode, delta, max_rate
        self.global_topk = global_topk
        self.epoch = 0
        self.last_selected: Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        """Set the 0-based epoch that drives k."""
        self.epoch = int(epoch)

    def _select(self, loss: Tensor, cand: Tensor) -> Tensor:
        vals = torch.where(cand, loss.detach(), torch.full_like(loss, -math.inf)).flatten()
        dist = torch.distributed
        if self.global_topk and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            world = dist.get_world_size()
            n_local = torch.tensor([vals.numel()], device=vals.device)
            sizes = [torch.zeros_like(n_local) for _ in range(world)]
            dist.all_gather(sizes, n_local)
            n_max = int(max(int(s) for s in sizes))
            padded = torch.full((n_max,), -math.inf, device=vals.device, dtype=vals.dtype)
            padded[: vals.numel()] = vals
            gathered = [torch.empty_like(padded) for _ in range(world)]
            dist.all_gather(gathered, padded)
            allv = torch.cat(gathered)
            k = llr_k(int(sum(int(s) for s in sizes)), self.epoch, self.delta, self.max_rate)
            k = min(k, int(torch.isfinite(allv).sum()))
            if k == 0:
                return torch.zeros_like(cand)
            thr = torch.topk(allv, k).values[-1]
            return cand & (loss.detach() >= thr)
        k = min(llr_k(vals.numel(), self.epoch, self.delta, self.max_rate), int(cand.sum()))
        sel = torch.zeros(vals.numel(), dtype=torch.bool, device=vals.device)
        if k > 0:
            sel[torch.topk(vals, k).indices] = True
        return sel.view_as(cand)

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, mask = _targets(outputs, batch)
        loss = self.base.elementwise(outputs, batch)
        if self.epoch <= 0:
            self.last_selected = torch.zeros_like(loss, dtype=torch.bool)
            return loss
        cand = (y < 0.5) & (mask > 0)
        sel = self._select(loss, cand)
        self.last_selected = sel
        if self.mode == "abandon":
            return torch.where(sel, torch.zeros_like(loss), loss)
        flipped = self.base.elementwise(outputs, {**batch, "y": torch.where(sel, 1.0 - y, y)})
        return torch.where(sel, flipped, loss)


# ----------------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossEntry:
    """A registered loss: how to build it and a one-line description (the docstring's first line)."""

    name: str
    build: Callable[..., MaskedLoss]
    description: str
    needs_counts: bool = False


LOSSES: dict[str, LossEntry] = {}


def _first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph (its summary)."""
    para = " ".join(doc.strip().split("\n\n")[0].split())
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


def register_loss(name: str, *, description: str | None = None, needs_counts: bool = False,
                  **fixed: Any) -> Callable[[Any], Any]:
    """Register a loss class (or factory) under ``name``; it is then accepted by ``create_loss`` and the
    ``loss.name`` config key and listed by ``list_losses()``.

    ``needs_counts``: the class takes ``(class_counts, num_samples, **kw)`` (from the train split) first.
    ``fixed``: keyword arguments this name always passes (e.g. ``label_policy="u-ones"``). Use as a
    decorator, ``@register_loss("mine")``, or call ``register_loss("alias", mode="x")(SomeLoss)``.
    """

    def deco(obj: Any) -> Any:
        desc = description or _first_sentence(obj.__doc__ or name)

        def build(class_counts: Any = None, num_samples: Any = None, **kw: Any) -> MaskedLoss:
            args = {**fixed, **kw}
            return obj(class_counts, num_samples, **args) if needs_counts else obj(**args)

        LOSSES[name] = LossEntry(name, build, desc, needs_counts)
        return obj

    return deco


def list_losses() -> list[str]:
    """Names accepted by ``create_loss``."""
    return sorted(LOSSES)


def create_loss(name: str, class_counts: Any = None, num_samples: Any = None, **kw: Any) -> MaskedLoss:
    """Build a registered loss by name (``list_losses()``); ``kw`` go to the module (e.g. ``tau``, ``beta``,
    ``reduction``). ``anr`` and ``db`` need ``class_counts`` [K] and ``num_samples`` N of the train split.
    ``llr`` / ``lla`` / ``llm`` take ``base`` (a loss name, default ``"bce"``), ``base_kw`` (dict), ``mode``,
    ``delta``, ``max_rate``, ``global_topk``; e.g. LTML's ANR-LLA is ``create_loss("lla", counts, N, base="anr")``.
    """
    entry = LOSSES.get(name.lower().replace("_", "-"))
    if entry is None:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(list_losses())}")
    return entry.build(class_counts, num_samples, **kw)


def _build_llr(class_counts: Any, num_samples: Any, base: str = "bce", base_kw: dict | None = None,
               **kw: Any) -> LargeLossReconsideration:
    """Large loss reconsideration (LTML) over a base loss (mode abandon = LLA | modify = LLM)."""
    base_kw = dict(base_kw or {})
    if "reduction" in kw:
        base_kw.setdefault("reduction", kw.pop("reduction"))
    if base.lower() in ("llr", "lla", "llm"):
        raise ValueError("llr cannot wrap itself")
    return LargeLossReconsideration(create_loss(base, class_counts, num_samples, **base_kw), **kw)


register_loss("bce")(BCELoss)
register_loss("u-ignore", label_policy="u-ignore",
              description="bce; labels built with U-Ignore (uncertain -> mask 0)")(BCELoss)
register_loss("u-zeros", label_policy="u-zeros", description="bce; labels built with U-Zeros (uncertain -> 0)")(BCELoss)
register_loss("u-ones", label_policy="u-ones", description="bce; labels built with U-Ones (uncertain -> 1)")(BCELoss)
register_loss("focal")(FocalLoss)
register_loss("gls")(GLSLoss)
register_loss("pce")(PCELoss)
register_loss("pu-rm", label_policy="u-ones", description="pce on labels built with the U-Ones policy (PU-RM)")(PCELoss)
register_loss("anr", needs_counts=True)(ANRLoss)
register_loss("db", needs_counts=True)(DBLoss)
register_loss("luvit")(LUViTLoss)
register_loss("llr", needs_counts=True)(_build_llr)
register_loss("lla", needs_counts=True, mode="abandon", description="llr with mode='abandon' (LLA)")(_build_llr)
register_loss("llm", needs_counts=True, mode="modify", description="llr with mode='modify' (LLM)")(_build_llr)
