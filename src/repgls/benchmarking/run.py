"""``repgls.bench(config)``: every (method, seed) of a benchmark on one phantom world, then the table.

Writes under the bench's output folder the shared world artefacts (:mod:`repgls.benchmarking.world`), one run
folder per (method, seed) (:mod:`repgls.benchmarking.methods`), and ``results.csv``, ``results.md``,
``runs.jsonl`` and ``report.html``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from repgls.benchmarking.methods import load_eval, run_method
from repgls.benchmarking.spec import BenchConfig, load_bench_config
from repgls.benchmarking.table import bench_table, table_markdown
from repgls.benchmarking.world import Log, prepare_world, say

__all__ = ["BenchResult", "bench"]


@dataclass
class BenchResult:
    """What :func:`bench` produced."""

    out: Path
    table: pd.DataFrame
    records: list[dict[str, Any]]
    files: dict[str, Path]
    seconds: float


def _select_methods(bench_cfg: BenchConfig, methods: Sequence[str] | None) -> None:
    if not methods:
        return
    unknown = set(methods) - {m.name for m in bench_cfg.methods}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; the config has {[m.name for m in bench_cfg.methods]}")
    bench_cfg.methods = [m for m in bench_cfg.methods if m.name in set(methods)]


def _write_outputs(bench_cfg: BenchConfig, root: Path, table: pd.DataFrame, records: list[dict[str, Any]],
                   evals: dict[str, list[dict[str, Any]]], report: bool) -> dict[str, Path]:
    """results.csv, results.md, runs.jsonl and (optionally) report.html."""
    files = {"csv": root / "results.csv", "markdown": root / "results.md", "runs": root / "runs.jsonl"}
    table.to_csv(files["csv"], float_format="%.6g")
    w = bench_cfg.world
    md = (f"# {bench_cfg.name}\n\nWorld: {w.n} studies, {w.size}px, vocab {w.vocab}, prevalence {w.prevalence}, "
          f"seed {w.seed}; seeds {bench_cfg.seeds}; test split; mean ± sample std over seeds.\n\n"
          + table_markdown(table))
    files["markdown"].write_text(md, encoding="utf-8")
    with open(files["runs"], "w", encoding="utf-8") as f:
        for rec in records:
            ev = load_eval(rec)
            row = {**rec, "reference": ev["vs_reference"]["summary"],
                   "truth": (ev.get("vs_truth") or {}).get("summary")}
            f.write(json.dumps(row, default=str) + "\n")
    if report:
        from repgls.html_report import write_report

        files["report"] = root / "report.html"
        have_truth = all(e.get("vs_truth") for v in evals.values() for e in v)
        write_report(files["report"], runs={m: [e["vs_reference"] for e in v] for m, v in evals.items()},
                     runs_truth={m: [e["vs_truth"] for e in v] for m, v in evals.items()} if have_truth else None,
                     title=f"repgls bench: {bench_cfg.name}",
                     subtitle=f"{w.n} phantom studies · {w.size}px · {w.vocab} · seeds {bench_cfg.seeds} · test split")
    return files


def bench(
    config: BenchConfig | Mapping[str, Any] | str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    overrides: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    log: Log | None = None,
    progress: bool = True,
    device: str | None = None,
    report: bool = True,
) -> BenchResult:
    """Run a benchmark: world once, every (method, seed) once (finished runs are reused), then the table.

    Args:
        config: bench YAML path, dict or :class:`BenchConfig`. out: output folder (default: the config's).
        overrides: ``key=value`` (dotted YAML keys). methods: only these method names.
        log: called with one line per step (never report text). progress: progress bars.
        device: trainer device override (auto | cpu | cuda). report: also write report.html.
    """
    t0 = time.perf_counter()
    bench_cfg = load_bench_config(config, overrides)
    _select_methods(bench_cfg, methods)
    root = Path(out if out is not None else bench_cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench_config.json").write_text(json.dumps({**asdict(bench_cfg), "out": str(root)}, indent=2,
                                                       default=str), encoding="utf-8")
    world = prepare_world(bench_cfg.world, root, log=log, progress=progress,
                          prepare_workers=bench_cfg.prepare_workers)
    records: list[dict[str, Any]] = []
    evals: dict[str, list[dict[str, Any]]] = {}
    total = len(bench_cfg.methods) * len(bench_cfg.seeds)
    for k, (method, seed) in enumerate(((m, s) for m in bench_cfg.methods for s in bench_cfg.seeds), start=1):
        say(log, f"run {k}/{total}")
        rec = run_method(bench_cfg, method, seed, world, log=log, progress=progress, device=device)
        records.append(rec)
        evals.setdefault(method.name, []).append(load_eval(rec))
    table = bench_table(evals)
    files = _write_outputs(bench_cfg, root, table, records, evals, report)
    return BenchResult(out=root, table=table, records=records, files=files, seconds=time.perf_counter() - t0)
