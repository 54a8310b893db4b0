"""Loss modules: ``loss(outputs, batch) -> scalar`` with masking and reduction over supervised elements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repgls.losses.functional import (
    ANR_VARIANTS,
    anr,
    bce,
    class_bias,
    db,
    db_rebalance_weight,
    focal,
    gls,
    pce,
    up,
)

__all__ = ["ANRLoss", "BCELoss", "DBLoss", "FocalLoss", "GLSLoss", "LUViTLoss", "MaskedLoss", "PCELoss",
           "reduce_masked", "targets"]


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


def targets(outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
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
        _, _, mask = targets(outputs, batch)
        return reduce_masked(self.elementwise(outputs, batch), mask, self.reduction)


class BCELoss(MaskedLoss):
    """Masked BCE-with-logits on y (``bce``). Also serves the u-ignore / u-zeros / u-ones label policies."""

    def __init__(self, reduction: str = "mean", label_policy: str | None = None) -> None:
        super().__init__(reduction)
        self.label_policy = label_policy

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = targets(outputs, batch)
        return bce(outputs["logits"], y)


class FocalLoss(MaskedLoss):
    """Masked focal loss on y (``focal``)."""

    def __init__(self, gamma: float = 2.0, balance: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.gamma, self.balance = gamma, balance

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = targets(outputs, batch)
        return focal(outputs["logits"], y, self.gamma, self.balance)


class GLSLoss(MaskedLoss):
    """Masked GLS with per-sample, per-class rates from ``batch["r"]`` (``gls``)."""

    def __init__(self, max_logit: float | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.max_logit = max_logit

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, r, _ = targets(outputs, batch)
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
        y, _, _ = targets(outputs, batch)
        return pce(outputs["logits"], y, self.tau)


def _counts(class_counts: Any, num_samples: Any, name: str) -> tuple[Tensor, float]:
    if class_counts is None or num_samples is None:
        raise ValueError(f"loss {name!r} needs class_counts [K] and num_samples N (from the train split)")
    return torch.as_tensor(class_counts, dtype=torch.float32).flatten(), float(num_samples)


class ANRLoss(MaskedLoss):
    """Masked ANR-BCE with its focal term (``anr``; LTML); v = log(N / n_i - 1) from the train split's counts.

    ``variant``: ``"paper"`` (default: the paper's equations and their gradient) or ``"ltml-code"`` (the
    authors' code: lambda from the raw logit, detached 1/lambda); see :func:`anr`. ``reweight`` multiplies by
    DB's re-balanced weight (the code path always has one); None = as the variant (paper: no, code: yes).
    ``balance`` is a constant factor (the code's focal ``balance_param``).
    """

    def __init__(
        self,
        class_counts: Any,
        num_samples: Any,
        beta: float = 10.0,
        gamma: float = 2.0,
        variant: str = "paper",
        bias_scale: float = 1.0,
        reweight: bool | None = None,
        balance: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        if variant not in ANR_VARIANTS:
            raise ValueError(f"anr variant must be one of {ANR_VARIANTS}, got {variant!r}")
        counts, n = _counts(class_counts, num_samples, "anr")
        self.register_buffer("counts", counts)
        self.register_buffer("v", class_bias(counts, n))
        self.beta, self.gamma, self.variant, self.bias_scale = beta, gamma, variant, bias_scale
        self.reweight = (variant == "ltml-code") if reweight is None else bool(reweight)
        self.balance = balance

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, _ = targets(outputs, batch)
        loss = self.balance * anr(outputs["logits"], y, self.v, self.beta, self.gamma, self.variant, self.bias_scale)
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
        y, _, _ = targets(outputs, batch)
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
        y, r, mask = targets(outputs, batch)
        lg = gls(outputs["logits"], y, r, self.max_logit)
        rate = up(outputs["rate"])
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
        _, _, mask = targets(outputs, batch)
        lg, lr, m_rate = self._parts(outputs, batch)
        return reduce_masked(lg, mask, self.reduction) + self.rate_weight * reduce_masked(
            lr, m_rate, self.reduction
        )
