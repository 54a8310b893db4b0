"""The metric registry: one table of key / label / direction that eval, report.html and the bench read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


# ---------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Metric:
    """A summary metric: its key in ``metrics.json`` ``summary``, how tables label it, and its direction.

    Built-in metrics (``fn`` None) are computed by :func:`score` itself, vectorised and bootstrapped with
    every replicate at once. A registered metric gives ``fn(y [N, K], scores [N, K], *, typical, thresholds)
    -> float`` (NaN when undefined); :func:`score` calls it and bootstraps it by resampling rows.
    ``sides``: which scorings the bench table shows it against ("truth": hidden truth, "reference": the
    policy-free reference of :mod:`repgls.evaluation.reference`).
    """

    key: str
    label: str
    higher_is_better: bool
    fn: Callable[..., float] | None = None
    html: str = ""
    sides: tuple[str, ...] = ("truth",)

    @property
    def html_label(self) -> str:
        return self.html or self.label


METRICS: dict[str, Metric] = {}


def register_metric(key: str, label: str, higher_is_better: bool, fn: Callable[..., float] | None = None, *,
                    html: str = "", sides: Sequence[str] = ("truth",)) -> Metric:
    """Register a summary metric; it then appears in ``metrics.json``, ``repgls eval``, report.html and the
    bench table. Re-registering a key replaces it. Returns the :class:`Metric`."""
    if not key.isidentifier():
        raise ValueError(f"metric key {key!r} must be an identifier")
    m = Metric(key, label, bool(higher_is_better), fn, html, tuple(sides))
    METRICS[key] = m
    return m


def list_metrics() -> list[Metric]:
    """Registered summary metrics, in registration order (built-ins first)."""
    return list(METRICS.values())


def metric_keys() -> tuple[str, ...]:
    """Keys of every registered summary metric (each gets a bootstrap interval ``<key>_ci``)."""
    return tuple(METRICS)


register_metric("mean_auc", "Mean AUC", True, sides=("truth", "reference"))
register_metric("bacc", "bAcc (val. threshold)", True, html="Balanced accuracy (val. threshold)")
register_metric("bacc_logit0", "bAcc (logit > 0)", True, html="Balanced accuracy (logit &gt; 0)", sides=())
register_metric("mean_auc_fg", "AUC^FG", True, html="AUC<sup>FG</sup> (typical vs atypical)")
register_metric("ece", "ECE", False, sides=("truth", "reference"))
register_metric("brier", "Brier", False, html="Brier score", sides=())
