"""``repgls predict``: probabilities (and LU-ViT's expected report certainty) for image files, to Parquet and
a readable table; Grad-CAM overlays with --cam. RUN may also be an export of ``repgls export`` (ONNX through
onnxruntime, without torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from repgls.cli._common import console, fail

ORDER = 65


def top_table(df: Any, top: int = 3) -> Any:
    """A rich Table: per image, its ``top`` most probable findings (with expected certainty for LU-ViT)."""
    from rich.table import Table

    classes = [c[len("prob:"):] for c in df.columns if c.startswith("prob:")]
    has_cert = any(c.startswith("expected_certainty:") for c in df.columns)
    t = Table(title=f"top {top} findings per image" + (" (p = probability, cert. = expected report certainty)"
                                                       if has_cert else ""))
    t.add_column("image")
    for j in range(top):
        t.add_column(f"#{j + 1}")
    for _, row in df.iterrows():
        probs = sorted(((float(row[f"prob:{c}"]), c) for c in classes), key=lambda x: -x[0])[:top]
        cells = []
        for p, c in probs:
            cell = f"{c} {p:.2f}"
            if has_cert:
                cell += f" (cert. {float(row[f'expected_certainty:{c}']):.2f})"
            cells.append(cell)
        t.add_row(Path(str(row["path"])).name, *cells, *[""] * (top - len(cells)))
    return t


def _print_predictions(df: Any, top: int) -> None:
    """The files skipped (``--skip-errors``) and the top-``top`` table of a predictions frame."""
    for path, err in df.attrs.get("errors", {}).items():
        console.print(f"[yellow]skipped[/] {path}: {err}")
    if top and len(df):
        from rich.console import Console

        Console().print(top_table(df, top))


def _predict_export(export: Path, images: list[Path], out: Path, cam: bool, checkpoint: str, device: str,
                    batch_size: int, top: int, skip_errors: bool) -> None:
    """``repgls predict EXPORT IMAGES``: the same table from an exported model (no torch for ONNX)."""
    from repgls.data.images import ImageReadError
    from repgls.evaluation.onnx_predict import NO_CAM, predict_exported

    if cam:
        fail(f"--cam: {NO_CAM}")
    if checkpoint != "best":
        fail("--checkpoint: an export holds one checkpoint (chosen by `repgls export --checkpoint`)")
    try:
        df = predict_exported(export, images, out, batch_size=batch_size, device=device, skip_errors=skip_errors)
    except (ImportError, FileNotFoundError, ValueError, ImageReadError) as e:
        fail(str(e))
    _print_predictions(df, top)
    console.print(f"[green]wrote[/] {out} ({len(df)} images, exported model {export})")


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_cmd(
        run: Path = typer.Argument(..., help="Run folder written by `repgls train`, or an export of `repgls export` "
                                            "(its folder, or model.onnx with metadata.json beside it)."),
        images: list[Path] = typer.Argument(..., help="PNG / JPEG / DICOM files, or folders of them."),
        out: Path = typer.Option(Path("predictions.parquet"), "--out", "-o", help="Parquet file to write."),
        cam: bool = typer.Option(False, "--cam", help="Write Grad-CAM overlay PNGs (top class per image)."),
        cam_dir: Path = typer.Option(None, "--cam-dir", help="CAM folder (default <out stem>-cams/ beside --out)."),
        cam_class: list[str] = typer.Option(None, "--cam-class", help="Explain this class instead (repeatable)."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
        batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
        top: int = typer.Option(3, "--top", help="Findings per image in the printed table (0 = no table)."),
        skip_errors: bool = typer.Option(False, "--skip-errors", help="Skip unreadable files instead of failing."),
    ) -> None:
        """Predict IMAGES with RUN: path, prob:<C> (+ rate:<C>, expected_certainty:<C> for LU-ViT) to --out."""
        if checkpoint not in ("best", "last"):
            fail(f"--checkpoint must be best or last, got {checkpoint!r}")
        if batch_size < 1 or top < 0:
            fail("--batch-size must be >= 1 and --top >= 0")
        from repgls.evaluation.onnx_predict import is_export

        export = is_export(run)
        if not export and not (run / "config.yaml").is_file():
            fail(f"{run}: not a run folder (no config.yaml)")
        missing = [str(p) for p in images if not p.exists()]
        if missing:
            fail(f"image file(s) not found: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if export:
            _predict_export(run, images, out, cam or bool(cam_class), checkpoint, device, batch_size, top, skip_errors)
            return
        from repgls.config import ConfigError
        from repgls.data.images import ImageReadError
        from repgls.evaluation import predict

        try:
            df = predict(run, images, cam=cam, out=out, checkpoint=checkpoint, cam_dir=cam_dir,
                         cam_classes=cam_class or None, batch_size=batch_size, device=device,
                         skip_errors=skip_errors)
        except (ConfigError, FileNotFoundError, ValueError, ImageReadError) as e:
            fail(str(e))
        _print_predictions(df, top)
        msg = f"[green]wrote[/] {out} ({len(df)} images)"
        if cam and "cam" in df.columns:
            msg += f"; Grad-CAM PNGs in {Path(df['cam'].iloc[0].split(';')[0]).parent}"
        console.print(msg)
