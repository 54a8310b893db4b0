"""Phantom world: determinism, output contract, splits, prevalence, rendering signal, report wording."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repgls.data.phantom import (
    hedge_calibration,
    load_config,
    make_phantom,
    patient_splits,
    render_study,
    resolve_prevalence,
    simulate,
)
from repgls.data.phantom.radiologist import belief_tables
from repgls.data.phantom.render import grid, render
from repgls.vocab import load_vocab

CFG = load_config()


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_phantom(tmp_path_factory.mktemp("w") / "a", n=24, size=64, seed=7)


@pytest.fixture(scope="module")
def big() -> list:
    """A larger simulated world (no images) for statistics."""
    return simulate(2500, vocab="chexpert14", seed=3)


def test_same_seed_same_bytes_any_workers(world: Path, tmp_path: Path) -> None:
    again = make_phantom(tmp_path / "b", n=24, size=64, seed=7, workers=2)
    assert _digest(world) == _digest(again)
    other = make_phantom(tmp_path / "c", n=24, size=64, seed=8)
    assert _digest(world)["images/s0000000_pa.png"] != _digest(other)["images/s0000000_pa.png"]


def test_output_contract(world: Path) -> None:
    from PIL import Image

    index = pd.read_csv(world / "index.csv")
    assert list(index.columns[:6]) == ["path", "image_id", "study_id", "patient_id", "view", "split"]
    assert len(index) == 24 and index["image_id"].is_unique
    assert set(index["view"]) <= {"PA", "AP", "LATERAL", "UNKNOWN"}
    for p in index["path"]:
        im = Image.open(world / p)
        assert im.size == (64, 64) and im.mode == "L"
    reports = pd.read_csv(world / "reports.csv", keep_default_na=False)
    assert list(reports.columns) == ["study_id", "patient_id", "findings", "impression"]
    assert (reports["findings"].str.len() > 10).all() and (reports["impression"].str.len() > 5).all()
    truth = pd.read_parquet(world / "truth.parquet")
    for col in ("image_id", "study_id", "finding", "present", "severity", "severity_level", "prior_state",
                "visibility", "reported_status", "reported_cue", "reported_certainty"):
        assert col in truth.columns, col
    classes = load_vocab("chexpert14").classes
    assert len(truth) == 24 * len(classes)
    assert set(truth["finding"]) == set(classes)
    assert truth["severity"].between(0, 1).all() and truth["visibility"].between(0, 1).all()
    assert set(truth["reported_status"]) <= {"", "positive", "negative", "uncertain"}
    assert set(truth["prior_state"]) <= {"none", "absent", "present-smaller", "present-larger", "same"}
    assert not truth.loc[~truth["present"], "severity"].any()
    split = pd.read_csv(world / "split.csv")
    assert list(split.columns) == ["patient_id", "split"]
    meta = json.loads((world / "meta.json").read_text())
    assert meta["seed"] == 7 and meta["n"] == 24 and meta["vocab"] == "chexpert14"


def test_no_finding_means_nothing_present_but_devices(world: Path) -> None:
    truth = pd.read_parquet(world / "truth.parquet")
    wide = truth.pivot(index="image_id", columns="finding", values="present")
    others = wide.drop(columns=["No Finding", "Support Devices"]).any(axis=1)
    assert (wide["No Finding"] == ~others).all()


def test_patient_wise_split() -> None:
    ids = [f"p{i:04d}" for i in range(1000) for _ in range(i % 3 + 1)]
    sp = patient_splits(ids, seed=1, fractions={"train": 0.7, "val": 0.1, "test": 0.2})
    assert sp == patient_splits(ids, seed=1, fractions={"train": 0.7, "val": 0.1, "test": 0.2})
    counts = pd.Series(sp).value_counts(normalize=True)
    assert abs(counts["train"] - 0.7) < 0.02 and abs(counts["val"] - 0.1) < 0.02
    assert sp != patient_splits(ids, seed=2, fractions={"train": 0.7, "val": 0.1, "test": 0.2})


def test_split_in_folder_is_patient_wise(world: Path) -> None:
    index = pd.read_csv(world / "index.csv")
    assert (index.groupby("patient_id")["split"].nunique() == 1).all()
    split = pd.read_csv(world / "split.csv").set_index("patient_id")["split"]
    assert (index["split"].to_numpy() == split.loc[index["patient_id"]].to_numpy()).all()
    assert index.groupby("patient_id").size().max() > 1  # patients have prior studies


def test_prevalence_follows_parameter(big: list) -> None:
    prev = resolve_prevalence("chexpert14", "default")
    n = len(big)
    for c, p in prev.items():
        obs = np.mean([s.truth[c]["present"] for s in big])
        tol = 5 * np.sqrt(p * (1 - p) / (n / 3)) + 0.005  # studies of a patient are correlated
        assert abs(obs - p) < tol, (c, obs, p)


def test_longtail_prevalence_orders_groups() -> None:
    voc = load_vocab("ltml39")
    prev = resolve_prevalence("ltml39", "longtail")
    studies = simulate(2000, vocab="ltml39", seed=0, prevalence="longtail")
    obs = {c: np.mean([s.truth[c]["present"] for s in studies]) for c in prev}
    mean = {g: np.mean([obs[c] for c in prev if voc.groups[c] == g]) for g in ("head", "medium", "tail")}
    assert mean["head"] > 2 * mean["medium"] > 2 * 2 * mean["tail"] > 0
    assert all(prev[c] < 0.01 for c in prev if voc.groups[c] == "tail")


def test_prevalence_file(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    pd.DataFrame({"finding": ["Pneumothorax"], "prevalence": [0.5]}).to_csv(f, index=False)
    prev = resolve_prevalence("chexpert14", f)
    assert prev["Pneumothorax"] == 0.5 and prev["Edema"] == CFG["classes"]["Edema"]["prevalence"]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"finding": ["Nope"], "prevalence": [0.5]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="unknown class"):
        resolve_prevalence("chexpert14", bad)
    with pytest.raises(ValueError, match="prevalence must be"):
        resolve_prevalence("chexpert14", "sometimes")


def _plain_spec(findings: list[dict]) -> dict:
    """A fixed anatomy with no noise or rotation, so image measurements isolate the finding."""
    sim = simulate(1, seed=11)[0]
    ex = dict(sim.spec["exposure"], noise=0.0, blur=0.0, angle=0.0, dx=0.0, dy=0.0, heel=0.0, gamma=1.0,
              contrast=1.1, brightness=0.0)
    return {"anatomy": sim.spec["anatomy"], "exposure": ex, "findings": findings}


def _heart_width(img: np.ndarray, an: dict) -> float:
    """Width (normalised units) of the bright central run on the row through the heart's centre."""
    S = img.shape[0]
    X, Y = grid(S)
    row = int(np.argmin(np.abs(Y[:, 0] - an["heart_cy"])))
    prof = img[row].astype(float)
    lung = np.concatenate([prof[(X[0] > -0.6) & (X[0] < -0.45)], prof[(X[0] > 0.55) & (X[0] < 0.65)]])
    mid = prof[np.abs(X[0] - 0.1) < 0.05].mean()
    thr = (np.median(lung) + mid) / 2
    bright = prof > thr
    c = int(np.argmin(np.abs(X[0] - 0.1)))
    lo, hi = c, c
    while lo > 0 and bright[lo - 1]:
        lo -= 1
    while hi < S - 1 and bright[hi + 1]:
        hi += 1
    return (hi - lo + 1) * 2.0 / S


