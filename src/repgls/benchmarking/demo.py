"""``repgls demo``: the whole pipeline in minutes on a CPU, and its answer to "did report-guided labels help?".

Steps: mine the bundled sample reports and print their findings; pretrain a small backbone on one phantom world
(a stand-in for ImageNet pretraining); make a *separate* evaluation world and mine its reports; build labels
four ways (the hidden truth for an oracle, hard U-Ones labels, GLS rates with and without the sharpening
offset); train each method's heads on the frozen backbone's features for several seeds; score every run on the
same test images against the truth; write one self-contained ``report.html`` whose first section is the paired
comparison (mean AUC, difference to U-Ones and gap recovered towards the oracle, with 95% intervals) and print
it. It reuses :func:`repgls.bench`, so a second run with the same arguments reuses what is on disk. Every number
comes from the runs; nothing is hard-coded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from repgls.benchmarking.run import bench
from repgls.benchmarking.spec import BackboneSpec, BenchConfig, MethodSpec, WorldSpec
from repgls.benchmarking.table import ci_cell, gap_note

__all__ = ["DEMO_METHODS", "VISIBLE_CLASSES", "DemoResult", "demo", "demo_config", "mine_samples",
           "sample_reports_path"]

#: The methods the demo compares (same backbone features, same world, same seeds).
DEMO_METHODS = (
    MethodSpec(name="oracle", policy="truth", loss="bce",
               description="trained on the hidden truth: the most any labelling could give"),
    MethodSpec(name="u-ones", policy="u-ones", loss="bce",
               description="hard labels, uncertain -> 1 (CheXpert U-Ones), BCE"),
    MethodSpec(name="gls", policy="gls", rates="lexicon", loss="gls", loss_kwargs={"max_logit": 20.0},
               description="Rep-GLS: GLS loss on lexicon rates (definite statements sharpened, r0 = -0.2)"),
    MethodSpec(name="gls-soft", policy="gls", rates="lexicon", r0=0.0, loss="gls",
               description="GLS on lexicon rates without the sharpening offset (r0 = 0)"),
)
#: The findings a CPU-sized backbone sees at 64 px (per-class AUC >= 0.75 on its pretraining world's validation
#: split; the others are near chance for every method: docs/results.md, configs/bench/phantom-small.yaml).
VISIBLE_CLASSES = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Edema", "Pleural Effusion", "Support Devices")
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


def demo_config(n: int = 3000, size: int = 64, epochs: int = 30, seed: int = 0, seeds: int = 5,
                backbone_n: int = 6000, backbone_epochs: int = 12, model: str = "lu_vit_tiny",
                device: str = "auto") -> BenchConfig:
    """The bench config the demo runs: a backbone world, an evaluation world, DEMO_METHODS x ``seeds`` seeds.

    ``epochs``: epochs of each method's heads; ``backbone_epochs``: of the backbone's pretraining. The defaults are
    those of ``configs/bench/phantom-small.yaml`` (the power bench), with four of its methods.
    """
    return BenchConfig(
        name="demo",
        world=WorldSpec(n=n, size=size, seed=seed, workers=2),
        backbone=BackboneSpec(world=WorldSpec(n=backbone_n, size=size, seed=seed + 1001, workers=2), model=model,
                              epochs=backbone_epochs, train={"train": {"device": device}}),
        base={
            "data": {"batch_size": 64, "classes": list(VISIBLE_CLASSES)},
            "optim": {"lr": 1.0e-3, "weight_decay": 1.0e-4, "warmup_steps": 0},
            "train": {"epochs": epochs, "device": device, "log_every": 50},
        },
        methods=[MethodSpec(**{**m.__dict__}) for m in DEMO_METHODS],
        seeds=list(range(seed, seed + seeds)),
        oracle="oracle",
        baselines=["u-ones"],
        paired_boot=1000,
        prepare_workers=2,
    )


@dataclass
class DemoResult:
    """Files and numbers of a demo run."""

    out: Path
    samples: pd.DataFrame
    table: pd.DataFrame
    comparison: pd.DataFrame
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


def _print_comparison(comp: pd.DataFrame, console: Any) -> None:
    from rich.table import Table

    a = comp.attrs
    t = Table(title=f"Did report-guided labels help? Mean AUC vs the hidden truth, {a.get('n_seeds')} seeds, "
                    f"{a.get('n_patients')} test patients, 95% paired intervals")
    for col in ("method", "mean AUC", "vs u-ones", "gap recovered"):
        t.add_column(col, justify="left" if col == "method" else "right", no_wrap=col == "method")
    for m, r in comp.iterrows():
        t.add_row(str(m), ci_cell(r, "auc"), ci_cell(r, "d_auc_vs_u-ones", signed=True), ci_cell(r, "gap_recovered", 2))
    console.print(t)
    note = gap_note(comp)
    if note:
        console.print(note)


def demo(
    out: str | os.PathLike = "demo_out",
    n: int = 3000,
    size: int = 64,
    epochs: int = 30,
    seed: int = 0,
    *,
    seeds: int = 5,
    backbone_n: int = 6000,
    backbone_epochs: int = 12,
    model: str = "lu_vit_tiny",
    device: str = "auto",
    progress: bool = True,
    console: Any = None,
) -> DemoResult:
    """Run the demo into ``out`` and return its tables and files (see the module docstring).

    ``console``: a rich Console for the tables and step lines (default: a console on stderr).
    """
    import time

    if n < 50 or backbone_n < 50:
        raise ValueError(f"n and backbone_n must be >= 50 so that every split has images, got {n}, {backbone_n}")
    if epochs < 1 or backbone_epochs < 1 or seeds < 1:
        raise ValueError("epochs, backbone_epochs and seeds must be >= 1")
    if console is None:
        from repgls.progress import stderr_console

        console = stderr_console()
    t0 = time.perf_counter()
    samples = mine_samples()
    _print_samples(samples, console)

    def log(msg: str) -> None:
        from rich.markup import escape

        console.print(f"[dim]·[/] {escape(msg)}")

    cfg = demo_config(n=n, size=size, epochs=epochs, seed=seed, seeds=seeds, backbone_n=backbone_n,
                      backbone_epochs=backbone_epochs, model=model, device=device)
    res = bench(cfg, out=out, log=log, progress=progress, report=False)
    report = _write_demo_report(res, cfg, n=n, size=size, model=model)
    _print_comparison(res.comparison, console)
    console.print("These heads were trained on a frozen backbone; fine-tuning it can change the verdict (docs/results.md, "
                  "'Fine-tuning the backbone instead of probing it').", highlight=False)
    secs = time.perf_counter() - t0
    console.print(f"report: [bold]{report}[/]   table: {res.files['comparison']}   ({secs:.0f}s)")
    return DemoResult(out=Path(res.out), samples=samples, table=res.table, comparison=res.comparison,
                      report=report, seconds=secs)


def _write_demo_report(res: Any, cfg: BenchConfig, *, n: int, size: int, model: str) -> Path:
    """report.html: the paired comparison first, then the GLS run's per-class, calibration and truth sections."""
    import json

    from repgls.html_report import write_report

    evals: dict[str, list[dict[str, Any]]] = {}
    for r in res.records:
        evals.setdefault(r["method"], []).append(json.loads(Path(r["metrics"]).read_text(encoding="utf-8")))
    main = evals["gls"][0]
    pred = pd.read_parquet(Path(main["run"]) / "eval-test" / "predictions.parquet")
    classes = main["classes"]
    report = Path(res.out) / "report.html"
    write_report(
        report, main["vs_reference"],
        y_true=pred[[f"reference:{c}" for c in classes]].to_numpy(dtype=float),
        scores=pred[[f"prob:{c}" for c in classes]].to_numpy(dtype=float),
        truth=main.get("vs_truth"),
        y_truth=pred[[f"truth:{c}" for c in classes]].to_numpy(dtype=float) if main.get("vs_truth") else None,
        runs={m: [e["vs_reference"] for e in v] for m, v in evals.items()},
        runs_truth={m: [e["vs_truth"] for e in v] for m, v in evals.items()} if main.get("vs_truth") else None,
        comparison=res.comparison, baselines=cfg.baselines, oracle=cfg.oracle,
        title="repgls demo: did report-guided labels help?",
        subtitle=f"{n} phantom studies · {size}px · {model} backbone pretrained on a separate world · "
                 f"{len(cfg.seeds)} seeds · sections after the first are the first GLS run's",
    )
    return report
