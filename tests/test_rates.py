"""repgls rates: certainty -> (y, r) mapping, policies, labels.parquet I/O, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from repgls.mining.schema import FINDINGS_SCHEMA
from repgls.rating import LabelTable, gls_target, rates, read_labels, write_labels
from repgls.rating.mapping import gls_rate, map_mentions


def findings_table(rows: list[dict]) -> pa.Table:
    """A findings table in FINDINGS_SCHEMA from partial rows (other columns get neutral values)."""
    defaults = {"cue": "", "severity": "none", "severity_cue": "", "change": "none", "change_cue": "",
                "typicality": "", "sentence": "", "start": 0, "end": 0, "n_mentions": 1, "source": "rules",
                "lexicon_version": "test"}
    full = [{**defaults, **r} for r in rows]
    return pa.Table.from_pylist(full, schema=FINDINGS_SCHEMA)


ROWS = [
    {"study_id": "s1", "finding": "Cardiomegaly", "status": "positive", "certainty": 1.0},
    {"study_id": "s1", "finding": "Edema", "status": "uncertain", "certainty": 0.77, "cue": "likely"},
    {"study_id": "s1", "finding": "Pneumonia", "status": "negative", "certainty": 0.0, "cue": "no"},
    {"study_id": "s2", "finding": "Pleural Effusion", "status": "uncertain", "certainty": 0.35,
     "cue": "cannot be excluded"},
    {"study_id": "s2", "finding": "Atelectasis", "status": "positive", "certainty": 0.9, "cue": "consistent with"},
    {"study_id": "s3", "finding": "Pneumothorax", "status": "negative", "certainty": 0.09, "cue": "unlikely"},
]


def cell(df: pd.DataFrame, study: str, field: str, cls: str) -> float:
    return float(df.loc[df["study_id"] == study, f"{field}:{cls}"].iloc[0])


def target(df: pd.DataFrame, study: str, cls: str) -> float:
    return float(gls_target(cell(df, study, "label", cls), cell(df, study, "rate", cls)))


def test_gls_targets_per_case():
    df = rates(findings_table(ROWS), r0=-0.2)
    # definite positive: y=1, r=r0 -> t = 1 - r0/2 = 1.1 (sharpened beyond 1)
    assert cell(df, "s1", "label", "Cardiomegaly") == 1.0
    assert cell(df, "s1", "rate", "Cardiomegaly") == pytest.approx(-0.2)
    assert target(df, "s1", "Cardiomegaly") == pytest.approx(1.1)
    # definite negative: y=0, r=r0 -> t = r0/2 = -0.1 (sharpened below 0)
    assert cell(df, "s1", "label", "Pneumonia") == 0.0
    assert target(df, "s1", "Pneumonia") == pytest.approx(-0.1)
    # hedges get no r0: target equals the certainty
    assert cell(df, "s1", "rate", "Edema") == pytest.approx(2 * (1 - 0.77))
    assert target(df, "s1", "Edema") == pytest.approx(0.77, abs=1e-6)
    assert target(df, "s2", "Atelectasis") == pytest.approx(0.9, abs=1e-6)  # positive status but p < 1: hedge
    assert cell(df, "s2", "label", "Pleural Effusion") == 0.0  # p < 0.5 -> y = 0, r = 2p
    assert cell(df, "s2", "rate", "Pleural Effusion") == pytest.approx(0.7)
    assert target(df, "s2", "Pleural Effusion") == pytest.approx(0.35, abs=1e-6)
    assert target(df, "s3", "Pneumothorax") == pytest.approx(0.09, abs=1e-6)  # "unlikely" negative, p > 0
    # not mentioned: y = 0, r = 0, p = NaN
    assert cell(df, "s3", "label", "Edema") == 0.0
    assert cell(df, "s3", "rate", "Edema") == 0.0
    assert np.isnan(cell(df, "s3", "certainty", "Edema"))
    assert cell(df, "s1", "certainty", "Edema") == pytest.approx(0.77)


def test_r0_zero_gives_plain_targets_and_clip():
    df = rates(findings_table(ROWS), r0=0.0)
    assert target(df, "s1", "Cardiomegaly") == pytest.approx(1.0)
    assert target(df, "s1", "Pneumonia") == pytest.approx(0.0)
    y, r = gls_rate(np.array([1.0, 0.0, 0.5]), definite=np.array([True, True, False]), r0=-1.5)
    assert r.tolist() == pytest.approx([-0.99, -0.99, 0.99])
    assert y.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="r0 must be <= 0"):
        rates(findings_table(ROWS), r0=0.1)


@settings(max_examples=200, deadline=None)
@given(p=st.floats(0.0, 1.0), status=st.sampled_from(["positive", "negative", "uncertain"]),
       r0=st.floats(-0.5, 0.0))
def test_property_hedges_hit_certainty_definites_sharpen(p, status, r0):
    y, r = map_mentions(np.array([status], object), np.array([p]), "gls", r0=r0, clip=0.99)
    t = float(gls_target(y, r)[0])
    assert -0.99 <= r[0] <= 0.99
    definite = (status == "positive" and p >= 1 - 1e-6) or (status == "negative" and p <= 1e-6)
    if definite:  # certainty within 1e-6 of 1 (positive) or 0 (negative) counts as definite
        assert t == pytest.approx(1 - r0 / 2 if p > 0.5 else r0 / 2, abs=1e-5)
    elif abs(p - 0.5) >= 0.005:  # |r| < 0.99: the target is the certainty itself
        assert t == pytest.approx(p, abs=1e-5)
    else:  # r clipped at 0.99 near p = 0.5: the target stays within 0.005 of p
        assert abs(t - p) <= 0.0051
    assert y[0] == (1.0 if p >= 0.5 else 0.0)


def test_policies_reproduce_chexpert_conventions():
    table = findings_table(ROWS)
    expect = {  # (study, class) -> y under u-ones, u-zeros, u-ignore, hard
        ("s1", "Cardiomegaly"): (1, 1, 1, 1),
        ("s1", "Edema"): (1, 0, np.nan, 1),  # uncertain, p=0.77
        ("s1", "Pneumonia"): (0, 0, 0, 0),
        ("s2", "Pleural Effusion"): (1, 0, np.nan, 0),  # uncertain, p=0.35
        ("s2", "Atelectasis"): (1, 1, 1, 1),
        ("s3", "Pneumothorax"): (0, 0, 0, 0),
        ("s3", "Edema"): (0, 0, 0, 0),  # not mentioned
    }
    for j, policy in enumerate(["u-ones", "u-zeros", "u-ignore", "hard"]):
        df = rates(table, policy=policy)
        classes = df.attrs["repgls"]["classes"]
        assert all((df[f"rate:{c}"] == 0).all() for c in classes), policy
        for (s, c), ys in expect.items():
            got = cell(df, s, "label", c)
            if np.isnan(ys[j]):
                assert np.isnan(got), (policy, s, c)
            else:
                assert got == ys[j], (policy, s, c)
        assert df.attrs["repgls"]["policy"] == policy
    # u-ignore masks exactly the uncertain mentions
    lt = LabelTable.from_frame(rates(table, policy="u-ignore"))
    assert int((lt.mask == 0).sum()) == 2


def test_unmentioned_ignore_and_studies_without_findings(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("s0\ns1\ns2\ns3\ns9\n")
    df = rates(findings_table(ROWS), studies=ids, unmentioned="ignore")
    assert df["study_id"].tolist() == ["s0", "s1", "s2", "s3", "s9"]
    lt = LabelTable.from_frame(df)
    assert np.isnan(lt.y[0]).all() and (lt.r[0] == 0).all()  # s0: nothing mentioned -> all ignored
    assert int(lt.mask.sum()) == len(ROWS)
    # a reports table as the study list (id column named explicitly)
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"uid": ["7", "s2"], "findings": ["x", "y"]}).to_csv(reports, index=False)
    df2 = rates(findings_table(ROWS), studies=reports, id_column="uid")
    assert df2["study_id"].tolist() == ["7", "s2", "s1", "s3"]
    with pytest.raises(ValueError, match="no id column 'study_id'"):
        rates(findings_table(ROWS), studies=reports)


def test_write_read_roundtrip_layout(tmp_path):
    df = rates(findings_table(ROWS), studies=["s0", "s1", "s2", "s3"])
    path = write_labels(df, tmp_path / "labels.parquet")
    arrow = pq.read_table(path)
    classes = df.attrs["repgls"]["classes"]
    assert arrow.column_names[0] == "study_id"
    assert arrow.column_names[1:4] == [f"label:{classes[0]}", f"rate:{classes[0]}", f"certainty:{classes[0]}"]
    assert all(arrow.schema.field(c).type == pa.float32() for c in arrow.column_names[1:])
    meta = json.loads(arrow.schema.metadata[b"repgls"])
    assert {"vocab", "classes", "policy", "r0", "version"} <= set(meta)
    assert meta["vocab"] == "chexpert14" and meta["r0"] == -0.2 and len(meta["classes"]) == 14
    lt = read_labels(path)
    assert lt.study_ids.tolist() == ["s0", "s1", "s2", "s3"]
    assert lt.classes == tuple(classes) and lt.y.shape == lt.r.shape == lt.p.shape == (4, 14)
    assert lt.y.dtype == np.float32
    np.testing.assert_array_equal(lt.r, LabelTable.from_frame(df).r)
    k = classes.index("Edema")
    assert lt.target[1, k] == pytest.approx(0.77, abs=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"finding": "Dragon"}, "row 2: finding 'Dragon' is not a class"),
     ({"status": "maybe"}, "row 2: status='maybe'"),
     ({"certainty": 1.5}, "row 2: certainty=1.5")],
)
def test_bad_input_names_row(change, message):
    rows = [dict(r) for r in ROWS]
    rows[2].update(change)
    df = pd.DataFrame(rows)
    with pytest.raises(ValueError, match=message):
        rates(df)


def test_duplicate_and_missing_columns(tmp_path):
    dup = pd.DataFrame([*ROWS, ROWS[0]])
    with pytest.raises(ValueError, match="lists finding 'Cardiomegaly' twice"):
        rates(dup)
    path = tmp_path / "f.parquet"
    pd.DataFrame(ROWS).drop(columns=["status"]).to_parquet(path)
    with pytest.raises(ValueError, match=r"f\.parquet: missing column\(s\) \['status'\]"):
        rates(path)
    with pytest.raises(ValueError, match="unknown policy"):
        rates(pd.DataFrame(ROWS), policy="u-maybe")


def test_other_vocab_and_lazy_export():
    import repgls

    nih = [{"study_id": "a", "finding": "Effusion", "status": "uncertain", "certainty": 0.6}]
    df = repgls.rates(pd.DataFrame(nih), vocab="nih14")
    assert df.attrs["repgls"]["vocab"] == "nih14"
    assert target(df, "a", "Effusion") == pytest.approx(0.6, abs=1e-6)
    import repgls.rating  # importing the package does not shadow the stage function (no class swapping)

    assert repgls.rates is repgls.rating.rates


def test_cli_rates(tmp_path):
    from repgls.cli import app

    findings = tmp_path / "findings.parquet"
    pq.write_table(findings_table(ROWS), findings)
    out = tmp_path / "labels.parquet"
    res = CliRunner().invoke(app, ["rates", str(findings), "--out", str(out), "--policy", "u-zeros"])
    assert res.exit_code == 0, res.output
    lt = read_labels(out)
    assert lt.meta["policy"] == "u-zeros" and len(lt) == 3
    res = CliRunner().invoke(app, ["rates", str(findings), "--out", str(out), "--policy", "nope"])
    assert res.exit_code == 2 and "unknown policy" in res.output


@pytest.mark.external
def test_openi_every_study_keeps_a_row(shared_data):
    from repgls.mining import mine

    path = shared_data / "openi-dev" / "indiana_reports.dev.csv"
    findings = mine(path, id_col="uid", text_col=["findings", "impression"])
    df = rates(findings, studies=path, id_column="uid")
    assert df["study_id"].tolist() == pd.read_csv(path, dtype=str)["uid"].tolist()
    lt = LabelTable.from_frame(df)
    assert int((~np.isnan(lt.p)).sum()) == findings.num_rows  # each mention lands in exactly one cell
    mentioned = ~np.isnan(lt.p)
    hedged = mentioned & (lt.p > 0) & (lt.p < 1)
    assert hedged.any()
    np.testing.assert_allclose(lt.target[hedged], lt.p[hedged], atol=0.006)  # hedges: t = p (clip near 0.5)
    assert (lt.r[~mentioned] == 0).all() and (lt.y[~mentioned] == 0).all()
