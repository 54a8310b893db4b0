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

SMALL = {"n": 120, "size": 64, "epochs": 3, "seed": 0, "seeds": 2, "backbone_n": 120, "backbone_epochs": 1,
         "model": "lu_vit_tiny_test"}
METHODS = ["oracle", "u-ones", "gls", "gls-soft"]


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
    for f in ("report.html", "results.csv", "comparison.csv", "findings.parquet", "labels/truth.parquet",
              "labels/gls.parquet", "labels/gls-r0=0.parquet", "labels/u-ones.parquet", "world/truth.parquet",
              "cache/meta.json"):
        assert (out / f).is_file(), f
    assert list(res.table.index) == METHODS and (res.table["n_seeds"] == 2).all()
    for col in ("auc_reference_mean", "auc_truth_mean", "ece_reference_mean", "ece_truth_mean"):
        v = res.table[col].to_numpy(dtype=float)
        assert np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all(), col
    comp = res.comparison
    assert list(comp.index) == METHODS
    assert comp.attrs["gap_defined"] or comp["gap_recovered"].isna().all()
    assert comp.loc["u-ones", "d_auc_vs_u-ones"] == 0.0
    # printed: the samples table and the paired comparison, with this run's numbers
    assert "Bundled sample reports" in text and "demo-003" in text
    assert "Did report-guided labels help?" in text
    assert f"{comp.loc['gls', 'auc']:.3f}" in text and f"{comp.loc['gls', 'd_auc_vs_u-ones']:+.3f}" in text


def test_demo_numbers_are_recomputable(demo) -> None:
    """Each method's mean AUC vs truth is the mean over seeds of the per-class AUCs recomputed from the saved
    test predictions; every run was scored on the same test images and truth."""
    res, _ = demo
    for method in METHODS:
        per_seed = []
        for seed in (0, 1):
            pred = pd.read_parquet(Path(res.out) / "runs" / method / f"seed{seed}" / "eval-test" / "predictions.parquet")
            classes = [c[len("prob:"):] for c in pred.columns if c.startswith("prob:")]
            assert len(classes) == 5  # the five findings the backbone sees
            aucs = []
            for c in classes:
                y, s = pred[f"truth:{c}"].to_numpy(), pred[f"prob:{c}"].to_numpy()
                ok = np.isfinite(y)
                if ok.any() and 0 < y[ok].sum() < ok.sum():
                    aucs.append(roc_auc_score(y[ok], s[ok]))
            per_seed.append(np.mean(aucs))
        assert res.comparison.loc[method, "auc"] == pytest.approx(np.mean(per_seed), abs=1e-6)
        assert res.table.loc[method, "auc_truth_mean"] == pytest.approx(np.mean(per_seed), abs=1e-6)


def test_demo_report_answers_first(demo) -> None:
    res, _ = demo
    html = Path(res.report).read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "data:image/png;base64," in html
    sections = re.findall(r'<section id="([a-z-]+)">', html)
    assert sections[0] == "answer" and "comparison" in sections
    answer = html.split('<section id="answer">', 1)[1].split("</section>", 1)[0]
    assert "Gap recovered" in answer and "u-ones" in answer and "gls-soft" in answer
    assert re.search(r"is (better than|worse than|not distinguishable from) u-ones", answer)
    assert 'class="best"' not in html  # no "best" marks inside the noise
    assert "[95% CI]" not in html.split('<section id="per-class">', 1)[1].split("</section>", 1)[0]  # no CIs ran


def test_demo_page_shows_the_comparison_in_the_first_screen(demo, tmp_path: Path) -> None:
    """In headless Chromium at 1,400 x 1,000 px, the comparison section starts inside the first screen."""
    from test_audit import CHROMIUM, chromium

    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; .ci/run installs it)")
    res, _ = demo
    page = tmp_path / "probe.html"  # a copy that reports the section's position in its title
    probe = ("<script>addEventListener('load',()=>{const r=document.getElementById('answer')"
             ".getBoundingClientRect();document.title='top='+Math.round(r.top)+';h='+Math.round(r.height)})</script>")
    page.write_text(Path(res.report).read_text(encoding="utf-8").replace("</body>", probe + "</body>"))
    out = chromium(page, "--window-size=1400,1000", "--dump-dom")
    top = int(re.search(r"<title>top=(\d+);h=(\d+)</title>", out).group(1))
    assert top < 300  # the first section, right under the title
    png = Path(res.out) / "report-top.png"
    chromium(Path(res.report), "--window-size=1400,1000", "--hide-scrollbars", f"--screenshot={png}")
    assert png.stat().st_size > 10_000


def test_demo_cli_reuses_finished_runs(demo) -> None:
    from typer.testing import CliRunner

    from repgls.cli import app

    res, _ = demo
    before = {p: p.stat().st_mtime_ns for p in Path(res.out).glob("runs/*/seed*/checkpoints/best.safetensors")}
    assert len(before) == 8
    r = CliRunner().invoke(app, ["demo", "--out", str(res.out), "--n", str(SMALL["n"]), "--epochs", "3",
                                 "--seeds", "2", "--backbone-n", "120", "--backbone-epochs", "1",
                                 "--model", "lu_vit_tiny_test", "--no-progress"])
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