def test_cardiomegaly_severity_widens_the_heart_on_the_image() -> None:
    widths = []
    for sev in (0.0, 0.35, 0.7, 1.0):
        f = [] if sev == 0 else [{"kind": "cardiomegaly", "severity": sev}]
        spec = _plain_spec(f)
        widths.append(_heart_width(render(spec, 256, 0), spec["anatomy"]))
    assert all(b > a for a, b in itertools.pairwise(widths)), widths
    an = _plain_spec([])["anatomy"]
    thorax = (an["lung_cx"][1] + an["lung_a"]) - (an["lung_cx"][0] - an["lung_a"])
    assert 0.3 < widths[0] / thorax < 0.55 < widths[-1] / thorax, (widths, thorax)


def test_effusion_severity_brightens_the_costophrenic_angle() -> None:
    means = []
    for sev in (0.0, 0.3, 0.6, 0.9):
        f = [] if sev == 0 else [{"kind": "effusion", "severity": sev, "side": -1}]
        spec = _plain_spec(f)
        img = render(spec, 128, 0).astype(float)
        an = spec["anatomy"]
        X, Y = grid(128)
        cx = an["lung_cx"][0]
        box = (X < cx - 0.05) & (X > cx - an["lung_a"] * 0.9) & (Y > an["dome_r"] - 0.6) & (Y < an["dome_r"] + 0.15)
        means.append(img[box].mean())
    assert all(b > a for a, b in itertools.pairwise(means)), means


