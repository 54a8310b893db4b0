"""``repgls prepare``: resize a dataset once into a memory-mapped uint8 image cache (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from repgls.cli._common import console, fail, split_csv

ORDER = 30
DATASETS = ("mimic-cxr-jpg", "chexpert", "nih", "openi", "table", "phantom")


def register(app: typer.Typer) -> None:
    @app.command("prepare")
    def prepare(
        dataset: str = typer.Argument(..., help=f"Dataset adapter: {' | '.join(DATASETS)}."),
        root: Path = typer.Option(..., "--root", help="Dataset folder (table: the CSV/Parquet file or its folder)."),
        out: Path = typer.Option(..., "--out", help="Cache folder to write (resumed when it exists)."),
        size: int = typer.Option(256, "--size", help="Side S of the cached square images."),
        mode: str = typer.Option("pad", "--mode", help="pad (keep the whole image) or crop (centre square)."),
        view: str = typer.Option("all", "--view", help="all | frontal | pa | ap | lateral (comma list allowed)."),
        workers: int = typer.Option(0, "--workers", help="Processes (0 = all CPU cores)."),
        val_fraction: float = typer.Option(0.1, "--val-fraction", help="Patients to val when no official val."),
        test_fraction: float = typer.Option(0.1, "--test-fraction", help="Patients to test when no official test."),
        seed: int = typer.Option(0, "--seed", help="Seed of the patient-wise splits."),
        limit: int = typer.Option(0, "--limit", help="Only the first N images (0 = all); for trials."),
        labeler: str = typer.Option("chexpert", "--labeler", help="mimic-cxr-jpg: chexpert or negbio labels."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild even if --out holds another cache."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ) -> None:
        """Resize every image once (aspect kept) into OUT/images.u8 [N,S,S] + index.parquet + meta.json."""
        from repgls.data.adapters import list_datasets
        from repgls.data.cache import prepare as prepare_stage

        kw: dict = {}
        if dataset == "mimic-cxr-jpg":
            kw["labeler"] = labeler
        if dataset not in list_datasets():
            fail(f"unknown dataset {dataset!r}; choose one of {', '.join(list_datasets())}")
        try:
            meta = prepare_stage(dataset, root, out, size=size, mode=mode, view=split_csv(view),
                                 workers=workers or None, val_fraction=val_fraction, test_fraction=test_fraction,
                                 seed=seed, limit=limit, overwrite=overwrite, progress=not no_progress, **kw)
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
        splits = meta["splits"]
        console.print(
            f"[green]cache[/] {out}: {meta['n_done']}/{meta['n']} images at {size}px "
            f"({meta['n_failed']} failed, {meta['n_skipped']} already done) in {meta['seconds']:.1f}s; "
            f"splits {splits}")
        if meta["n_failed"]:
            console.print(f"[yellow]see {out / 'errors.csv'} for the images that could not be read")
