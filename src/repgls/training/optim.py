"""Optimiser and learning-rate schedule: AdamW / Adam / SGD with no weight decay on 1-d parameters, linear
warm-up then cosine or constant, per optimiser step."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from repgls.config import Config

__all__ = ["lr_factor", "make_optimizer", "make_scheduler", "param_groups"]


def lr_factor(step: int, total: int, warmup: int, init: float, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based): linear warm-up, then cosine/constant."""
    if warmup > 0 and step < warmup:
        return init + (1.0 - init) * (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, tokens and embeddings (1-d parameters)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith((".cls_token", ".pos_embed")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = param_groups(model, o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=o.betas)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)


def make_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """LambdaLR over optimiser steps: warm-up from ``warmup_init_factor * lr``, then the configured schedule."""
    oc = cfg.optim
    min_ratio = oc.min_lr / oc.lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total_steps, oc.warmup_steps, oc.warmup_init_factor, oc.schedule, min_ratio),
    )
