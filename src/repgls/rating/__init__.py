"""The rates stage: findings -> per-study labels y, GLS rates r and certainties p (labels.parquet), and the RGN.

``repgls.rates(findings, ...)`` (= :func:`repgls.rating.build.rates`) is the stage function. Modules:
``findings`` (readers of findings tables and study lists), ``mapping`` (certainty p -> y, r; label policies),
``labels`` (the labels.parquet format: :class:`LabelTable`, :func:`read_labels`, :func:`write_labels`),
``build`` (the ``rates`` function), ``rgn`` (the Rate Generation Network; imports torch, loaded only when used).
"""

from __future__ import annotations

from repgls.rating.build import rates
from repgls.rating.findings import read_findings, read_study_ids
from repgls.rating.labels import LabelTable, read_labels, write_labels
from repgls.rating.mapping import DEFAULT_R0, POLICIES, gls_rate, gls_target, map_mentions

__all__ = ["DEFAULT_R0", "POLICIES", "LabelTable", "gls_rate", "gls_target", "map_mentions", "rates",
           "read_findings", "read_labels", "read_study_ids", "write_labels"]
