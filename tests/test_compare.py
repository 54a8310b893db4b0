"""repgls compare: per-class agreement of two findings tables (library and CLI)."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from repgls.mining.compare import ABSENT, LABELS, compare_findings
from repgls.mining.schema import FINDINGS_SCHEMA


def table(rows: list[tuple[str, str, str]], source: str) -> pa.Table:
    p = {"positive": 1.0, "negative": 0.0, "uncertain": 0.5}
    recs = [{"study_id": s, "finding": f, "status": st, "certainty": p[st], "cue": "", "severity": "none",
             "severity_cue": "", "change": "none", "change_cue": "",
             "typicality": "" if st == "negative" else "typical", "sentence": "", "start": -1, "end": -1,
             "n_mentions": 1, "source": source, "lexicon_version": "t"} for s, f, st in rows]
    return pa.Table.from_pylist(recs, schema=FINDINGS_SCHEMA)


A = table([("1", "Edema", "positive"), ("2", "Edema", "negative"), ("3", "Edema", "uncertain"),
           ("1", "Cardiomegaly", "positive"), ("4", "Pneumothorax", "negative")], "rules")
B = table([("1", "Edema", "positive"), ("2", "Edema", "positive"), ("4", "Edema", "uncertain"),
           ("1", "Cardiomegaly", "positive"), ("2", "Cardiomegaly", "negative")], "llm:m")


def kappa_by_formula(a: list[str], b: list[str]) -> float:
    """Cohen's kappa from its definition (independent of scikit-learn)."""
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pe = sum((a.count(lab) / n) * (b.count(lab) / n) for lab in LABELS)
    return (po - pe) / (1 - pe) if pe < 1 else math.nan


def test_counts_agreement_and_kappa() -> None:
    df = compare_findings(A, B).set_index("finding")
    studies = ["1", "2", "3", "4"]  # every study in either table
    edema = df.loc["Edema"]
    assert (edema.n_a, edema.n_b, edema.both, edema.only_a, edema.only_b) == (3, 3, 2, 1, 1)
    assert edema.status_agreement == pytest.approx(1 / 2)  # study 1 agrees, study 2 does not
    la = ["positive", "negative", "uncertain", ABSENT]
    lb = ["positive", "positive", ABSENT, "uncertain"]
    assert edema.agreement == pytest.approx(1 / 4)
    assert edema.kappa == pytest.approx(kappa_by_formula(la, lb))
    pt = df.loc["Pneumothorax"]
    assert (pt.n_a, pt.n_b, pt.only_a) == (1, 0, 1) and math.isnan(pt.status_agreement)
    # pooled row: every (study, class) pair of the classes found
    allrow = df.loc["ALL"]
    assert allrow.n_a == len(A) and allrow.n_b == len(B)
    assert allrow.both == sum(df.drop(index="ALL").both)
    assert len(df) == 4 and list(df.index[:3]) == sorted(["Edema", "Cardiomegaly", "Pneumothorax"])
    per_class = df.drop(index="ALL").agreement * len(studies)
    assert allrow.agreement == pytest.approx(per_class.sum() / (3 * len(studies)))


def test_identical_tables_agree_fully() -> None:
    df = compare_findings(A, A).set_index("finding")
    assert (df.status_agreement.dropna() == 1.0).all() and (df.agreement == 1.0).all()
    assert (df.only_a == 0).all() and (df.only_b == 0).all()
    assert df.loc["Edema"].kappa == pytest.approx(1.0)


def test_vocab_classes_and_bad_input(tmp_path) -> None:
    df = compare_findings(A, B, classes=["Pleural Effusion", "Edema"])
    assert list(df.finding) == ["Pleural Effusion", "Edema", "ALL"]
    assert df.iloc[0].n_a == 0 and df.iloc[0].agreement == 1.0  # both say "absent" everywhere
    dup = pa.concat_tables([A, A.slice(0, 1)])
    with pytest.raises(ValueError, match=r"findings A: rows \[0, 5\]: study '1' lists finding 'Edema' twice"):
        compare_findings(dup, B)
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        compare_findings(tmp_path / "missing.parquet", B)
    bad = A.set_column(A.schema.get_field_index("status"), "status", pa.array(["pos"] * len(A)))
    with pytest.raises(ValueError, match="row 0: status='pos'"):
        compare_findings(bad, B)


def test_cli(tmp_path) -> None:
    from repgls.cli import app

    pa_, pb = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(A, pa_)
    pq.write_table(B, pb)
    out = tmp_path / "cmp.csv"
    res = CliRunner().invoke(app, ["compare", str(pa_), str(pb), "--vocab", "chexpert14", "--out", str(out)])
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_csv(out)
    from repgls.vocab import load_vocab

    assert list(df.finding) == [*load_vocab("chexpert14").classes, "ALL"]
    assert int(df.set_index("finding").loc["Edema", "only_b"]) == 1
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "nope.parquet"), str(pb)])
    assert res.exit_code == 2 and "file not found" in res.output
