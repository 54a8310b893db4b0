"""Training config: strict validation with key paths, YAML-typed overrides, round trip, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from repgls.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
    save_config,
)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_and_nested_values():
    cfg = config_from_dict(
        {"optim": {"lr": 3e-4, "betas": [0.9, 0.95]}, "model": {"kwargs": {"drop_path_rate": 0.1}}}
    )
    assert isinstance(cfg, Config)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.model.kwargs == {"drop_path_rate": 0.1}
    assert cfg.train.epochs == 10 and cfg.data.batch_size == 64  # untouched defaults


def test_unknown_key_names_path_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*did you mean 'optim\.lr'"):
        config_from_dict({"optim": {"lrr": 1.0}})
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'"):
        config_from_dict({"trian": {}})


@pytest.mark.parametrize(
    "raw,path",
    [
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"train": {"epochs": 2.5}}, "train.epochs"),
        ({"train": {"bf16": "yes"}}, "train.bf16"),
        ({"optim": {"name": "lion"}}, "optim.name"),
        ({"optim": {"betas": [0.9]}}, "optim.betas"),
        ({"data": "x"}, "data"),
        ({"model": {"kwargs": [1, 2]}}, "model.kwargs"),
        ({"data": {"batch_size": 0}}, "data.batch_size"),
        ({"optim": {"ema_decay": 1.5}}, "optim.ema_decay"),
    ],
)
def test_ill_typed_or_invalid_value_names_key(raw, path):
    with pytest.raises(ConfigError, match=rf"'{path.replace('.', '[.]')}'"):
        config_from_dict(raw)


def test_union_types_accept_each_member():
    assert config_from_dict({"model": {"pretrained": True}}).model.pretrained is True
    assert config_from_dict({"model": {"pretrained": "/w.safetensors"}}).model.pretrained == "/w.safetensors"
    assert config_from_dict({"train": {"max_steps": None}}).train.max_steps is None
    assert config_from_dict({"optim": {"lr": "1e-4"}}).optim.lr == pytest.approx(
        1e-4
    )  # YAML 1.1 string float
    assert config_from_dict({"optim": {"lr": 1}}).optim.lr == 1.0


def test_overrides_are_yaml_typed():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override("train.bf16=false") == (["train", "bf16"], False)
    assert parse_override("optim.betas=[0.9, 0.95]") == (["optim", "betas"], [0.9, 0.95])
    assert parse_override("output.run_dir=runs/a=b") == (["output", "run_dir"], "runs/a=b")
    raw = apply_overrides({"train": {"epochs": 1}}, ["train.epochs=4", "model.kwargs.drop_rate=0.1"])
    assert raw == {"train": {"epochs": 4}, "model": {"kwargs": {"drop_rate": 0.1}}}
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        parse_override("train.epochs")
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"train": {"epochs": 1}}, ["train.epochs.x=1"])


def test_load_config_reports_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 2\n  sed: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown config key 'train\.sed'.*'train\.seed'"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)


def test_round_trip_and_atomic_save(tmp_path):
    cfg = load_config(
        None, ["train.epochs=7", "optim.betas=[0.8, 0.9]", "loss.name=gls", "loss.kwargs.max_logit=20"]
    )
    out = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert out.is_file() and not list(out.parent.glob("*.tmp"))
    again = load_config(out)
    assert again == cfg
    assert yaml.safe_load(dump_config(cfg))["optim"]["betas"] == [0.8, 0.9]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.data.cache_dir and cfg.data.labels and cfg.model.name
