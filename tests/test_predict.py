"""``repgls predict`` / ``repgls.evaluation.predict`` on the tiny run of test_evaluate.py (built once per session).

Checks: the same image gives the same probabilities through predict (PNG file) and through the training cache
(prepare_cache + CachedImageDataset), also for a non-square PNG that must be resized; a 16-bit DICOM made with
pydicom (MONOCHROME2 and MONOCHROME1) gives the PNG's result; Parquet columns and value ranges; the expected
certainty inverts the rates mapping; --cam writes overlay PNGs; folders, unreadable files and bad classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("pydicom")

from fakes import write_dicom  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from repgls.evaluation import load_run

    return load_run(tiny_run["run"], device="cpu")


def _cache_probs(lr, cache_dir: Path, split: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Probabilities of the model on a cache's images through CachedImageDataset (the training input path)."""
    from repgls.data.torch_dataset import CachedImageDataset

    ds = CachedImageDataset(cache_dir, labels=None, split=split, augment=False)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        p = torch.sigmoid(lr.model(x)).numpy()
    return p, ds.index


def _columns(classes) -> list[str]:
    return (["path"] + [f"prob:{c}" for c in classes] + [f"rate:{c}" for c in classes]
            + [f"expected_certainty:{c}" for c in classes])


def test_png_matches_cache(tiny_run, loaded, tmp_path):
    from repgls.evaluation import predict

    p_cache, index = _cache_probs(loaded, tiny_run["cache"], "test")
    paths = index["path"].tolist()[:6]
    out = tmp_path / "pred.parquet"
    df = predict(tiny_run["run"], paths, out=out, device="cpu")
    assert list(df.columns) == _columns(loaded.classes)
    assert df["path"].tolist() == [str(p) for p in paths]
    probs = df[[f"prob:{c}" for c in loaded.classes]].to_numpy()
    np.testing.assert_allclose(probs, p_cache[:6], atol=1e-5)
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, df)
    import json

    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(out).metadata[b"repgls"])
    assert meta["classes"] == list(loaded.classes) and meta["image_size"] == 64


def test_resized_png_matches_prepared_cache(tiny_run, loaded, tmp_path):
    """A 100 x 80 PNG: predict resizes it exactly as `repgls prepare` does (pad, aspect kept)."""
    from PIL import Image

    from repgls.data.cache import prepare_cache
    from repgls.evaluation import predict

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        img = rng.integers(0, 256, (80, 100), dtype=np.uint8)
        img[20:60, 30:70] = 255
        p = tmp_path / f"big{i}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    index = pd.DataFrame({"path": [str(p) for p in paths], "image_id": [p.stem for p in paths],
                          "study_id": [f"s{i}" for i in range(3)], "patient_id": [f"p{i}" for i in range(3)],
                          "view": "PA", "split": "test"})
    prepare_cache(index, tmp_path / "cache", size=64, workers=1, progress=False)
    p_cache, _ = _cache_probs(loaded, tmp_path / "cache")
    df = predict(tiny_run["run"], paths, device="cpu")
    np.testing.assert_allclose(df[[f"prob:{c}" for c in loaded.classes]].to_numpy(), p_cache, atol=1e-5)


def test_dicom_matches_png(tiny_run, loaded, tmp_path):
    from PIL import Image

    from repgls.data.images import read_image
    from repgls.evaluation import predict

    src = pd.read_parquet(tiny_run["cache"] / "index.parquet")["path"].iloc[0]
    u8 = read_image(src).astype(np.float64)
    u8 = np.round((u8 - u8.min()) / (u8.max() - u8.min()) * 255).astype(np.uint8)  # full range: min-max is exact
    png = tmp_path / "img.png"
    Image.fromarray(u8).save(png)
    d2 = write_dicom(tmp_path / "img_m2.dcm", u8.astype(np.uint16) * 16, bits=12)
    d1 = write_dicom(tmp_path / "img_m1.dcm", (255 - u8.astype(np.uint16)) * 16, bits=12, photometric="MONOCHROME1")
    df = predict(tiny_run["run"], [png, d2, d1], device="cpu")
    probs = df[[f"prob:{c}" for c in loaded.classes]].to_numpy()
    np.testing.assert_allclose(probs[1], probs[0], atol=1e-6)
    np.testing.assert_allclose(probs[2], probs[0], atol=1e-6)
    assert np.all((probs >= 0) & (probs <= 1))


def test_values_and_certainty_rule(tiny_run, loaded):
    from repgls.evaluation import expected_certainty, predict
    from repgls.rating.mapping import gls_rate

    paths = pd.read_parquet(tiny_run["cache"] / "index.parquet")["path"].tolist()[:4]
    df = predict(tiny_run["run"], paths, device="cpu")
    q = df[[f"prob:{c}" for c in loaded.classes]].to_numpy()
    r = df[[f"rate:{c}" for c in loaded.classes]].to_numpy()
    ec = df[[f"expected_certainty:{c}" for c in loaded.classes]].to_numpy()
    assert np.all(np.abs(r) < 1) and np.all((ec >= 0) & (ec <= 1))
    np.testing.assert_allclose(ec, expected_certainty(q, r), atol=1e-6)
    df2 = predict(tiny_run["run"], paths, device="cpu")
    pd.testing.assert_frame_equal(df, df2)  # deterministic
    # The rule inverts the gls mapping for hedged mentions: y = 1 -> p = 1 - r/2, y = 0 -> p = r/2.
    # (p = 0.5 is off by 0.005: its rate 1.0 is clipped to 0.99 by the mapping.)
    p = np.array([0.3, 0.42, 0.51, 0.65, 0.77, 0.9])
    y, rate = gls_rate(p)
    np.testing.assert_allclose(expected_certainty(y, rate), p, atol=1e-6)
    # Definite statements carry r0 < 0 (targets beyond [0, 1]); the certainty is clipped to 1 / 0.
    y, rate = gls_rate(np.array([1.0, 0.0]), definite=True)
    np.testing.assert_allclose(expected_certainty(y, rate), [1.0, 0.0])


