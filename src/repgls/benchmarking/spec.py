"""A benchmark's specification: the phantom world, the base trainer config, the methods and the seeds.

A bench config (YAML, see ``configs/bench/*.yaml``) names a **world** (phantom parameters), a **base** trainer
config (partial ``repgls.config`` dict shared by every run), the **seeds** and the **methods**. A method is a
rates policy (``gls`` / ``u-ones`` / ``u-zeros`` / ``u-ignore`` / ``hard``), a rates source (``lexicon`` or
``rgn``), a loss (``repgls.losses``), optionally a model and class-aware sampling, and free ``overrides``
(``"optim.lr=3e-4"``). Overrides of the bench config itself use :func:`repgls.config.apply_overrides`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repgls.config import apply_overrides

__all__ = ["DEFAULT_BASE", "POLICIES", "RATE_SOURCES", "BackboneSpec", "BenchConfig", "MethodSpec", "WorldSpec",
           "deep_merge", "load_bench_config"]

POLICIES = ("gls", "u-ones", "u-zeros", "u-ignore", "hard", "truth")

RATE_SOURCES = ("lexicon", "rgn")

#: Base trainer config of every bench run (the bench YAML's ``base`` is merged over it).
DEFAULT_BASE: dict[str, Any] = {
    "data": {"train_split": "train", "val_split": "val", "augment": True, "num_workers": 0, "batch_size": 32},
    "model": {"name": "lu_vit_tiny_test", "pretrained": False, "in_chans": 1},
    "optim": {"name": "adamw", "lr": 1.0e-3, "weight_decay": 0.05, "warmup_steps": 10, "schedule": "cosine"},
    "train": {"epochs": 3, "device": "auto", "eval_every": 1, "log_every": 10},
}


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
    hedge_fraction: float | None = None  # share of the reader's mentions that are hedged (None: phantom.yaml's)
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
    r0: float | None = None  # gls: the sharpening offset of definite statements (None: repgls.rating's -0.2)
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
        if self.r0 is not None and self.policy != "gls":
            raise ValueError(f"method {self.name!r}: r0 is a gls setting (policy {self.policy!r})")
        if self.policy == "truth" and self.rates != "lexicon":
            raise ValueError(f"method {self.name!r}: the truth policy (an oracle) takes no rates source")
        if self.rates == "rgn" and self.policy != "gls":
            raise ValueError(f"method {self.name!r}: rgn rates need policy gls (got {self.policy!r})")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad method name {self.name!r}")

    @property
    def labels_key(self) -> str:
        """File stem of the labels this method trains on."""
        return self.policy + ("-rgn" if self.rates == "rgn" else "") + (f"-r0={self.r0:g}" if self.r0 is not None else "")


@dataclass
class BackboneSpec:
    """A backbone every method starts from, pretrained once on a *separate* phantom world (a stand-in for
    ImageNet-scale pretraining: never the evaluation world), so that methods are limited by their labels, not by
    how much a model can learn from scratch on a CPU.

    ``labels``: what the backbone is pretrained on (``truth`` of its own world, or a label policy of its own
    reports). ``freeze``: True = every method trains a probe (``probe`` model) on the backbone's features of
    the evaluation world, computed once and cached; False = every method fine-tunes the whole backbone.
    ``train``: trainer config merged over the pretraining run's.
    """

    world: WorldSpec = field(default_factory=lambda: WorldSpec(n=4000, seed=1001))
    model: str = "lu_vit_tiny"
    epochs: int = 12
    labels: str = "truth"
    train: dict[str, Any] = field(default_factory=dict)
    freeze: bool = True
    probe: str = "lu_probe"

    def key(self) -> dict[str, Any]:
        """What defines the pretrained weights (not how they are used)."""
        return {"world": self.world.key(), "model": self.model, "epochs": self.epochs, "labels": self.labels,
                "train": self.train}


@dataclass
class BenchConfig:
    """A benchmark: world, base trainer config, methods, seeds; optionally a pretrained backbone, the oracle and
    baselines of the comparison (gap recovered and paired differences against truth)."""

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
    backbone: BackboneSpec | None = None
    oracle: str | None = None  # the method trained on the truth: gap_recovered = (m - base) / (oracle - base)
    baselines: list[str] = field(default_factory=list)  # methods every other method is compared with (paired)
    paired_boot: int = 1000  # replicates of the paired comparison (patients and seeds resampled)


def deep_merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


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


def _methods_by_name(methods: Any) -> dict[str, Any]:
    """A list of method specs (each with ``name``) or a mapping name -> spec, as a mapping name -> spec."""
    if isinstance(methods, list):
        return {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in methods
                if isinstance(m, Mapping) and "name" in m}
    return {k: (v or {}) for k, v in (methods or {}).items()}


def _apply_bench_overrides(raw: dict[str, Any], overrides: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` overrides of a bench config (:func:`repgls.config.apply_overrides`); a ``methods.<name>.*``
    override must name an existing method (a typo must not add a method)."""
    if not overrides:
        return raw
    if isinstance(raw.get("methods"), list) and all(isinstance(m, Mapping) and "name" in m for m in raw["methods"]):
        raw = {**raw, "methods": _methods_by_name(raw["methods"])}
    for ov in overrides:
        parts = ov.split("=", 1)[0].strip().split(".")
        if parts[0] == "methods" and len(parts) >= 3 and parts[1] not in (raw.get("methods") or {}):
            raise ValueError(f"override {ov!r}: no method {parts[1]!r}")
    try:
        return apply_overrides(raw, list(overrides))
    except ValueError as e:
        raise ValueError(str(e).replace("config key", "bench config key")) from None


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
    raw = _apply_bench_overrides(raw, overrides)
    known = set(BenchConfig.__dataclass_fields__)
    bad = set(raw) - known
    if bad:
        raise ValueError(f"{where}: unknown keys {sorted(bad)}; known {sorted(known)}")
    seeds = raw.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise ValueError(f"{where}: no seeds")
    methods = _parse_methods(raw.get("methods") or [], where)
    if not methods:
        raise ValueError(f"{where}: no methods")
    cfg = BenchConfig(
        name=str(raw.get("name", "bench")),
        out=str(raw.get("out", f"bench_out/{raw.get('name', 'bench')}")),
        world=_world(raw.get("world"), where, "world"),
        base=dict(raw.get("base") or {}),
        methods=methods,
        seeds=seeds,
        n_boot=int(raw.get("n_boot", 0)),
        rgn_epochs=int(raw.get("rgn_epochs", 40)),
        rgn_seed=int(raw.get("rgn_seed", 0)),
        prepare_workers=int(raw.get("prepare_workers", 1)),
        backbone=_backbone(raw.get("backbone"), where),
        oracle=raw.get("oracle"),
        baselines=list(raw.get("baselines") or []),
        paired_boot=int(raw.get("paired_boot", 1000)),
    )
    _check(cfg, where)
    return cfg


