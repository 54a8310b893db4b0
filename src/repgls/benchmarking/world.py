"""The shared, cached artefacts of one benchmark world: the phantom world, its mined findings, labels per
policy (and RGN), and the image cache. Each is computed once under the bench's output folder and reused::

    world/                 phantom world (images, reports, truth)    skipped when meta.json matches
    findings.parquet       rule-mined findings of the world's reports
    labels/<policy>[-rgn].parquet                                    one per (policy, rates source)
    rgn/                   Rate Generation Network (only when a method uses rgn rates)
    cache/                 image cache (repgls prepare)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from repgls._io import atomic_path
from repgls.benchmarking.spec import WorldSpec
from repgls.progress import progress_bar

__all__ = ["Log", "World", "labels_for", "prepare_world", "say"]

Log = Callable[[str], None]


@dataclass
class World:
    """Paths of the shared, cached artefacts of one world."""

    root: Path
    spec: WorldSpec

    @property
    def phantom(self) -> Path:
        return self.root / "world"

    @property
    def findings(self) -> Path:
        return self.root / "findings.parquet"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def truth(self) -> Path:
        return self.phantom / "truth.parquet"

    @property
    def rgn(self) -> Path:
        return self.root / "rgn"


def say(log: Log | None, msg: str) -> None:
    if log is not None:
        log(msg)


def _world_done(w: World) -> bool:
    meta = w.phantom / "meta.json"
    if not meta.is_file():
        return False
    m = json.loads(meta.read_text(encoding="utf-8"))
    want = w.spec.key()
    got = {k: m.get(k) for k in ("n", "size", "vocab", "seed")}
    got["prevalence"] = m.get("prevalence")
    rad = m.get("radiologist", {})
    got["hedge_calibration"] = rad.get("hedge_calibration", "visibility")  # worlds made before the option
    same = all(got[k] == want[k] for k in got) and all(
        rad.get(k) == want[k] for k in ("miss_rate", "overcall_rate", "hedge_fraction") if want[k] is not None
    )
    if not same:
        raise ValueError(f"{w.phantom} holds another world ({got}); want {want}: use another --out")
    return True


def prepare_world(
    spec: WorldSpec,
    root: str | os.PathLike,
    *,
    log: Log | None = None,
    progress: bool = True,
    prepare_workers: int = 1,
) -> World:
    """Make (or reuse) the phantom world, mine its reports and prepare the image cache under ``root``.

    ``spec.workers`` render processes, ``prepare_workers`` cache processes (results do not depend on either).
    """
    from repgls.data.phantom import make_phantom

    w = World(Path(root), spec)
    w.root.mkdir(parents=True, exist_ok=True)
    if not _world_done(w):
        t0 = time.perf_counter()
        say(log, f"phantom world: {spec.n} studies at {spec.size}px ({spec.vocab}, {spec.prevalence}) ...")
        with progress_bar("rendering phantom world", spec.n, enabled=None if progress else False,
                          transient=True) as bar:
            make_phantom(
                w.phantom,
                n=spec.n,
                size=spec.size,
                vocab=spec.vocab,
                seed=spec.seed,
                prevalence=spec.prevalence,
                workers=spec.workers,
                miss_rate=spec.miss_rate,
                overcall_rate=spec.overcall_rate,
                hedge_calibration=spec.hedge_calibration,
                hedge_fraction=spec.hedge_fraction,
                progress=bar.callback,
            )
        say(log, f"phantom world ready in {time.perf_counter() - t0:.1f}s")
    if not w.findings.is_file():
        from repgls.mining import mine_to_file

        t0 = time.perf_counter()
        with progress_bar("mining reports", spec.n, enabled=None if progress else False, transient=True) as bar:
            # mine_to_file writes OUT.part and renames it when complete: atomic already
            summ = mine_to_file(
                w.phantom / "reports.csv",
                w.findings,
                vocab=spec.vocab,
                id_col="study_id",
                text_col=["findings", "impression"],
                progress=bar.callback,
            )
        say(
            log, f"mined {summ.findings} findings from the world's reports in {time.perf_counter() - t0:.1f}s"
        )
    meta = w.cache / "meta.json"
    if not (meta.is_file() and json.loads(meta.read_text()).get("complete")):
        from repgls.data.adapters import create_dataset
        from repgls.data.cache import prepare_cache

        t0 = time.perf_counter()
        index = create_dataset("phantom", w.phantom)
        prepare_cache(
            index,
            w.cache,
            size=spec.size,
            workers=max(1, prepare_workers),
            dataset="phantom",
            progress=progress,
        )
        say(log, f"image cache ready in {time.perf_counter() - t0:.1f}s")
    return w


def labels_for(
    world: World,
    policy: str,
    rates_source: str = "lexicon",
    *,
    rgn_epochs: int = 40,
    rgn_seed: int = 0,
    r0: float | None = None,
    log: Log | None = None,
) -> Path:
    """labels.parquet of the world's findings under ``policy`` (and RGN rates), computed once. Policy ``truth``:
    the world's hidden truth (what an oracle trains on)."""
    from repgls.rating import rates, write_labels

    key = policy + ("-rgn" if rates_source == "rgn" else "") + (f"-r0={r0:g}" if r0 is not None else "")
    path = world.root / "labels" / f"{key}.parquet"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if policy == "truth":
        from repgls.data.phantom import truth_labels

        with atomic_path(path) as tmp:
            write_labels(truth_labels(world.phantom, world.spec.vocab), tmp)
        return path
    studies = pd.read_csv(world.phantom / "reports.csv", usecols=["study_id"], dtype=str)["study_id"].tolist()
    rgn = None
    if rates_source == "rgn":
        from repgls.rating.rgn import RGN, train_rgn

        if (world.rgn / "config.json").is_file():
            rgn = RGN.load(world.rgn)
        else:
            t0 = time.perf_counter()
            say(log, f"training the Rate Generation Network ({rgn_epochs} epochs) ...")
            rgn = train_rgn(world.findings, vocab=world.spec.vocab, epochs=rgn_epochs, seed=rgn_seed)
            rgn.save(world.rgn)
            say(log, f"RGN trained in {time.perf_counter() - t0:.1f}s")
    kw = {"r0": r0} if r0 is not None else {}
    df = rates(world.findings, vocab=world.spec.vocab, policy=policy, studies=studies, rgn=rgn, **kw)
    with atomic_path(path) as tmp:
        write_labels(df, tmp)
    say(log, f"labels {key}: {len(df)} studies")
    return path
