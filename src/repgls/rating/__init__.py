"""Rates: findings -> per-study labels y, GLS rates r and certainties p (labels.parquet), and the RGN.

``from repgls.rates import rates`` gives the function; the package itself is also callable
(``repgls.rates(findings, ...)`` works whether ``repgls.rates`` resolves to this package, which Python
binds on ``repgls`` once the package is imported, or to the function via the lazy export).
The RGN (:mod:`repgls.rates.rgn`) imports torch and is loaded only when used.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from repgls.rates.build import rates, read_findings, read_study_ids
from repgls.rates.labels import LabelTable, read_labels, write_labels
from repgls.rates.mapping import DEFAULT_R0, POLICIES, gls_rate, gls_target, map_mentions

__all__ = ["DEFAULT_R0", "POLICIES", "LabelTable", "gls_rate", "gls_target", "map_mentions", "rates",
           "read_findings", "read_labels", "read_study_ids", "write_labels"]


class _CallablePackage(types.ModuleType):
    """Makes ``repgls.rates(...)`` call :func:`rates` even when it resolves to the package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return rates(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
