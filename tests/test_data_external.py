"""Real data in ../shared/data/external: 9 NIH ChestX-ray14 images + official labels; Open-i CSVs."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from repgls.data.adapters import NIH_CLASSES, create_dataset
from repgls.data.cache import open_images, prepare_cache, read_meta
from repgls.data.images import load_resized, read_image

pytestmark = pytest.mark.external


@pytest.fixture(scope="module")
def nih_index(shared_data):
    root = shared_data / "external"
    csv = root / "torchxrayvision" / "Data_Entry_2017_v2020.subset.csv"
    if not csv.exists():
        pytest.skip(f"{csv} not found")
    return create_dataset("nih", root, csv=csv, seed=0), pd.read_csv(csv)


def test_real_nih_index_and_labels(nih_index):
    df, official = nih_index
    assert len(df) == len(official) == 9
    assert df["path"].map(os.path.exists).all()  # found in both folders
    off = official.set_index("Image Index")
    for _, row in df.iterrows():
        o = off.loc[row["image_id"] + ".png"]
        assert row["patient_id"] == str(o["Patient ID"]) and row["view"] == o["View Position"]
        labs = set(o["Finding Labels"].split("|"))
        got = {c for c in (*NIH_CLASSES, "No Finding") if row[f"label:{c}"] == 1}
        assert got == labs
    # patient 13 has 5 images: all in one split
    assert df.loc[df["patient_id"] == "13", "split"].nunique() == 1


def test_real_nih_images_read(nih_index):
    df, _ = nih_index
    for p in df["path"]:
        img = read_image(p)
        assert img.dtype == np.uint8 and img.ndim == 2 and img.shape[0] in (512, 1024)
        assert img.std() > 20  # a real radiograph, not a blank
        small = load_resized(p, 128)
        assert small.shape == (128, 128)
        # the resized image keeps the picture: strong correlation with a naive block average
        k = img.shape[0] // 128
        ref = img.reshape(128, k, 128, k).mean(axis=(1, 3))
        assert np.corrcoef(ref.ravel(), small.ravel().astype(float))[0, 1] > 0.98


def test_real_nih_cache_and_dataset(nih_index, tmp_path):
    df, _ = nih_index
    meta = prepare_cache(df, tmp_path / "c", size=64, workers=1, progress=False, dataset="nih")
    assert meta["n_done"] == 9 and meta["n_failed"] == 0 and read_meta(tmp_path / "c")["complete"]
    mm = open_images(tmp_path / "c")
    assert (mm.reshape(9, -1).std(axis=1) > 20).all()
    from repgls.data.torch_dataset import CachedImageDataset

    ds = CachedImageDataset(tmp_path / "c", labels="official")
    card = ds.classes.index("Cardiomegaly")
    i = int(np.flatnonzero(ds.index["image_id"] == "00000001_000")[0])
    assert ds[i]["y"][card] == 1 and ds[i]["image"].shape == (1, 64, 64)
    assert ds.class_counts()[ds.classes.index("Pneumothorax")] == 3


def test_real_openi_csvs_index(shared_data):
    root = shared_data / "openi-dev"
    if not (root / "indiana_projections.csv").exists():
        pytest.skip("openi-dev not found")
    df = create_dataset("openi", root)
    reports = pd.read_csv(next(root.glob("indiana_reports*.csv")))
    proj = pd.read_csv(root / "indiana_projections.csv")
    assert len(df) == proj["uid"].isin(reports["uid"]).sum()
    assert set(df["projection"]) == {"frontal", "lateral"}
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    front = create_dataset("openi", root, view="frontal")
    assert (front["projection"] == "frontal").all() and front["findings"].notna().mean() > 0.8
