"""Training configuration: nested dataclasses, strict YAML loading, ``a.b=value`` overrides.

Why strict: a typo in a long training YAML (``optim.lr_warmup`` for ``optim.warmup_steps``) should stop the
run before it starts, naming the key path, instead of being silently ignored for days of GPU time.
No torch import here (the CLI parses configs before importing torch).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from repgls._io import atomic_write_text, read_yaml_file


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key path."""


@dataclass
class DataConfig:
    """Where the images and labels are and how batches are formed."""

    cache_dir: str = ""  # image cache written by ``repgls prepare`` (images.u8, index.parquet, meta.json)
    features: str = ""  # a features folder of that cache (repgls.evaluation.features): train a probe on them
    labels: str = ""  # labels.parquet written by ``repgls rates``
    train_split: str = "train"
    val_split: str = "val"
    vocab: str | None = None  # optional check: labels.parquet must use this vocabulary
    image_size: int | None = None  # optional check against the cache's size (the cache decides the size)
    augment: bool = True  # training-time augmentation (the dataset's own; seeded per sample)
    num_workers: int = 4
    batch_size: int = 64  # per process (per GPU); global batch = batch_size * world_size * grad_accum
    eval_batch_size: int | None = None  # default: 2 * batch_size
    class_aware: bool = False  # class-aware re-sampling (LTML); otherwise uniform shuffling
    class_aware_num_samples: int | None = None  # epoch length for the class-aware sampler (None: its default)
    pin_memory: bool = True
    classes: list[str] | None = None  # train on these label columns only (e.g. one finding, as PU-RM); None: all
    official_uncertain: Literal["ignore", "zeros", "ones"] = "ignore"  # labels: official: uncertain (-1) as ...
    official_blank: Literal["negative", "ignore"] = "negative"  # labels: official: blank (not mentioned) as ...


@dataclass
class ModelConfig:
    """Backbone (``repgls.models.create_model``)."""

    name: str = "lu_vit_small"  # repgls.models.list_models()
    pretrained: bool | str = False  # True: timm hub weights; a timm tag ("tv_in1k"); a path: local weights file
    in_chans: int = 1
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Loss (``repgls.losses.create_loss``); ``kwargs`` go to the loss unchanged."""

    name: str = "bce"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimiser, per-step schedule, accumulation and EMA."""

    name: Literal["adamw", "sgd", "adam"] = "adamw"
    lr: float = 1e-4  # peak learning rate
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adam/adamw only
    warmup_steps: int = 0  # optimiser steps of linear warm-up (from warmup_init_factor * lr)
    warmup_init_factor: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"  # after warm-up, per optimiser step
    min_lr: float = 0.0  # cosine floor
    grad_accum: int = 1  # micro-batches per optimiser step
    grad_clip: float | None = None  # max global grad norm (None: no clipping)
    ema: bool = False  # keep an exponential moving average of the weights (timm ModelEmaV3)
    ema_decay: float = 0.9998
    ema_eval: bool = True  # validate (and pick best) with the EMA weights when ema is on


@dataclass
class TrainConfig:
    """Loop settings."""

    epochs: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun, auto uses cuda:LOCAL_RANK)
    bf16: bool = True  # bf16 autocast on CUDA (always fp32 on CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    eval_every: int = 1  # validate every N epochs (and at the end)
    max_steps: int | None = None  # stop after this many optimiser steps (tests, smoke runs)
    log_every: int = 10  # optimiser steps between metrics.jsonl / TensorBoard train lines
    checkpoint_every: int | None = None  # also save ``last`` every N optimiser steps (mid-epoch resume)
    progress: bool = True  # rich progress bar (rank 0, when stderr is a terminal or forced)


@dataclass
class OutputConfig:
    """Where the run folder goes."""

    run_dir: str = "runs/run"
    overwrite: bool = False  # allow reusing a non-empty run folder without --resume


@dataclass
class Config:
    """The whole training configuration (one YAML file)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) for YAML/JSON."""
        return _plain(dataclasses.asdict(self))


