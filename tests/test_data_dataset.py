"""CachedImageDataset: items, labels, splits, augmentation determinism, DataLoader workers."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from fakes import make_nih, make_table
from repgls.data.adapters import create_dataset
from repgls.data.cache import open_images, prepare_cache
from repgls.data.images import normalize
from repgls.data.torch_dataset import CachedImageDataset


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    make_table(root / "t", n=24)
    (root / "t" / "images" / "img0005.png").write_bytes(b"broken")
    idx = create_dataset("table", root / "t", seed=0)
    prepare_cache(idx, root / "c", size=64, workers=1, progress=False)
    return root


def _labels(path, study_ids, classes, y, r, p=None):
    cols = {"study_id": pa.array(study_ids)}
    p = np.full(y.shape, np.nan, np.float32) if p is None else p
    for k, c in enumerate(classes):
        cols[f"label:{c}"] = pa.array(y[:, k], pa.float32())
        cols[f"rate:{c}"] = pa.array(r[:, k], pa.float32())
        cols[f"certainty:{c}"] = pa.array(p[:, k], pa.float32())
    meta = {"vocab": "t", "classes": list(classes), "policy": "gls", "r0": -0.2, "version": "1"}
    pq.write_table(pa.table(cols).replace_schema_metadata({"repgls": json.dumps(meta)}), path)


def test_items_and_failed_rows_left_out(cache):
    ds = CachedImageDataset(cache / "c")
    assert len(ds) == 23  # the broken image is not served
    assert "img0005" not in set(ds.index["image_id"])
    item = ds[0]
    assert item["image"].shape == (1, 64, 64) and item["image"].dtype == torch.float32
    assert item["y"].shape == (0,) and item["index"] == 0
    raw = open_images(cache / "c")[ds.rows[3]]
    torch.testing.assert_close(ds[3]["image"][0], normalize(torch.from_numpy(np.array(raw))))
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_split_filter_and_labels(cache, tmp_path):
    all_ds = CachedImageDataset(cache / "c")
    studies = sorted(set(all_ds.index["study_id"]))
    rng = np.random.default_rng(0)
    y = rng.choice([0.0, 1.0, np.nan], size=(len(studies), 3)).astype(np.float32)
    r = rng.uniform(-0.5, 0.5, size=(len(studies), 3)).astype(np.float32)
    _labels(tmp_path / "labels.parquet", studies, ("A", "B", "C"), y, r)
    ds = CachedImageDataset(cache / "c", labels=tmp_path / "labels.parquet", split="train")
    assert set(ds.index["split"]) == {"train"} and 0 < len(ds) < len(all_ds)
    assert ds.classes == ("A", "B", "C") and ds.num_classes == 3
    pos = {s: i for i, s in enumerate(studies)}
    for i in range(len(ds)):
        it = ds[i]
        j = pos[ds.index["study_id"].iloc[i]]
        known = ~np.isnan(y[j])
        np.testing.assert_array_equal(it["mask"].numpy(), known.astype(np.float32))
        np.testing.assert_array_equal(it["y"].numpy()[known], y[j][known])
        np.testing.assert_allclose(it["r"].numpy()[known], r[j][known])
    assert ds.class_counts().shape == (3,)


def test_mentioned_mask_and_class_subset(cache, tmp_path):
    """Items carry ``mentioned`` (the report speaks of the finding: its certainty is known), which LU-ViT's rate
    head is trained on; ``classes`` keeps a subset of label columns (one finding at a time, as PU-RM)."""
    all_ds = CachedImageDataset(cache / "c")
    studies = sorted(set(all_ds.index["study_id"]))
    n = len(studies)
    y = np.zeros((n, 3), np.float32)
    p = np.full((n, 3), np.nan, np.float32)
    p[::2, 1] = 0.7  # every other study mentions B; an unmentioned B is still a supervised negative (y = 0)
    _labels(tmp_path / "labels.parquet", studies, ("A", "B", "C"), y, np.zeros_like(y), p)
    ds = CachedImageDataset(cache / "c", labels=tmp_path / "labels.parquet")
    pos = {s: i for i, s in enumerate(studies)}
    for i in range(len(ds)):
        it = ds[i]
        j = pos[ds.index["study_id"].iloc[i]]
        np.testing.assert_array_equal(it["mentioned"].numpy(), [0, 1 if j % 2 == 0 else 0, 0])
        assert it["mask"].numpy().all()
    batch = ds.get_batch([0, 1, 2])
    np.testing.assert_array_equal(batch["mentioned"].numpy(), np.stack([ds[i]["mentioned"] for i in range(3)]))
    sub = CachedImageDataset(cache / "c", labels=tmp_path / "labels.parquet", classes=["B"])
    assert sub.classes == ("B",) and sub[0]["y"].shape == (1,)
    np.testing.assert_array_equal(sub.mentioned[:, 0], ds.mentioned[:, 1])
    with pytest.raises(ValueError, match="not in the labels"):
        CachedImageDataset(cache / "c", labels=tmp_path / "labels.parquet", classes=["Nope"])


def test_augmentation_deterministic_per_seed_and_epoch(cache):
    a = CachedImageDataset(cache / "c", augment=True, crop_size=48, seed=1)
    b = CachedImageDataset(cache / "c", augment=True, crop_size=48, seed=1)
    c = CachedImageDataset(cache / "c", augment=True, crop_size=48, seed=2)
    x = a[4]["image"]
    assert x.shape == (1, 48, 48) and x.min() >= -1 and x.max() <= 1
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(x, b[4]["image"])
    assert not torch.equal(x, c[4]["image"])
    a.set_epoch(1)
    assert not torch.equal(x, a[4]["image"])
    plain = CachedImageDataset(cache / "c", crop_size=48)
    assert plain[4]["image"].shape == (1, 48, 48)


def test_dataloader_workers_same_as_main_process(cache):
    ds = CachedImageDataset(cache / "c", augment=True, crop_size=32, seed=0)
    ds[0]  # open the memmap in the parent first: workers must reopen their own
    pickle.loads(pickle.dumps(ds))
    one = torch.cat([b["image"] for b in DataLoader(ds, batch_size=5, num_workers=0)])
    two = torch.cat([b["image"] for b in DataLoader(ds, batch_size=5, num_workers=2)])
    assert one.shape == (len(ds), 1, 32, 32) and torch.equal(one, two)


def test_official_labels_from_nih_index(tmp_path):
    truth = make_nih(tmp_path / "nih", n_patients=3, per_patient=2)
    idx = create_dataset("nih", tmp_path / "nih")
    prepare_cache(idx, tmp_path / "c", size=32, workers=1, progress=False)
    ds = CachedImageDataset(tmp_path / "c", labels="official")
    assert ds.num_classes == 15 and ds.mask.all()
    t = truth.set_index("Image Index")["Finding Labels"]
    for i in range(len(ds)):
        labs = set(t[ds.index["image_id"].iloc[i] + ".png"].split("|"))
        got = {c for c, v in zip(ds.classes, ds[i]["y"].tolist(), strict=True) if v == 1}
        assert got == labs


def test_xray_augment_identity_and_range():
    from repgls.data.torch_dataset import XrayAugment

    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 40, 40), dtype=np.uint8))
    ident = XrayAugment(40, scale=(1, 1), ratio=(1, 1), degrees=0, translate=0, brightness=0, contrast=0)
    torch.testing.assert_close(ident(img), img.float(), atol=1e-3, rtol=0)
    aug = XrayAugment(24)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    out = aug.batch(img[None].repeat(3, 1, 1, 1), g1)
    assert out.shape == (3, 1, 24, 24) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 255
    assert not torch.equal(out[0], out[1])  # each image of a batch gets its own draw
    torch.testing.assert_close(aug.batch(img[None].repeat(3, 1, 1, 1), g2), out)


@pytest.mark.parametrize("augment,crop", [(True, 48), (False, 48), (False, 64)])
def test_batched_fetch_equals_items(cache, augment, crop):
    from torch.utils.data import BatchSampler, SequentialSampler

    ds = CachedImageDataset(cache / "c", augment=augment, crop_size=crop, seed=3)
    ds.set_epoch(2)
    idx = [7, 2, 2, 19, 0, -1]
    batch = ds.get_batch(idx)
    items = [ds[i] for i in idx]
    assert batch["image"].shape == (len(idx), 1, crop, crop)
    assert torch.equal(batch["image"], torch.stack([it["image"] for it in items]))
    assert batch["index"].tolist() == [7, 2, 2, 19, 0, len(ds) - 1]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(ds.__getitems__(idx), items, strict=True))
    assert torch.equal(ds[np.array(idx)]["image"], batch["image"])  # ds[list] is the collated batch
    ref = torch.stack([ds[i]["image"] for i in range(len(ds))])
    auto = torch.cat([b["image"] for b in DataLoader(ds, batch_size=5)])  # through __getitems__
    nocopy = torch.cat([b["image"] for b in DataLoader(ds, sampler=BatchSampler(SequentialSampler(ds), 6, False),
                                                       batch_size=None)])
    assert torch.equal(auto, ref) and torch.equal(nocopy, ref)
    with pytest.raises(IndexError):
        ds.get_batch([0, len(ds)])
