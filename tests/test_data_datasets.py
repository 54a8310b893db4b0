"""Dataset adapters on fake trees shaped like the real releases; splits, view filters, label joins."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import CHEXPERT_LABELS, MIMIC_LABELS, make_chexpert, make_mimic, make_nih, make_openi, make_table
from repgls.data.adapters import (
    INDEX_COLUMNS,
    align_labels,
    assign_splits,
    create_dataset,
    list_datasets,
    official_labels,
)


def _check_index(df: pd.DataFrame) -> None:
    assert list(df.columns[:6]) == list(INDEX_COLUMNS)
    assert df["view"].isin(["PA", "AP", "LATERAL", "UNKNOWN"]).all()
    assert df["split"].isin(["train", "val", "test"]).all()
    assert df["image_id"].is_unique
    assert all(os.path.isabs(p) for p in df["path"])
    # never a patient in two splits
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()


def test_registry_lists_all_adapters():
    assert {"mimic-cxr-jpg", "chexpert", "nih", "openi", "table", "phantom"} <= set(list_datasets())
    with pytest.raises(ValueError, match="unknown dataset 'foo'"):
        create_dataset("foo", ".")


@pytest.mark.parametrize("gz", [True, False])
def test_mimic(tmp_path, gz):
    truth = make_mimic(tmp_path, gz=gz)
    df = create_dataset("mimic-cxr-jpg", tmp_path)
    _check_index(df)
    meta = truth["metadata"]
    assert len(df) == len(meta)
    assert all(os.path.exists(p) for p in df["path"])
    row = df.iloc[0]
    m0 = meta.iloc[0]
    assert row["image_id"] == m0["dicom_id"]
    assert row["study_id"] == f"s{m0['study_id']}" and row["patient_id"] == f"p{m0['subject_id']}"
    assert row["path"].endswith(f"files/p{str(m0['subject_id'])[:2]}/p{m0['subject_id']}/s{m0['study_id']}/"
                                f"{m0['dicom_id']}.jpg")
    # official split kept (validate -> val), labels joined by study
    sp = truth["split"].set_index("dicom_id")["split"].replace({"validate": "val"})
    assert (df.set_index("image_id")["split"] == sp.reindex(df["image_id"])).all()
    lab = truth["labels"].assign(study_id=lambda t: "s" + t["study_id"].astype(str)).set_index("study_id")
    for c in MIMIC_LABELS:
        np.testing.assert_array_equal(df[f"label:{c}"].to_numpy(), lab.loc[df["study_id"], c].to_numpy())
    # view mapping: LL -> LATERAL, NaN -> UNKNOWN, raw kept
    raw = dict(zip(meta["dicom_id"], meta["ViewPosition"], strict=True))
    for iid, v in zip(df["image_id"], df["view"], strict=True):
        r = raw[iid]
        assert v == {"PA": "PA", "AP": "AP", "LATERAL": "LATERAL", "LL": "LATERAL"}.get(r, "UNKNOWN")
    assert (df["report_path"] != "").all() and os.path.exists(df["report_path"].iloc[0])
    front = create_dataset("mimic-cxr-jpg", tmp_path, view="frontal")
    assert set(front["view"]) == {"PA", "AP"} and len(front) == (df["view"].isin(["PA", "AP"])).sum()
    assert set(create_dataset("mimic-cxr-jpg", tmp_path, view="lateral")["view"]) == {"LATERAL"}


def test_chexpert(tmp_path):
    truth = make_chexpert(tmp_path)
    for root in (tmp_path, tmp_path / "CheXpert-v1.0-small"):
        df = create_dataset("chexpert", root, seed=1)
        _check_index(df)
        assert len(df) == len(truth["train"]) + len(truth["valid"])
        assert all(os.path.exists(p) for p in df["path"])
    tr = truth["train"]
    first = df.iloc[0]
    assert first["image_id"] == "patient00001/study1/view1_frontal"
    assert first["study_id"] == "patient00001/study1" and first["patient_id"] == "patient00001"
    assert first["view"] == tr["AP/PA"].iloc[0] and first["projection"] == "frontal"
    assert df.iloc[1]["view"] == "LATERAL"
    np.testing.assert_array_equal(df["label:Cardiomegaly"].to_numpy()[: len(tr)], tr["Cardiomegaly"].to_numpy())
    assert set(np.unique(df[[f"label:{c}" for c in CHEXPERT_LABELS]].to_numpy()[: len(tr)])) >= {-1.0, 0.0, 1.0}
    # valid.csv -> test (default); val carved out of train patients
    valid_pat = {p.split("/")[2] for p in truth["valid"]["Path"]}
    assert set(df.loc[df["split"] == "test", "patient_id"]) == valid_pat
    assert (df["split"] == "val").any()
    assert (create_dataset("chexpert", tmp_path, valid_split="val")["split"] == "test").any()
    # CheXpert Plus reports joined by image path
    assert df["findings"].notna().all() and df["impression"].iloc[0].startswith("impression")
    pa = create_dataset("chexpert", tmp_path, view="pa")
    assert set(pa["view"]) == {"PA"}


def test_nih(tmp_path):
    truth = make_nih(tmp_path)
    df = create_dataset("nih", tmp_path)
    _check_index(df)
    assert len(df) == len(truth)
    assert all(os.path.exists(p) for p in df["path"])  # found in images_001/images and images_002/images
    assert {os.path.basename(os.path.dirname(os.path.dirname(p))) for p in df["path"]} == {"images_001", "images_002"}
    t = truth.set_index("Image Index")
    for _, row in df.iterrows():
        labs = t.loc[row["image_id"] + ".png", "Finding Labels"].split("|")
        got = [c[6:] for c in df.columns if c.startswith("label:") and row[c] == 1]
        assert sorted(got) == sorted(labs)
    test_names = set((tmp_path / "test_list.txt").read_text().split())
    assert set(df.loc[df["split"] == "test", "image_id"] + ".png") == test_names
    assert (df["split"] == "val").any() and df["study_id"].equals(df["image_id"])


def test_nih_unknown_label_is_clear_error(tmp_path):
    truth = make_nih(tmp_path, n_patients=2, per_patient=1)
    truth.loc[1, "Finding Labels"] = "Cardiomegaly|Bananas"
    truth.to_csv(tmp_path / "Data_Entry_2017_v2020.csv", index=False)
    with pytest.raises(ValueError, match=r"Data_Entry_2017_v2020.csv: row 3: unknown finding label 'Bananas'"):
        create_dataset("nih", tmp_path)


def test_openi(tmp_path):
    truth = make_openi(tmp_path)
    df = create_dataset("openi", tmp_path)
    _check_index(df)
    assert len(df) == len(truth["projections"])
    assert all(os.path.exists(p) for p in df["path"])
    assert df["image_id"].iloc[0] == "1_IM-0001-1001"
    assert (df["study_id"] == df["patient_id"]).all()
    assert df["findings"].iloc[0] == "The heart is normal 1."
    front = create_dataset("openi", tmp_path, view="frontal")
    assert len(front) == 8 and (front["projection"] == "frontal").all()


def test_table_and_phantom(tmp_path):
    make_table(tmp_path, n=20)
    for name in ("table", "phantom"):
        df = create_dataset(name, tmp_path, seed=3)
        _check_index(df)
        assert all(os.path.exists(p) for p in df["path"])
    pq_path = tmp_path / "idx.parquet"
    pd.read_csv(tmp_path / "index.csv").to_parquet(pq_path)
    df2 = create_dataset("table", pq_path, seed=3)
    assert df2["split"].tolist() == df["split"].tolist()


def test_table_bad_view_names_row(tmp_path):
    t = make_table(tmp_path, n=4)
    t.loc[2, "view"] = "sideways"
    t.to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(ValueError, match=r"index.csv: row 4: unknown view 'sideways'"):
        create_dataset("table", tmp_path)


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata CSV"):
        create_dataset("mimic-cxr-jpg", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_dataset("nih", tmp_path / "nope")


def test_patient_wise_splits_deterministic_and_disjoint():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"patient_id": rng.integers(0, 200, 2000).astype(str), "split": ""})
    a = assign_splits(df, 0.1, 0.2, seed=5)
    b = assign_splits(df, 0.1, 0.2, seed=5)
    c = assign_splits(df, 0.1, 0.2, seed=6)
    assert a["split"].tolist() == b["split"].tolist() and a["split"].tolist() != c["split"].tolist()
    per = a.groupby("patient_id")["split"].agg(["nunique", "first"])
    assert (per["nunique"] == 1).all()
    frac = per["first"].value_counts(normalize=True)
    assert abs(frac["test"] - 0.2) < 0.02 and abs(frac["val"] - 0.1) < 0.02


def test_official_split_patient_conflict_raises():
    df = pd.DataFrame({"patient_id": ["a", "a", "b"], "split": ["train", "test", "train"]})
    with pytest.raises(ValueError, match="patient 'a' is in several official splits"):
        assign_splits(df)


def _labels_parquet(path, study_ids, classes, y, r):
    cols = {"study_id": pa.array(study_ids)}
    for k, c in enumerate(classes):
        cols[f"label:{c}"] = pa.array(y[:, k], pa.float32())
        cols[f"rate:{c}"] = pa.array(r[:, k], pa.float32())
        cols[f"certainty:{c}"] = pa.array(np.full(len(study_ids), np.nan), pa.float32())
    meta = {"vocab": "x", "classes": list(classes), "policy": "gls", "r0": -0.2, "version": "1"}
    tab = pa.table(cols).replace_schema_metadata({"repgls": json.dumps(meta)})
    pq.write_table(tab, path)


def test_align_labels_with_parquet_and_loose_ids(tmp_path):
    classes = ("A", "B")
    y = np.array([[1, np.nan], [0, 1]], np.float32)
    r = np.array([[0.3, 0.0], [-0.2, 0.5]], np.float32)
    p = tmp_path / "labels.parquet"
    _labels_parquet(p, ["50414267", "50414268"], classes, y, r)
    yy, rr, mask, mentioned, cls = align_labels(["s50414268", "s50414267", "s99"], p)
    assert cls == classes
    assert not mentioned.any()  # the table's certainties are NaN: nothing was mentioned
    np.testing.assert_array_equal(yy, [[0, 1], [1, 0], [0, 0]])
    np.testing.assert_allclose(rr, [[-0.2, 0.5], [0.3, 0.0], [0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1], [1, 0], [0, 0]])
    obj = SimpleNamespace(study_ids=np.array(["x"]), classes=classes, y=y[:1], r=r[:1])
    yy, _, mask, mentioned, _ = align_labels(["x", "x"], obj)
    np.testing.assert_array_equal(mask, [[1, 0], [1, 0]])
    np.testing.assert_array_equal(mentioned, mask)  # no certainty column: every supervised entry counts
    obj.p = np.array([[0.7, np.nan]], np.float32)
    np.testing.assert_array_equal(align_labels(["x", "y"], obj).mentioned, [[1, 0], [0, 0]])


def test_official_labels_policies():
    idx = pd.DataFrame({"label:A": [1.0, -1.0, np.nan, 0.0], "label:B": [0.0, 1.0, -1.0, np.nan]})
    y, r, m, mentioned, cls = official_labels(idx, "ignore")
    assert cls == ("A", "B")
    np.testing.assert_array_equal(y[:, 0], [1, 0, 0, 0])
    np.testing.assert_array_equal(m[:, 0], [1, 0, 1, 1])
    np.testing.assert_array_equal(mentioned[:, 0], [1, 1, 0, 1])
    y1, _, m1, _, _ = official_labels(idx, "ones")
    np.testing.assert_array_equal(y1[:, 0], [1, 1, 0, 0])
    assert m1.all() and not r.any()
    # PU-RM: blank (not mentioned) is ignored, not a negative
    _, _, m2, _, _ = official_labels(idx, "ones", blank="ignore")
    np.testing.assert_array_equal(m2, [[1, 1], [1, 1], [0, 1], [1, 0]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.sampled_from(["", "", "train", "val", "test"])), min_size=1,
                max_size=60), st.integers(0, 3))
def test_splits_never_share_a_patient(rows, seed):
    # official splits are per patient (first split seen for a patient wins), some rows unsplit
    first: dict[int, str] = {}
    for p, s in rows:
        if s:
            first.setdefault(p, s)
    df = pd.DataFrame({"patient_id": [str(p) for p, _ in rows],
                       "split": [first.get(p, "") if s else "" for p, s in rows]})
    out = assign_splits(df, 0.2, 0.2, seed=seed)
    assert out["split"].isin(["train", "val", "test"]).all()
    assert (out.groupby("patient_id")["split"].nunique() == 1).all()
    # official non-train splits are never changed
    for (p, s), new in zip(df.itertuples(index=False), out["split"], strict=True):
        if s in ("val", "test"):
            assert new == s, (p, s, new)