# ---------------------------------------------------------------------------------------------------------
# Conversion with clear errors


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check/convert ``value`` to type ``tp``; raise ConfigError naming ``path``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got null")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key '{path}': expected one of {_type_name(tp)}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        return {_convert(k, kt, f"{path}.{k}"): _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}': expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{path}': expected {len(args)} items, got {len(value)}")
            return tuple(
                _convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        inner = args[0] if args else Any
        out = [_convert(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string; accept numeric strings
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _build(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from mapping ``raw`` (missing keys take defaults; unknown keys are errors)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        where = f"config key '{path}'" if path else "config"
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        kpath = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{(path + '.') if path else ''}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{kpath}' (known: {', '.join(names)}){hint}")
        kwargs[key] = _convert(value, hints[key], kpath)
    return cls(**kwargs)


def _check(cfg: Config) -> None:
    """Value checks that types alone cannot express."""
    positive = {
        "data.batch_size": cfg.data.batch_size,
        "optim.grad_accum": cfg.optim.grad_accum,
        "train.epochs": cfg.train.epochs,
        "train.eval_every": cfg.train.eval_every,
        "train.log_every": cfg.train.log_every,
    }
    for opt in ("data.eval_batch_size", "train.max_steps", "train.checkpoint_every", "data.image_size"):
        sec, key = opt.split(".")
        v = getattr(getattr(cfg, sec), key)
        if v is not None:
            positive[opt] = v
    for k, v in positive.items():
        if v <= 0:
            raise ConfigError(f"config key '{k}': must be > 0, got {v}")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"config key 'data.num_workers': must be >= 0, got {cfg.data.num_workers}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"config key 'optim.lr': must be > 0, got {cfg.optim.lr}")
    if cfg.optim.warmup_steps < 0:
        raise ConfigError(f"config key 'optim.warmup_steps': must be >= 0, got {cfg.optim.warmup_steps}")
    if not 0.0 < cfg.optim.ema_decay < 1.0:
        raise ConfigError(f"config key 'optim.ema_decay': must be in (0, 1), got {cfg.optim.ema_decay}")


# ---------------------------------------------------------------------------------------------------------
# Public API


def config_from_dict(raw: dict[str, Any] | None) -> Config:
    """Validate a nested mapping into a :class:`Config` (unknown or ill-typed keys raise ConfigError)."""
    cfg = _build(Config, copy.deepcopy(raw) if raw else {}, "")
    _check(cfg)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 0.0003); the value is read as YAML (``true``, ``[1, 2]``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, _, value = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {text!r}: bad key path {key!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return parts, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``a.b=value`` overrides applied (intermediate mappings are created)."""
    out = copy.deepcopy(raw) if raw else {}
    for text in overrides or []:
        parts, value = parse_override(text)
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: '{'.'.join(parts[: i + 1])}' is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; errors (missing, empty, binary, malformed, not a mapping) name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = read_yaml_file(p)  # empty, binary or malformed: one line naming the file
    except ValueError as e:
        raise ConfigError(f"config file {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    try:
        return config_from_dict(apply_overrides(raw, overrides))
    except ConfigError as e:
        if path is not None:
            raise ConfigError(f"{path}: {e}") from None
        raise


def dump_config(cfg: Config) -> str:
    """The config as YAML text (sections in declaration order)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Atomically write the resolved config as YAML (tmp file then os.replace)."""
    return atomic_write_text(path, dump_config(cfg))


def resolve_config(config: Config | dict | str | os.PathLike | None, overrides: list[str] | None = None,
                   resume: str | os.PathLike | None = None) -> Config:
    """The config of a training run: a Config, a nested dict or a YAML path (+ overrides), or, with ``resume``,
    the run folder's saved ``config.yaml`` (+ overrides, e.g. ``train.epochs=20`` to extend it)."""
    if resume is not None:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {resume}: {saved} not found (not a run folder?)")
        raw = apply_overrides(read_yaml(saved), [f"output.run_dir={Path(resume)}", *(overrides or [])])
        return config_from_dict(raw)
    if isinstance(config, Config):
        return config_from_dict(apply_overrides(config.to_dict(), overrides)) if overrides else config
    if isinstance(config, dict):
        return config_from_dict(apply_overrides(config, overrides))
    if config is None:
        raise ConfigError("train: give a config (path, dict or Config) or resume=RUN_DIR")
    return load_config(config, overrides)