def _world(raw: Any, where: str, key: str) -> WorldSpec:
    raw = raw or {}
    bad = set(raw) - set(WorldSpec.__dataclass_fields__)
    if bad:
        raise ValueError(f"{where}: unknown {key} keys {sorted(bad)}; known {sorted(WorldSpec.__dataclass_fields__)}")
    return WorldSpec(**raw)


def _backbone(raw: Any, where: str) -> BackboneSpec | None:
    if raw is None:
        return None
    bad = set(raw) - set(BackboneSpec.__dataclass_fields__)
    if bad:
        raise ValueError(f"{where}: unknown backbone keys {sorted(bad)}; known "
                         f"{sorted(BackboneSpec.__dataclass_fields__)}")
    kw = {k: v for k, v in raw.items() if k != "world"}
    return BackboneSpec(world=_world({**asdict(WorldSpec(n=4000, seed=1001)), **(raw.get("world") or {})}, where,
                                     "backbone.world"), **kw)


def _check(cfg: BenchConfig, where: str) -> None:
    """Cross-field checks: named oracle / baselines exist; the backbone's world is not the evaluation world."""
    names = {m.name for m in cfg.methods}
    for role, name in [("oracle", cfg.oracle), *(("baselines", b) for b in cfg.baselines)]:
        if name is not None and name not in names:
            raise ValueError(f"{where}: {role} {name!r} is not one of the methods {sorted(names)}")
    if cfg.oracle is not None:
        m = next(m for m in cfg.methods if m.name == cfg.oracle)
        if m.policy != "truth":
            raise ValueError(f"{where}: oracle {cfg.oracle!r} must train on the truth (policy: truth)")
    bb = cfg.backbone
    if bb is not None and (bb.world.seed == cfg.world.seed or bb.world.key() == cfg.world.key()):
        raise ValueError(f"{where}: backbone.world must be a separate world (another seed than world.seed "
                         f"{cfg.world.seed}): pretraining on the evaluation world would leak its test images")
