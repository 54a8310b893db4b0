"""``repgls export`` and prediction from an exported model (ONNX through onnxruntime, TorchScript).

Tiny runs of each model family (LU-ViT, DenseNet, ResNet test variants) are trained on the session's tiny
phantom cache. Checks: for each family and format the exported model's table equals the run's own ``predict``
within 1e-4 on the same files (cached PNGs, a non-square PNG, a 16-bit DICOM); the metadata says what a
deployment needs (classes, size, preprocessing, outputs, thresholds, sha256, source); thresholds are the ones
``repgls eval`` chooses; the CLI round trip; missing or altered metadata and altered model files are refused;
the ONNX path imports no torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from cli_checks import assert_one_line_error, invoke  # noqa: E402
from fakes import write_dicom  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4
FAMILIES = {"lu_vit": "lu_vit_tiny_test", "densenet": "densenet_tiny_test", "resnet": "resnet_tiny_test"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """One tiny run per model family (a few optimiser steps on the tiny run's cache and labels)."""
    import repgls

    root = tmp_path_factory.mktemp("export_runs")
    out = {}
    for family, name in FAMILIES.items():
        out[family] = repgls.train(REPO / "configs" / "phantom-tiny.yaml", overrides=[
            f"data.cache_dir={tiny_run['cache']}", f"data.labels={tiny_run['labels']}", "data.batch_size=16",
            "data.augment=false", f"model.name={name}", "train.max_steps=2", "train.epochs=1",
            "train.progress=false", "train.device=cpu", "train.checkpoint_every=null", "optim.warmup_steps=1",
            f"output.run_dir={root / family}"])
    return out


@pytest.fixture(scope="module")
def images(tiny_run, tmp_path_factory) -> list[Path]:
    """Five cached test PNGs, a 100 x 80 PNG (resized by the pad rule) and a 16-bit DICOM."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("export_images")
    idx = pd.read_parquet(tiny_run["cache"] / "index.parquet")
    paths = [Path(p) for p in idx[idx["split"] == "test"]["path"].tolist()[:5]]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (80, 100), dtype=np.uint8)
    img[20:60, 30:70] = 255
    Image.fromarray(img).save(folder / "wide.png")
    u16 = rng.integers(0, 4096, (72, 64)).astype(np.uint16)
    write_dicom(folder / "scan.dcm", u16, bits=12)
    return [*paths, folder / "wide.png", folder / "scan.dcm"]


def _max_diff(got: pd.DataFrame, ref: pd.DataFrame) -> float:
    assert list(got.columns) == list(ref.columns)
    assert got["path"].tolist() == ref["path"].tolist()
    return float(np.abs(got.drop(columns="path").to_numpy() - ref.drop(columns="path").to_numpy()).max())


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_matches_run_predict(runs, images, family, fmt, tmp_path):
    import repgls
    from repgls.data.images import NORM_MEAN, NORM_STD
    from repgls.evaluation import load_run
    from repgls.evaluation.onnx_predict import file_sha256, load_exported, predict_exported

    run = runs[family]
    path = repgls.export(run, format=fmt, out=tmp_path / "exp")
    assert path == tmp_path / "exp" / ("model.onnx" if fmt == "onnx" else "model.pt")
    ref = repgls.predict(run, images, device="cpu")
    got = predict_exported(path.parent, images, batch_size=3, device="cpu")  # batches of 3, 3, 1: dynamic batch
    diff = _max_diff(got, ref)
    print(f"{family} {fmt}: max abs difference {diff:.3g}")
    assert diff <= TOL

    lr = load_run(run, device="cpu")
    meta = json.loads((path.parent / "metadata.json").read_text())
    assert meta["format_version"] == 1 and meta["repgls_version"] == repgls.__version__
    assert meta["classes"] == list(lr.classes) and meta["input"]["image_size"] == 64
    assert meta["input"]["shape"] == ["batch", 1, 64, 64]
    assert meta["preprocessing"]["resize"]["mode"] == lr.resize_mode == "pad"
    assert (meta["preprocessing"]["normalize"]["mean"], meta["preprocessing"]["normalize"]["std"]) == (NORM_MEAN,
                                                                                                       NORM_STD)
    names = ["prob", "rate"] if family == "lu_vit" else ["prob"]
    assert [o["name"] for o in meta["outputs"]] == names
    assert meta["model"]["sha256"] == file_sha256(path) and meta["model"]["format"] == fmt
    assert meta["model"]["opset"] == (17 if fmt == "onnx" else None)
    assert meta["source"]["run"] == str(run.resolve()) and meta["source"]["checkpoint"] == "best"
    assert meta["source"]["checkpoint_sha256"] == file_sha256(run / "checkpoints" / "best.safetensors")
    assert meta["source"]["model"] == FAMILIES[family]
    assert set(meta["thresholds"]["values"]) == set(lr.classes)
    em = load_exported(path, device="cpu")  # the model file itself, metadata beside it
    assert em.classes == lr.classes and em.has_rate == (family == "lu_vit")
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.name for o in sess.get_outputs()] == names
        assert sess.get_inputs()[0].name == "image" and sess.get_inputs()[0].shape[0] == "batch"


def test_dynamo_exporter_and_determinism(runs, images, tmp_path):
    """The torch.export-based exporter (opset 18) gives the same predictions, at batch size 1 too; the default
    (TorchScript-based) exporter writes the same bytes twice."""
    import repgls
    from repgls.evaluation.onnx_predict import file_sha256, predict_exported

    run = runs["lu_vit"]
    path = repgls.export(run, out=tmp_path / "dyn", dynamo=True)
    meta = json.loads((path.parent / "metadata.json").read_text())
    assert meta["model"]["opset"] == 18 and "dynamo=True" in meta["model"]["exporter"]
    ref = repgls.predict(run, images, device="cpu")
    assert _max_diff(predict_exported(path, images, batch_size=1, device="cpu"), ref) <= TOL
    a = repgls.export(runs["resnet"], out=tmp_path / "a")
    b = repgls.export(runs["resnet"], out=tmp_path / "b")
    assert file_sha256(a) == file_sha256(b)


def test_thresholds_are_those_of_repgls_eval(runs, tmp_path):
    """Chosen on val against evaluate's reference before `repgls eval`; read from its metrics.json after."""
    import repgls

    run = runs["densenet"]
    with pytest.raises(FileNotFoundError, match=r"metrics\.json"):
        repgls.export(run, out=tmp_path / "e0", thresholds="eval")
    before = json.loads((repgls.export(run, out=tmp_path / "e1").parent / "metadata.json").read_text())["thresholds"]
    assert before["origin"] == "computed" and before["reference"] == "findings" and before["split"] == "val"
    res = repgls.evaluate(run, n_boot=0, cams=0, report=False, device="cpu")
    assert before["values"] == pytest.approx(res["thresholds"]["values"], abs=1e-12)
    after = json.loads((repgls.export(run, out=tmp_path / "e2").parent / "metadata.json").read_text())["thresholds"]
    assert after["origin"] == "eval" and after["file"] == str(run / "eval-test" / "metrics.json")
    assert after["values"] == res["thresholds"]["values"]
    forced = json.loads((repgls.export(run, out=tmp_path / "e3", thresholds="compute").parent
                         / "metadata.json").read_text())["thresholds"]
    assert forced["origin"] == "computed" and forced["values"] == before["values"]


def test_cli_round_trip(tiny_run, images, tmp_path):
    """`repgls export` + `repgls predict model.onnx` gives `repgls predict RUN`'s table; --cam is refused."""
    from typer.testing import CliRunner

    from repgls.cli import app

    run, out = tiny_run["run"], tmp_path / "deploy"
    r = CliRunner().invoke(app, ["export", str(run), "--format", "onnx", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "model.onnx" in r.output and "opset 17" in r.output
    imgs = [str(p) for p in images]
    r1 = CliRunner().invoke(app, ["predict", str(out / "model.onnx"), *imgs, "-o", str(tmp_path / "a.parquet"),
                                  "--device", "cpu"])
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(app, ["predict", str(run), *imgs, "-o", str(tmp_path / "b.parquet"), "--device", "cpu"])
    assert r2.exit_code == 0, r2.output
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert len(a) == len(images) and _max_diff(a, b) <= TOL
    assert any(c.startswith("expected_certainty:") for c in a.columns)
    line = assert_one_line_error(invoke("predict", out, imgs[0], "--cam", "-o", tmp_path / "c.parquet"), "--cam")
    assert "Grad-CAM is not available from an exported model" in line
    assert_one_line_error(invoke("export", run, "--format", "tflite", "--out", tmp_path / "x"), "--format", "tflite")
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "x").exists()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_or_altered_metadata_and_model_are_refused(runs, images, tmp_path):
    import repgls
    from repgls.evaluation.onnx_predict import ExportError, load_exported

    good = repgls.export(runs["resnet"], out=tmp_path / "good").parent

    gone = _copy(good, tmp_path / "gone")
    (gone / "metadata.json").unlink()
    with pytest.raises(ExportError, match=r"gone/metadata\.json: export metadata missing"):
        load_exported(gone / "model.onnx")

    edited = _copy(good, tmp_path / "edited")
    meta = json.loads((edited / "metadata.json").read_text())
    meta["classes"][0] = "Something Else"
    (edited / "metadata.json").write_text(json.dumps(meta, indent=2))
    with pytest.raises(ExportError, match=r"edited/metadata\.json: altered since export") as e:
        load_exported(edited)
    assert "\n" not in str(e.value)

    (edited / "metadata.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"edited/metadata\.json: not valid JSON"):
        load_exported(edited)

    swapped = _copy(good, tmp_path / "swapped")
    shutil.copy(repgls.export(runs["densenet"], out=tmp_path / "other"), swapped / "model.onnx")
    with pytest.raises(ExportError, match=r"swapped/model\.onnx: sha256 .* does not match metadata\.json"):
        load_exported(swapped)

    for target, words in ((gone / "model.onnx", "export metadata missing"), (edited, "not valid JSON"),
                          (swapped, "does not match")):
        res = invoke("predict", target, images[0], "-o", tmp_path / "p.parquet")
        assert words in assert_one_line_error(res, target.parent if target.suffix else target)
    assert not (tmp_path / "p.parquet").exists()

    with pytest.raises(FileExistsError, match="not a repgls export"):
        repgls.export(runs["resnet"], out=tmp_path / "gone")  # no metadata.json: not overwritten
    with pytest.raises(ValueError, match="format must be"):
        repgls.export(runs["resnet"], format="tflite", out=tmp_path / "t")


def test_onnx_predict_imports_no_torch(runs, images, tmp_path):
    """`repgls predict EXPORT ...` in a fresh interpreter: the table is written and torch never imported."""
    import repgls

    path = repgls.export(runs["lu_vit"], out=tmp_path / "exp")
    out = tmp_path / "p.parquet"
    argv = ["repgls", "predict", str(path), *map(str, images), "-o", str(out), "--device", "cpu", "--top", "0"]
    code = (
        "import sys\n"
        f"sys.argv = {argv!r}\n"
        "from repgls.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('heavy:', sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "heavy: []" in res.stdout, res.stdout
    ref = repgls.predict(runs["lu_vit"], images, device="cpu")
    assert _max_diff(pd.read_parquet(out), ref) <= TOL
