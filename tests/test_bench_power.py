"""The bench's power features: an oracle trained on the truth, a backbone pretrained on a separate world whose
features every method probes, paired differences with intervals, the gap recovered, and a hedge sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from repgls.benchmarking import bench, load_bench_config

TINY = {
    "name": "tiny-power",
    "world": {"n": 160, "size": 64, "seed": 0},
    "backbone": {"world": {"n": 160, "size": 64, "seed": 1001}, "model": "lu_vit_tiny_test", "epochs": 1,
                 "train": {"data": {"batch_size": 32}, "train": {"max_steps": 4}}},
    "base": {"data": {"batch_size": 32}, "optim": {"lr": 1.0e-2, "warmup_steps": 0}, "train": {"epochs": 3}},
    "methods": {
        "oracle": {"policy": "truth", "loss": "bce"},
        "u-ones": {"policy": "u-ones", "loss": "bce"},
        "u-zeros": {"policy": "u-zeros", "loss": "bce"},
        "gls": {"policy": "gls", "loss": "gls", "loss_kwargs": {"max_logit": 20.0}},
        "lu-vit": {"policy": "gls", "loss": "luvit", "loss_kwargs": {"max_logit": 20.0}},
    },
    "oracle": "oracle",
    "baselines": ["u-ones", "u-zeros"],
    "seeds": [0, 1],
    "paired_boot": 200,
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def power(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("power")
    res = bench(TINY, out=root / "h-default", progress=False, device="cpu")
    return {"root": root, "res": res}


def test_oracle_gap_and_paired_differences(power) -> None:
    res = power["res"]
    comp = res.comparison
    assert comp is not None and list(comp.index) == ["oracle", "u-ones", "u-zeros", "gls", "lu-vit"]
    if comp.attrs["gap_defined"]:  # the oracle is surely better than u-ones: a gap to recover
        assert comp.loc["oracle", "gap_recovered"] == pytest.approx(1.0)
        assert comp.loc["u-ones", "gap_recovered"] == pytest.approx(0.0)
    else:  # tiny worlds: no gap, so none is claimed
        assert comp["gap_recovered"].isna().all()
    assert comp.loc["u-ones", "d_auc_vs_u-ones"] == 0.0
    assert comp.loc["u-ones", "d_auc_vs_u-ones_lo"] == comp.loc["u-ones", "d_auc_vs_u-ones_hi"] == 0.0
    for m in comp.index:
        lo, hi = comp.loc[m, "auc_lo"], comp.loc[m, "auc_hi"]
        assert lo <= comp.loc[m, "auc"] <= hi or np.isclose(lo, hi)
        d = comp.loc[m, "auc"] - comp.loc["u-zeros", "auc"]
        assert comp.loc[m, "d_auc_vs_u-zeros"] == pytest.approx(d)
    # the point estimate is the mean over seeds of each run's mean AUC against the truth
    per_run = {}
    for rec in res.records:
        m = json.loads(Path(rec["metrics"]).read_text())
        per_run.setdefault(rec["method"], []).append(m["vs_truth"]["summary"]["mean_auc"])
    for method, aucs in per_run.items():
        assert comp.loc[method, "auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    md = res.files["markdown"].read_text()
    assert "gap recovered" in md and "Δ vs u-ones" in md and "| oracle |" in md
    assert pd.read_csv(res.files["comparison"], index_col=0).shape[0] == 5


def test_every_method_probes_the_frozen_backbone_features(power) -> None:
    res = power["res"]
    shared = power["root"] / "_backbones"
    (bb,) = list(shared.iterdir())
    assert (bb / "backbone.json").is_file() and (bb / "run" / "checkpoints" / "best.safetensors").is_file()
    (feats,) = list((bb / "features").iterdir())
    meta = json.loads((feats / "meta.json").read_text())
    assert meta["n"] == 160 and meta["dim"] == 64  # lu_vit_tiny_test: embed_dim 64, one row per cached image
    shas = set()
    for rec in res.records:
        cfg = json.loads(Path(rec["run_dir"], "bench.json").read_text())
        run_cfg = (Path(rec["run_dir"]) / "config.yaml").read_text()
        assert str(feats) in run_cfg and "lu_probe" in run_cfg, cfg["method"]
        shas.add(json.loads(Path(rec["metrics"]).read_text())["reference_sha256"])
    assert len(shas) == 1  # one reference for every method and seed


def test_a_hedge_sweep_shares_the_backbone_and_changes_only_the_reports(power) -> None:
    root, first = power["root"], power["res"]
    bb_json = next((root / "_backbones").iterdir()) / "backbone.json"
    before = bb_json.stat().st_mtime_ns
    none = bench(TINY, out=root / "h-0", overrides=["world.hedge_fraction=0.0", "seeds=[0]"],
                 methods=["oracle", "u-ones", "gls"], progress=False, device="cpu", report=False)
    assert bb_json.stat().st_mtime_ns == before  # pretrained once, reused
    meta = json.loads((none.out / "world" / "meta.json").read_text())
    assert meta["radiologist"]["hedge_share"] == 0.0
    f = pd.read_parquet(none.out / "findings.parquet")
    assert not ((f["certainty"] > 0) & (f["certainty"] < 1)).any()  # a reader who never hedges
    # the same films and truth, other reports
    t0 = pd.read_parquet(first.out / "world" / "truth.parquet")
    t1 = pd.read_parquet(none.out / "world" / "truth.parquet")
    pd.testing.assert_series_equal(t0["present"], t1["present"])
    assert not t0["reported_cue"].equals(t1["reported_cue"])


def test_backbone_must_come_from_another_world() -> None:
    bad = {**TINY, "backbone": {**TINY["backbone"], "world": {"n": 160, "size": 64, "seed": 0}}}
    with pytest.raises(ValueError, match="separate world"):
        load_bench_config(bad)
    with pytest.raises(ValueError, match="must train on the truth"):
        load_bench_config({**TINY, "oracle": "u-ones"})
    with pytest.raises(ValueError, match="not one of the methods"):
        load_bench_config({**TINY, "baselines": ["nope"]})


def _fake_records(tmp_path: Path, scores: dict[str, list[np.ndarray]], y: np.ndarray) -> list[dict]:
    """Runs as the bench leaves them: eval-test/predictions.parquet (+ metrics.json) per (method, seed)."""
    recs = []
    for m, per_seed in scores.items():
        for seed, s in enumerate(per_seed):
            d = tmp_path / m / f"seed{seed}" / "eval-test"
            d.mkdir(parents=True)
            cols = {"image_id": [f"i{i}" for i in range(len(y))], "patient_id": [f"p{i // 2}" for i in range(len(y))]}
            cols.update({f"prob:{c}": s[:, k] for k, c in enumerate(["A", "B"])})
            cols.update({f"truth:{c}": y[:, k] for k, c in enumerate(["A", "B"])})
            pd.DataFrame(cols).to_parquet(d / "predictions.parquet")
            (d / "metrics.json").write_text(json.dumps({"classes": ["A", "B"]}))
            recs.append({"method": m, "seed": seed, "metrics": str(d / "metrics.json")})
    return recs


def test_gap_recovered_by_construction(tmp_path: Path) -> None:
    """An oracle that ranks perfectly, a baseline that guesses, a method halfway between (a mix of the two):
    gap recovered 1 / 0 / between; with an oracle no better than the baseline the gap is left undefined."""
    from repgls.benchmarking.compare import comparison

    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < 0.3).astype(float)
    noise = [rng.random(y.shape) for _ in range(3)]
    perfect = [np.clip(0.5 * y + 0.25 + 0.01 * n, 0, 1) for n in noise]
    half = [np.clip(0.5 * (0.5 * y + 0.25) + 0.5 * n, 0, 1) for n in noise]
    recs = _fake_records(tmp_path / "a", {"oracle": perfect, "base": noise, "half": half}, y)
    comp = comparison(recs, ["base"], "oracle", n_boot=300)
    assert comp.attrs["gap_defined"] and comp.attrs["n_patients"] == 200 and comp.attrs["n_seeds"] == 3
    assert comp.loc["oracle", "auc"] == pytest.approx(1.0) and abs(comp.loc["base", "auc"] - 0.5) < 0.05
    assert comp.loc["oracle", "gap_recovered"] == 1.0 and comp.loc["base", "gap_recovered"] == 0.0
    assert 0.2 < comp.loc["half", "gap_recovered"] < 1.0
    assert comp.loc["half", "gap_recovered_lo"] <= comp.loc["half", "gap_recovered"] <= comp.loc["half", "gap_recovered_hi"]
    assert comp.loc["half", "d_auc_vs_base_lo"] > 0  # surely better than guessing
    same = _fake_records(tmp_path / "b", {"oracle": noise, "base": noise, "half": half}, y)
    comp2 = comparison(same, ["base"], "oracle", n_boot=300)
    assert not comp2.attrs["gap_defined"] and comp2["gap_recovered"].isna().all()
    from repgls.benchmarking.table import comparison_markdown, gap_note

    assert gap_note(comp) is None and "no gap to recover" in comparison_markdown(comp2, ["base"])
    assert "no gap to recover" not in comparison_markdown(comp, ["base"])
