"""The bench table: method x metric, mean and sample std over seeds, as a DataFrame and as Markdown.

Columns come from the metric registry (:func:`repgls.metrics.list_metrics`, each metric on the sides it
names: ``truth`` = hidden truth, ``reference`` = the policy-free reference from the reports) plus the head /
medium / tail AUC against truth. Runs are put in one table only when they were scored on identical labels
(:func:`check_same_reference`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["bench_table", "check_same_reference", "comparison_markdown", "table_columns", "table_markdown"]

GROUPS = ("head", "medium", "tail")


def _short(key: str) -> str:
    """Column stem of a summary key: ``mean_auc`` -> ``auc``, ``mean_auc_fg`` -> ``auc_fg``."""
    return key.removeprefix("mean_")


def table_columns() -> list[tuple[str, str, str, bool]]:
    """(column, side, summary key, higher is better) of the bench table; side = "truth" | "reference"."""
    from repgls.metrics import list_metrics

    cols: list[tuple[str, str, str, bool]] = []
    for m in list_metrics():
        cols += [(f"{_short(m.key)}_{side}", side, m.key, m.higher_is_better) for side in m.sides]
        if m.key == "mean_auc":
            cols += [(f"{g}_auc_truth", "truth", f"{g}_auc", True) for g in GROUPS]
    return cols


def check_same_reference(evals: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Refuse to compare runs scored on different labels: every evaluation must carry the same
    ``reference_sha256`` (and the same ``truth_sha256``), i.e. the same images and the same label arrays."""
    for key in ("reference_sha256", "truth_sha256"):
        seen: dict[Any, list[str]] = {}
        for method, runs in evals.items():
            for i, e in enumerate(runs):
                seen.setdefault(e.get(key), []).append(f"{method}[{i}]")
        if len(seen) > 1:
            groups = "; ".join(f"{str(h)[:12]}: {', '.join(v[:4])}{' ...' if len(v) > 4 else ''}"
                               for h, v in seen.items())
            raise ValueError(f"these runs were scored on different references ({key}), so they cannot share a "
                             f"table: {groups}. Evaluate them with the same --reference on the same split")


def bench_table(evals: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """Method x metric table: ``<col>_mean`` / ``<col>_std`` (sample std over seeds) for :func:`table_columns`.

    ``evals`` maps a method to its :func:`repgls.evaluation.evaluate` results (one per seed).
    """
    from repgls.metrics import summary_table

    check_same_reference(evals)
    ref = summary_table({m: [e["vs_reference"] for e in v] for m, v in evals.items()})
    have_truth = all(e.get("vs_truth") for v in evals.values() for e in v)
    truth = summary_table({m: [e["vs_truth"] for e in v] for m, v in evals.items()}) if have_truth else None
    out = pd.DataFrame(index=ref.index)
    out["n_seeds"] = ref["n_runs"].astype(int)
    for col, side, key, _ in table_columns():
        src = ref if side == "reference" else truth
        for stat in ("mean", "std"):
            name = f"{key}_{stat}"
            out[f"{col}_{stat}"] = src[name] if src is not None and name in src else math.nan
    return out


def table_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """Markdown table of :func:`bench_table`: mean +- sample std over seeds per column. No "best" marks: a
    difference between two rows is judged by the paired comparison (:func:`comparison_markdown`), not here."""
    columns = table_columns()
    head = ["method", "seeds"] + [c for c, *_ in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in table.index:
        cells = [str(method), str(int(table.loc[method, "n_seeds"]))]
        for col, *_ in columns:
            m, s = float(table.loc[method, f"{col}_mean"]), float(table.loc[method, f"{col}_std"])
            if not math.isfinite(m):
                cells.append("n/a")
                continue
            cells.append(f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if math.isfinite(s) else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def gap_note(comp: pd.DataFrame) -> str | None:
    """Why the gap recovered is n/a, when it is: the oracle is not surely better than the first baseline."""
    if "gap_recovered" not in comp.columns or comp.attrs.get("gap_defined", True):
        return None
    return ("Gap recovered n/a: the oracle (trained on the truth) is not surely better than the baseline (its "
            "interval holds 0), so these labels already give what the truth gives and there is no gap to recover.")


def ci_cell(row: Any, key: str, digits: int = 3, signed: bool = False) -> str:
    """``row[key]`` with its ``[key_lo, key_hi]`` interval when both are finite; ``n/a`` when the value is not."""
    v, lo, hi = row.get(key), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if v is None or not np.isfinite(v):
        return "n/a"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    txt = fmt.format(v)
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        txt += f" [{fmt.format(lo)}, {fmt.format(hi)}]"
    return txt


def comparison_markdown(comp: pd.DataFrame, baselines: Sequence[str], digits: int = 3) -> str:
    """Markdown of :func:`repgls.benchmarking.compare.comparison`: mean AUC, paired differences against each
    baseline and the gap recovered, each with its 95% interval (patients and seeds resampled, paired)."""
    has_gap = "gap_recovered" in comp.columns
    head = ["method", "mean AUC"] + [f"Δ vs {b}" for b in baselines] + (["gap recovered"] if has_gap else [])
    lines = [f"Mean AUC against the {comp.attrs.get('side', 'truth')} ({comp.attrs.get('n_seeds', '?')} seeds, "
             f"{comp.attrs.get('n_patients', '?')} test patients); 95% intervals from {comp.attrs.get('n_boot', '?')} "
             "paired replicates (patients and seeds resampled). A difference whose interval holds 0 is not a "
             "difference.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, row in comp.iterrows():
        r = row.to_dict()
        cells = [str(method), ci_cell(r, "auc", digits)] + [ci_cell(r, f"d_auc_vs_{b}", digits, True) for b in baselines]
        if has_gap:
            cells.append(ci_cell(r, "gap_recovered", 2))
        lines.append("| " + " | ".join(cells) + " |")
    note = gap_note(comp)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")