def test_render_study_returns_image_and_truth() -> None:
    st = simulate(3, seed=5)
    img, truth = render_study(st[2], size=96, seed=5)
    assert img.dtype == np.uint8 and img.shape == (96, 96)
    assert img.std() > 10  # not a blank frame
    assert set(truth) == set(load_vocab("chexpert14").classes)
    img2, _ = render_study(st[2], size=96, seed=5)
    assert np.array_equal(img, img2)
    with pytest.raises(ValueError, match="size"):
        render_study(st[2], size=8)


def test_reports_hedge_more_and_miss_more_at_low_visibility(big: list) -> None:
    rows = [(s.truth[c]["visibility"], s.reported.get(c, {})) for s in big for c in s.truth
            if c != "No Finding" and s.truth[c]["present"]]
    vis = np.array([v for v, _ in rows])
    lo, hi = np.quantile(vis, [1 / 3, 2 / 3])
    said = [(v, r) for v, r in rows if r.get("status") in ("positive", "uncertain")]
    hedged = lambda sel: np.mean([r["cue"] != "" for v, r in said if sel(v)])  # noqa: E731
    missed = lambda sel: np.mean([r.get("error") == "missed" for v, r in rows if sel(v)])  # noqa: E731
    assert hedged(lambda v: v < lo) > hedged(lambda v: v > hi) + 0.2
    assert missed(lambda v: v < lo) > missed(lambda v: v > hi) + 0.05


def test_bayes_radiologist_hedges_are_calibrated_probabilities(big: list) -> None:
    # default reader: the hedge written is its belief P(present | what it sees), so P(present | cue) ~ cue p
    table, err_bayes = hedge_calibration(big)
    _, err_vis = hedge_calibration(simulate(2500, vocab="chexpert14", seed=3, hedge_calibration="visibility"))
    assert table["mentions"].sum() > 500 and table["present"].between(0, 1).all()
    assert err_bayes < 0.08
    assert err_vis > err_bayes + 0.04
    with pytest.raises(ValueError, match="hedge_calibration"):
        simulate(5, hedge_calibration="psychic")


def test_belief_tables_follow_bayes_rule() -> None:
    studies = simulate(400, vocab="chexpert14", seed=1)
    tables = belief_tables(CFG, studies, load_vocab("chexpert14").classes)
    assert "No Finding" not in tables
    for _c, (v, b) in tables.items():
        assert ((b >= 0) & (b <= 1)).all()
        assert b[v > 0.45].min() == pytest.approx(1.0)  # over-calls are never perceived above 0.45
    rad = dict(CFG["radiologist"], overcall_rate=0.0)
    no_oc = belief_tables(dict(CFG, radiologist=rad), studies, ["Cardiomegaly"])
    assert no_oc["Cardiomegaly"][1].min() == pytest.approx(1.0)  # no over-calls: every hedged finding is real


def test_reported_intent_matches_the_text(big: list) -> None:
    hedges = {h["cue"]: h["p"] for h in CFG["hedges"]}
    n_checked = 0
    for s in big[:400]:
        text = (s.findings_text + " " + s.impression_text).lower()
        for _c, r in s.reported.items():
            if r.get("status") in ("positive", "uncertain") and r["cue"]:
                assert r["cue"] in text
                assert r["certainty"] == pytest.approx(hedges[r["cue"]])
                n_checked += 1
            if r.get("change") == "new":
                assert "new" in text
    assert n_checked > 50


def test_prior_state_follows_the_previous_study(big: list) -> None:
    prev = None
    for s in big[:600]:
        for c, t in s.truth.items():
            if c == "No Finding":
                continue
            if s.order == 0:
                assert t["prior_state"] == "none"
            else:
                p = prev.truth[c]
                expect = {(False, False): "absent", (False, True): "absent", (True, False): "present-larger"}
                key = (p["present"], t["present"])
                if key in expect:
                    assert t["prior_state"] == expect[key]
                else:
                    d = t["severity"] - p["severity"]
                    assert t["prior_state"] == ("same" if abs(d) < CFG["world"]["same_threshold"]
                                                else "present-smaller" if d > 0 else "present-larger")
        prev = s


