"""repgls.metrics checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, roc_auc_score

from repgls import metrics as M
from repgls.vocab import load_vocab


def _data(n: int = 300, k: int = 4, seed: int = 0, nan_frac: float = 0.1):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < np.linspace(0.1, 0.5, k)).astype(float)
    y[rng.random((n, k)) < nan_frac] = np.nan
    logits = rng.normal(size=(n, k)) + 2.0 * np.nan_to_num(y) - 1.0
    s = 1.0 / (1.0 + np.exp(-logits))
    return y, s, logits


def test_per_class_auc_matches_sklearn_on_labelled_rows():
    y, s, _ = _data()
    auc, reasons = M.per_class_auc(y, s)
    for k in range(y.shape[1]):
        m = np.isfinite(y[:, k])
        assert auc[k] == pytest.approx(roc_auc_score(y[m, k], s[m, k]))
        assert reasons[k] is None
    assert M.mean_auc(y, s) == pytest.approx(auc.mean())


def test_undefined_auc_is_nan_with_reason_and_excluded_from_mean():
    y, s, _ = _data(k=3)
    y[:, 1] = np.where(np.isfinite(y[:, 1]), 0.0, np.nan)  # no positives
    y[:, 2] = np.nan  # nothing labelled
    auc, reasons = M.per_class_auc(y, s)
    assert math.isnan(auc[1]) and reasons[1] == "no positives"
    assert math.isnan(auc[2]) and reasons[2] == "no labelled rows"
    assert M.mean_auc(y, s) == pytest.approx(auc[0])
    res = M.score(y, s, ["a", "b", "c"])
    assert res["per_class"]["b"]["auc"] is None and res["per_class"]["b"]["auc_reason"] == "no positives"
    assert res["summary"]["n_auc_defined"] == 1


def test_choose_thresholds_maximises_balanced_accuracy_then_applies_to_test():
    y_val, s_val, _ = _data(seed=1)
    y_test, s_test, _ = _data(seed=2)
    thr = M.choose_thresholds(y_val, s_val)
    thr_y = M.choose_thresholds(y_val, s_val, criterion="youden")
    np.testing.assert_allclose(thr, thr_y)  # (TPR + TNR) / 2 = (1 + J) / 2: same optimum
    for k in range(y_val.shape[1]):
        m = np.isfinite(y_val[:, k])
        yk, sk = y_val[m, k].astype(int), s_val[m, k]
        # brute force over every candidate threshold (each score, plus above the max), by hand
        cand = np.r_[np.unique(sk), 1.1][:, None]
        tpr = ((sk >= cand) & (yk == 1)).sum(1) / (yk == 1).sum()
        tnr = ((sk < cand) & (yk == 0)).sum(1) / (yk == 0).sum()
        assert balanced_accuracy_score(yk, sk >= thr[k]) == pytest.approx(np.max((tpr + tnr) / 2))
    got = M.per_class_balanced_accuracy(y_test, s_test, thr)
    for k in range(y_test.shape[1]):
        m = np.isfinite(y_test[:, k])
        assert got[k] == pytest.approx(balanced_accuracy_score(y_test[m, k], s_test[m, k] >= thr[k]))
    res = M.score(y_test, s_test, list("abcd"), val_y=y_val, val_scores=s_val)
    assert res["settings"]["threshold_source"] == "validation"
    assert res["summary"]["bacc"] == pytest.approx(got.mean())
    assert [res["per_class"][c]["threshold"] for c in "abcd"] == pytest.approx(thr.tolist())


def test_bacc_logit0_is_ltml_rule():
    y, s, logits = _data(seed=3)
    got = M.per_class_balanced_accuracy(y, s, 0.5, inclusive=False)
    for k in range(y.shape[1]):
        m = np.isfinite(y[:, k])
        tpr = np.mean(logits[m, k][y[m, k] == 1] > 0)
        tnr = np.mean(logits[m, k][y[m, k] == 0] <= 0)
        assert got[k] == pytest.approx((tpr + tnr) / 2)
    res = M.score(y, s, list("abcd"))
    assert res["summary"]["bacc_logit0"] == pytest.approx(got.mean())
    assert res["summary"]["bacc"] is None and res["settings"]["threshold_source"] == "none"


def test_groups_from_vocabulary_and_dicts():
    vocab = load_vocab("ltml39")
    k = len(vocab.classes)
    y, s, _ = _data(n=400, k=k, seed=4, nan_frac=0.0)
    res = M.score(y, s, vocab.classes, groups=vocab, thresholds=0.5)
    auc = np.array([res["per_class"][c]["auc"] for c in vocab.classes], dtype=float)
    for g in ("head", "medium", "tail"):
        idx = vocab.group_indices(g)
        assert idx, g
        assert res["groups"][g]["auc"] == pytest.approx(np.nanmean(auc[idx]))
        assert res["groups"][g]["classes"] == [vocab.classes[i] for i in idx]
    assert list(res["groups"]) == ["head", "medium", "tail"]
    by_group = {"tail": ["b"], "head": ["a", "c"]}
    assert M.resolve_groups(["a", "b", "c"], by_group) == {"head": [0, 2], "tail": [1]}
    assert M.resolve_groups(["a", "b", "c"], {"a": "head", "b": "tail"}) == {"head": [0], "tail": [1]}
    with pytest.raises(ValueError, match="unknown classes"):
        M.resolve_groups(["a"], {"head": ["zz"]})


def test_auc_fg_hand_computed():
    # class 0: positives rows 0-4; atypical rows 0,1 (scores .6 .9), typical rows 2,3,4 (scores .7 .8 .95)
    # pairs typical > atypical: .7>.6, .8>.6, .95>.6, .95>.9 -> 4 of 6 -> 2/3; row 5 is negative (ignored).
    y = np.array([[1], [1], [1], [1], [1], [0]], dtype=float)
    s = np.array([[0.6], [0.9], [0.7], [0.8], [0.95], [0.99]])
    typ = np.array([[0], [0], [1], [1], [1], [1]], dtype=float)
    auc_fg, reasons = M.per_class_auc_fg(y, s, typ)
    assert auc_fg[0] == pytest.approx(4 / 6) and reasons[0] is None
    res = M.score(y, s, ["x"], typical=typ)
    assert res["summary"]["mean_auc_fg"] == pytest.approx(4 / 6)
    assert res["per_class"]["x"]["n_typical"] == 3 and res["per_class"]["x"]["n_atypical"] == 2
    only_typical = np.where(y == 1, 1.0, np.nan)
    _, reasons = M.per_class_auc_fg(y, s, only_typical)
    assert reasons == ["no atypical positives"]


def test_ece_hand_computed_and_bins_match_sklearn():
    # 2 bins: (0, .5] holds .1 .2 .4 (labels 0 0 1): mean .2333, frac .3333;  (.5, 1] holds .8 .9 (1 0)
    y = np.array([0, 0, 1, 1, 0], dtype=float)
    p = np.array([0.1, 0.2, 0.4, 0.8, 0.9])
    want = 3 / 5 * abs(1 / 3 - 0.7 / 3) + 2 / 5 * abs(0.5 - 0.85)
    assert M.expected_calibration_error(y, p, n_bins=2) == pytest.approx(want)
    rng = np.random.default_rng(5)
    p = rng.random(2000)
    p[:20] = np.linspace(0, 1, 11).repeat(2)[:20]  # values on the bin edges
    y = (rng.random(2000) < p).astype(float)
    r = M.reliability_bins(y, p, n_bins=10)
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    ok = r["count"] > 0
    np.testing.assert_allclose(r["frac_pos"][ok], frac)
    np.testing.assert_allclose(r["mean_prob"][ok], mean)
    assert M.brier_score(y, p) == pytest.approx(brier_score_loss(y, p))


def test_summary_calibration_pools_labelled_entries():
    y, s, _ = _data(seed=6)
    res = M.score(y, s, list("abcd"), n_bins=10)
    m = np.isfinite(y)
    assert res["summary"]["brier"] == pytest.approx(brier_score_loss(y[m], s[m]))
    assert res["summary"]["ece"] == pytest.approx(M.expected_calibration_error(y[m], s[m], 10))
    assert res["per_class"]["b"]["brier"] == pytest.approx(brier_score_loss(y[m[:, 1], 1], s[m[:, 1], 1]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_weighted_auc_equals_sklearn_sample_weight(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 40))
    y = rng.integers(0, 2, n).astype(float)
    y[:2] = [0, 1]
    s = rng.integers(0, 6, n) / 5.0 if seed % 2 else rng.random(n)  # many ties / no ties (fast path)
    w = rng.integers(0, 4, (3, n)).astype(float)
    w[:, :2] = 1.0
    got = M.weighted_auc(y, s, w)
    for b in range(3):
        assert got[b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[b]))


def test_bootstrap_replicate_equals_metrics_of_resampled_rows():
    y, s, _ = _data(n=120, seed=7)
    typ = np.where(y == 1, (np.random.default_rng(0).random(y.shape) < 0.5).astype(float), np.nan)
    thr = M.choose_thresholds(y, s)
    rng = np.random.default_rng(0)
    w = M.bootstrap_weights(len(y), 3, rng)
    from repgls.metrics.bootstrap import _replicate_metrics

    reps = _replicate_metrics(y, s, w, thr, typ, {"head": [0, 1]}, 15)
    for b in range(3):
        rows = np.repeat(np.arange(len(y)), w[b].astype(int))
        ref = M.score(y[rows], s[rows], list("abcd"), groups={"head": ["a", "b"]}, typical=typ[rows],
                         thresholds=thr)
        for key in ("mean_auc", "bacc", "bacc_logit0", "mean_auc_fg", "ece", "brier"):
            assert reps[key][b] == pytest.approx(ref["summary"][key]), key
        assert reps["group:head:auc"][b] == pytest.approx(ref["groups"]["head"]["auc"])


def test_bootstrap_resamples_patients_not_images():
    """With the patient of each row, a replicate draws patients: all images of a patient get the same weight,
    and the number of patients drawn (not images) is fixed."""
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(30)], rng.integers(1, 5, 30))  # 1-4 images per patient
    idx = M.cluster_index(patients, len(patients))
    w = M.bootstrap_weights(len(patients), 200, np.random.default_rng(1), idx)
    for g in range(30):
        rows = np.flatnonzero(idx == g)
        assert (w[:, rows] == w[:, rows[:1]]).all()  # one patient, one weight
    per_patient = np.stack([w[:, np.flatnonzero(idx == g)[0]] for g in range(30)], axis=1)
    assert (per_patient.sum(axis=1) == 30).all()  # 30 patients drawn per replicate
    assert not (w.sum(axis=1) == len(patients)).all()  # so the image count varies
    # patient-level intervals of an AUC are wider than image-level ones when images of a patient agree
    y = np.repeat(rng.random(30) < 0.4, 4).astype(float)[:, None]
    s = np.clip(y + rng.normal(0, 0.6, (30, 1)).repeat(4, axis=0) + rng.normal(0, 0.05, y.shape), 0, None)
    s = s / s.max()
    pid = np.repeat(np.arange(30), 4)
    rows_ci = M.score(y, s, ["a"], n_boot=400, seed=0)["summary"]["mean_auc_ci"]
    pat = M.score(y, s, ["a"], n_boot=400, seed=0, clusters=pid)
    assert pat["settings"]["ci_method"] == "percentile, patients resampled"
    pat_ci = pat["summary"]["mean_auc_ci"]
    assert pat_ci[1] - pat_ci[0] > 1.3 * (rows_ci[1] - rows_ci[0])
    with pytest.raises(ValueError, match="one patient per row"):
        M.score(y, s, ["a"], n_boot=10, clusters=pid[:5])


def test_bootstrap_ci_deterministic_and_brackets_estimate():
    y, s, _ = _data(n=400, seed=8)
    a = M.score(y, s, list("abcd"), thresholds=0.5, n_boot=200, seed=3)
    b = M.score(y, s, list("abcd"), thresholds=0.5, n_boot=200, seed=3)
    c = M.score(y, s, list("abcd"), thresholds=0.5, n_boot=200, seed=4)
    assert a == b and a["summary"]["mean_auc_ci"] != c["summary"]["mean_auc_ci"]
    lo, hi = a["summary"]["mean_auc_ci"]
    assert lo < a["summary"]["mean_auc"] < hi and hi - lo < 0.15
    for cls, e in a["per_class"].items():
        assert e["auc_ci"][0] <= e["auc"] <= e["auc_ci"][1], cls
    small = M.bootstrap_ci(y, s, n_boot=200, seed=3, chunk_elems=1000)  # chunked draws, same stream
    np.testing.assert_allclose(small["mean_auc"], a["summary"]["mean_auc_ci"])


def test_score_is_json_serialisable_and_tables():
    y, s, _ = _data(seed=9)
    res = M.score(y, s, list("abcd"), groups={"a": "head", "b": "tail"}, thresholds=0.4, n_boot=20)
    text = json.dumps(res, allow_nan=False)
    assert json.loads(text) == res
    df = M.metrics_table(res)
    assert list(df.index) == list("abcd")
    assert df.loc["c", "auc"] == pytest.approx(res["per_class"]["c"]["auc"])
    assert df.loc["a", "auc_lo"] == pytest.approx(res["per_class"]["a"]["auc_ci"][0])
    runs = [M.score(*_data(seed=i)[:2], list("abcd"), thresholds=0.5) for i in range(3)]
    tab = M.summary_table({"bce": runs, "one": runs[0]})
    vals = [r["summary"]["mean_auc"] for r in runs]
    assert tab.loc["bce", "mean_auc_mean"] == pytest.approx(np.mean(vals))
    assert tab.loc["bce", "mean_auc_std"] == pytest.approx(np.std(vals, ddof=1))
    assert tab.loc["bce", "n_runs"] == 3 and math.isnan(tab.loc["one", "mean_auc_std"])


def test_input_errors():
    y, s, _ = _data(k=2)
    with pytest.raises(ValueError, match="1, 0 or NaN"):
        M.score(np.full((3, 1), 2.0), np.full((3, 1), 0.5), ["a"])
    with pytest.raises(ValueError, match="probabilities"):
        M.score(y, s * 3, ["a", "b"])
    with pytest.raises(ValueError, match="class names"):
        M.score(y, s, ["a"])
    with pytest.raises(ValueError, match="shape"):
        M.score(y, s[:, :1], ["a", "b"])
