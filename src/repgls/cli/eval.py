"""``repgls eval``: score a trained run on a split of its cache against a reference that does not depend on the
run's training policy (and, in the phantom world, the hidden truth); writes RUN/eval-<split>/metrics.json,
predictions.parquet, cams/ and report.html."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from repgls.cli._common import check_outputs, console, fail

ORDER = 60


def _cell(summary: dict[str, Any] | None, key: str) -> str:
    """``0.812 [0.78, 0.84]`` (or ``-`` when undefined)."""
    if summary is None:
        return ""
    v = summary.get(key)
    if v is None or not math.isfinite(v):
        return "-"
    ci = summary.get(f"{key}_ci")
    if ci and None not in ci:
        return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{v:.3f}"


def summary_table(result: dict[str, Any]) -> Any:
    """A rich Table of the summary metrics against the reference and (phantom) the hidden truth, side by side."""
    from rich.table import Table

    truth = result.get("vs_truth") if result["reference"]["source"] != "truth" else None
    t = Table(title=f"{result['run']} - split {result['split']} ({result['n_images']} images)")
    t.add_column("metric")
    t.add_column(f"vs reference ({result['reference']['source']})", justify="right")
    if truth is not None:
        t.add_column("vs hidden truth", justify="right")
    from repgls.metrics import list_metrics

    for key, label in ((m.key, m.label) for m in list_metrics()):
        row = [label, _cell(result["vs_reference"]["summary"], key)]
        if truth is not None:
            row.append(_cell(truth["summary"], key))
        t.add_row(*row)
    return t


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        run: Path = typer.Argument(..., help="Run folder written by `repgls train`."),
        split: str = typer.Option("test", "--split", help="Cache split to score."),
        truth: Path = typer.Option(None, "--truth", help="Phantom truth.parquet (default: auto-detected when the "
                                   "cache was prepared from a phantom world)."),
        no_truth: bool = typer.Option(False, "--no-truth", help="Do not score against hidden truth."),
        reference: str = typer.Option(
            "auto", "--reference",
            help="What to score against: findings (the policy-free reference from the mined findings: definite "
                 "statements only), truth (phantom), official (the dataset's labels), a labels.parquet / "
                 "findings / truth file, or auto (findings, else truth, else official)."),
        findings: Path = typer.Option(None, "--findings", help="The mined findings of these reports (default: "
                                      "findings.parquet beside the run's labels file)."),
        unmentioned: str = typer.Option("negative", "--unmentioned",
                                        help="Findings reference: a finding the report does not mention is "
                                             "negative or ignore."),
        n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap replicates for 95% intervals, patients "
                                   "resampled (0 = none)."),
        cams: int = typer.Option(8, "--cams", help="Images in the Grad-CAM grid (0 = none)."),
        out: Path = typer.Option(None, "--out", help="Output folder (default RUN/eval-<split>)."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
        batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
        no_report: bool = typer.Option(False, "--no-report", help="Skip report.html."),
    ) -> None:
        """Evaluate RUN on --split against a policy-free reference (and the hidden truth); thresholds chosen on val."""
        if n_boot < 0 or cams < 0 or batch_size < 1:
            fail("--n-boot and --cams must be >= 0, --batch-size >= 1")
        if checkpoint not in ("best", "last"):
            fail(f"--checkpoint must be best or last, got {checkpoint!r}")
        if truth is not None and no_truth:
            fail("give --truth or --no-truth, not both")
        if unmentioned not in ("negative", "ignore"):
            fail(f"--unmentioned must be negative or ignore, got {unmentioned!r}")
        if not (run / "config.yaml").is_file():
            fail(f"{run}: not a run folder (no config.yaml)")
        check_outputs(("--out", out if out is not None else run / f"eval-{split}", True))
        from repgls.config import ConfigError
        from repgls.evaluation import evaluate

        try:
            with console.status(f"evaluating {run} on split {split} ..."):
                res = evaluate(run, split=split, n_boot=n_boot, truth=False if no_truth else truth, cams=cams,
                               out_dir=out, reference=reference, checkpoint=checkpoint, findings=findings,
                               unmentioned=unmentioned, device=device, batch_size=batch_size, seed=seed,
                               report=not no_report)
        except (ConfigError, FileNotFoundError, ValueError) as e:
            fail(str(e))
        from rich.console import Console

        Console().print(summary_table(res))
        where = out if out is not None else run / f"eval-{split}"
        ref = res["reference"]
        console.print(f"[green]wrote[/] {where}/: {', '.join(res['files'].values())}  (reference: {ref['source']}, "
                      f"sha256 {res['reference_sha256'][:12]}; thresholds: {res['thresholds']['source']}; AUC^FG "
                      f"typicality: {ref['typicality']['source']})")
