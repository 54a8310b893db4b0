"""Benchmark: many methods x seeds on one phantom world, scored against report labels and hidden truth.

A bench config (YAML, see ``configs/bench/*.yaml``) names a **world** (phantom parameters), a **base**
trainer config (partial ``repgls.config`` dict shared by every run), the **seeds** and the **methods**.
A method is a rates policy (``gls`` / ``u-ones`` / ``u-zeros`` / ``u-ignore`` / ``hard``), a rates source
(``lexicon`` or ``rgn``), a loss (``repgls.losses``), optionally a model and class-aware sampling, and
free ``overrides`` (``"optim.lr=3e-4"``).

Everything is computed once and cached on disk under ``out/``::

    world/                 phantom world (images, reports, truth)    skipped when meta.json matches
    findings.parquet       rule-mined findings of the world's reports
    labels/<policy>[-rgn].parquet                                    one per (policy, rates source)
    rgn/                   Rate Generation Network (only when a method uses rgn rates)
    cache/                 image cache (repgls prepare)
    runs/<method>/seed<k>/ trainer run + eval-test/metrics.json      skipped when finished with the same spec
    results.csv, results.md, runs.jsonl, report.html

``run_bench(config)`` returns a :class:`BenchResult` with the table (mean +- std across seeds).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls._io import atomic_path, atomic_write_text

__all__ = [
    "POLICIES",
    "TABLE_COLUMNS",
    "BenchConfig",
    "BenchResult",
    "MethodSpec",
    "World",
    "WorldSpec",
    "bench_table",
    "labels_for",
    "load_bench_config",
    "prepare_world",
    "run_bench",
    "run_method",
    "table_markdown",
    "trainer_config",
]

POLICIES = ("gls", "u-ones", "u-zeros", "u-ignore", "hard")
RATE_SOURCES = ("lexicon", "rgn")
Log = Callable[[str], None]

#: (column, side, metric key, higher is better): the bench table; side = "truth" | "labels".
TABLE_COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("auc_truth", "truth", "mean_auc", True),
    ("auc_labels", "labels", "mean_auc", True),
    ("bacc_truth", "truth", "bacc", True),
    ("head_auc_truth", "truth", "head_auc", True),
    ("medium_auc_truth", "truth", "medium_auc", True),
    ("tail_auc_truth", "truth", "tail_auc", True),
    ("auc_fg_truth", "truth", "mean_auc_fg", True),
    ("ece_truth", "truth", "ece", False),
    ("ece_labels", "labels", "ece", False),
)

#: Base trainer config of every bench run (the bench YAML's ``base`` is merged over it).
DEFAULT_BASE: dict[str, Any] = {
    "data": {"train_split": "train", "val_split": "val", "augment": True, "num_workers": 0, "batch_size": 32},
    "model": {"name": "lu_vit_tiny_test", "pretrained": False, "in_chans": 1},
    "optim": {"name": "adamw", "lr": 1.0e-3, "weight_decay": 0.05, "warmup_steps": 10, "schedule": "cosine"},
    "train": {"epochs": 3, "device": "auto", "eval_every": 1, "log_every": 10},
}


# ------------------------------------------------------------------------------------------------ specs
@dataclass
class WorldSpec:
    """Phantom world parameters (``repgls.data.phantom.make_phantom``) and the image cache size."""

    n: int = 600
    size: int = 64
    vocab: str = "chexpert14"
    prevalence: str = "default"
    seed: int = 0
    miss_rate: float | None = None
    overcall_rate: float | None = None
    hedge_calibration: str = "bayes"
    workers: int = 1

    def key(self) -> dict[str, Any]:
        """Parameters that define the world's content (not ``workers``)."""
        d = asdict(self)
        d.pop("workers")
        return d


@dataclass
class MethodSpec:
    """One method: label policy + rates source + loss (+ model, sampler, free overrides)."""

    name: str
    policy: str = "u-ones"
    rates: str = "lexicon"
    loss: str = "bce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    class_aware: bool = False
    overrides: list[str] = field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(
                f"method {self.name!r}: policy {self.policy!r} is not one of {', '.join(POLICIES)}"
            )
        if self.rates not in RATE_SOURCES:
            raise ValueError(
                f"method {self.name!r}: rates {self.rates!r} is not one of {', '.join(RATE_SOURCES)}"
            )
        if self.rates == "rgn" and self.policy != "gls":
            raise ValueError(f"method {self.name!r}: rgn rates need policy gls (got {self.policy!r})")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad method name {self.name!r}")

    @property
    def labels_key(self) -> str:
        """File stem of the labels this method trains on."""
        return self.policy + ("-rgn" if self.rates == "rgn" else "")


