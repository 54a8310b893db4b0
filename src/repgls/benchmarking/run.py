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

from repgls.benchmarking.methods import Start, load_eval, run_method
from repgls.benchmarking.spec import BenchConfig, load_bench_config
from repgls.benchmarking.table import bench_table, comparison_markdown, table_markdown
from repgls.benchmarking.world import Log, prepare_world, say

__all__ = ["BenchResult", "bench"]


@dataclass
class BenchResult:
    """What :func:`bench` produced: the table (mean +- std over seeds), the paired comparison (None without
    baselines), one record per run, the files written."""

    out: Path
    table: pd.DataFrame
    records: list[dict[str, Any]]
    files: dict[str, Path]
    seconds: float
    comparison: pd.DataFrame | None = None


def _start(bench_cfg: BenchConfig, root: Path, world: Any, *, log: Log | None, progress: bool,
           device: str | None) -> Start:
    """Where every method starts: scratch, or the pretrained backbone (its features when frozen)."""
    bb = bench_cfg.backbone
    if bb is None:
        return Start()
    from repgls.benchmarking.backbone import backbone_features, pretrain_backbone

    run = pretrain_backbone(bb, root, log=log, progress=progress, device=device,
                            prepare_workers=bench_cfg.prepare_workers)
    if not bb.freeze:
        return Start(pretrained=run / "checkpoints" / "best.safetensors", backbone_model=bb.model)
    say(log, "backbone features of the evaluation world ...")
    return Start(features=backbone_features(run, world, device=device), probe=bb.probe)


def _select_methods(bench_cfg: BenchConfig, methods: Sequence[str] | None) -> None:
    if not methods:
        return
    unknown = set(methods) - {m.name for m in bench_cfg.methods}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; the config has {[m.name for m in bench_cfg.methods]}")
    bench_cfg.methods = [m for m in bench_cfg.methods if m.name in set(methods)]
    bench_cfg.baselines = [b for b in bench_cfg.baselines if b in set(methods)]  # compare what was run
    if bench_cfg.oracle not in set(methods):
        bench_cfg.oracle = None


def _write_outputs(bench_cfg: BenchConfig, root: Path, table: pd.DataFrame, records: list[dict[str, Any]],
                   evals: dict[str, list[dict[str, Any]]], report: bool, comp: pd.DataFrame | None
                   ) -> dict[str, Path]:
    """results.csv, results.md, runs.jsonl, comparison.csv (with baselines) and (optionally) report.html."""
    files = {"csv": root / "results.csv", "markdown": root / "results.md", "runs": root / "runs.jsonl"}
    table.to_csv(files["csv"], float_format="%.6g")
    w = bench_cfg.world
    md = (f"# {bench_cfg.name}\n\nWorld: {w.n} studies, {w.size}px, vocab {w.vocab}, prevalence {w.prevalence}, "
          f"seed {w.seed}, hedge fraction {w.hedge_fraction if w.hedge_fraction is not None else 'default'}; "
          f"seeds {bench_cfg.seeds}; test split; mean ± sample std over seeds.\n\n")
    if comp is not None:
        files["comparison"] = root / "comparison.csv"
        comp.to_csv(files["comparison"], float_format="%.6g")
        md += comparison_markdown(comp, bench_cfg.baselines) + "\n"
    md += table_markdown(table)
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
                     comparison=comp, baselines=bench_cfg.baselines, oracle=bench_cfg.oracle,
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
    start = _start(bench_cfg, root, world, log=log, progress=progress, device=device)
    records: list[dict[str, Any]] = []
    evals: dict[str, list[dict[str, Any]]] = {}
    total = len(bench_cfg.methods) * len(bench_cfg.seeds)
    for k, (method, seed) in enumerate(((m, s) for m in bench_cfg.methods for s in bench_cfg.seeds), start=1):
        say(log, f"run {k}/{total}")
        rec = run_method(bench_cfg, method, seed, world, log=log, progress=progress, device=device, start=start)
        records.append(rec)
        evals.setdefault(method.name, []).append(load_eval(rec))
    table = bench_table(evals)
    comp = None
    if bench_cfg.baselines:
        from repgls.benchmarking.compare import comparison

        side = "truth" if all(e.get("vs_truth") for v in evals.values() for e in v) else "reference"
        comp = comparison(records, bench_cfg.baselines, bench_cfg.oracle, side=side, n_boot=bench_cfg.paired_boot)
    files = _write_outputs(bench_cfg, root, table, records, evals, report, comp)
    return BenchResult(out=root, table=table, records=records, files=files, seconds=time.perf_counter() - t0,
                       comparison=comp)
