"""Dataset adapters: each turns a dataset folder into the image index of docs/schemas.md.

``create_dataset(name, root, **kw) -> pandas.DataFrame`` with the columns ``path`` (absolute), ``image_id``,
``study_id``, ``patient_id``, ``view`` (PA | AP | LATERAL | UNKNOWN), ``split`` (train | val | test),
``projection`` (frontal | lateral | "") and extra columns: official labels as ``label:<Class>`` (float32:
1 positive, 0 negative, -1 uncertain, NaN blank / not mentioned) and report text (``findings``,
``impression``) where the dataset ships it. ``list_datasets()`` names the adapters.

Shared keywords of every adapter:
  * ``view``: None / "all", "frontal" (PA + AP + frontal projections), "pa", "ap", "lateral", or a list.
  * ``val_fraction`` / ``test_fraction`` / ``seed``: patient-wise split of the patients that have no official
    split (deterministic by seed); a val set is carved out of an official train set when the dataset has
    no official val set. A patient never appears in two splits (checked; violations raise).

Identifiers are strings. MIMIC uses the report-tree stems (``p10000032``, ``s50414267``); CheXpert
``patient00001`` and ``patient00001/study1``; NIH the image stem as study (one image per study); Open-i
the report ``uid`` as study and as patient (Open-i has no patient ids).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

INDEX_COLUMNS = ("path", "image_id", "study_id", "patient_id", "view", "split")
VIEWS = ("PA", "AP", "LATERAL", "UNKNOWN")
SPLITS = ("train", "val", "test")
LABEL_PREFIX = "label:"

_REGISTRY: dict[str, Callable[..., pd.DataFrame]] = {}

# Raw view / projection spellings -> canonical view (anything else: UNKNOWN).
_VIEW_MAP = {
    "PA": "PA", "POSTERO_ANTERIOR": "PA", "POSTEROANTERIOR": "PA",
    "AP": "AP", "AP AXIAL": "AP", "AP SUPINE": "AP", "ANTERO_POSTERIOR": "AP", "ANTEROPOSTERIOR": "AP",
    "LATERAL": "LATERAL", "LAT": "LATERAL", "LL": "LATERAL", "RL": "LATERAL", "LAO": "UNKNOWN",
    "L": "LATERAL", "PA LLD": "UNKNOWN", "UNKNOWN": "UNKNOWN", "": "UNKNOWN",
}
_SPLIT_MAP = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
              "validation": "val", "test": "test", "testing": "test", "": "", "nan": ""}


def register_dataset(name: str) -> Callable:
    """Decorator: register an adapter ``fn(root, **kw) -> DataFrame`` under ``name``."""

    def deco(fn: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        _REGISTRY[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    """Names accepted by :func:`create_dataset`."""
    return sorted(_REGISTRY)


def create_dataset(
    name: str,
    root: str | Path,
    *,
    view: str | Iterable[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    **kw: Any,
) -> pd.DataFrame:
    """Build the image index of dataset ``name`` found at ``root`` (see module docstring)."""
    key = name.lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset root does not exist")
    df = _REGISTRY[key](root, **kw)
    df = _finish(df, view=view, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    df.attrs["dataset"] = key
    df.attrs["root"] = str(root.resolve())
    return df


# ----------------------------------------------------------------------------------------- helpers
def normalize_view(value: Any) -> str:
    """Raw view spelling -> PA | AP | LATERAL | UNKNOWN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "UNKNOWN"
    return _VIEW_MAP.get(str(value).strip().upper(), "UNKNOWN")


def _find_file(root: Path, names: Iterable[str], what: str, required: bool = True) -> Path | None:
    for n in names:
        for hit in sorted(root.glob(n)):
            if hit.is_file():
                return hit
    if required:
        raise FileNotFoundError(f"{root}: no {what} found (looked for {', '.join(names)})")
    return None


