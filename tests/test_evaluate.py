"""``repgls eval`` / ``repgls.evaluation.evaluate`` on a tiny run trained for real.

The run comes from the whole pipeline at toy size: a phantom world (``repgls.data.phantom``) -> rule miner ->
``rates`` -> ``prepare_cache`` -> ``repgls.train`` with configs/phantom-tiny.yaml (LU-ViT tiny, 64 px, a few
steps). ``tiny_run`` is built once per test session (test_predict.py reuses it through ``build_tiny_run``).

Checks: metrics.json holds both sets (report labels and hidden truth) and agrees with numbers recomputed
independently (sklearn AUC on the written predictions, label / truth counts from the source tables,
thresholds chosen on the trainer's own val predictions); report.html is self-contained; CAM PNGs; the CLI;
clear errors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

REPO = Path(__file__).resolve().parents[1]
_BUILT: dict[str, dict] = {}


def build_tiny_run(root: Path) -> dict:
    """Phantom world + findings + labels + cache + a trained tiny LU-ViT run under ``root`` (memoised)."""
    if "run" in _BUILT:
        return _BUILT["run"]
    import pyarrow.parquet as pq

    from repgls.data.adapters import create_dataset
    from repgls.data.cache import prepare_cache
    from repgls.data.phantom import make_phantom
    from repgls.mining import mine
    from repgls.rating import rates, write_labels
    from repgls.training import train

    world = root / "world"
    make_phantom(world, n=110, size=64, seed=1)
    findings = mine(world / "reports.csv", id_col="study_id", text_col=["findings", "impression"])
    pq.write_table(findings, world / "findings.parquet")
    write_labels(rates(findings, studies=world / "reports.csv"), world / "labels.parquet")
    index = create_dataset("phantom", world)
    prepare_cache(index, world / "cache", size=64, workers=1, dataset="phantom", progress=False)
    run = train(REPO / "configs" / "phantom-tiny.yaml", overrides=[
        f"data.cache_dir={world / 'cache'}", f"data.labels={world / 'labels.parquet'}", "data.batch_size=16",
        "data.augment=false", "train.max_steps=6", "train.epochs=2", "train.progress=false", "train.device=cpu",
        "train.checkpoint_every=null", "optim.warmup_steps=2", f"output.run_dir={root / 'run'}",
    ])
    _BUILT["run"] = {"run": Path(run), "world": world, "cache": world / "cache", "labels": world / "labels.parquet",
                     "truth": world / "truth.parquet", "findings": world / "findings.parquet"}
    return _BUILT["run"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def evaluated(tiny_run) -> dict:
    """One full evaluation (auto-detected truth, bootstrap, CAMs, report) shared by the tests below."""
    from repgls.evaluation import evaluate

    res = evaluate(tiny_run["run"], split="test", n_boot=30, cams=3, device="cpu")
    return {"res": res, "out": tiny_run["run"] / "eval-test"}


def _strict_json(path: Path) -> dict:
    def no_const(name: str) -> None:
        raise ValueError(f"{path}: non-JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_const)


def _test_rows(tiny_run: dict) -> pd.DataFrame:
    idx = pd.read_parquet(tiny_run["cache"] / "index.parquet")
    return idx[idx["split"] == "test"].reset_index(drop=True)


def _policy_free(findings: pd.DataFrame, study_ids, classes) -> tuple[np.ndarray, np.ndarray]:
    """The findings reference recomputed by hand: (y [N, K], hedged certainty [N, K])."""
    y = np.zeros((len(study_ids), len(classes)))
    hedged = np.full(y.shape, np.nan)
    by = {(r.study_id, r.finding): r for r in findings.itertuples()}
    for i, sid in enumerate(study_ids):
        for k, c in enumerate(classes):
            r = by.get((sid, c))
            if r is None:
                continue
            if r.status == "negative" or r.certainty == 0:
                y[i, k] = 0
            elif r.certainty == 1:
                y[i, k] = 1
            else:
                y[i, k], hedged[i, k] = np.nan, r.certainty
    return y, hedged


def test_metrics_json_reference_and_truth(tiny_run, evaluated):
    out, res = evaluated["out"], evaluated["res"]
    m = _strict_json(out / "metrics.json")
    assert m == json.loads(json.dumps(res))  # what is returned is what is written
    test = _test_rows(tiny_run)
    assert m["n_images"] == len(test) > 0 and m["n_patients"] == test["patient_id"].nunique()
    assert m["truth_path"] == str(tiny_run["truth"])  # auto-detected from the cache's phantom root
    classes = m["classes"]
    for key in ("vs_reference", "vs_truth"):
        assert m[key]["classes"] == classes
        assert m[key]["n"] == len(test)
        assert set(m[key]["summary"]) >= {"mean_auc", "bacc", "bacc_logit0", "ece", "brier", "mean_auc_ci"}
        assert m[key]["settings"]["n_boot"] == 30
        assert m[key]["settings"]["ci_method"] == "percentile, patients resampled"
    ref = m["reference"]
    assert ref["source"] == "findings" and ref["path"] == str(tiny_run["findings"])  # beside labels.parquet
    assert len(m["reference_sha256"]) == 64 and len(m["truth_sha256"]) == 64
    assert m["reference_sha256"] != m["truth_sha256"]
    assert m["checkpoint"]["name"] == "best" and m["checkpoint"]["step"] >= 1

    # The policy-free reference recomputed by hand from the findings: definite statements only.
    y, hedged = _policy_free(pd.read_parquet(tiny_run["findings"]), test["study_id"].tolist(), classes)
    for k, c in enumerate(classes):
        assert m["vs_reference"]["per_class"][c]["n_pos"] == ref["n_positive"][c] == int((y[:, k] == 1).sum())
        assert m["vs_reference"]["per_class"][c]["n_neg"] == int((y[:, k] == 0).sum())
        assert ref["n_hedged"][c] == m["hedged"]["per_class"][c]["n"] == int(np.isfinite(hedged[:, k]).sum())
    assert m["hedged"]["n"] == int(np.isfinite(hedged).sum())

    # Truth counts recomputed from truth.parquet.
    truth = pd.read_parquet(tiny_run["truth"])
    tt = truth[truth["image_id"].isin(set(test["image_id"]))]
    for c in classes:
        n_present = int(tt.loc[tt["finding"] == c, "present"].sum())
        assert m["vs_truth"]["per_class"][c]["n_pos"] == n_present
        assert m["vs_truth"]["per_class"][c]["n_pos"] + m["vs_truth"]["per_class"][c]["n_neg"] == len(test)


def test_auc_matches_sklearn_on_written_predictions(evaluated):
    from sklearn.metrics import roc_auc_score

    out, res = evaluated["out"], evaluated["res"]
    pred = pd.read_parquet(out / "predictions.parquet")
    classes = res["classes"]
    assert list(pred.columns[:3]) == ["image_id", "study_id", "patient_id"]
    checked = 0
    for key, prefix in (("vs_reference", "reference:"), ("vs_truth", "truth:")):
        for c in classes:
            y, s = pred[f"{prefix}{c}"].to_numpy(), pred[f"prob:{c}"].to_numpy()
            ok = np.isfinite(y)
            if len(np.unique(y[ok])) < 2:
                assert res[key]["per_class"][c]["auc"] is None
                continue
            assert res[key]["per_class"][c]["auc"] == pytest.approx(roc_auc_score(y[ok], s[ok]), abs=1e-6)
            checked += 1
    assert checked >= 2
    probs = pred[[f"prob:{c}" for c in classes]].to_numpy()
    assert np.all((probs >= 0) & (probs <= 1))
    rate = pred[[f"rate:{c}" for c in classes]].to_numpy()
    assert np.all(np.abs(rate) < 1)  # LU-ViT rate head: tanh
    cert = pred[[f"expected_certainty:{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(cert, np.clip(probs * (1 - rate / 2) + (1 - probs) * rate / 2, 0, 1), atol=1e-6)


def test_thresholds_chosen_on_val_against_the_reference(tiny_run, evaluated):
    """Thresholds equal choose_thresholds on the best model's val predictions against the val split's reference
    (the same policy-free labels, never the run's own training labels)."""
    from repgls.metrics import choose_thresholds

    res = evaluated["res"]
    classes = res["classes"]
    pv = pd.read_parquet(tiny_run["run"] / "predictions_val.parquet")
    y_val, _ = _policy_free(pd.read_parquet(tiny_run["findings"]), pv["study_id"].tolist(), classes)
    thr = choose_thresholds(y_val, pv[[f"prob:{c}" for c in classes]].to_numpy())
    got = np.array([res["thresholds"]["values"][c] for c in classes])
    np.testing.assert_allclose(got, thr, atol=1e-5)
    assert "reference (findings) of split 'val'" in res["thresholds"]["source"]
    assert [res["vs_reference"]["per_class"][c]["threshold"] for c in classes] == pytest.approx(got.tolist())


def test_report_html_self_contained_with_truth_and_cams(evaluated):
    out = evaluated["out"]
    html = (out / "report.html").read_text(encoding="utf-8")
    for sid in ("summary", "truth", "roc", "per-class", "cams"):
        assert f'<section id="{sid}">' in html
    srcs = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in html and "http://" not in html and "https://" not in html
    cams = sorted((out / "cams").glob("*.png"))
    assert len(cams) == 3
    from PIL import Image

    for p in cams:
        im = Image.open(p)
        assert im.mode == "RGB" and im.size == (64, 64)
        name, cls = p.stem.split("__")
        assert name.startswith("s") and cls.replace("_", " ") in evaluated["res"]["classes"]


def test_no_truth_scores_the_findings_reference_with_its_typicality(tiny_run, tmp_path):
    from repgls.evaluation import evaluate

    res = evaluate(tiny_run["run"], truth=False, n_boot=0, cams=0, out_dir=tmp_path / "ev", report=False,
                   device="cpu")
    assert res["vs_truth"] is None and res["truth_path"] is None
    assert res["reference"]["typicality"]["source"] == "findings"
    assert (tmp_path / "ev" / "metrics.json").is_file() and not (tmp_path / "ev" / "report.html").exists()
    pred = pd.read_parquet(tmp_path / "ev" / "predictions.parquet")
    assert not any(c.startswith("truth:") for c in pred.columns)
    # AUC^FG population: the reference's (definite) positives, typicality from the findings' wording
    f = pd.read_parquet(tiny_run["findings"])
    test = _test_rows(tiny_run)
    y, _ = _policy_free(f, test["study_id"].tolist(), res["classes"])
    for k, c in enumerate(res["classes"]):
        want = 0
        for i, s in enumerate(test["study_id"]):
            if y[i, k] == 1:
                row = f[(f["study_id"] == s) & (f["finding"] == c)]
                want += int((row["typicality"] == "atypical").sum())
        assert res["vs_reference"]["per_class"][c]["n_atypical"] == want


@pytest.fixture(scope="module")
def policy_runs(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """Two more tiny runs of the same world: one on U-Ones labels, one on U-Zeros labels."""
    from repgls.rating import rates, write_labels
    from repgls.training import train

    root = tmp_path_factory.mktemp("policies")
    runs = {}
    for policy in ("u-ones", "u-zeros"):
        labels = root / policy / "labels.parquet"
        labels.parent.mkdir()
        write_labels(rates(tiny_run["findings"], policy=policy, studies=tiny_run["world"] / "reports.csv"), labels)
        runs[policy] = train(REPO / "configs" / "phantom-tiny.yaml", overrides=[
            f"data.cache_dir={tiny_run['cache']}", f"data.labels={labels}", "data.batch_size=16", "loss.name=bce",
            "loss.kwargs={}", "data.augment=false", "train.max_steps=3", "train.epochs=1", "train.progress=false",
            "train.device=cpu", f"output.run_dir={root / policy / 'run'}"])
    return runs


def test_u_ones_and_u_zeros_runs_share_one_reference(tiny_run, policy_runs, tmp_path):
    """Scored through ``repgls eval``, runs trained on different label policies get the same reference (same
    sha256, same positives per class); a table that mixes references is refused."""
    from typer.testing import CliRunner

    from repgls.benchmarking import bench_table
    from repgls.cli import app
    from repgls.rating import read_labels

    ones, zeros = (read_labels(policy_runs[p].parent / "labels.parquet") for p in ("u-ones", "u-zeros"))
    assert (np.nansum(ones.y, axis=0) > np.nansum(zeros.y, axis=0)).any()  # the training labels do differ
    evals = {}
    for policy, run in policy_runs.items():
        r = CliRunner().invoke(app, ["eval", str(run), "--findings", str(tiny_run["findings"]), "--n-boot", "0",
                                     "--cams", "0", "--no-report", "--device", "cpu"])
        assert r.exit_code == 0, r.output
        evals[policy] = _strict_json(run / "eval-test" / "metrics.json")
    a, b = evals["u-ones"], evals["u-zeros"]
    assert a["reference"]["source"] == b["reference"]["source"] == "findings"
    assert a["reference_sha256"] == b["reference_sha256"]
    assert a["reference"]["n_positive"] == b["reference"]["n_positive"]
    for c in a["classes"]:
        assert a["vs_reference"]["per_class"][c]["n_pos"] == b["vs_reference"]["per_class"][c]["n_pos"]
    table = bench_table({"u-ones": [a], "u-zeros": [b]})
    assert list(table.index) == ["u-ones", "u-zeros"]
    r = CliRunner().invoke(app, ["eval", str(policy_runs["u-zeros"]), "--reference", "truth", "--n-boot", "0",
                                 "--cams", "0", "--no-report", "--device", "cpu", "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    on_truth = _strict_json(tmp_path / "t" / "metrics.json")
    assert on_truth["reference"]["source"] == "truth" and on_truth["reference_sha256"] != a["reference_sha256"]
    with pytest.raises(ValueError, match="scored on different references"):
        bench_table({"u-ones": [a], "u-zeros": [on_truth]})


def test_truth_matrix_rule():
    from repgls.evaluation import truth_matrix

    truth = pd.DataFrame({
        "image_id": ["a", "a", "b", "b", "c"],
        "study_id": ["sa", "sa", "sb", "sb", "sc"],
        "finding": ["X", "Y", "X", "Y", "X"],
        "present": [True, False, True, True, False],
        "severity": [0.8, 0.0, 0.2, 0.9, 0.0],
        "severity_level": ["severe", "none", "mild", "severe", "none"],
        "prior_state": ["none", "none", "same", "present-larger", "none"],
    })
    y, typ = truth_matrix(truth, ["b", "a", "zz"], ["X", "Y", "Z"])
    np.testing.assert_array_equal(y[:2, :2], [[1, 1], [1, 0]])
    assert np.isnan(y[2]).all() and np.isnan(y[:, 2]).all()  # unknown image, class missing from the table
    # a/X severe -> typical; b/X mild -> atypical; b/Y severe but improving -> atypical; absent -> NaN
    np.testing.assert_array_equal(typ[:2, :2], [[0, 0], [1, np.nan]])


def test_cli_eval(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from repgls.cli import app

    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["eval", str(tiny_run["run"]), "--split", "test", "--n-boot", "0", "--cams", "1",
                                 "--out", str(out), "--truth", str(tiny_run["truth"]), "--device", "cpu",
                                 "--checkpoint", "last"])
    assert r.exit_code == 0, r.output
    m = _strict_json(out / "metrics.json")
    assert m["checkpoint"]["name"] == "last" and m["vs_truth"] is not None
    assert (out / "report.html").is_file() and len(list((out / "cams").glob("*.png"))) == 1
    said = " ".join(r.output.split())  # rich wraps at the terminal width
    assert "Mean AUC" in said and "vs hidden truth" in said and "vs reference (findings)" in said

    bad = CliRunner().invoke(app, ["eval", str(tmp_path)])
    assert bad.exit_code == 2 and "not a run folder" in bad.output


def test_clear_errors(tiny_run, tmp_path):
    from repgls.evaluation import evaluate, load_run

    with pytest.raises(ValueError, match="no images of split 'nope'"):
        evaluate(tiny_run["run"], split="nope", n_boot=0, cams=0, out_dir=tmp_path, device="cpu")
    with pytest.raises(FileNotFoundError, match="truth file not found"):
        evaluate(tiny_run["run"], truth=tmp_path / "none.parquet", n_boot=0, cams=0, out_dir=tmp_path)
    other = tmp_path / "other_truth.parquet"
    pd.DataFrame({"image_id": ["zz"], "finding": ["Edema"], "present": [True]}).to_parquet(other)
    with pytest.raises(ValueError, match=r"none of the \d+ images .* is in this truth table"):
        evaluate(tiny_run["run"], truth=other, n_boot=0, cams=0, out_dir=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="does not fit model 'lu_vit_tiny'"):
        load_run(tiny_run["run"], image_size=32, device="cpu")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="--reference nope"):
        evaluate(tiny_run["run"], reference="nope", n_boot=0, cams=0, out_dir=tmp_path / "x", device="cpu")
    assert not (tmp_path / "x").exists()


def test_unwritable_output_is_refused_before_any_inference(tiny_run, tmp_path, monkeypatch):
    """The library function checks its output place first, as the CLI does: no prediction is computed."""
    import repgls.evaluation.scoring as S

    calls = []
    monkeypatch.setattr(S, "_predict_split", lambda *a, **k: calls.append(1))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"evaluation output folder .*a_file"):
        S.evaluate(tiny_run["run"], n_boot=0, cams=0, out_dir=blocker / "ev", device="cpu")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        S.evaluate(tiny_run["run"], n_boot=0, cams=0, out_dir=blocker, device="cpu")
    assert not calls and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_failed_evaluation_leaves_no_half_folder(tiny_run, tmp_path, monkeypatch):
    """An error while writing (here: Grad-CAM) leaves neither a half-written folder nor a changed old one."""
    import repgls.evaluation.scoring as S

    out = tmp_path / "ev"
    out.mkdir()
    (out / "old.txt").write_text("previous evaluation")

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(S, "_write_cams", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        S.evaluate(tiny_run["run"], n_boot=0, cams=2, out_dir=out, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]  # no temporary folder left
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
