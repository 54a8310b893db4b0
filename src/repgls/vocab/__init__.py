"""Finding vocabularies: class names, head/medium/tail groups and match phrases, as data files.

A vocabulary is a YAML file (``chexpert14``, ``nih14``, ``ltml39`` ship with the package; a user may pass
the path of their own). Code holds no phrase lists: see the YAML files beside this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

BUILTIN_VOCABS = ("chexpert14", "nih14", "ltml39")
GROUPS = ("head", "medium", "tail")


@dataclass(frozen=True)
class Vocabulary:
    """A finding vocabulary.

    Attributes:
        name: vocabulary name (``chexpert14``...).
        version: version string of the data file.
        classes: canonical class names in output order, length K.
        groups: class name -> ``head`` | ``medium`` | ``tail``.
        entries: the raw per-class records of the YAML file (synonyms, unmentions, ...).
    """

    name: str
    version: str
    classes: tuple[str, ...]
    groups: dict[str, str]
    entries: tuple[dict[str, Any], ...] = field(repr=False)
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        """Position of a class in the output order."""
        return self.classes.index(name)

    def group_indices(self, group: str) -> list[int]:
        """Indices of the classes in ``group`` (head / medium / tail)."""
        return [i for i, c in enumerate(self.classes) if self.groups.get(c) == group]


def _read_yaml(path: Path | Any) -> dict[str, Any]:
    with open(path, encoding="utf-8") if isinstance(path, (str, Path)) else path.open("r") as fh:
        return yaml.safe_load(fh)


@lru_cache(maxsize=32)
def load_vocab(name: str = "chexpert14") -> Vocabulary:
    """Load a built-in vocabulary by name, or a user's YAML file by path.

    Raises:
        ValueError: unknown name, or a file without ``classes``.
    """
    if name in BUILTIN_VOCABS:
        data = _read_yaml(resources.files("repgls.vocab").joinpath(f"{name}.yaml"))
        source = f"built-in vocabulary {name!r}"
    else:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"unknown vocabulary {name!r}: choose one of {', '.join(BUILTIN_VOCABS)} or a YAML path")
        from repgls._io import read_yaml_file

        data = read_yaml_file(path)  # empty, binary or malformed: one line naming the file
        source = str(path)
    if not isinstance(data, dict) or not data.get("classes"):
        raise ValueError(f"{source}: no 'classes' list")
    entries = tuple(data["classes"])
    classes = tuple(str(e["name"]) for e in entries)
    if len(set(classes)) != len(classes):
        raise ValueError(f"{source}: duplicate class names")
    groups = {str(e["name"]): str(e.get("group", "head")) for e in entries}
    bad = {c: g for c, g in groups.items() if g not in GROUPS}
    if bad:
        raise ValueError(f"{source}: unknown group(s) {bad}; use one of {GROUPS}")
    return Vocabulary(
        name=str(data.get("name", name)),
        version=str(data.get("version", "0")),
        classes=classes,
        groups=groups,
        entries=entries,
        description=str(data.get("description", "")),
        raw=data,
    )