@dataclass
class BenchConfig:
    """A benchmark: world, base trainer config, methods, seeds."""

    name: str = "bench"
    out: str = "bench_out/bench"
    world: WorldSpec = field(default_factory=WorldSpec)
    base: dict[str, Any] = field(default_factory=dict)
    methods: list[MethodSpec] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    n_boot: int = 0
    rgn_epochs: int = 40
    rgn_seed: int = 0
    prepare_workers: int = 1


def _deep_merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = raw
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            raise ValueError(f"override {dotted!r}: {k!r} is not a section")
    cur[keys[-1]] = value


def _parse_methods(raw: Any, where: str) -> list[MethodSpec]:
    if isinstance(raw, Mapping):
        items = [{"name": k, **(v or {})} for k, v in raw.items()]
    elif isinstance(raw, list):
        items = list(raw)
    else:
        raise ValueError(f"{where}: 'methods' must be a mapping name -> spec or a list of specs")
    known = set(MethodSpec.__dataclass_fields__)
    out = []
    for it in items:
        if not isinstance(it, Mapping) or "name" not in it:
            raise ValueError(f"{where}: every method needs a name (got {it!r})")
        bad = set(it) - known
        if bad:
            raise ValueError(
                f"{where}: method {it['name']!r}: unknown keys {sorted(bad)}; known {sorted(known)}"
            )
        out.append(MethodSpec(**{k: copy.deepcopy(v) for k, v in it.items()}))
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: duplicate method names in {names}")
    return out


def load_bench_config(
    config: BenchConfig | Mapping[str, Any] | str | os.PathLike, overrides: Sequence[str] | None = None
) -> BenchConfig:
    """Read a bench config (YAML path, dict or BenchConfig) and apply ``key=value`` overrides.

    Overrides use dotted keys of the YAML (``world.n=200``, ``seeds=[0]``, ``base.train.epochs=1``,
    ``methods.gls.loss=bce``); values are parsed as YAML.
    """
    import yaml

    if isinstance(config, BenchConfig):
        if not overrides:
            return copy.deepcopy(config)
        raw: dict[str, Any] = {
            **asdict(config),
            "world": asdict(config.world),
            "methods": [asdict(m) for m in config.methods],
        }
        where = "BenchConfig"
    elif isinstance(config, Mapping):
        raw, where = copy.deepcopy(dict(config)), "bench config"
    else:
        p = Path(config)
        if not p.is_file():
            raise FileNotFoundError(f"bench config not found: {p}")
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        where = str(p)
        if not isinstance(raw, dict):
            raise ValueError(f"{p}: a bench config is a YAML mapping")
        raw.setdefault("name", p.stem)
    for ov in overrides or ():
        if "=" not in ov:
            raise ValueError(f"override {ov!r}: expected key=value")
        key, val = ov.split("=", 1)
        value = yaml.safe_load(val)
        parts = key.strip().split(".")
        if parts[0] == "methods" and len(parts) >= 3:
            methods = raw.get("methods") or {}
            if isinstance(methods, list):
                match = [m for m in methods if m.get("name") == parts[1]]
                if not match:
                    raise ValueError(f"override {ov!r}: no method {parts[1]!r}")
                _set_path(match[0], ".".join(parts[2:]), value)
            else:
                if parts[1] not in methods:
                    raise ValueError(f"override {ov!r}: no method {parts[1]!r}")
                methods[parts[1]] = methods[parts[1]] or {}
                _set_path(methods[parts[1]], ".".join(parts[2:]), value)
        else:
            _set_path(raw, key.strip(), value)
    known = set(BenchConfig.__dataclass_fields__)
    bad = set(raw) - known
    if bad:
        raise ValueError(f"{where}: unknown keys {sorted(bad)}; known {sorted(known)}")
    world_raw = raw.get("world") or {}
    wbad = set(world_raw) - set(WorldSpec.__dataclass_fields__)
    if wbad:
        raise ValueError(f"{where}: unknown world keys {sorted(wbad)}")
    seeds = raw.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise ValueError(f"{where}: no seeds")
    methods = _parse_methods(raw.get("methods") or [], where)
    if not methods:
        raise ValueError(f"{where}: no methods")
    return BenchConfig(
        name=str(raw.get("name", "bench")),
        out=str(raw.get("out", f"bench_out/{raw.get('name', 'bench')}")),
        world=WorldSpec(**world_raw),
        base=dict(raw.get("base") or {}),
        methods=methods,
        seeds=seeds,
        n_boot=int(raw.get("n_boot", 0)),
        rgn_epochs=int(raw.get("rgn_epochs", 40)),
        rgn_seed=int(raw.get("rgn_seed", 0)),
        prepare_workers=int(raw.get("prepare_workers", 1)),
    )


