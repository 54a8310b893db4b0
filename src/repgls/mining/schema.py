"""The findings schema: one row per (study, finding) mentioned. Shared by the rule and LLM miners.

Columns (see docs/schemas.md "findings.parquet"):

=================  =========  ===================================================================
column             type       meaning
=================  =========  ===================================================================
study_id           string     the report's id
finding            string     canonical class name of the vocabulary
status             string     positive | negative | uncertain
certainty          float32    probability the wording conveys that the finding is present (0..1)
cue                string     hedge or negation phrase that set the status ("" for plain positives)
severity           string     none | trace | mild | moderate | severe (ordinal)
severity_cue       string     the severity word as written ("small", "mild-to-moderate", ...)
change             string     none | new | worsened | improved | stable | resolved
change_cue         string     the change word as written ("increased", "unchanged", ...)
typicality         string     typical | atypical (PU-RM Table 1); "" unless status is positive/uncertain
sentence           string     the sentence of the kept mention
start, end         int32      character span of the kept mention in the original text
n_mentions         int16      how many mentions were merged into this row
source             string     rules | llm:<model>
lexicon_version    string     version of the vocabulary + cue lexicon (or prompt) that produced it
=================  =========  ===================================================================
"""

from __future__ import annotations

import pyarrow as pa

STATUSES = ("positive", "negative", "uncertain")
SEVERITIES = ("none", "trace", "mild", "moderate", "severe")
CHANGES = ("none", "new", "worsened", "improved", "stable", "resolved")
TYPICALITIES = ("typical", "atypical", "")

FINDINGS_SCHEMA = pa.schema(
    [
        ("study_id", pa.string()),
        ("finding", pa.string()),
        ("status", pa.string()),
        ("certainty", pa.float32()),
        ("cue", pa.string()),
        ("severity", pa.string()),
        ("severity_cue", pa.string()),
        ("change", pa.string()),
        ("change_cue", pa.string()),
        ("typicality", pa.string()),
        ("sentence", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("n_mentions", pa.int16()),
        ("source", pa.string()),
        ("lexicon_version", pa.string()),
    ]
)
FINDINGS_COLUMNS = tuple(FINDINGS_SCHEMA.names)


def empty_findings_table() -> pa.Table:
    """A zero-row table with the findings schema."""
    return FINDINGS_SCHEMA.empty_table()


def validate_findings(table: pa.Table, where: str = "findings") -> pa.Table:
    """Check columns and enumerations; return the table cast to ``FINDINGS_SCHEMA``.

    Raises:
        ValueError: naming the missing column, or the first row with a bad value.
    """
    missing = [c for c in FINDINGS_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; has {table.column_names}")
    table = table.select(list(FINDINGS_COLUMNS)).cast(FINDINGS_SCHEMA)
    for col, allowed in (("status", STATUSES), ("severity", SEVERITIES), ("change", CHANGES),
                         ("typicality", TYPICALITIES)):
        values = table.column(col).to_pylist()
        for i, v in enumerate(values):
            if v not in allowed:
                raise ValueError(f"{where}: row {i}: {col}={v!r} is not one of {allowed}")
    cert = table.column("certainty").to_pylist()
    for i, v in enumerate(cert):
        if v is None or not (0.0 <= v <= 1.0):
            raise ValueError(f"{where}: row {i}: certainty={v!r} is not in [0, 1]")
    return table