def _read_csv(path: Path, **kw: Any) -> pd.DataFrame:
    """pd.read_csv (.gz handled by pandas); a failure is one ValueError naming the file, never its bytes."""
    from repgls._io import check_text_file, reading

    if not str(path).endswith(".gz"):
        check_text_file(path, "CSV")
    with reading(path, "CSV"):
        return pd.read_csv(path, **kw)


def _require(df: pd.DataFrame, cols: Iterable[str], path: Path | str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")


def _label_columns(df: pd.DataFrame, classes: Iterable[str]) -> pd.DataFrame:
    """Official label columns -> float32 ``label:<C>`` (1 / 0 / -1 / NaN)."""
    return pd.DataFrame({f"{LABEL_PREFIX}{c}": pd.to_numeric(df[c], errors="coerce").astype("float32")
                         for c in classes}, index=df.index)


def _image_map(dirs: Iterable[Path], pattern: str) -> dict[str, str]:
    """File name -> absolute path over several folders (NIH's images_*/images/, Open-i's images/)."""
    out: dict[str, str] = {}
    for d in dirs:
        if d.is_dir():
            for p in glob.iglob(os.path.join(glob.escape(str(d)), pattern)):
                out.setdefault(os.path.basename(p), p)
    return out


def filter_views(df: pd.DataFrame, view: str | Iterable[str] | None) -> pd.DataFrame:
    """Keep rows of the requested view(s): all | frontal | pa | ap | lateral (or a list of them)."""
    if view is None:
        return df
    wanted = [view] if isinstance(view, str) else list(view)
    wanted = [w.strip().lower() for w in wanted]
    if "all" in wanted:
        return df
    proj = df["projection"] if "projection" in df.columns else pd.Series("", index=df.index)
    keep = pd.Series(False, index=df.index)
    for w in wanted:
        if w == "frontal":
            keep |= df["view"].isin(["PA", "AP"]) | (proj == "frontal")
        elif w in ("pa", "ap"):
            keep |= df["view"] == w.upper()
        elif w in ("lateral", "lat", "ll"):
            keep |= (df["view"] == "LATERAL") | (proj == "lateral")
        elif w == "unknown":
            keep |= df["view"] == "UNKNOWN"
        else:
            raise ValueError(f"unknown view filter {w!r}; use all, frontal, pa, ap, lateral or unknown")
    return df[keep]


def assign_splits(df: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0) -> pd.DataFrame:
    """Fill missing splits patient-wise (deterministic by seed); never puts a patient in two splits.

    Patients whose rows have an official split keep it. Among the other patients (and the official train
    patients, when the dataset has no official val / test), fractions of *patients* go to val / test.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions val={val_fraction}, test={test_fraction}")
    df = df.copy()
    split = df["split"].fillna("").astype(str).str.strip().str.lower().map(lambda s: _SPLIT_MAP.get(s, s))
    bad = ~split.isin(["", *SPLITS])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"row {i}: unknown split {df['split'].iloc[i]!r}; use train, val, test or empty")
    pid = df["patient_id"].astype(str)
    per_patient = split[split != ""].groupby(pid[split != ""]).nunique()
    if (per_patient > 1).any():
        p = per_patient[per_patient > 1].index[0]
        raise ValueError(f"patient {p!r} is in several official splits: {sorted(set(split[pid == p]))}")
    have = set(split[split != ""])
    open_mask = split == ""
    carve_val = val_fraction > 0 and "val" not in have
    carve_test = test_fraction > 0 and "test" not in have
    if have and (carve_val or carve_test):
        open_mask |= split == "train"  # carve val / test out of the official train patients
    # Patients that mix an official split with unsplit rows keep their official split.
    official = dict(zip(pid[split != ""], split[split != ""], strict=False))
    pool = sorted(set(pid[open_mask]) - {p for p, s in official.items() if s != "train"})
    rng = np.random.default_rng(seed)
    order = [pool[i] for i in rng.permutation(len(pool))]
    n = len(order)
    n_test = round(n * test_fraction) if carve_test or not have else 0
    n_val = round(n * val_fraction) if carve_val or not have else 0
    assign = {p: "test" for p in order[:n_test]}
    assign.update({p: "val" for p in order[n_test:n_test + n_val]})
    assign.update({p: "train" for p in order[n_test + n_val:]})
    new = split.copy()
    sel = pid.isin(assign)
    new[sel] = pid[sel].map(assign)
    rest = new == ""  # patients with an official split and stray unsplit rows
    new[rest] = pid[rest].map(official).fillna("train")
    df["split"] = new.to_numpy()
    return df


def _finish(df: pd.DataFrame, *, view: Any, val_fraction: float, test_fraction: float,
            seed: int) -> pd.DataFrame:
    """Common tail of every adapter: types, view normalisation, view filter, splits, column order."""
    for c in ("image_id", "study_id", "patient_id"):
        df[c] = df[c].astype(str)
    df["view"] = [v if v in VIEWS else normalize_view(v) for v in df["view"]]
    if "projection" not in df.columns:
        df["projection"] = np.where(df["view"].isin(["PA", "AP"]), "frontal",
                                    np.where(df["view"] == "LATERAL", "lateral", ""))
    df["projection"] = df["projection"].fillna("").astype(str).str.lower()
    if "split" not in df.columns:
        df["split"] = ""
    df = filter_views(df, view).reset_index(drop=True)
    if len(df):
        df = assign_splits(df, val_fraction, test_fraction, seed)
    dup = df["image_id"].duplicated()
    if dup.any():
        raise ValueError(f"duplicate image_id {df['image_id'][dup].iloc[0]!r} in the index")
    cols = [*INDEX_COLUMNS, "projection"]
    return df[cols + [c for c in df.columns if c not in cols]]


# -------------------------------------------------------------------------------------- MIMIC-CXR-JPG
MIMIC_CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
                 "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other",
                 "Pneumonia", "Pneumothorax", "Support Devices")


@register_dataset("mimic-cxr-jpg")
def mimic_cxr_jpg(root: Path, labeler: str = "chexpert", reports_root: str | Path | None = None) -> pd.DataFrame:
    """MIMIC-CXR-JPG 2.x: metadata + split + chexpert/negbio CSVs and files/pXX/pNNN/sNNN/<dicom>.jpg.

    Official split (train / validate -> val / test). ``label:C`` from ``mimic-cxr-2.0.0-<labeler>.csv``.
    ``report_path`` points at files/pXX/pNNN/sNNN.txt (in ``root`` or ``reports_root``) when it exists.
    """
    meta_p = _find_file(root, ["mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-metadata.csv"], "metadata CSV")
    meta = _read_csv(meta_p, dtype={"dicom_id": str})
    _require(meta, ["dicom_id", "subject_id", "study_id", "ViewPosition"], meta_p)
    subj = meta["subject_id"].astype("int64").astype(str)
    study = meta["study_id"].astype("int64").astype(str)
    rel = "files/p" + subj.str[:2] + "/p" + subj + "/s" + study + "/" + meta["dicom_id"] + ".jpg"
    df = pd.DataFrame({
        "path": [str(root / r) for r in rel], "image_id": meta["dicom_id"].to_numpy(),
        "study_id": ("s" + study).to_numpy(), "patient_id": ("p" + subj).to_numpy(),
        "view": meta["ViewPosition"].map(normalize_view).to_numpy(),
        "view_raw": meta["ViewPosition"].fillna("").astype(str).to_numpy(), "split": "",
    })
    split_p = _find_file(root, ["mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-split.csv"], "split CSV",
                         required=False)
    if split_p is not None:
        sp = _read_csv(split_p, dtype={"dicom_id": str})
        _require(sp, ["dicom_id", "split"], split_p)
        df["split"] = df["image_id"].map(dict(zip(sp["dicom_id"], sp["split"], strict=False))).fillna("")
    lab_p = _find_file(root, [f"mimic-cxr-2.0.0-{labeler}.csv.gz", f"mimic-cxr-2.0.0-{labeler}.csv"],
                       f"{labeler} label CSV", required=False)
    if lab_p is not None:
        lab = _read_csv(lab_p)
        _require(lab, ["study_id", *MIMIC_CLASSES], lab_p)
        labs = _label_columns(lab, MIMIC_CLASSES)
        labs.index = "s" + lab["study_id"].astype("int64").astype(str)
        labs = labs[~labs.index.duplicated()]
        df = df.join(labs, on="study_id")
    rroots = [Path(reports_root)] if reports_root else []
    rroots.append(root)
    rep_rel = "files/p" + subj.str[:2] + "/p" + subj + "/s" + study + ".txt"
    for rr in rroots:
        if (rr / "files").is_dir():
            paths = [str(rr / r) for r in rep_rel]
            if any(os.path.exists(p) for p in paths[:50]):
                df["report_path"] = [p if os.path.exists(p) else "" for p in paths]
                break
    return df


# -------------------------------------------------------------------------------------------- CheXpert
CHEXPERT_CLASSES = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                    "Pleural Other", "Fracture", "Support Devices")


def _strip_chexpert_prefix(p: str) -> str:
    parts = p.replace("\\", "/").split("/")
    return "/".join(parts[1:]) if parts and parts[0].lower().startswith("chexpert-v1.0") else "/".join(parts)


@register_dataset("chexpert")
def chexpert(root: Path, valid_split: str = "test") -> pd.DataFrame:
    """CheXpert v1.0 (small or full): train.csv / valid.csv with Path, Frontal/Lateral, AP/PA, 14 labels.

    ``root`` is the CheXpert-v1.0(-small) folder or its parent. valid.csv (radiologist-labelled, 200
    studies) becomes ``valid_split`` ("test" by default, since the official test set is not public; val is
    then carved out of train patient-wise). CheXpert Plus reports (df_chexpert_plus_*.csv with
    path_to_image, section_findings, section_impression) are joined by image path when present.
    """
    if valid_split not in SPLITS:
        raise ValueError(f"valid_split must be one of {SPLITS}, got {valid_split!r}")
    base = root
    if not (root / "train.csv").exists() and not (root / "valid.csv").exists():
        subs = sorted(d for d in root.glob("CheXpert-v1.0*") if (d / "train.csv").exists() or (d / "valid.csv").exists())
        if not subs:
            raise FileNotFoundError(f"{root}: no train.csv / valid.csv (nor in CheXpert-v1.0*/)")
        base = subs[0]
    frames = []
    for name, split in (("train.csv", "train"), ("valid.csv", valid_split)):
        p = base / name
        if not p.exists():
            continue
        t = _read_csv(p)
        _require(t, ["Path", "Frontal/Lateral"], p)
        t["__split"] = split
        t["__src"] = str(p)
        frames.append(t)
    t = pd.concat(frames, ignore_index=True)
    rel = t["Path"].astype(str).map(_strip_chexpert_prefix)  # train/patient00001/study1/view1_frontal.jpg
    parts = rel.str.split("/")
    if (parts.str.len() < 4).any():
        i = int(np.flatnonzero((parts.str.len() < 4).to_numpy())[0])
        raise ValueError(f"{t['__src'][i]}: row {i}: Path {t['Path'][i]!r} is not <split>/patientN/studyN/viewN.jpg")
    patient = parts.str[-3]
    study = patient + "/" + parts.str[-2]
    image = study + "/" + parts.str[-1].str.rsplit(".", n=1).str[0]
    fl = t["Frontal/Lateral"].astype(str).str.strip().str.lower()
    appa = t["AP/PA"] if "AP/PA" in t.columns else pd.Series("", index=t.index)
    view = np.where(fl == "lateral", "LATERAL", appa.map(normalize_view))
    view = np.where((fl == "frontal") & (view == "LATERAL"), "UNKNOWN", view)
    df = pd.DataFrame({"path": [str(base / r) for r in rel], "image_id": image, "study_id": study,
                       "patient_id": patient, "view": view, "projection": fl.where(fl.isin(["frontal", "lateral"]), ""),
                       "split": t["__split"], "chexpert_path": rel})
    for c in ("Sex", "Age"):
        if c in t.columns:
            df[c.lower()] = t[c].to_numpy()
    present = [c for c in CHEXPERT_CLASSES if c in t.columns]
    df = pd.concat([df, _label_columns(t, present)], axis=1)
    plus = [p for d in dict.fromkeys([root, base, base.parent]) for p in sorted(d.glob("df_chexpert_plus*.csv"))]
    if plus:
        rp = _read_csv(plus[0])
        _require(rp, ["path_to_image"], plus[0])
        rp = rp.assign(__key=rp["path_to_image"].astype(str).map(_strip_chexpert_prefix)).drop_duplicates("__key")
        cols = {"section_findings": "findings", "section_impression": "impression"}
        keep = [c for c in cols if c in rp.columns]
        rp = rp.set_index("__key")[keep].rename(columns=cols)
        df = df.join(rp, on="chexpert_path")
    return df


# ------------------------------------------------------------------------------------ NIH ChestX-ray14
NIH_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


@register_dataset("nih")
def nih(root: Path, csv: str | Path | None = None) -> pd.DataFrame:
    """NIH ChestX-ray14: Data_Entry_2017(_v2020).csv, train_val_list.txt / test_list.txt, images.

    Images are looked up by file name in images/, images_*/images/, images_*/ (and, when none is found
    there, anywhere below ``root``). ``label:C`` is 1/0 from "Finding Labels" (A|B|...; "No Finding" is a
    class too). Official test list -> test; val carved out of train_val patient-wise.
    """
    csv_p = Path(csv) if csv else _find_file(
        root, ["Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv", "Data_Entry_2017*.csv*"], "Data_Entry CSV")
    t = _read_csv(csv_p, dtype={"Image Index": str})
    _require(t, ["Image Index", "Finding Labels", "Patient ID", "View Position"], csv_p)
    names = t["Image Index"].astype(str)
    dirs = [root / "images", *sorted(root.glob("images_*/images")), *sorted(root.glob("images_*")), root]
    found = _image_map(dirs, "*.png")
    if not any(n in found for n in names):
        found = {}
        for p in sorted(root.rglob("*.png")):
            found.setdefault(p.name, str(p))
    default_dir = root / "images"
    paths = [found.get(n, str(default_dir / n)) for n in names]
    classes = (*NIH_CLASSES, "No Finding")
    y = np.zeros((len(t), len(classes)), dtype=np.float32)
    pos = {c: i for i, c in enumerate(classes)}
    for r, fl in enumerate(t["Finding Labels"].astype(str)):
        for lab in fl.split("|"):
            lab = lab.strip()
            if lab not in pos:
                raise ValueError(f"{csv_p}: row {r + 2}: unknown finding label {lab!r} (known: {', '.join(classes)})")
            y[r, pos[lab]] = 1.0
    df = pd.DataFrame({"path": paths, "image_id": names.str.rsplit(".", n=1).str[0],
                       "patient_id": pd.to_numeric(t["Patient ID"], errors="raise").astype("int64").astype(str),
                       "view": t["View Position"].map(normalize_view), "split": ""})
    df.insert(2, "study_id", df["image_id"])
    for c, new in (("Follow-up #", "follow_up"), ("Patient Age", "age"), ("Patient Gender", "sex")):
        if c in t.columns:
            df[new] = t[c].to_numpy()
    df = pd.concat([df, pd.DataFrame(y, columns=[f"{LABEL_PREFIX}{c}" for c in classes])], axis=1)
    test_p = csv_p.parent / "test_list.txt" if (csv_p.parent / "test_list.txt").exists() else root / "test_list.txt"
    trval_p = csv_p.parent / "train_val_list.txt" if (csv_p.parent / "train_val_list.txt").exists() \
        else root / "train_val_list.txt"
    if test_p.exists():
        test = set(test_p.read_text().split())
        trval = set(trval_p.read_text().split()) if trval_p.exists() else None
        df["split"] = ["test" if n in test else ("train" if trval is None or n in trval else "")
                       for n in names]
    return df


# ------------------------------------------------------------------------------ Open-i (Indiana CXR)
@register_dataset("openi")
def openi(root: Path, images: str | Path | None = None) -> pd.DataFrame:
    """Open-i / Indiana (Kaggle release): indiana_reports*.csv + indiana_projections.csv + images folder.

    Study = patient = ``uid``; ``projection`` from the Frontal / Lateral column (view stays UNKNOWN: the
    release does not say PA or AP). Report columns kept: findings, impression, indication, comparison,
    mesh, problems. Images are found in ``images``, images/images_normalized/, images/ or ``root``.
    """
    rep_p = _find_file(root, ["indiana_reports.csv", "indiana_reports*.csv"], "indiana_reports CSV")
    proj_p = _find_file(root, ["indiana_projections.csv", "indiana_projections*.csv"], "indiana_projections CSV")
    rep = _read_csv(rep_p)
    proj = _read_csv(proj_p)
    _require(rep, ["uid"], rep_p)
    _require(proj, ["uid", "filename", "projection"], proj_p)
    rep = rep.rename(columns={"MeSH": "mesh", "Problems": "problems"}).drop_duplicates("uid")
    proj = proj[proj["uid"].isin(rep["uid"])].reset_index(drop=True)
    dirs = [Path(images)] if images else []
    dirs += [root / "images" / "images_normalized", root / "images", root]
    found = _image_map(dirs, "*.png")
    img_dir = dirs[0] if images else root / "images" / "images_normalized"
    fn = proj["filename"].astype(str)
    df = pd.DataFrame({
        "path": [found.get(f, str(img_dir / f)) for f in fn],
        "image_id": fn.str.replace(r"(\.dcm)?\.png$", "", regex=True),
        "study_id": proj["uid"].astype(str), "patient_id": proj["uid"].astype(str), "view": "UNKNOWN",
        "projection": proj["projection"].astype(str).str.strip().str.lower(), "split": "",
    })
    keep = [c for c in ("findings", "impression", "indication", "comparison", "mesh", "problems")
            if c in rep.columns]
    extra = rep.assign(uid=rep["uid"].astype(str)).set_index("uid")[keep]
    return df.join(extra, on="study_id")


# ------------------------------------------------------------------------------------- generic table
def read_table(path: str | Path) -> pd.DataFrame:
    """Read an image index table (CSV, CSV.gz or Parquet); relative paths resolved against its folder."""
    path = Path(path)
    if path.is_dir():
        cand = [path / n for n in ("index.parquet", "index.csv", "index.csv.gz")]
        hit = next((c for c in cand if c.exists()), None)
        if hit is None:
            raise FileNotFoundError(f"{path}: no index.parquet / index.csv in this folder")
        path = hit
    if path.suffix == ".parquet":
        from repgls._io import reading

        with reading(path, "Parquet"):
            t = pd.read_parquet(path)
    else:
        t = _read_csv(path, dtype={c: str for c in ("image_id", "study_id", "patient_id", "split", "view")},
                      keep_default_na=False, na_values=[""])
    _require(t, ["path"], path)
    if t["path"].isna().any():
        raise ValueError(f"{path}: row {int(np.flatnonzero(t['path'].isna().to_numpy())[0]) + 2}: empty path")
    base = path.parent.resolve()
    t["path"] = [p if os.path.isabs(p) else str(base / p) for p in t["path"].astype(str)]
    if "image_id" not in t.columns:
        t["image_id"] = [Path(p).stem for p in t["path"]]
    if "study_id" not in t.columns:
        t["study_id"] = t["image_id"]
    if "patient_id" not in t.columns:
        t["patient_id"] = t["study_id"]
    for c in ("image_id", "study_id", "patient_id"):
        if t[c].isna().any():
            i = int(np.flatnonzero(t[c].isna().to_numpy())[0])
            raise ValueError(f"{path}: row {i + 2}: empty {c}")
    t["view"] = t["view"].fillna("UNKNOWN") if "view" in t.columns else "UNKNOWN"
    bad = [i for i, v in enumerate(t["view"].astype(str)) if v.strip().upper() not in _VIEW_MAP]
    if bad:
        raise ValueError(f"{path}: row {bad[0] + 2}: unknown view {t['view'].iloc[bad[0]]!r} (use PA, AP, LATERAL, UNKNOWN)")
    t["view"] = t["view"].map(normalize_view)
    t["split"] = t["split"].fillna("") if "split" in t.columns else ""
    return t


@register_dataset("table")
def table(root: Path) -> pd.DataFrame:
    """A CSV / Parquet image index (``root`` = the file, or a folder holding index.parquet / index.csv)."""
    return read_table(root)


@register_dataset("phantom")
def phantom(root: Path) -> pd.DataFrame:
    """The phantom world folder written by ``repgls phantom --out DIR`` (its DIR/index.csv)."""
    return read_table(root / "index.csv" if root.is_dir() else root)


# ------------------------------------------------------------------------------------ labels join
def _norm_id(s: str) -> str:
    """Loose study-id key: 's50414267' / '50414267' / 'CXR12' / '12' -> digits without leading zeros."""
    s = str(s).strip()
    core = s.lstrip("spSPCXRcxr_")
    return core.lstrip("0") or "0" if core.isdigit() else s


class AlignedLabels(NamedTuple):
    """Labels joined onto image rows: float32 [N, K] arrays and the class names.

    ``y`` label (0 where unsupervised), ``r`` GLS rate, ``mask`` 1 = supervised, ``mentioned`` 1 = the report
    mentions the finding (certainty known; what LU-ViT's rate head is trained on), ``classes`` [K].
    """

    y: np.ndarray
    r: np.ndarray
    mask: np.ndarray
    mentioned: np.ndarray
    classes: tuple


def match_study_ids(study_ids: Iterable[str], label_ids: Iterable[str]) -> np.ndarray:
    """Per image study id, the row of ``label_ids`` it matches (-1: none): exactly, or, when fewer than half of
    the images match exactly, by a loose key (``s123`` == ``123``)."""
    sids = [str(s) for s in study_ids]
    lab_ids = [str(s) for s in label_ids]
    pos = {s: i for i, s in enumerate(lab_ids)}
    idx = np.array([pos.get(s, -1) for s in sids], dtype=np.int64)
    if len(sids) and (idx >= 0).mean() < 0.5:
        loose = {_norm_id(s): i for i, s in enumerate(lab_ids)}
        idx2 = np.array([loose.get(_norm_id(s), -1) for s in sids], dtype=np.int64)
        if (idx2 >= 0).sum() > (idx >= 0).sum():
            idx = idx2
    return idx


def align_labels(study_ids: Iterable[str], labels: Any) -> AlignedLabels:
    """Join per-study labels onto image rows.

    ``labels``: a labels.parquet path or any object with ``study_ids``, ``classes``, ``y``, ``r`` (and ``p``,
    the certainty, NaN when not mentioned). mask is 1 where y is a number (NaN = ignore) and the study has
    labels; y and r are 0 where mask is 0; ``mentioned`` is 1 where the certainty is known (all supervised
    entries when the table has no ``p``). Ids match exactly, or, when fewer than half of the images match
    exactly, by a loose key (``s123`` == ``123``).
    """
    if isinstance(labels, (str, Path)):
        from repgls.rating.labels import read_labels

        labels = read_labels(labels)
    sids = [str(s) for s in study_ids]
    y_all = np.asarray(labels.y, dtype=np.float32)
    r_all = np.asarray(labels.r, dtype=np.float32) if getattr(labels, "r", None) is not None \
        else np.zeros_like(y_all)
    p_all = getattr(labels, "p", None)
    idx = match_study_ids(sids, labels.study_ids)
    k = y_all.shape[1]
    y = np.zeros((len(sids), k), dtype=np.float32)
    r = np.zeros((len(sids), k), dtype=np.float32)
    known = np.zeros((len(sids), k), dtype=bool)
    hit = idx >= 0
    y[hit] = y_all[idx[hit]]
    r[hit] = r_all[idx[hit]]
    mask = (~np.isnan(y)) & hit[:, None]
    if p_all is not None:
        known[hit] = np.isfinite(np.asarray(p_all, dtype=np.float32)[idx[hit]])
    else:
        known = mask.copy()
    y = np.where(mask, y, 0.0).astype(np.float32)
    r = np.where(mask, np.nan_to_num(r, nan=0.0), 0.0).astype(np.float32)
    return AlignedLabels(y, r, mask.astype(np.float32), (known & mask).astype(np.float32), tuple(labels.classes))


def official_labels(index: pd.DataFrame, uncertain: str = "ignore", blank: str = "negative") -> AlignedLabels:
    """Official ``label:C`` columns of an index (1 / 0 / -1 uncertain / blank = not mentioned) as labels.

    Uncertain (-1) per ``uncertain``: "ignore" (mask 0, U-Ignore), "zeros" (U-Zeros), "ones" (U-Ones).
    Blank (NaN) per ``blank``: "negative" (0, the CheXpert convention) or "ignore" (mask 0, as PU-RM does).
    r is 0 (no smoothing); ``mentioned`` is 1 where the label is not blank.
    """
    cols = [c for c in index.columns if c.startswith(LABEL_PREFIX)]
    if not cols:
        raise ValueError("the index has no official label columns (label:<Class>)")
    if blank not in ("negative", "ignore"):
        raise ValueError(f"blank must be negative or ignore, got {blank!r}")
    y = np.array(index[cols].to_numpy(dtype=np.float32), copy=True)
    mentioned = np.isfinite(y)
    mask = np.ones_like(y)
    if blank == "ignore":
        mask[~mentioned] = 0.0
    unc = y == -1
    if uncertain == "ignore":
        mask[unc] = 0.0
        y[unc] = 0.0
    elif uncertain in ("zeros", "ones"):
        y[unc] = 1.0 if uncertain == "ones" else 0.0
    else:
        raise ValueError(f"uncertain must be ignore, zeros or ones, got {uncertain!r}")
    y = np.nan_to_num(y, nan=0.0)
    return AlignedLabels(y, np.zeros_like(y), mask, mentioned.astype(np.float32),
                         tuple(c[len(LABEL_PREFIX):] for c in cols))


def select_classes(labels: AlignedLabels, classes: Sequence[str] | None) -> AlignedLabels:
    """Keep only ``classes`` (in that order) of aligned labels; None keeps all. Unknown names are an error."""
    if classes is None:
        return labels
    missing = [c for c in classes if c not in labels.classes]
    if missing:
        raise ValueError(f"class(es) {missing} not in the labels (they have {', '.join(labels.classes)})")
    idx = [labels.classes.index(c) for c in classes]
    return AlignedLabels(labels.y[:, idx], labels.r[:, idx], labels.mask[:, idx], labels.mentioned[:, idx],
                         tuple(classes))


def labels_for_rows(index: pd.DataFrame, labels: Any, classes: Sequence[str] | None = None,
                    uncertain: str = "ignore", blank: str = "negative") -> AlignedLabels:
    """Labels of a cache's image rows (``index``: its rows, with ``study_id``): a labels table / file, the
    string ``"official"`` (the dataset's own labels; ``uncertain`` / ``blank`` as :func:`official_labels`), or
    None (no labels: [N, 0] arrays); then only ``classes``, in that order."""
    if labels is None:
        empty = np.zeros((len(index), 0), dtype=np.float32)
        return AlignedLabels(empty, empty, empty, empty, ())
    aligned = (official_labels(index, uncertain, blank) if isinstance(labels, str) and labels == "official"
               else align_labels(index["study_id"].astype(str), labels))
    return select_classes(aligned, classes)