# ------------------------------------------------------------------------------------------------ world
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


def _say(log: Log | None, msg: str) -> None:
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
        rad.get(k) == want[k] for k in ("miss_rate", "overcall_rate") if want[k] is not None
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
        _say(log, f"phantom world: {spec.n} studies at {spec.size}px ({spec.vocab}, {spec.prevalence}) ...")
        with _bar(progress, "rendering phantom world", spec.n) as cb:
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
                progress=cb,
            )
        _say(log, f"phantom world ready in {time.perf_counter() - t0:.1f}s")
    if not w.findings.is_file():
        from repgls.mining import mine_to_file

        t0 = time.perf_counter()
        with _bar(progress, "mining reports", spec.n) as cb:
            # mine_to_file writes OUT.part and renames it when complete: atomic already
            summ = mine_to_file(
                w.phantom / "reports.csv",
                w.findings,
                vocab=spec.vocab,
                id_col="study_id",
                text_col=["findings", "impression"],
                progress=(lambda k: cb(k, spec.n)) if cb else None,
            )
        _say(
            log, f"mined {summ.findings} findings from the world's reports in {time.perf_counter() - t0:.1f}s"
        )
    meta = w.cache / "meta.json"
    if not (meta.is_file() and json.loads(meta.read_text()).get("complete")):
        from repgls.data.cache import prepare_cache
        from repgls.data.datasets import create_dataset

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
        _say(log, f"image cache ready in {time.perf_counter() - t0:.1f}s")
    return w


class _bar:
    """Context manager giving a ``progress(done, total)`` callback drawn as a rich bar (or None)."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total
        self._p: Any = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from repgls.cli._common import console

        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._p.start()
        task = self._p.add_task(self.label, total=self.total)

        def cb(done: int, total: int) -> None:
            self._p.update(task, completed=done, total=total)

        return cb

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.stop()


def labels_for(
    world: World,
    policy: str,
    rates_source: str = "lexicon",
    *,
    rgn_epochs: int = 40,
    rgn_seed: int = 0,
    log: Log | None = None,
) -> Path:
    """labels.parquet of the world's findings under ``policy`` (and RGN rates), computed once."""
    from repgls.rates import rates, write_labels

    key = policy + ("-rgn" if rates_source == "rgn" else "")
    path = world.root / "labels" / f"{key}.parquet"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    studies = pd.read_csv(world.phantom / "reports.csv", usecols=["study_id"], dtype=str)["study_id"].tolist()
    rgn = None
    if rates_source == "rgn":
        from repgls.rates.rgn import RGN, train_rgn

        if (world.rgn / "config.json").is_file():
            rgn = RGN.load(world.rgn)
        else:
            t0 = time.perf_counter()
            _say(log, f"training the Rate Generation Network ({rgn_epochs} epochs) ...")
            rgn = train_rgn(world.findings, vocab=world.spec.vocab, epochs=rgn_epochs, seed=rgn_seed)
            rgn.save(world.rgn)
            _say(log, f"RGN trained in {time.perf_counter() - t0:.1f}s")
    df = rates(world.findings, vocab=world.spec.vocab, policy=policy, studies=studies, rgn=rgn)
    with atomic_path(path) as tmp:
        write_labels(df, tmp)
    _say(log, f"labels {key}: {len(df)} studies")
    return path


