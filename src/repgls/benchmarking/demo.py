"""``repgls demo``: the whole pipeline in minutes on a CPU, on bundled sample reports and a phantom world.

Steps: mine the bundled sample reports and print their findings; make a small phantom world; mine its
reports; build GLS lexicon rates and a hard-label U-Ones baseline; prepare the image cache; train a tiny
LU-ViT with the GLS loss and the same model with BCE on the U-Ones labels; evaluate both on the test split
against the report labels and the hidden truth; write one self-contained ``report.html`` and print the
comparison. It reuses :func:`repgls.bench` (one world, two methods, one seed), so a second run with the same
arguments reuses what is already on disk. All numbers come from the runs; nothing is hard-coded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls.benchmarking.run import bench
from repgls.benchmarking.spec import BenchConfig, MethodSpec, WorldSpec
from repgls.benchmarking.table import bench_table

__all__ = ["DEMO_METHODS", "DemoResult", "demo", "demo_config", "mine_samples", "sample_reports_path"]

#: The two methods the demo compares (same tiny LU-ViT, same world, same seed).
DEMO_METHODS = (
    MethodSpec(
        name="gls",
        policy="gls",
        rates="lexicon",
        loss="gls",
        loss_kwargs={"max_logit": 20.0},
        description="GLS loss on the lexicon rates (Rep-GLS)",
    ),
    MethodSpec(
        name="u-ones-bce",
        policy="u-ones",
        loss="bce",
        description="hard labels, uncertain -> 1 (CheXpert U-Ones), BCE",
    ),
)
FINDING_COLUMNS = ("study_id", "finding", "status", "certainty", "cue", "severity", "change", "typicality")


def sample_reports_path() -> Path:
    """The bundled sample reports CSV (study_id, findings, impression)."""
    return Path(str(resources.files("repgls.data") / "samples" / "example_reports.csv"))


def mine_samples(vocab: str = "chexpert14") -> pd.DataFrame:
    """Mine the bundled sample reports with the rule miner; one row per (study, finding), no report text."""
    from repgls.mining import mine_report

    df = pd.read_csv(sample_reports_path(), dtype=str).fillna("")
    rows: list[dict[str, Any]] = []
    for rec in df.itertuples(index=False):
        text = f"FINDINGS: {rec.findings}\nIMPRESSION: {rec.impression}"
        for f in mine_report(text, vocab=vocab, study_id=str(rec.study_id)):
            rows.append({k: f.get(k) for k in FINDING_COLUMNS})
    return pd.DataFrame(rows, columns=list(FINDING_COLUMNS))


def demo_config(
    n: int = 2000,
    size: int = 64,
    epochs: int = 15,
    seed: int = 0,
    batch_size: int = 32,
    model: str = "lu_vit_tiny",
    device: str = "auto",
) -> BenchConfig:
    """The bench config the demo runs: one phantom world, the two DEMO_METHODS, one seed."""
    return BenchConfig(
        name="demo",
        world=WorldSpec(n=n, size=size, seed=seed),
        base={
            "model": {"name": model},
            "data": {"batch_size": batch_size},
            "optim": {"lr": 3.0e-4, "warmup_steps": 100},  # a ViT from scratch: lr 1e-3 fails on some seeds
            "train": {"epochs": epochs, "device": device, "log_every": 10},
        },
        methods=[MethodSpec(**{**m.__dict__}) for m in DEMO_METHODS],
        seeds=[seed],
        n_boot=0,
    )


@dataclass
class DemoResult:
    """Files and numbers of a demo run."""

    out: Path
    samples: pd.DataFrame
    table: pd.DataFrame
    report: Path
    seconds: float


def _print_samples(df: pd.DataFrame, console: Any) -> None:
    from rich.table import Table

    t = Table(title="Bundled sample reports: mined findings (rule miner)", show_lines=False)
    for c in FINDING_COLUMNS:
        t.add_column(c, justify="right" if c == "certainty" else "left")
    for rec in df.itertuples(index=False):
        cells = []
        for c in FINDING_COLUMNS:
            v = getattr(rec, c)
            cells.append(f"{v:.2f}" if c == "certainty" and v is not None else ("" if v is None else str(v)))
        t.add_row(*cells)
    console.print(t)


def _print_table(table: pd.DataFrame, console: Any) -> None:
    from rich.table import Table

    t = Table(title="Demo: test split, one seed (numbers from this run)")
    cols = [
        ("auc_reference", "AUC reference"),
        ("auc_truth", "AUC truth"),
        ("ece_reference", "ECE reference"),
        ("ece_truth", "ECE truth"),
        ("auc_fg_truth", "AUC^FG truth"),
        ("bacc_truth", "bAcc truth"),
    ]
    t.add_column("method", no_wrap=True)
    for _, label in cols:
        t.add_column(label, justify="right")
    for method in table.index:
        vals = []
        for c, _ in cols:
            v = float(table.loc[method, f"{c}_mean"])
            vals.append(f"{v:.3f}" if np.isfinite(v) else "n/a")
        t.add_row(str(method), *vals)
    console.print(t)


def demo(
    out: str | os.PathLike = "demo_out",
    n: int = 2000,
    size: int = 64,
    epochs: int = 15,
    seed: int = 0,
    *,
    batch_size: int = 32,
    model: str = "lu_vit_tiny",
    device: str = "auto",
    progress: bool = True,
    console: Any = None,
) -> DemoResult:
    """Run the demo into ``out`` and return its table and files (see the module docstring).

    ``console``: a rich Console for the tables and step lines (default: a console on stderr).
    """
    import time

    from repgls.html_report import write_report

    if n < 50:
        raise ValueError(f"n must be >= 50 so that every split has images, got {n}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if console is None:
        from repgls.progress import stderr_console

        console = stderr_console()
    t0 = time.perf_counter()
    samples = mine_samples()
    _print_samples(samples, console)

    def log(msg: str) -> None:
        from rich.markup import escape

        console.print(f"[dim]·[/] {escape(msg)}")

    cfg = demo_config(
        n=n, size=size, epochs=epochs, seed=seed, batch_size=batch_size, model=model, device=device
    )
    res = bench(cfg, out=out, log=log, progress=progress, report=False)
    root = Path(res.out)
    evals = {r["method"]: [json.loads(Path(r["metrics"]).read_text(encoding="utf-8"))] for r in res.records}
    table = bench_table(evals)
    # report.html: method comparison + the GLS run's per-class, calibration and truth sections
    main = evals["gls"][0]
    pred = pd.read_parquet(Path(main["run"]) / "eval-test" / "predictions.parquet")
    classes = main["classes"]
    scores = pred[[f"prob:{c}" for c in classes]].to_numpy(dtype=float)
    y_lab = pred[[f"reference:{c}" for c in classes]].to_numpy(dtype=float)
    y_tru = (
        pred[[f"truth:{c}" for c in classes]].to_numpy(dtype=float) if f"truth:{classes[0]}" in pred else None
    )
    report = root / "report.html"
    write_report(
        report,
        main["vs_reference"],
        y_true=y_lab,
        scores=scores,
        truth=main.get("vs_truth"),
        y_truth=y_tru,
        runs={m: [e[0]["vs_reference"]] for m, e in evals.items()},
        runs_truth={m: [e[0]["vs_truth"]] for m, e in evals.items()} if main.get("vs_truth") else None,
        title="repgls demo: GLS vs hard labels on a phantom world",
        subtitle=f"{n} phantom studies · {size}px · {model} · {epochs} epochs · seed {seed} · "
        "details below are the GLS run's",
    )
    table.to_csv(root / "results.csv", float_format="%.6g")
    _print_table(table, console)
    secs = time.perf_counter() - t0
    console.print(f"report: [bold]{report}[/]   table: {root / 'results.csv'}   ({secs:.0f}s)")
    return DemoResult(out=root, samples=samples, table=table, report=report, seconds=secs)
