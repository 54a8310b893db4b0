"""``repgls export``: a trained run's model as ONNX or TorchScript, with metadata.json beside it."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import console, fail

ORDER = 66


def register(app: typer.Typer) -> None:
    @app.command("export", epilog="Example: repgls export runs/phantom-tiny --format onnx --out deploy/phantom-tiny")
    def export_cmd(
        run: Path = typer.Argument(..., help="Run folder written by `repgls train`."),
        format: str = typer.Option("onnx", "--format", "-f", help="onnx | torchscript."),
        out: Path = typer.Option(None, "--out", "-o",
                                 help="Folder to write (default RUN/export-<format>); a previous export is replaced."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
        opset: int = typer.Option(None, "--opset", help="ONNX opset (default 17; 18 with --dynamo)."),
        dynamo: bool = typer.Option(False, "--dynamo",
                                    help="ONNX through the torch.export-based exporter (needs onnxscript)."),
        thresholds: str = typer.Option(
            "auto", "--thresholds",
            help="auto (RUN/eval-test/metrics.json when it scored this checkpoint, else chosen on val now) | "
                 "eval (metrics.json only) | compute (always chosen on val now)."),
        reference: str = typer.Option("auto", "--reference",
                                      help="Reference the thresholds are chosen against, as for `repgls eval`."),
        findings: Path = typer.Option(None, "--findings", help="Findings table for the findings reference."),
        batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass on the val split."),
    ) -> None:
        """Export RUN's model (probabilities; LU-ViT also rates) with class names, image size, preprocessing and
        validation thresholds in metadata.json; `repgls predict` takes the export like a run folder."""
        from repgls.evaluation.onnx_predict import MODEL_FILES

        if format not in MODEL_FILES:
            fail(f"--format must be one of {', '.join(MODEL_FILES)}, got {format!r}")
        if checkpoint not in ("best", "last"):
            fail(f"--checkpoint must be best or last, got {checkpoint!r}")
        if batch_size < 1:
            fail("--batch-size must be >= 1")
        if not (run / "config.yaml").is_file():
            fail(f"{run}: not a run folder (no config.yaml)")
        from repgls.config import ConfigError
        from repgls.evaluation.export import export

        try:
            path = export(run, format, out, checkpoint=checkpoint, opset=opset, dynamo=dynamo, thresholds=thresholds,
                          reference=reference, findings=findings, batch_size=batch_size)
        except ImportError as e:
            fail(str(e) if "repgls[export]" in str(e) else f"{e}; install the export extra: pip install 'repgls[export]'")
        except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
            fail(str(e))
        import json

        meta = json.loads((path.parent / "metadata.json").read_text())
        thr = meta["thresholds"]
        opset_txt = f", opset {meta['model']['opset']}" if meta["model"]["opset"] else ""
        console.print(f"[green]wrote[/] {path} + metadata.json ({len(meta['classes'])} classes, "
                      f"{meta['input']['image_size']} px{opset_txt}; outputs "
                      f"{', '.join(o['name'] for o in meta['outputs'])}; thresholds: {thr['source']})")
