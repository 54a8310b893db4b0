"""The loss registry: ``register_loss`` / ``create_loss`` / ``list_losses`` (one registration per loss)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from repgls.losses.llr import LargeLossReconsideration
from repgls.losses.modules import ANRLoss, BCELoss, DBLoss, FocalLoss, GLSLoss, LUViTLoss, MaskedLoss, PCELoss

__all__ = ["LOSSES", "LossEntry", "create_loss", "list_losses", "register_loss"]


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
