"""The papers' protocols: configs/papers/*.yaml load, build their losses, name timm weight tags, and each has a
deviation table in docs/papers.md; the trainer refuses PCE (PU-RM) on labels not built with U-Ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from repgls.cli import app
from repgls.config import load_config

REPO = Path(__file__).resolve().parents[1]
PAPERS = sorted((REPO / "configs" / "papers").glob("*.yaml"))
SECTIONS = {"rep-gls-lu-vit-mimic.yaml": "Rep-GLS", "pu-rm-densenet121-mimic.yaml": "PU-RM",
            "ltml-resnet50-ltml39.yaml": "LTML"}


def test_one_config_per_paper():
    assert {p.name for p in PAPERS} == set(SECTIONS)


@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_paper_config_prints_and_has_a_deviation_table(path: Path):
    r = CliRunner().invoke(app, ["train", "--config", str(path), "--print-config"])
    assert r.exit_code == 0, r.output
    assert "loss:" in r.output and "optim:" in r.output
    doc = (REPO / "docs" / "papers.md").read_text(encoding="utf-8")
    section = doc.split(f"## {SECTIONS[path.name]}\n", 1)[1].split("\n## ", 1)[0]
    assert f"configs/papers/{path.name}" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| the paper states | the config sets | why |" and len(rows) >= 8


def test_paper_protocols_as_the_papers_write_them():
    torch = pytest.importorskip("torch")
    from repgls.losses import create_loss

    pu = load_config(REPO / "configs/papers/pu-rm-densenet121-mimic.yaml")
    assert (pu.model.name, pu.model.pretrained, pu.optim.name, pu.optim.lr, pu.optim.weight_decay) == \
        ("densenet121", "tv_in1k", "adam", 1e-4, 0.0)
    assert (pu.optim.schedule, pu.train.max_steps, pu.data.batch_size) == ("constant", 50000, 32)
    assert (pu.data.official_uncertain, pu.data.official_blank, pu.data.classes) == ("ones", "ignore", ["Consolidation"])
    assert create_loss(pu.loss.name, **pu.loss.kwargs).tau == 0.3
    lt = load_config(REPO / "configs/papers/ltml-resnet50-ltml39.yaml")
    assert (lt.model.name, lt.optim.name, lt.optim.lr, lt.optim.momentum, lt.optim.weight_decay) == \
        ("resnet50", "sgd", 0.02, 0.9, 1e-4)
    assert lt.data.class_aware and lt.data.batch_size == 32 and lt.data.vocab == "ltml39"
    loss = create_loss(lt.loss.name, torch.ones(39) * 10, 1000, **lt.loss.kwargs)
    assert loss.mode == "abandon" and loss.schedule == "fraction"
    assert (loss.base.variant, loss.base.beta, loss.base.gamma) == ("paper", 10.0, 2.0)


def test_pretrained_weights_by_timm_tag(monkeypatch):
    pytest.importorskip("torch")
    import timm

    from repgls import models

    assert models.pretrained_tag("tv_in1k") == "tv_in1k" and models.pretrained_tag(True) is None
    assert models.pretrained_tag("weights/densenet.safetensors") is None
    seen = {}
    real = timm.create_model

    def spy(name, pretrained=False, **kw):
        seen[name] = pretrained
        return real(name.split(".")[0], pretrained=False, **kw)  # no download in tests

    monkeypatch.setattr(models.timm, "create_model", spy)
    models.create_model("densenet121", num_classes=2, pretrained="tv_in1k")
    assert seen == {"densenet121.tv_in1k": True}


def test_pce_refuses_labels_not_built_with_u_ones(tmp_path):
    from repgls.config import ConfigError, config_from_dict
    from repgls.losses import create_loss
    from repgls.training.data import check_label_policy

    cfg = config_from_dict({"data": {"labels": "official", "official_uncertain": "ignore"},
                            "loss": {"name": "pu-rm"}})
    with pytest.raises(ConfigError, match=re.escape("data.official_uncertain=ones")):
        check_label_policy(cfg, create_loss("pu-rm"))
    ok = config_from_dict({"data": {"labels": "official", "official_uncertain": "ones"}, "loss": {"name": "pu-rm"}})
    check_label_policy(ok, create_loss("pu-rm"))
