"""End to end on every real-dataset adapter: fake release tree -> ``repgls prepare`` -> labels -> ``repgls train``
(1 epoch, tiny ResNet, 64 px, CPU) -> ``repgls eval``, all through the CLI (``typer.testing.CliRunner``).

The trees come from tests/fakes.py (file names, CSV columns and folders of the real releases). Per adapter:

* ``data.labels: official`` -- the dataset's own label files: MIMIC-CXR-JPG's chexpert CSV, CheXpert's
  train/valid CSVs, NIH's Data_Entry CSV, a generic table's ``label:<Class>`` columns. Open-i ships no label
  table (MeSH terms only), so training it on ``official`` must stop with a clear error.
* labels mined from the tree's own reports (MIMIC report tree, CheXpert Plus sections, Open-i
  indiana_reports.csv): ``repgls mine`` -> ``repgls rates`` -> train. The fake report texts are rewritten so
  that every split holds a study with and one without effusion / cardiomegaly (so an AUC is defined).

Checked each time: run folder (checkpoints, metrics.jsonl, predictions_val.parquet), one optimiser step per
cached train image (batch size 1, one epoch), class names / order equal to the adapter's (or vocabulary's)
classes, val predictions = the cached val images, eval's metrics.json (n_images = test split, the labels it
scores equal the label source recomputed independently, AUC finite exactly where a class has both labels and
equal to sklearn's) and predictions.parquet (one row per test image).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("timm")

from typer.testing import CliRunner

from fakes import make_chexpert, make_mimic, make_nih, make_openi, make_table
from repgls.cli import app
from repgls.data.adapters import CHEXPERT_CLASSES, MIMIC_CLASSES, NIH_CLASSES, create_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
POS_TEXT = ("FINDINGS: Large right pleural effusion. The heart is enlarged.\n"
            "IMPRESSION: Pleural effusion. Cardiomegaly.")
NEG_TEXT = "FINDINGS: No pleural effusion. Heart size is normal.\nIMPRESSION: No acute cardiopulmonary process."
POS_FIND, POS_IMP = (s.split(": ", 1)[1] for s in POS_TEXT.split("\n"))
NEG_FIND, NEG_IMP = (s.split(": ", 1)[1] for s in NEG_TEXT.split("\n"))
VOCAB_CLASSES = {
    "chexpert14": ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity",
                   "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                   "Pleural Other", "Fracture", "Support Devices"),
    "nih14": NIH_CLASSES,
}
EFFUSION = {"chexpert14": "Pleural Effusion", "nih14": "Effusion"}


# ----------------------------------------------------------------------------------------------- helpers
def cli(*args: object, ok: bool = True):
    res = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, f"repgls {' '.join(map(str, args))}\n{res.output}\n{res.exception!r}"
    return res


def prepare(dataset: str, root: Path, out: Path, *extra: object) -> pd.DataFrame:
    """``repgls prepare`` at 64 px in-process; returns the cache index (all rows must be done)."""
    cli("prepare", dataset, "--root", root, "--out", out, "--size", SIZE, "--workers", 1, "--no-progress", *extra)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] and meta["n_failed"] == 0 and meta["n_done"] == meta["n"]
    idx = pd.read_parquet(out / "index.parquet")
    assert set(idx["split"]) == {"train", "val", "test"}, idx["split"].value_counts()
    return idx


def write_config(path: Path, cache: Path, labels: str | Path, run: Path, loss: str = "bce") -> Path:
    cfg = {
        "data": {"cache_dir": str(cache), "labels": str(labels), "augment": True, "num_workers": 0,
                 "batch_size": 1, "eval_batch_size": 64, "pin_memory": False, "image_size": SIZE},
        "model": {"name": "resnet_tiny_test", "pretrained": False},
        "loss": {"name": loss},
        "optim": {"name": "adamw", "lr": 1e-3, "warmup_steps": 0},
        "train": {"epochs": 1, "seed": 0, "device": "cpu", "bf16": False, "channels_last": False,
                  "progress": False, "log_every": 4, "checkpoint_every": None},
        "output": {"run_dir": str(run)},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_and_eval(tmp: Path, cache: Path, labels: str | Path, classes: tuple[str, ...], loss: str = "bce",
                   cams: int = 0) -> dict:
    """``repgls train`` then ``repgls eval --split test``; checks the run folder and returns what eval wrote.

    ``cams`` > 0 also writes the Grad-CAM PNGs and report.html."""
    run = tmp / "run"
    cli("train", "--config", write_config(tmp / "cfg.yaml", cache, labels, run, loss))
    idx = pd.read_parquet(cache / "index.parquet")
    n = idx["split"].value_counts()
    for f in ("config.yaml", "metrics.jsonl", "predictions_val.parquet", "checkpoints/last.safetensors",
              "checkpoints/last.json", "checkpoints/best.safetensors", "checkpoints/best.json"):
        assert (run / f).is_file(), f
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    # batch size 1, drop_last, one epoch, one process: one optimiser step per cached train image
    assert (last["epoch"], last["step"]) == (1, n["train"])
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert train_recs and all(math.isfinite(r["loss"]) for r in train_recs)
    vals = [r for r in recs if r["kind"] == "val"]
    assert len(vals) == 1 and list(vals[0]["auc"]) == list(classes)
    pv = pd.read_parquet(run / "predictions_val.parquet")
    assert len(pv) == n["val"] and set(pv["image_id"]) == set(idx.loc[idx["split"] == "val", "image_id"])
    assert [c[5:] for c in pv.columns if c.startswith("prob:")] == list(classes)

    extra = ["--n-boot", 20, "--cams", cams] if cams else ["--n-boot", 0, "--cams", 0, "--no-report"]
    cli("eval", run, "--split", "test", "--device", "cpu", *extra)
    out = run / "eval-test"
    m = json.loads((out / "metrics.json").read_text())
    pred = pd.read_parquet(out / "predictions.parquet")
    test = idx[idx["split"] == "test"]
    assert m["classes"] == list(classes) and m["n_images"] == len(test) == len(pred)
    assert m["vs_reference"]["n"] == len(test) and m["thresholds"]["values"] is not None
    assert list(pred["image_id"]) == list(test["image_id"])  # cache order
    assert list(pred["study_id"]) == list(test["study_id"])
    probs = pred[[f"prob:{c}" for c in classes]].to_numpy()
    assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()
    from sklearn.metrics import roc_auc_score

    scored = 0
    for c in classes:
        y, s = pred[f"reference:{c}"].to_numpy(), pred[f"prob:{c}"].to_numpy()
        ok = np.isfinite(y)
        auc = m["vs_reference"]["per_class"][c]["auc"]
        if len(np.unique(y[ok])) < 2:
            assert auc is None, c  # one label only among the test images: AUC undefined, written as null
        else:
            assert auc == pytest.approx(roc_auc_score(y[ok], s[ok]), abs=1e-6), c
            scored += 1
    assert scored >= 1
    assert math.isfinite(m["vs_reference"]["summary"]["mean_auc"])
    if cams:
        assert len(list((out / "cams").glob("*.png"))) == cams and (out / "report.html").is_file()
        assert m["vs_reference"]["summary"]["mean_auc_ci"] is not None
    return {"run": run, "metrics": m, "pred": pred, "index": idx}


def official_truth(test: pd.DataFrame, classes: tuple[str, ...]) -> np.ndarray:
    """Independent reading of ``label:C`` per ``data.labels: official``: -1 ignored (NaN), blank = 0."""
    y = test[[f"label:{c}" for c in classes]].to_numpy(dtype=np.float64)
    y = np.where(np.isnan(y), 0.0, y)
    return np.where(y == -1, np.nan, y)


def assert_labels_equal(pred: pd.DataFrame, classes: tuple[str, ...], want: np.ndarray) -> None:
    got = pred[[f"reference:{c}" for c in classes]].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(got, want)


def mined_labels(tmp: Path, reports: Path, vocab: str, *mine_args: object) -> Path:
    """``repgls mine`` -> ``repgls rates`` (GLS) -> labels.parquet (findings.parquet beside it)."""
    findings, labels = tmp / "findings.parquet", tmp / "labels.parquet"
    cli("mine", reports, "--out", findings, "--vocab", vocab, "--no-progress", *mine_args)
    cli("rates", findings, "--out", labels, "--vocab", vocab)
    return labels


def assert_mined(res: dict, vocab: str, positive: set[str]) -> None:
    """Test-split labels follow the rewritten reports: effusion and cardiomegaly 1 in ``positive`` studies."""
    pred, m = res["pred"], res["metrics"]
    assert {"Cardiomegaly", EFFUSION[vocab]} <= set(VOCAB_CLASSES[vocab])
    want = pred["study_id"].isin(positive).to_numpy(dtype=np.float64)
    assert 0 < want.sum() < len(want)
    for c in (EFFUSION[vocab], "Cardiomegaly"):
        np.testing.assert_array_equal(pred[f"reference:{c}"].to_numpy(dtype=np.float64), want)
        assert math.isfinite(m["vs_reference"]["per_class"][c]["auc"])
    assert m["training_labels"].endswith("labels.parquet") and m["reference"]["typicality"]["source"] == "findings"
    assert m["reference"]["source"] == "findings"


# -------------------------------------------------------------------------------------------- MIMIC-CXR-JPG
@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mimic")
    tree = root / "mimic-cxr-jpg"
    made = make_mimic(tree, n_subjects=6)  # splits: 4 train, 1 validate, 1 test subject; 2 studies x 2 images
    positive = set()
    for subject, studies in made["labels"].groupby("subject_id")["study_id"]:
        for k, study in enumerate(sorted(studies)):  # each subject: one study with, one without findings
            text = POS_TEXT if k == 0 else NEG_TEXT
            positive |= {f"s{study}"} if k == 0 else set()
            p = tree / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}.txt"
            p.write_text(f"                                 FINAL REPORT\n {text}\n")
    idx = prepare("mimic-cxr-jpg", tree, root / "cache")
    return {"root": root, "tree": tree, "cache": root / "cache", "index": idx, "labels": made["labels"],
            "positive": positive}


def test_mimic_cache_index(mimic):
    idx = mimic["index"]
    assert (idx["split"].value_counts() == pd.Series({"train": 16, "val": 4, "test": 4})).all()
    assert idx["study_id"].str.match(r"^s\d{8}$").all() and idx["report_path"].str.endswith(".txt").all()
    lab = mimic["labels"].assign(study_id=lambda d: "s" + d["study_id"].astype(str)).set_index("study_id")
    for c in MIMIC_CLASSES:  # chexpert CSV joined by study
        np.testing.assert_array_equal(idx[f"label:{c}"].to_numpy(), lab.loc[idx["study_id"], c].to_numpy())


def test_mimic_official(mimic, tmp_path):
    res = train_and_eval(tmp_path, mimic["cache"], "official", MIMIC_CLASSES)
    test = res["index"][res["index"]["split"] == "test"]
    assert_labels_equal(res["pred"], MIMIC_CLASSES, official_truth(test, MIMIC_CLASSES))
    assert res["metrics"]["training_labels"] == "official"


def test_split_name_mismatch_is_clear_error(mimic, tmp_path):
    """MIMIC's official 'validate' split is cached as 'val': asking for 'validate' names the cache's splits."""
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", mimic["cache"], "official", run)
    res = cli("train", "--config", cfg, "data.val_split=validate", ok=False)
    assert res.exit_code == 2, (res.output, res.exception)
    msg = " ".join(res.output.split())
    assert "'data.val_split': no images of split 'validate'" in msg and "(its splits: test, train, val)" in msg
    assert not run.exists()


def test_mimic_mined_reports(mimic, tmp_path):
    labels = mined_labels(tmp_path, mimic["tree"] / "files", "chexpert14", "--sections", "impression,findings")
    res = train_and_eval(tmp_path, mimic["cache"], labels, VOCAB_CLASSES["chexpert14"], loss="gls")
    assert_mined(res, "chexpert14", mimic["positive"])


# ------------------------------------------------------------------------------------------------- CheXpert
@pytest.fixture(scope="module")
def chexpert(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("chexpert")
    tree = root / "chexpert"
    make_chexpert(tree, n_train_patients=8, n_valid_patients=2, plus=True)
    plus_p = next(tree.glob("df_chexpert_plus*.csv"))
    plus = pd.read_csv(plus_p)
    pos = plus["path_to_image"].str.contains("/study1/")  # study1 of every patient: effusion + cardiomegaly
    plus["section_findings"] = np.where(pos, POS_FIND, NEG_FIND)
    plus["section_impression"] = np.where(pos, POS_IMP, NEG_IMP)
    plus.to_csv(plus_p, index=False)
    idx = prepare("chexpert", tree, root / "cache", "--view", "frontal")
    assert (idx["projection"] == "frontal").all() and set(idx["view"]) == {"AP", "PA"}
    return {"root": root, "tree": tree, "cache": root / "cache", "index": idx}


def test_chexpert_official(chexpert, tmp_path):
    idx = chexpert["index"]
    # valid.csv (2 patients) is the test split; val is carved patient-wise out of train.csv
    assert set(idx.loc[idx["split"] == "test", "patient_id"]) == {"patient64541", "patient64542"}
    # image ids hold slashes (patient00001/study1/view1_frontal): CAM file names must still work
    res = train_and_eval(tmp_path, chexpert["cache"], "official", CHEXPERT_CLASSES, cams=2)
    test = idx[idx["split"] == "test"]
    assert_labels_equal(res["pred"], CHEXPERT_CLASSES, official_truth(test, CHEXPERT_CLASSES))


def test_chexpert_plus_mined_reports(chexpert, tmp_path):
    # README recipe: the adapter joins CheXpert Plus sections by image; mine one row per study
    df = create_dataset("chexpert", chexpert["tree"], view="frontal")
    reports = tmp_path / "reports.csv"
    df.drop_duplicates("study_id")[["study_id", "findings", "impression"]].to_csv(reports, index=False)
    labels = mined_labels(tmp_path, reports, "chexpert14", "--id-col", "study_id", "--text-col",
                          "findings,impression")
    res = train_and_eval(tmp_path, chexpert["cache"], labels, VOCAB_CLASSES["chexpert14"], loss="gls")
    positive = {s for s in chexpert["index"]["study_id"] if s.endswith("/study1")}
    assert_mined(res, "chexpert14", positive)


# ------------------------------------------------------------------------------------------------------ NIH
def test_nih_official(tmp_path):
    tree = tmp_path / "nih"
    entry = make_nih(tree, n_patients=10, per_patient=3)
    idx = prepare("nih", tree, tmp_path / "cache")
    assert set(idx.loc[idx["split"] == "test", "patient_id"]) == {"2", "7"}  # official test_list.txt
    classes = (*NIH_CLASSES, "No Finding")
    res = train_and_eval(tmp_path, tmp_path / "cache", "official", classes)
    test = idx[idx["split"] == "test"]
    fl = entry.set_index("Image Index").loc[test["image_id"] + ".png", "Finding Labels"].str.split("|")
    want = np.array([[float(c in labs) for c in classes] for labs in fl])  # Finding Labels, read independently
    assert_labels_equal(res["pred"], classes, want)


# --------------------------------------------------------------------------------------------------- Open-i
@pytest.fixture(scope="module")
def openi(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("openi")
    tree = root / "openi"
    make_openi(tree, n_studies=10)
    split_args = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}
    splits = create_dataset("openi", tree, **split_args).drop_duplicates("study_id")
    rep = pd.read_csv(tree / "indiana_reports.csv")
    positive = set()
    for _, g in splits.groupby("split"):  # alternate within each split: both labels in every split
        positive |= set(sorted(g["study_id"], key=int)[::2])
    pos = rep["uid"].astype(str).isin(positive)
    rep["findings"] = np.where(pos, POS_FIND, NEG_FIND)
    rep["impression"] = np.where(pos, POS_IMP, NEG_IMP)
    rep.to_csv(tree / "indiana_reports.csv", index=False)
    idx = prepare("openi", tree, root / "cache", "--val-fraction", 0.2, "--test-fraction", 0.2)
    return {"root": root, "tree": tree, "cache": root / "cache", "index": idx, "positive": positive}


def test_openi_official_is_clear_error(openi, tmp_path):
    assert not any(c.startswith("label:") for c in openi["index"].columns)  # MeSH / Problems only
    assert {"mesh", "problems", "findings", "impression"} <= set(openi["index"].columns)
    run = tmp_path / "run"
    res = cli("train", "--config", write_config(tmp_path / "cfg.yaml", openi["cache"], "official", run), ok=False)
    assert res.exit_code == 2, (res.output, res.exception)
    msg = " ".join(res.output.split())  # rich wraps long lines
    assert "'data.labels': 'official'" in msg and "(dataset 'openi') has no official label columns" in msg
    assert "`repgls mine` -> `repgls rates`" in msg and "Traceback" not in msg
    assert not run.exists()  # stopped before the run folder is written: the same command can be rerun


def test_openi_mined_reports(openi, tmp_path):
    labels = mined_labels(tmp_path, openi["tree"] / "indiana_reports.csv", "nih14", "--id-col", "uid",
                          "--text-col", "findings,impression")
    res = train_and_eval(tmp_path, openi["cache"], labels, NIH_CLASSES, loss="gls")
    assert_mined(res, "nih14", openi["positive"])


# ---------------------------------------------------------------------------------------------- table (CSV)
def test_table_official(tmp_path):
    tree = tmp_path / "table"
    df = make_table(tree, n=40)  # 10 patients, 4 images each, no split: carved patient-wise
    rng = np.random.default_rng(0)
    df["label:Nodule"] = rng.choice([1.0, 0.0], len(df))
    df["label:Mass"] = rng.choice([1.0, 0.0, -1.0, np.nan], len(df))
    df.to_csv(tree / "index.csv", index=False)
    idx = prepare("table", tree, tmp_path / "cache", "--val-fraction", 0.2, "--test-fraction", 0.2)
    res = train_and_eval(tmp_path, tmp_path / "cache", "official", ("Nodule", "Mass"))
    test = idx[idx["split"] == "test"]
    assert_labels_equal(res["pred"], ("Nodule", "Mass"), official_truth(test, ("Nodule", "Mass")))
