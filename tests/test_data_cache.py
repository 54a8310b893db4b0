"""The image cache: content, bad images, resume after a real kill, the `repgls prepare` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakes import fake_xray, make_nih, make_table, save_png
from repgls.data.adapters import create_dataset
from repgls.data.cache import DONE, FAILED, open_images, prepare_cache, read_meta, read_status
from repgls.data.images import load_resized

REPO = Path(__file__).resolve().parents[1]


def test_prepare_matches_direct_resize(tmp_path):
    make_table(tmp_path / "t", n=10)
    idx = create_dataset("table", tmp_path / "t")
    meta = prepare_cache(idx, tmp_path / "c", size=48, workers=1, progress=False)
    assert meta["complete"] and meta["n_done"] == 10 and meta["n_failed"] == 0
    mm = open_images(tmp_path / "c")
    assert mm.shape == (10, 48, 48) and mm.dtype == np.uint8
    for i, p in enumerate(idx["path"]):
        np.testing.assert_array_equal(mm[i], load_resized(p, 48))
    tab = pd.read_parquet(tmp_path / "c" / "index.parquet")
    assert tab["row"].tolist() == list(range(10))
    assert tab["image_id"].tolist() == idx["image_id"].tolist()
    assert read_meta(tmp_path / "c")["size"] == 48


def test_bad_images_logged_counted_not_fatal(tmp_path):
    make_table(tmp_path / "t", n=6)
    (tmp_path / "t" / "images" / "img0002.png").write_bytes(b"garbage")
    (tmp_path / "t" / "images" / "img0004.png").unlink()
    idx = create_dataset("table", tmp_path / "t")
    meta = prepare_cache(idx, tmp_path / "c", size=32, workers=2, chunk=2, progress=False)
    assert meta["n_failed"] == 2 and meta["n_done"] == 4 and meta["complete"]
    st = read_status(tmp_path / "c")
    assert st.tolist() == [DONE, DONE, FAILED, DONE, FAILED, DONE]
    err = pd.read_csv(tmp_path / "c" / "errors.csv")
    assert sorted(err["row"]) == [2, 4]
    assert err["path"].str.endswith("img0002.png").any() and err["error"].str.contains("not found").any()
    # rerun retries only the failed rows; fixing the file makes it succeed
    save_png(tmp_path / "t" / "images" / "img0004.png", fake_xray(4, 96 + 16, 80))
    meta2 = prepare_cache(idx, tmp_path / "c", size=32, workers=1, progress=False)
    assert meta2["n_skipped"] == 4 and meta2["n_failed"] == 1 and meta2["n_done"] == 5


def test_other_settings_refused(tmp_path):
    make_table(tmp_path / "t", n=4)
    idx = create_dataset("table", tmp_path / "t")
    prepare_cache(idx, tmp_path / "c", size=32, workers=1, progress=False)
    with pytest.raises(ValueError, match="another index or settings"):
        prepare_cache(idx, tmp_path / "c", size=40, workers=1, progress=False)
    meta = prepare_cache(idx, tmp_path / "c", size=40, workers=1, progress=False, overwrite=True)
    assert meta["size"] == 40 and open_images(tmp_path / "c").shape == (4, 40, 40)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "repgls.cli", "prepare", *args]


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    """Kill a real `repgls prepare` process mid-way (SIGKILL), resume it, compare with a clean run."""
    n, distinct = 900, 24
    rows = []
    for i in range(distinct):  # 400 px images: a few ms each to decode and resize
        big = np.kron(fake_xray(i, 100, 100), np.ones((4, 4), np.uint8))
        save_png(tmp_path / "imgs" / f"{i}.png", big)
    for i in range(n):
        rows.append({"path": f"imgs/{i % distinct}.png", "image_id": f"r{i}", "patient_id": f"p{i // 3}"})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = _cli("table", "--root", str(tmp_path / "index.csv"), "--out", str(out), "--size", "64",
                "--workers", "2", "--no-progress")
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        st = out / "status.u8"
        if st.exists() and (out / "meta.json").exists():
            done = int((np.fromfile(st, dtype=np.uint8) == DONE).sum())
            if 64 <= done <= n - 128:
                os.killpg(proc.pid, signal.SIGKILL)  # the process group we started: parent + pool workers
                killed_at = done
                break
        time.sleep(0.003)
    proc.wait(timeout=60)
    if killed_at is None:
        pytest.skip("the run finished before it could be killed (machine too fast); nothing to resume")
    assert not json.loads((out / "meta.json").read_text())["complete"]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    meta = read_meta(out)
    assert meta["complete"] and meta["n_done"] == n and meta["n_skipped"] >= killed_at
    ref = tmp_path / "clean"
    prepare_cache(create_dataset("table", tmp_path / "index.csv"), ref, size=64, workers=1, progress=False)
    assert (out / "images.u8").read_bytes() == (ref / "images.u8").read_bytes()
    assert pd.read_parquet(out / "index.parquet").equals(pd.read_parquet(ref / "index.parquet"))


def test_cli_prepare_nih_frontal(tmp_path):
    make_nih(tmp_path / "nih", n_patients=4, per_patient=2)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run(_cli("nih", "--root", str(tmp_path / "nih"), "--out", str(tmp_path / "c"), "--size", "32",
                              "--view", "pa", "--workers", "1", "--no-progress"),
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    tab = pd.read_parquet(tmp_path / "c" / "index.parquet")
    assert len(tab) == 4 and set(tab["view"]) == {"PA"}
    assert read_meta(tmp_path / "c")["n_done"] == 4
    bad = subprocess.run(_cli("nih", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "c2")),
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
