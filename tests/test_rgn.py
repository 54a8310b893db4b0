"""Rate Generation Network: a tiny RGN on the real (frozen) MiniLM; shapes, determinism, I/O, masking."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from repgls.rating import rates, write_labels
from repgls.rating.labels import LabelTable
from repgls.rating.rgn import RGN, mention_targets, predict_findings, train_rgn

SENTENCES = [  # (finding, status, certainty, sentence): synthetic wording
    ("Cardiomegaly", "positive", 1.0, "The heart is enlarged."),
    ("Pneumonia", "negative", 0.0, "No focal consolidation to suggest pneumonia."),
    ("Pneumonia", "uncertain", 0.45, "Possible pneumonia in the left base."),
    ("Pleural Effusion", "uncertain", 0.35, "A small effusion cannot be excluded."),
    ("Edema", "uncertain", 0.77, "Likely mild pulmonary edema."),
    ("Pneumothorax", "negative", 0.0, "There is no pneumothorax."),
    ("Atelectasis", "positive", 1.0, "Left basilar atelectasis."),
    ("Pleural Effusion", "negative", 0.0, "No pleural effusion."),
]


def make_findings(n: int = 24) -> pd.DataFrame:
    rows = []
    for i in range(n):
        f, s, p, t = SENTENCES[i % len(SENTENCES)]
        rows.append({"study_id": f"s{i // 2}", "finding": f, "status": s, "certainty": p, "sentence": t})
    return pd.DataFrame(rows).drop_duplicates(["study_id", "finding"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def findings() -> pd.DataFrame:
    return make_findings()


@pytest.fixture(scope="module")
def rgn(findings) -> RGN:
    return train_rgn(findings, epochs=60, hidden=64, seed=3)


def test_shapes_range_and_fit(rgn, findings):
    pred = rgn.predict(findings)
    assert pred.shape == (len(findings),) and pred.dtype == np.float32
    assert np.all(np.abs(pred) < 1)
    target = mention_targets(findings)
    # it learned the mined rates: hedges (r > 0.4) above definite statements (r = -0.2)
    assert pred[target > 0.4].min() > pred[target < 0].max()
    assert np.mean(np.abs(pred - target)) < 0.15
    import torch

    with torch.no_grad():
        e = torch.from_numpy(rgn.embed(["Possible pneumonia."], ["Pneumonia"]))
        assert e.shape == (1, rgn.config["embed_dim"])
        assert rgn.head.forward_all(e).shape == (1, len(rgn.classes))


def test_class_conditioning(rgn):
    # one sentence, two classes: the encoder input differs, so the hedge can be attributed per class
    s = "Possible pneumonia; no pleural effusion."
    e = rgn.embed([s, s], ["Pneumonia", "Pleural Effusion"])
    assert not np.allclose(e[0], e[1])
    assert np.linalg.norm(e, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_deterministic_by_seed(rgn, findings):
    again = train_rgn(findings, epochs=60, hidden=64, seed=3)
    np.testing.assert_array_equal(again.predict(findings), rgn.predict(findings))
    other = train_rgn(findings, epochs=60, hidden=64, seed=4)
    assert not np.array_equal(other.predict(findings), rgn.predict(findings))


def test_save_load_roundtrip(rgn, findings, tmp_path):
    folder = rgn.save(tmp_path / "rgn")
    cfg = json.loads((folder / "config.json").read_text())
    for key in ("encoder", "classes", "vocab", "pooling", "hidden", "embed_dim", "training", "versions"):
        assert key in cfg
    assert cfg["training"]["seed"] == 3 and cfg["classes"] == list(rgn.classes)
    weights = load_file(str(folder / "rgn.safetensors"))
    assert weights["per_class.weight"].shape == (14, 64)
    loaded = RGN.load(folder)
    np.testing.assert_allclose(loaded.predict(findings), rgn.predict(findings), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="not an RGN checkpoint"):
        RGN.load(tmp_path)


def test_masking_with_labels_targets(findings):
    # targets from a labels table: ignored classes (y NaN) and absent studies give no training row
    df = rates(findings)
    lt = LabelTable.from_frame(df)
    k = lt.classes.index("Pleural Effusion")
    lt.y[:, k] = np.nan
    lt = LabelTable(lt.study_ids[:-1], lt.classes, lt.y[:-1], lt.r[:-1], lt.p[:-1], lt.meta)  # drop a study
    t = mention_targets(findings, lt)
    ignored = (findings["finding"] == "Pleural Effusion") | (findings["study_id"] == df["study_id"].iloc[-1])
    assert np.isnan(t[ignored.to_numpy()]).all()
    np.testing.assert_allclose(t[~ignored.to_numpy()], mention_targets(findings)[~ignored.to_numpy()])
    small = train_rgn(findings, labels=lt, epochs=2, hidden=16)
    assert small.config["training"]["n_mentions"] == int((~ignored).sum())
    weighted = train_rgn(findings, labels=lt, epochs=2, hidden=16, hedge_weight=5.0)
    assert weighted.config["training"]["hedge_weight"] == 5.0
    assert not np.array_equal(weighted.predict(findings), small.predict(findings))


def test_rates_with_rgn_keeps_y_and_unmentioned(rgn, findings):
    plain = LabelTable.from_frame(rates(findings))
    with_rgn = LabelTable.from_frame(rates(findings, rgn=rgn))
    np.testing.assert_array_equal(with_rgn.y, plain.y)
    mentioned = ~np.isnan(plain.p)
    assert (with_rgn.r[~mentioned] == 0).all()
    assert not np.allclose(with_rgn.r[mentioned], plain.r[mentioned])
    assert with_rgn.meta["rgn"]["config"]["encoder"] == rgn.config["encoder"]
    with pytest.raises(ValueError, match="cannot be combined with policy"):
        rates(findings, policy="u-ones", rgn=rgn)
    with pytest.raises(ValueError, match="'sentence' column"):
        rgn.predict(findings.drop(columns=["sentence"]))


def test_cli_rgn_train_predict(findings, tmp_path):
    from repgls.cli import app

    fpath = tmp_path / "findings.parquet"
    findings.to_parquet(fpath)
    runner = CliRunner()
    res = runner.invoke(app, ["rgn", "train", str(fpath), "--out", str(tmp_path / "rgn"), "--epochs", "3",
                              "--hidden", "16"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["rgn", "predict", str(fpath), "--rgn", str(tmp_path / "rgn"),
                              "--out", str(tmp_path / "rates.parquet")])
    assert res.exit_code == 0, res.output
    out = pd.read_parquet(tmp_path / "rates.parquet")
    assert list(out.columns) == ["study_id", "finding", "status", "certainty", "rate_mined", "rate_rgn"]
    assert len(out) == len(findings) and out["rate_rgn"].abs().max() < 1
    write_labels(rates(findings), tmp_path / "labels.parquet")
    res = runner.invoke(app, ["rates", str(fpath), "--out", str(tmp_path / "l2.parquet"),
                              "--rgn", str(tmp_path / "rgn")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["rgn", "predict", str(fpath), "--rgn", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not an RGN checkpoint" in " ".join(res.output.split())
    pred = predict_findings(tmp_path / "rgn", findings)
    np.testing.assert_allclose(pred["rate_rgn"].to_numpy(), out["rate_rgn"].to_numpy(), atol=1e-6)


def test_cli_rgn_from_reports_file(tmp_path):
    """`rgn train REPORTS LABELS` and `rgn predict REPORTS`: reports are mined first for the mention sentences."""
    from repgls.cli import app
    from repgls.mining import mine

    reports = pd.DataFrame({
        "uid": [f"s{i}" for i in range(12)],
        "impression": ["Small left pleural effusion.", "Cannot exclude pneumonia.", "No pneumothorax.",
                       "Mild cardiomegaly.", "Probable atelectasis at the left base.", "Lungs are clear."] * 2,
    })
    rpath = tmp_path / "reports.csv"
    reports.to_csv(rpath, index=False)
    lpath = tmp_path / "labels.parquet"
    write_labels(rates(mine(rpath, id_col="uid", text_col="impression")), lpath)
    runner = CliRunner()
    res = runner.invoke(app, ["rgn", "train", str(rpath), str(lpath), "--out", str(tmp_path / "rgn"),
                              "--id-col", "uid", "--text-col", "impression", "--epochs", "2", "--hidden", "8"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["rgn", "predict", str(rpath), "--rgn", str(tmp_path / "rgn"), "--out",
                              str(tmp_path / "rates.parquet"), "--id-col", "uid", "--text-col", "impression"])
    assert res.exit_code == 0, res.output
    out = pd.read_parquet(tmp_path / "rates.parquet")
    mined = mine(rpath, id_col="uid", text_col="impression").to_pandas()
    assert len(out) == len(mined) and set(out["study_id"]) == set(mined["study_id"])
    assert out["rate_rgn"].abs().max() < 1
