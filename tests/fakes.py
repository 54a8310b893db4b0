"""Fake dataset trees shaped exactly like the real releases (file names, CSV columns, folder layout).

Images are small random-ish gray pictures (a gradient plus the row number as a bright block), so that each
row's cached image is distinguishable. Used by tests/test_data_*.py and benchmarks/loader_speed.py.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

MIMIC_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
                "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
                "Pneumothorax", "Support Devices")
CHEXPERT_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                   "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                   "Pleural Other", "Fracture", "Support Devices")


def fake_xray(seed: int, h: int = 96, w: int = 80) -> np.ndarray:
    """uint8 [h, w]: smooth gradient + noise + a bright block whose position encodes ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 60 + 100 * (yy / h) + 30 * np.sin(xx / 7.0 + seed) + rng.normal(0, 8, (h, w))
    r, c = (seed * 7) % (h - 12), (seed * 13) % (w - 12)
    img[r:r + 10, c:c + 10] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def save_jpeg(path: Path, arr: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=quality)
    return path


def write_dicom(path: Path, arr: np.ndarray, *, bits: int = 12, photometric: str = "MONOCHROME2",
                slope: float = 1.0, intercept: float = 0.0, window: tuple[float, float] | None = None) -> Path:
    """A minimal valid DICOM (CR, explicit VR little endian) with uint16 pixels of ``bits`` stored bits."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = "FAKE"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(arr, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _write_csv(df: pd.DataFrame, path: Path, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            df.to_csv(fh, index=False)
    else:
        df.to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------------------- MIMIC-CXR-JPG
def make_mimic(root: Path, n_subjects: int = 6, gz: bool = True, reports: bool = True) -> dict:
    """mimic-cxr-jpg/2.0.0 layout: metadata/split/chexpert CSV(.gz) + files/pXX/pNNNNNNNN/sNNNNNNNN/<dicom>.jpg."""
    rng = np.random.default_rng(1)
    meta, split, lab = [], [], []
    k = 0
    views = ["PA", "LATERAL", "AP", "LL", np.nan]
    for s in range(n_subjects):
        subject = 10000032 + s * 1111111
        sp = ["train", "train", "train", "validate", "test", "train"][s % 6]
        for st in range(2):
            study = 50414267 + s * 1000 + st
            row = {"subject_id": subject, "study_id": study}
            for c in MIMIC_LABELS:
                row[c] = rng.choice([1.0, 0.0, -1.0, np.nan])
            lab.append(row)
            for v in range(2):
                dicom = f"{k:08x}-{s:08x}-{st:08x}-{v:08x}-aaaaaaaa"
                view = views[k % len(views)]
                meta.append({"dicom_id": dicom, "subject_id": subject, "study_id": study,
                             "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                             "Rows": 96, "Columns": 80, "StudyDate": 21800506, "StudyTime": 213014.531,
                             "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                             "ViewCodeSequence_CodeMeaning": "postero-anterior",
                             "PatientOrientationCodeSequence_CodeMeaning": "Erect"})
                split.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": sp})
                sub = str(subject)
                save_jpeg(root / "files" / f"p{sub[:2]}" / f"p{sub}" / f"s{study}" / f"{dicom}.jpg", fake_xray(k))
                k += 1
            if reports:
                rp = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}.txt"
                rp.write_text("FINAL REPORT\n FINDINGS: No acute process.\n IMPRESSION: Normal.\n")
    ext = ".csv.gz" if gz else ".csv"
    _write_csv(pd.DataFrame(meta), root / f"mimic-cxr-2.0.0-metadata{ext}", gz)
    _write_csv(pd.DataFrame(split), root / f"mimic-cxr-2.0.0-split{ext}", gz)
    _write_csv(pd.DataFrame(lab), root / f"mimic-cxr-2.0.0-chexpert{ext}", gz)
    _write_csv(pd.DataFrame(lab), root / f"mimic-cxr-2.0.0-negbio{ext}", gz)
    return {"metadata": pd.DataFrame(meta), "split": pd.DataFrame(split), "labels": pd.DataFrame(lab)}


# --------------------------------------------------------------------------------------------- CheXpert
def make_chexpert(root: Path, n_train_patients: int = 8, n_valid_patients: int = 2, plus: bool = True) -> dict:
    """Kaggle CheXpert-v1.0-small layout: root/CheXpert-v1.0-small/{train.csv, valid.csv, train/, valid/}."""
    rng = np.random.default_rng(2)
    base = root / "CheXpert-v1.0-small"
    out: dict = {}
    k = 0
    plus_rows = []
    for split, n_p, first in (("train", n_train_patients, 1), ("valid", n_valid_patients, 64541)):
        rows = []
        for p in range(first, first + n_p):
            for st in (1, 2):
                for v, (fl, appa) in enumerate((("Frontal", ["AP", "PA"][p % 2]), ("Lateral", np.nan)), start=1):
                    kind = "frontal" if fl == "Frontal" else "lateral"
                    rel = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study{st}/view{v}_{kind}.jpg"
                    row = {"Path": rel, "Sex": ["Female", "Male"][p % 2], "Age": 40 + p % 30,
                           "Frontal/Lateral": fl, "AP/PA": appa}
                    for c in CHEXPERT_LABELS:
                        row[c] = rng.choice([1.0, 0.0, -1.0, np.nan]) if split == "train" else rng.choice([1.0, 0.0])
                    rows.append(row)
                    save_jpeg(root / rel, fake_xray(k))
                    plus_rows.append({"path_to_image": rel.split("/", 1)[1], "section_findings": f"findings {k}",
                                      "section_impression": f"impression {k}"})
                    k += 1
        out[split] = pd.DataFrame(rows)
        _write_csv(out[split], base / f"{split}.csv")
    if plus:
        _write_csv(pd.DataFrame(plus_rows), root / "df_chexpert_plus_240401.csv")
    return out


# ------------------------------------------------------------------------------------------------- NIH
NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def make_nih(root: Path, n_patients: int = 10, per_patient: int = 3, v2020: bool = True) -> pd.DataFrame:
    """NIH ChestX-ray14 layout: Data_Entry_2017(_v2020).csv, lists, images_001/images/*.png ... images_002."""
    rng = np.random.default_rng(3)
    rows, names = [], []
    k = 0
    for p in range(1, n_patients + 1):
        for f in range(per_patient):
            name = f"{p:08d}_{f:03d}.png"
            labs = sorted(rng.choice(NIH_FINDINGS, size=rng.integers(0, 3), replace=False).tolist())
            rows.append({"Image Index": name, "Finding Labels": "|".join(labs) or "No Finding", "Follow-up #": f,
                         "Patient ID": p, "Patient Age": 50 + p, "Patient Gender": "MF"[p % 2],
                         "View Position": ["PA", "AP"][k % 2], "OriginalImage[Width": 2500,
                         "Height]": 2048, "OriginalImagePixelSpacing[x": 0.143, "y]": 0.143})
            folder = root / (f"images_{1 + k % 2:03d}") / "images"
            save_png(folder / name, fake_xray(k))
            names.append(name)
            k += 1
    df = pd.DataFrame(rows)
    if v2020:  # v2020 header has the bracketed column names exactly like the official file
        df.columns = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                      "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
    _write_csv(df, root / ("Data_Entry_2017_v2020.csv" if v2020 else "Data_Entry_2017.csv"))
    test_pat = {2, 7}
    (root / "test_list.txt").write_text("\n".join(n for n in names if int(n[:8]) in test_pat) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(n for n in names if int(n[:8]) not in test_pat) + "\n")
    return df


# ---------------------------------------------------------------------------------------------- Open-i
def make_openi(root: Path, n_studies: int = 8) -> dict:
    """Kaggle raddar/chest-xrays-indiana-university layout: two CSVs + images/images_normalized/*.dcm.png."""
    reps, projs = [], []
    k = 0
    for uid in range(1, n_studies + 1):
        reps.append({"uid": uid, "MeSH": "normal" if uid % 2 else "Cardiomegaly/mild", "Problems":
                     "normal" if uid % 2 else "Cardiomegaly", "image": "Xray Chest PA and Lateral",
                     "indication": "Positive TB test", "comparison": "None.",
                     "findings": f"The heart is normal {uid}.", "impression": "Normal chest x-XXXX."})
        for proj, code in (("Frontal", "1001"), ("Lateral", "2001")):
            fn = f"{uid}_IM-{uid:04d}-{code}.dcm.png"
            projs.append({"uid": uid, "filename": fn, "projection": proj})
            save_png(root / "images" / "images_normalized" / fn, fake_xray(k))
            k += 1
    _write_csv(pd.DataFrame(reps), root / "indiana_reports.csv")
    _write_csv(pd.DataFrame(projs), root / "indiana_projections.csv")
    return {"reports": pd.DataFrame(reps), "projections": pd.DataFrame(projs)}


# ----------------------------------------------------------------------------------------- generic table
def make_table(root: Path, n: int = 12, fmt: str = "png", distinct: int | None = None) -> pd.DataFrame:
    """A phantom-world-like folder: images/<image_id>.<fmt> + index.csv (relative paths).

    With ``distinct`` only that many image files exist and rows cycle over them (cheap large indexes).
    """
    rows = []
    n_files = distinct or n
    for i in range(n_files):
        arr = fake_xray(i, 96 + (i % 3) * 16, 80)
        (save_png if fmt == "png" else save_jpeg)(root / "images" / f"img{i:04d}.{fmt}", arr)
    for i in range(n):
        rows.append({"path": f"images/img{i % n_files:04d}.{fmt}", "image_id": f"img{i:04d}",
                     "study_id": f"st{i // 2:04d}", "patient_id": f"pt{i // 4:04d}",
                     "view": ["PA", "AP", "LATERAL"][i % 3], "split": ""})
    df = pd.DataFrame(rows)
    df.to_csv(root / "index.csv", index=False)
    return df
