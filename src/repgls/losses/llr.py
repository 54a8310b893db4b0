"""Large loss reconsideration (LTML section 3.1): abandon (LLA) or relabel (LLM) the largest negative losses."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from repgls.losses.modules import MaskedLoss, targets

__all__ = ["LLR_SCHEDULES", "LargeLossReconsideration", "llr_k", "llr_rate"]


LLR_SCHEDULES = ("fraction", "per-epoch")


def llr_rate(epoch: int, epochs: int = 8, schedule: str = "fraction", final_rate: float = 0.8,
             delta: float = 0.1, max_rate: float = 0.8) -> float:
    """Share of a batch's B*K entries whose negative losses are reconsidered at 0-based ``epoch``.

    LTML's code (``noise_resample_loss*.py``): clean_rate = 1 - 0.1 * epoch, i.e. 10 % more per epoch, capped at
    80 %, in an 8-epoch recipe. ``schedule="fraction"`` (default) keeps that trajectory as a fraction of
    training: ``min(max_rate, final_rate * epoch / epochs)`` (= 0.1 * epoch for 8 epochs), so a 30-epoch run
    reconsiders the same share at the same point of training. ``schedule="per-epoch"`` is the code's absolute
    form, ``min(max_rate, delta * epoch)`` (a long run reconsiders 80 % from epoch 8 on). Epoch 0: nothing.
    """
    if schedule not in LLR_SCHEDULES:
        raise ValueError(f"llr schedule must be one of {LLR_SCHEDULES}, got {schedule!r}")
    if epoch <= 0:
        return 0.0
    if schedule == "per-epoch":
        return min(delta * epoch, max_rate)
    return min(final_rate * epoch / max(1, epochs), max_rate)


def llr_k(num_elements: int, rate: float) -> int:
    """Number of negative losses to reconsider among ``num_elements`` = B*K entries: ``ceil(B*K * rate)``."""
    if rate <= 0:
        return 0
    return min(num_elements, math.ceil(num_elements * rate - 1e-9))


class LargeLossReconsideration(MaskedLoss):
    """LLR over any base loss (LTML section 3.1; code: ``forward`` in ``noise_resample_loss*.py``).

    Candidates are supervised negatives (y = 0, mask 1). Per batch the k = ``llr_k(B*K, llr_rate(epoch, ...))``
    candidates with the largest base loss are ``mode="abandon"`` (LLA: their loss set to 0) or
    ``mode="modify"`` (LLM: their loss recomputed with label 1). The rate follows ``schedule`` (see
    :func:`llr_rate`; ``set_epoch(epoch, epochs)``, 0-based; epoch 0 leaves the loss unchanged). The
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
        schedule: str = "fraction",
        final_rate: float = 0.8,
        delta: float = 0.1,
        max_rate: float = 0.8,
        global_topk: bool = True,
    ) -> None:
        super().__init__(base.reduction)
        if mode not in ("abandon", "modify"):
            raise ValueError("llr mode must be 'abandon' (LLA) or 'modify' (LLM)")
        llr_rate(1, 8, schedule)  # validates the schedule name
        self.base, self.mode, self.schedule = base, mode, schedule
        self.final_rate, self.delta, self.max_rate = final_rate, delta, max_rate
        self.global_topk = global_topk
        self.epoch, self.epochs = 0, 8
        self.last_selected: Tensor | None = None

    def set_epoch(self, epoch: int, epochs: int | None = None) -> None:
        """Set the 0-based epoch (and the run's number of epochs, default 8: LTML's recipe) that drive k."""
        self.epoch = int(epoch)
        if epochs is not None:
            self.epochs = int(epochs)

    @property
    def rate(self) -> float:
        """Share of B*K entries reconsidered at the current epoch."""
        return llr_rate(self.epoch, self.epochs, self.schedule, self.final_rate, self.delta, self.max_rate)

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
            k = llr_k(int(sum(int(s) for s in sizes)), self.rate)
            k = min(k, int(torch.isfinite(allv).sum()))
            if k == 0:
                return torch.zeros_like(cand)
            thr = torch.topk(allv, k).values[-1]
            return cand & (loss.detach() >= thr)
        k = min(llr_k(vals.numel(), self.rate), int(cand.sum()))
        sel = torch.zeros(vals.numel(), dtype=torch.bool, device=vals.device)
        if k > 0:
            sel[torch.topk(vals, k).indices] = True
        return sel.view_as(cand)

    def elementwise(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        y, _, mask = targets(outputs, batch)
        loss = self.base.elementwise(outputs, batch)
        if self.rate <= 0:
            self.last_selected = torch.zeros_like(loss, dtype=torch.bool)
            return loss
        cand = (y < 0.5) & (mask > 0)
        sel = self._select(loss, cand)
        self.last_selected = sel
        if self.mode == "abandon":
            return torch.where(sel, torch.zeros_like(loss), loss)
        flipped = self.base.elementwise(outputs, {**batch, "y": torch.where(sel, 1.0 - y, y)})
        return torch.where(sel, flipped, loss)
