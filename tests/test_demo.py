"""repgls demo: sample mining, the whole pipeline on a very small phantom world, the CLI (reuses the run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.metrics import roc_auc_score

from repgls.benchmarking.demo import FINDING_COLUMNS, mine_samples, sample_reports_path
from repgls.benchmarking.demo import demo as run_demo
from repgls.vocab import load_vocab

SMALL = {"n": 80, "size": 64, "epochs": 1, "seed": 0}


def test_mine_samples_table() -> None:
    df = mine_samples()
    assert list(df.columns) == list(FINDING_COLUMNS)
    assert "sentence" not in df.columns  # report text is never printed
    ids = set(pd.read_csv(sample_reports_path(), dtype=str)["study_id"])
    assert set(df["study_id"]) <= ids and len(set(df["study_id"])) >= len(ids) - 1
    assert set(df["finding"]) <= set(load_vocab("chexpert14").classes)
    assert df["certainty"].between(0, 1).all()
    assert set(df["status"]) <= {"positive", "negative", "uncertain"}
    # demo-003 hedges pneumonia ("cannot be excluded"): the miner must keep the doubt
    pn = df[(df.study_id == "demo-003") & (df.finding == "Pneumonia")]
    assert len(pn) == 1 and pn.iloc[0]["status"] == "uncertain" and 0 < pn.iloc[0]["certainty"] < 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    con = Console(record=True, width=160)
    res = run_demo(out, progress=False, console=con, **SMALL)
    return res, con.export_text()


def test_demo_outputs(demo) -> None:
    res, text = demo
    out = Path(res.out)
    for f in (
        "report.html",
        "results.csv",
        "findings.parquet",
        "labels/gls.parquet",
        "labels/u-ones.parquet",
        "world/truth.parquet",
        "cache/meta.json",
    ):
        assert (out / f).is_file(), f
    assert list(res.table.index) == ["gls", "u-ones-bce"]
    for col in ("auc_reference_mean", "auc_truth_mean", "ece_reference_mean", "ece_truth_mean"):
        v = res.table[col].to_numpy(dtype=float)
        assert np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all(), col
    # printed: the samples table and the comparison, with this run's numbers
    assert "Bundled sample reports" in text and "demo-003" in text
    assert f"{res.table.loc['gls', 'auc_truth_mean']:.3f}" in text


def test_demo_numbers_are_recomputable(demo) -> None:
    """The table's truth AUC equals the mean per-class AUC recomputed from the saved test predictions."""
    res, _ = demo
    for method in res.table.index:
        pred = pd.read_parquet(
            Path(res.out) / "runs" / method / "seed0" / "eval-test" / "predictions.parquet"
        )
        classes = [c[len("prob:") :] for c in pred.columns if c.startswith("prob:")]
        aucs = []
        for c in classes:
            y, s = pred[f"truth:{c}"].to_numpy(), pred[f"prob:{c}"].to_numpy()
            ok = np.isfinite(y)
            if ok.any() and 0 < y[ok].sum() < ok.sum():
                aucs.append(roc_auc_score(y[ok], s[ok]))
        assert aucs
        assert res.table.loc[method, "auc_truth_mean"] == pytest.approx(np.mean(aucs), abs=1e-6)


def test_demo_report_self_contained(demo) -> None:
    res, _ = demo
    html = Path(res.report).read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "data:image/png;base64," in html
    assert "u-ones-bce" in html and "gls" in html  # method comparison
    assert "truth" in html.lower()


def test_demo_cli_reuses_finished_runs(demo) -> None:
    from typer.testing import CliRunner

    from repgls.cli import app

    res, _ = demo
    before = {
        p: p.stat().st_mtime_ns for p in Path(res.out).glob("runs/*/seed0/checkpoints/best.safetensors")
    }
    assert len(before) == 2
    r = CliRunner().invoke(
        app, ["demo", "--out", str(res.out), "--n", str(SMALL["n"]), "--epochs", "1", "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    assert "reused" in r.output
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # nothing retrained
    tab = pd.read_csv(Path(res.out) / "results.csv", index_col=0)
    assert tab.loc["gls", "auc_truth_mean"] == pytest.approx(res.table.loc["gls", "auc_truth_mean"])
    meta = json.loads((Path(res.out) / "world" / "meta.json").read_text())
    assert meta["n"] == SMALL["n"] and meta["seed"] == 0


def test_demo_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n must be"):
        run_demo(tmp_path, n=10, progress=False, console=Console(file=open("/dev/null", "w")))
