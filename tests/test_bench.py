"""repgls bench: config parsing, the table, and a tiny end-to-end bench (2 methods x 1 seed) with reuse."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repgls.benchmarking import (
    MethodSpec,
    bench_table,
    load_bench_config,
    table_columns,
    table_markdown,
    trainer_config,
)
from repgls.benchmarking import (
    bench as run_bench,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "bench"
PAPER_METHODS = {
    "u-ones",
    "u-zeros",
    "u-ignore",
    "pu-rm-pce",
    "anr-lla",
    "anr-llm",
    "focal",
    "db",
    "gls-lexicon",
    "gls-rgn",
    "lu-vit",
}


@pytest.mark.parametrize("name", ["phantom-small", "phantom-full", "phantom-longtail"])
def test_shipped_configs_parse(name: str) -> None:
    cfg = load_bench_config(CONFIGS / f"{name}.yaml")
    extra = {"oracle", "gls-soft"} if name == "phantom-small" else set()
    assert {m.name for m in cfg.methods} == PAPER_METHODS | extra
    by = {m.name: m for m in cfg.methods}
    assert by["gls-rgn"].rates == "rgn" and by["gls-lexicon"].loss == "gls" and by["lu-vit"].loss == "luvit"
    assert by["pu-rm-pce"].policy == "u-ones" and by["pu-rm-pce"].loss in ("pce", "pu-rm")
    assert by["anr-lla"].class_aware and by["anr-llm"].class_aware
    if name == "phantom-small":  # the power bench: a backbone from another world, an oracle, 5 seeds
        assert cfg.backbone is not None and cfg.backbone.world.seed != cfg.world.seed and cfg.backbone.freeze
        assert cfg.oracle == "oracle" and cfg.baselines == ["u-ones", "u-zeros"] and len(cfg.seeds) >= 5
    if name == "phantom-full":
        assert cfg.world.n >= 5000 and cfg.world.size == 224 and len(cfg.seeds) == 3
        assert cfg.base["model"]["name"] == "lu_vit_small"
    if name == "phantom-longtail":
        assert cfg.world.vocab == "ltml39" and cfg.world.prevalence == "longtail"


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    cfg = load_bench_config(
        CONFIGS / "phantom-small.yaml",
        ["world.n=90", "seeds=[3]", "base.train.epochs=2", "methods.focal.loss=bce"],
    )
    assert cfg.world.n == 90 and cfg.seeds == [3] and cfg.base["train"]["epochs"] == 2
    assert {m.name: m for m in cfg.methods}["focal"].loss == "bce"
    with pytest.raises(ValueError, match="unknown keys"):
        load_bench_config({"methods": {"a": {}}, "wrld": {}})
    with pytest.raises(ValueError, match="policy"):
        load_bench_config({"methods": {"a": {"policy": "u-twos"}}})
    with pytest.raises(ValueError, match="rgn rates need policy gls"):
        load_bench_config({"methods": {"a": {"policy": "u-ones", "rates": "rgn"}}})
    with pytest.raises(ValueError, match="no method"):
        load_bench_config(CONFIGS / "phantom-small.yaml", ["methods.nope.loss=bce"])
    with pytest.raises(FileNotFoundError):
        load_bench_config(tmp_path / "missing.yaml")


def test_trainer_config_merges_base_method_and_seed(tmp_path: Path) -> None:
    from repgls.benchmarking import World, WorldSpec
    from repgls.config import config_from_dict

    bench = load_bench_config(CONFIGS / "phantom-small.yaml")
    m = MethodSpec(
        name="x",
        policy="u-ones",
        loss="lla",
        loss_kwargs={"base": "anr"},
        class_aware=True,
        overrides=["optim.lr=0.01"],
    )
    w = World(tmp_path, WorldSpec())
    raw = trainer_config(bench, m, 7, w, tmp_path / "labels.parquet", tmp_path / "run")
    cfg = config_from_dict(raw)  # a valid trainer config
    assert cfg.train.seed == 7 and cfg.data.class_aware and cfg.optim.lr == 0.01
    assert cfg.loss.name == "lla" and cfg.loss.kwargs == {"base": "anr"}
    assert cfg.train.epochs == bench.base["train"]["epochs"] and cfg.data.classes == bench.base["data"]["classes"]
    from repgls.benchmarking.methods import Start

    probe = config_from_dict(trainer_config(bench, m, 7, w, tmp_path / "l.parquet", tmp_path / "r",
                                            start=Start(features=tmp_path / "feats", probe="lu_probe")))
    assert probe.model.name == "lu_probe" and probe.data.features == str(tmp_path / "feats")
    tuned = config_from_dict(trainer_config(bench, m, 7, w, tmp_path / "l.parquet", tmp_path / "r",
                                            start=Start(pretrained=tmp_path / "b.safetensors", backbone_model="x")))
    assert tuned.model.name == "x" and tuned.model.pretrained == str(tmp_path / "b.safetensors")


def _fake_eval(seed: int, shift: float) -> dict:
    from repgls.metrics import score
    from repgls.vocab import load_vocab

    voc = load_vocab("chexpert14")
    rng = np.random.default_rng(seed)
    y = (rng.random((200, len(voc.classes))) < 0.3).astype(float)
    p = np.clip(0.5 * y + shift * rng.random(y.shape), 0, 1)
    return {
        "vs_reference": score(y, p, voc.classes, groups=voc, val_y=y, val_scores=p),
        "vs_truth": score(y, np.clip(p + 0.1 * rng.random(y.shape), 0, 1), voc.classes, groups=voc),
        "reference_sha256": "r", "truth_sha256": "t",
    }


def test_bench_table_mean_std() -> None:
    evals = {"a": [_fake_eval(0, 0.9), _fake_eval(1, 0.9)], "b": [_fake_eval(2, 0.5)]}
    tab = bench_table(evals)
    aucs = [e["vs_truth"]["summary"]["mean_auc"] for e in evals["a"]]
    assert tab.loc["a", "auc_truth_mean"] == pytest.approx(np.mean(aucs))
    assert tab.loc["a", "auc_truth_std"] == pytest.approx(np.std(aucs, ddof=1))
    assert math.isnan(tab.loc["b", "auc_truth_std"]) and tab.loc["b", "n_seeds"] == 1
    assert tab.loc["b", "head_auc_truth_mean"] == pytest.approx(
        evals["b"][0]["vs_truth"]["groups"]["head"]["auc"]
    )
    md = table_markdown(tab)
    lines = md.strip().splitlines()
    assert len(lines) == 4 and all(c in lines[0] for c, *_ in table_columns())
    assert "±" in lines[2] and lines[2].startswith("| a | 2 |")
    assert "**" not in md  # no "best" marks: differences are judged by the paired comparison


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bench")
    ov = ["world.n=80", "seeds=[0]", "base.train.epochs=1", "backbone=null", "base.data.classes=null",
          "base.model.name=lu_vit_tiny_test", "base.data.batch_size=32"]
    res = run_bench(
        CONFIGS / "phantom-small.yaml",
        out=out,
        overrides=ov,
        methods=["u-ones", "gls-lexicon"],
        progress=False,
    )
    return res, ov


def test_bench_tiny_table(tiny_bench) -> None:
    res, _ = tiny_bench
    assert list(res.table.index) == ["u-ones", "gls-lexicon"]
    assert (res.table["n_seeds"] == 1).all()
    for col in ("auc_truth", "auc_reference", "bacc_truth", "ece_truth"):
        v = res.table[f"{col}_mean"].to_numpy(dtype=float)
        assert np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all(), col
    csv = pd.read_csv(res.files["csv"], index_col=0)
    assert csv.loc["gls-lexicon", "auc_truth_mean"] == pytest.approx(
        res.table.loc["gls-lexicon", "auc_truth_mean"]
    )
    md = res.files["markdown"].read_text(encoding="utf-8")
    assert "| u-ones | 1 |" in md and "| gls-lexicon | 1 |" in md
    html = res.files["report"].read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "gls-lexicon" in html and "hidden truth" in html.lower()
    # each record points at a real evaluation of its own run against truth and labels
    for rec in res.records:
        assert Path(rec["metrics"]).is_file() and not rec["reused"]
    assert (res.out / "labels" / "gls.parquet").is_file() and (
        res.out / "labels" / "u-ones.parquet"
    ).is_file()


def test_bench_rerun_reuses_and_matches(tiny_bench) -> None:
    res, ov = tiny_bench
    again = run_bench(
        CONFIGS / "phantom-small.yaml",
        out=res.out,
        overrides=ov,
        methods=["u-ones", "gls-lexicon"],
        progress=False,
    )
    assert all(r["reused"] for r in again.records)
    pd.testing.assert_frame_equal(again.table, res.table)
    # a changed method spec is not reused
    changed = run_bench(
        CONFIGS / "phantom-small.yaml",
        out=res.out,
        overrides=[*ov, "methods.u-ones.loss=focal"],
        methods=["u-ones"],
        progress=False,
        report=False,
    )
    assert not changed.records[0]["reused"]


def test_bench_refuses_another_world(tiny_bench) -> None:
    res, ov = tiny_bench
    with pytest.raises(ValueError, match="another world"):
        run_bench(
            CONFIGS / "phantom-small.yaml",
            out=res.out,
            overrides=[*ov, "world.seed=5"],
            methods=["u-ones"],
            progress=False,
        )


def test_bench_deterministic_across_fresh_runs(tiny_bench, tmp_path: Path) -> None:
    """A fresh output folder (new world, new cache, new training) gives the same numbers for the same seed."""
    res, ov = tiny_bench
    fresh = run_bench(
        CONFIGS / "phantom-small.yaml",
        out=tmp_path / "b",
        overrides=ov,
        methods=["u-ones"],
        progress=False,
        report=False,
    )
    assert not fresh.records[0]["reused"]
    pd.testing.assert_series_equal(fresh.table.loc["u-ones"], res.table.loc["u-ones"])


def test_cpu_longtail_config_parses() -> None:
    cfg = load_bench_config(CONFIGS / "phantom-longtail-cpu.yaml")
    assert cfg.world.vocab == "ltml39" and cfg.world.prevalence == "longtail" and cfg.world.size == 64
    names = {m.name for m in cfg.methods}
    assert names <= PAPER_METHODS and {"u-ones", "anr-lla", "gls-lexicon"} <= names
    assert cfg.base["model"]["name"] == "lu_vit_tiny"
