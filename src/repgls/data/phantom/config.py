"""The phantom world's data file (``phantom.yaml``: wording, rendering and radiologist parameters) and prevalence."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from repgls._io import check_text_file, read_yaml_file, reading
from repgls.data.phantom.render import KINDS
from repgls.vocab import load_vocab

PREVALENCE_MODES = ("default", "longtail")
__all__ = ["PREVALENCE_MODES", "load_config", "resolve_prevalence"]


# ------------------------------------------------------------------------------------------------- config
@lru_cache(maxsize=4)
def _builtin_config() -> str:
    return resources.files("repgls.data.phantom").joinpath("phantom.yaml").read_text(encoding="utf-8")


def load_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The phantom-world data file (built-in ``phantom.yaml`` or a user's copy) as a dict."""
    cfg = yaml.safe_load(_builtin_config()) if path is None else read_yaml_file(path)
    if not isinstance(cfg, dict):
        raise ValueError(f"phantom config {path}: not a mapping of sections (a copy of phantom.yaml)")
    for key in ("world", "radiologist", "hedges", "classes", "negatives", "severity_levels"):
        if key not in cfg:
            raise ValueError(f"phantom config {path or 'phantom.yaml'}: missing section {key!r}")
    for name, c in cfg["classes"].items():
        if c.get("kind") not in KINDS:
            raise ValueError(f"phantom config: class {name!r} has unknown kind {c.get('kind')!r}")
    return cfg


def resolve_prevalence(vocab: str, mode: str | os.PathLike = "default",
                       config: dict[str, Any] | None = None) -> dict[str, float]:
    """Per-class prevalence (probability a study shows the finding) for every class except No Finding.

    ``mode``: ``default`` (realistic per-class values from phantom.yaml), ``longtail`` (head / medium /
    tail ranges of phantom.yaml, spread geometrically within a group in vocabulary order), or a file:
    CSV with columns ``finding,prevalence`` or a YAML/JSON mapping class -> prevalence (missing classes
    keep their default).
    """
    cfg = config or load_config()
    voc = load_vocab(vocab)
    classes = [c for c in voc.classes if c != "No Finding"]
    missing = [c for c in classes if c not in cfg["classes"]]
    if missing:
        raise ValueError(f"phantom config has no rendering for class(es) {missing} of vocabulary {vocab!r}")
    prev = {c: float(cfg["classes"][c]["prevalence"]) for c in classes}
    mode_s = str(mode)
    if mode_s == "default":
        return prev
    if mode_s == "longtail":
        rng_cfg = cfg["world"]["longtail"]
        for g in ("head", "medium", "tail"):
            members = [c for c in classes if voc.groups.get(c) == g]
            hi, lo = rng_cfg[g]
            for i, c in enumerate(members):
                frac = i / max(1, len(members) - 1)
                prev[c] = float(hi * (lo / hi) ** frac)
        return prev
    path = Path(mode_s)
    if not path.is_file():
        raise ValueError(f"prevalence must be one of {PREVALENCE_MODES} or a file; {mode_s!r} is neither")
    if path.suffix.lower() == ".csv":
        check_text_file(path, "CSV")
        with reading(path, "CSV"):
            df = pd.read_csv(path)
        if not {"finding", "prevalence"} <= set(df.columns):
            raise ValueError(f"{path}: needs columns finding,prevalence; has {list(df.columns)}")
        given = dict(zip(df["finding"].astype(str), df["prevalence"].astype(float), strict=True))
    else:
        given = read_yaml_file(path)
        if not isinstance(given, dict):
            raise ValueError(f"{path}: expected a mapping class -> prevalence")
    for c, p in given.items():
        if c not in prev:
            raise ValueError(f"{path}: unknown class {c!r} for vocabulary {vocab!r}")
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"{path}: prevalence of {c!r} must be in [0, 1), got {p}")
        prev[c] = float(p)
    return prev