def test_cli_predict_with_cams(tiny_run, loaded, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from repgls.cli import app

    paths = pd.read_parquet(tiny_run["cache"] / "index.parquet")["path"].tolist()[:2]
    out = tmp_path / "p.parquet"
    r = CliRunner().invoke(app, ["predict", str(tiny_run["run"]), *paths, "--cam", "-o", str(out),
                                 "--device", "cpu", "--top", "2"])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out)
    assert len(df) == 2 and df.columns[0] == "path" and df.columns[-1] == "cam"
    cams = sorted((tmp_path / "p-cams").glob("*.png"))
    assert len(cams) == 2 and sorted(df["cam"]) == [str(c) for c in cams]
    for c, path in zip(df["cam"], df["path"], strict=True):
        assert Path(c).stem.startswith(Path(path).stem + "__")
        im = Image.open(c)
        assert im.mode == "RGB" and im.size == (64, 64)
    assert Path(paths[0]).name in r.output  # the readable table

    # Explicit CAM classes and folder.
    cls = loaded.classes[1]
    r2 = CliRunner().invoke(app, ["predict", str(tiny_run["run"]), paths[0], "--cam", "--cam-class", cls,
                                  "--cam-dir", str(tmp_path / "cc"), "-o", str(tmp_path / "q.parquet"),
                                  "--device", "cpu", "--top", "0"])
    assert r2.exit_code == 0, r2.output
    assert [p.name for p in (tmp_path / "cc").glob("*.png")] == [f"{Path(paths[0]).stem}__{cls.replace(' ', '_')}.png"]


def test_folders_bad_files_and_errors(tiny_run, tmp_path):
    import shutil

    from repgls.data.images import ImageReadError
    from repgls.evaluation import predict

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in pd.read_parquet(tiny_run["cache"] / "index.parquet")["path"].tolist()[:2]:
        shutil.copy(p, folder)
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        predict(tiny_run["run"], folder, device="cpu")
    df = predict(tiny_run["run"], folder, device="cpu", skip_errors=True)
    assert len(df) == 2 and not df["path"].str.endswith("broken.png").any()
    assert list(df.attrs["errors"]) == [str(folder / "broken.png")]
    with pytest.raises(ValueError, match="unknown CAM class"):
        predict(tiny_run["run"], folder / df["path"].map(lambda s: Path(s).name).iloc[0], cam=True,
                cam_classes=["Nope"], device="cpu")

    from typer.testing import CliRunner

    from repgls.cli import app

    r = CliRunner().invoke(app, ["predict", str(tiny_run["run"]), str(tmp_path / "missing.png")])
    assert r.exit_code == 2 and "not found" in r.output


def test_run_without_cache_and_plain_classifier(tiny_run, loaded, tmp_path):
    """predict needs only the run folder: size from the ViT weights when the cache is gone; a plain (non-LU)
    classifier gives prob columns only, classes from labels.parquet when predictions_val.parquet is absent."""
    import shutil

    import yaml
    from safetensors.torch import save_file

    from repgls.evaluation import load_run, predict
    from repgls.models import create_model

    paths = pd.read_parquet(tiny_run["cache"] / "index.parquet")["path"].tolist()[:2]
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run["run"], moved, ignore=shutil.ignore_patterns("eval-*", "tb"))
    cfg = yaml.safe_load((moved / "config.yaml").read_text())
    cfg["data"]["cache_dir"] = str(tmp_path / "gone")
    (moved / "config.yaml").write_text(yaml.safe_dump(cfg))
    lr = load_run(moved, device="cpu")
    assert lr.image_size == 64 and lr.classes == loaded.classes
    ref = predict(tiny_run["run"], paths, device="cpu")
    got = predict(moved, paths, device="cpu")
    pd.testing.assert_frame_equal(got, ref)

    plain = tmp_path / "plain"
    (plain / "checkpoints").mkdir(parents=True)
    cfg["model"]["name"] = "densenet_tiny_test"
    cfg["data"]["cache_dir"] = str(tiny_run["cache"])
    (plain / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    model = create_model("densenet_tiny_test", num_classes=len(loaded.classes), img_size=64)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain / "checkpoints" / "best.safetensors"))
    (plain / "checkpoints" / "best.json").write_text('{"tag": "best", "step": 0}')
    df = predict(plain, paths, device="cpu")
    assert list(df.columns) == ["path"] + [f"prob:{c}" for c in loaded.classes]
    model.eval()
    from repgls.data.images import load_for_model

    x = torch.from_numpy(np.stack([load_for_model(p, 64) for p in paths]))
    with torch.no_grad():
        want = torch.sigmoid(model(x)).numpy()
    np.testing.assert_allclose(df[[f"prob:{c}" for c in loaded.classes]].to_numpy(), want, atol=1e-5)