# ------------------------------------------------------------------------------------------------ runs
def trainer_config(
    bench: BenchConfig,
    method: MethodSpec,
    seed: int,
    world: World,
    labels: Path,
    run_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """The full trainer config dict (``repgls.train.train``) of one method and seed."""
    from repgls.config import apply_overrides

    raw = _deep_merge(DEFAULT_BASE, bench.base)
    raw = _deep_merge(
        raw,
        {
            "data": {
                "cache_dir": str(world.cache),
                "labels": str(labels),
                "class_aware": bool(method.class_aware),
            },
            "loss": {"name": method.loss, "kwargs": dict(method.loss_kwargs)},
            "train": {"seed": int(seed), "progress": bool(progress)},
            "output": {"run_dir": str(run_dir), "overwrite": True},
        },
    )
    if method.model:
        raw["model"]["name"] = method.model
    return apply_overrides(raw, list(method.overrides))


def _spec_hash(cfg: Mapping[str, Any], world: WorldSpec) -> str:
    ident = copy.deepcopy(dict(cfg))
    ident.get("train", {}).pop("progress", None)
    ident.get("data", {}).pop("num_workers", None)
    blob = json.dumps({"cfg": ident, "world": world.key()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_method(
    bench: BenchConfig,
    method: MethodSpec,
    seed: int,
    world: World,
    *,
    log: Log | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one (method, seed); reuse a finished run with the same spec. Returns a record."""
    labels = labels_for(
        world, method.policy, method.rates, rgn_epochs=bench.rgn_epochs, rgn_seed=bench.rgn_seed, log=log
    )
    run_dir = world.root / "runs" / method.name / f"seed{seed}"
    cfg = trainer_config(bench, method, seed, world, labels, run_dir, progress)
    if device:
        cfg["train"]["device"] = device
    digest = _spec_hash(cfg, world.spec)
    done_p = run_dir / "bench.json"
    if done_p.is_file():
        rec = json.loads(done_p.read_text(encoding="utf-8"))
        if rec.get("spec_hash") == digest and (run_dir / "eval-test" / "metrics.json").is_file():
            _say(log, f"[{method.name} seed {seed}] finished before: reused")
            rec["reused"] = True
            return rec
    from repgls.evaluate import evaluate_run
    from repgls.train import train

    _say(
        log,
        f"[{method.name} seed {seed}] training: policy {method.policy}, rates {method.rates}, "
        f"loss {method.loss}, model {cfg['model']['name']}, class-aware {method.class_aware}",
    )
    done_p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    train(cfg)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = evaluate_run(
        run_dir,
        split="test",
        n_boot=bench.n_boot,
        truth=world.truth,
        cams=0,
        device=cfg["train"]["device"],
        seed=seed,
        report=False,
    )
    t_eval = time.perf_counter() - t1
    rec = {
        "method": method.name,
        "seed": seed,
        "spec_hash": digest,
        "run_dir": str(run_dir),
        "policy": method.policy,
        "rates": method.rates,
        "loss": method.loss,
        "model": cfg["model"]["name"],
        "class_aware": method.class_aware,
        "train_seconds": round(t_train, 2),
        "eval_seconds": round(t_eval, 2),
        "metrics": str(run_dir / "eval-test" / "metrics.json"),
        "reused": False,
    }
    lab, tru = res["report_labels"]["summary"], (res.get("truth") or {}).get("summary", {})
    _say(
        log,
        f"[{method.name} seed {seed}] done in {t_train:.0f}s + {t_eval:.0f}s eval: mean AUC "
        f"labels {_f(lab.get('mean_auc'))}, truth {_f(tru.get('mean_auc'))}",
    )
    atomic_write_text(done_p, json.dumps(rec, indent=2))
    return rec


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _load_eval(rec: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(Path(rec["metrics"]).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ table
def bench_table(evals: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """Method x metric table: ``<col>_mean`` / ``<col>_std`` (sample std over seeds) for TABLE_COLUMNS.

    ``evals`` maps a method to its ``evaluate_run`` results (one per seed).
    """
    from repgls.metrics import summary_table

    labels = summary_table({m: [e["report_labels"] for e in v] for m, v in evals.items()})
    have_truth = all(e.get("truth") for v in evals.values() for e in v)
    truth = summary_table({m: [e["truth"] for e in v] for m, v in evals.items()}) if have_truth else None
    out = pd.DataFrame(index=labels.index)
    out["n_seeds"] = labels["n_runs"].astype(int)
    for col, side, key, _ in TABLE_COLUMNS:
        src = labels if side == "labels" else truth
        for stat in ("mean", "std"):
            name = f"{key}_{stat}"
            out[f"{col}_{stat}"] = src[name] if src is not None and name in src else math.nan
    return out


def table_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """Markdown table of ``bench_table``: mean +- std per column; best mean per column in bold."""
    head = ["method", "seeds"] + [c for c, *_ in TABLE_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best: dict[str, float] = {}
    for col, _, _, higher in TABLE_COLUMNS:
        v = table[f"{col}_mean"].to_numpy(dtype=float)
        if np.isfinite(v).any() and len(v) > 1:
            best[col] = float(np.nanmax(v) if higher else np.nanmin(v))
    for method in table.index:
        cells = [str(method), str(int(table.loc[method, "n_seeds"]))]
        for col, *_ in TABLE_COLUMNS:
            m, s = float(table.loc[method, f"{col}_mean"]), float(table.loc[method, f"{col}_std"])
            if not math.isfinite(m):
                cells.append("n/a")
                continue
            txt = f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if math.isfinite(s) else "")
            cells.append(f"**{txt}**" if col in best and abs(m - best[col]) < 1e-12 else txt)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class BenchResult:
    """What ``run_bench`` produced."""

    out: Path
    table: pd.DataFrame
    records: list[dict[str, Any]]
    files: dict[str, Path]
    seconds: float


def run_bench(
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
        log: called with one line per step (never report text). progress: rich progress bars.
        device: trainer device override (auto | cpu | cuda). report: also write report.html.
    """
    t0 = time.perf_counter()
    bench = load_bench_config(config, overrides)
    if methods:
        unknown = set(methods) - {m.name for m in bench.methods}
        if unknown:
            raise ValueError(
                f"unknown methods {sorted(unknown)}; the config has {[m.name for m in bench.methods]}"
            )
        bench.methods = [m for m in bench.methods if m.name in set(methods)]
    root = Path(out if out is not None else bench.out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench_config.json").write_text(
        json.dumps({**asdict(bench), "out": str(root)}, indent=2, default=str), encoding="utf-8"
    )
    world = prepare_world(
        bench.world, root, log=log, progress=progress, prepare_workers=bench.prepare_workers
    )
    records: list[dict[str, Any]] = []
    evals: dict[str, list[dict[str, Any]]] = {}
    total = len(bench.methods) * len(bench.seeds)
    k = 0
    for method in bench.methods:
        for seed in bench.seeds:
            k += 1
            _say(log, f"run {k}/{total}")
            rec = run_method(bench, method, seed, world, log=log, progress=progress, device=device)
            records.append(rec)
            evals.setdefault(method.name, []).append(_load_eval(rec))
    table = bench_table(evals)
    files = {"csv": root / "results.csv", "markdown": root / "results.md", "runs": root / "runs.jsonl"}
    table.to_csv(files["csv"], float_format="%.6g")
    md = (
        f"# {bench.name}\n\nWorld: {bench.world.n} studies, {bench.world.size}px, vocab {bench.world.vocab}, "
        f"prevalence {bench.world.prevalence}, seed {bench.world.seed}; seeds {bench.seeds}; test split; "
        "mean ± sample std over seeds.\n\n" + table_markdown(table)
    )
    files["markdown"].write_text(md, encoding="utf-8")
    with open(files["runs"], "w", encoding="utf-8") as f:
        for rec in records:
            ev = _load_eval(rec)
            f.write(
                json.dumps(
                    {
                        **rec,
                        "labels": ev["report_labels"]["summary"],
                        "truth": (ev.get("truth") or {}).get("summary"),
                    },
                    default=str,
                )
                + "\n"
            )
    if report:
        from repgls.report import write_report

        files["report"] = root / "report.html"
        runs = {m: [e["report_labels"] for e in v] for m, v in evals.items()}
        runs_truth = (
            {m: [e["truth"] for e in v] for m, v in evals.items()}
            if all(e.get("truth") for v in evals.values() for e in v)
            else None
        )
        write_report(
            files["report"],
            runs=runs,
            runs_truth=runs_truth,
            title=f"repgls bench: {bench.name}",
            subtitle=f"{bench.world.n} phantom studies · {bench.world.size}px · {bench.world.vocab} · "
            f"seeds {bench.seeds} · test split",
        )
    return BenchResult(out=root, table=table, records=records, files=files, seconds=time.perf_counter() - t0)