def test_miss_and_overcall_rates_are_parameters() -> None:
    quiet = simulate(400, seed=2, miss_rate=0.0, overcall_rate=0.0)
    errs = [r.get("error", "") for s in quiet for r in s.reported.values()]
    assert set(errs) == {""}  # nothing missed, nothing over-called
    present = [(s, c) for s in quiet for c, t in s.truth.items() if t["present"] and c != "No Finding"]
    assert all(s.reported[c]["status"] in ("positive", "uncertain") for s, c in present)
    noisy = simulate(400, seed=2, miss_rate=1.0, overcall_rate=0.2)
    errs2 = [r.get("error", "") for s in noisy for r in s.reported.values()]
    assert errs2.count("overcall") > 20 and errs2.count("missed") > errs.count("missed")
    with pytest.raises(ValueError, match="miss_rate"):
        simulate(5, miss_rate=1.5)


@pytest.mark.parametrize("vocab", ["ltml39", "nih14"])
def test_every_class_of_the_vocabulary_is_drawn(vocab: str) -> None:
    cfg = load_config()
    voc = load_vocab(vocab)
    sim = simulate(1, seed=4)[0]
    base = render(dict(sim.spec, findings=[]), 128, 0).astype(int)
    from repgls.data.phantom.study import onset_extras as _onset_extras
    from repgls.data.phantom.study import render_finding as _render_finding

    rng = np.random.default_rng(0)
    for c in voc.classes:
        if c == "No Finding":
            continue
        cc = cfg["classes"][c]
        f = _render_finding(cc["kind"], 0.9, _onset_extras(cc["kind"], cc, cfg, rng))
        img = render(dict(sim.spec, findings=[f]), 128, 0).astype(int)
        if cc["kind"] not in ("systemic_hypertension",):  # subtle by design
            diff = np.abs(img - base)
            assert diff.max() > 12 and diff.mean() > 0.01, c


def test_cli_phantom(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from repgls.cli import app

    res = CliRunner().invoke(app, ["phantom", "--n", "3", "--size", "48", "--out", str(tmp_path / "o"),
                                   "--vocab", "ltml39", "--prevalence", "longtail", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o" / "images").glob("*.png"))) == 3
    bad = CliRunner().invoke(app, ["phantom", "--n", "3", "--out", str(tmp_path / "x"), "--prevalence", "zz"])
    assert bad.exit_code != 0 and "prevalence" in bad.output
    vis = CliRunner().invoke(app, ["phantom", "--n", "3", "--size", "48", "--out", str(tmp_path / "v"),
                                   "--hedge-calibration", "visibility"])
    assert vis.exit_code == 0, vis.output
    assert json.loads((tmp_path / "v" / "meta.json").read_text())["radiologist"]["hedge_calibration"] == "visibility"


def test_rule_miner_recovers_the_radiologists_intent() -> None:
    """`repgls mine`'s rule miner on phantom reports vs what the simulated radiologist meant."""
    pytest.importorskip("repgls.mining.rules")
    from repgls.data.phantom import miner_agreement

    studies = simulate(300, vocab="chexpert14", seed=21)
    res = miner_agreement(studies, "chexpert14")
    agree, n = res["agreement"], res["n"]
    assert n["status"] > 800 and n["cue"] > 300 and n["severity"] > 50 and n["change"] > 50
    assert agree["status"] >= 0.95, res["disagreements"]["status"][:5]
    assert agree["cue"] >= 0.85, res["disagreements"]["cue"][:5]
    assert agree["severity"] >= 0.75 and agree["change"] >= 0.95


def test_encode_png_roundtrip_and_fast_paths() -> None:
    import io

    from PIL import Image

    from repgls.data.phantom.render import _gauss_blur, _noise_table, _upsample2, encode_png

    st = simulate(3, seed=0)
    img, _ = render_study(st[1], size=128, seed=1)
    for im in (img, np.zeros((5, 9), np.uint8), np.arange(300, dtype=np.uint8).reshape(3, 100)):
        for compress in (True, False):
            data = encode_png(im, compress=compress)
            assert data == encode_png(im, compress=compress)  # deterministic
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), im)
    a = np.random.default_rng(0).random((16, 24)).astype(np.float32)
    ref = np.asarray(Image.fromarray(a, "F").resize((48, 32), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_allclose(_upsample2(a), ref, atol=1e-5)
    q = _noise_table()
    assert q.shape == (256,) and abs(float(q.mean())) < 1e-6 and abs(float(q.std()) - 1) < 1e-5
    blurred = _gauss_blur(np.pad(np.ones((1, 1), np.float32), 5), 0.8)
    assert abs(float(blurred.sum()) - 1) < 1e-5 and blurred[5, 5] == blurred.max()
