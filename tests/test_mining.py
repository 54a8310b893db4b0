"""Rule miner: cue types, merge rules, readers, writers, CLI and bad input (no external data needed)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import repgls
from repgls.cli import app
from repgls.mining import mine, mine_report, mine_to_file
from repgls.mining.readers import iter_reports
from repgls.mining.schema import FINDINGS_COLUMNS, validate_findings
from repgls.mining.sections import find_sections, split_sentences

runner = CliRunner()


def by_finding(text: str, vocab: str = "chexpert14", **kw) -> dict[str, dict]:
    return {f["finding"]: f for f in mine_report(text, vocab=vocab, **kw)}


# ----------------------------------------------------------------------------- negation
@pytest.mark.parametrize("text", [
    "No pneumothorax.",
    "There is no pneumothorax.",
    "No evidence of pneumothorax.",
    "Lungs are clear without pneumothorax.",
    "Negative for pneumothorax.",
    "The lungs are free of pneumothorax.",
    "Pneumothorax is not seen.",
    "The previously seen pneumothorax has resolved.",
    "Pneumothorax is no longer seen.",
])
def test_negation_pre_and_post(text: str) -> None:
    f = by_finding(text)["Pneumothorax"]
    assert f["status"] == "negative" and f["certainty"] == 0.0
    assert f["cue"]


def test_negation_distributes_over_a_list() -> None:
    f = by_finding("No focal consolidation, pleural effusion, or pneumothorax.")
    for name in ("Consolidation", "Pleural Effusion", "Pneumothorax"):
        assert f[name]["status"] == "negative", name


@pytest.mark.parametrize("text", [
    "No pneumothorax, but there is a small left pleural effusion.",
    "No pneumothorax; small left pleural effusion.",
    "No pneumothorax. Small left pleural effusion.",
    "No pneumothorax, however a small left pleural effusion is present.",
])
def test_negation_scope_ends_at_terminators(text: str) -> None:
    f = by_finding(text)
    assert f["Pneumothorax"]["status"] == "negative"
    assert f["Pleural Effusion"]["status"] == "positive"
    assert f["Pleural Effusion"]["severity"] == "mild"


# ----------------------------------------------------------------------------- uncertainty
@pytest.mark.parametrize("text,cue", [
    ("Pneumonia cannot be excluded.", "cannot be excluded"),
    ("Cannot exclude pneumonia.", "cannot exclude"),
    ("Pneumonia is not ruled out.", "not ruled out"),
    ("No new pneumonia.", "no new"),
])
def test_negation_looking_uncertain(text: str, cue: str) -> None:
    f = by_finding(text)["Pneumonia"]
    assert f["status"] == "uncertain"
    assert f["cue"].lower() == cue.lower()
    assert 0.0 < f["certainty"] < 1.0


def test_hedges_follow_the_scale_order() -> None:
    """Certainty from the lexicon: 'likely' > 'may represent' > 'possible' > 'cannot be excluded' > 'unlikely'."""
    p = {t: by_finding(t)["Pneumonia"]["certainty"] for t in (
        "Likely pneumonia.", "This may represent pneumonia.", "Possible pneumonia.",
        "Pneumonia cannot be excluded.", "Pneumonia is unlikely.")}
    vals = list(p.values())
    assert vals == sorted(vals, reverse=True), p
    assert all(0.0 < v < 1.0 for v in vals)


def test_near_certain_hedge_is_positive_with_its_certainty() -> None:
    f = by_finding("Findings consistent with pneumonia.")["Pneumonia"]
    assert f["status"] == "positive" and 0.85 <= f["certainty"] < 1.0 and f["cue"] == "consistent with"


def test_versus_and_or_make_alternatives_uncertain() -> None:
    f = by_finding("Left basilar atelectasis versus pneumonia.")
    assert f["Atelectasis"]["status"] == "uncertain" and f["Pneumonia"]["status"] == "uncertain"
    g = by_finding("Right base opacity may reflect atelectasis or consolidation.")
    assert g["Atelectasis"]["cue"] == "may reflect" and g["Consolidation"]["status"] == "uncertain"
    assert g["Atelectasis"]["certainty"] < by_finding("Right base opacity may reflect atelectasis.")[
        "Atelectasis"]["certainty"]
    assert g["Lung Opacity"]["status"] == "positive"


# ----------------------------------------------------------------------------- severity, change, typicality
@pytest.mark.parametrize("text,level,cue,typ", [
    ("Small left pleural effusion.", "mild", "Small", "atypical"),
    ("Trace right pleural effusion.", "trace", "Trace", "atypical"),
    ("Mild-to-moderate left pleural effusion.", "moderate", "Mild-to-moderate", "atypical"),
    ("Moderate left pleural effusion.", "moderate", "Moderate", "typical"),
    ("Large left pleural effusion.", "severe", "Large", "typical"),
    ("Massive left pleural effusion.", "severe", "Massive", "typical"),
    ("Left pleural effusion, which is small.", "none", "", "typical"),
])
def test_severity_levels_and_pu_rm_typicality(text: str, level: str, cue: str, typ: str) -> None:
    f = by_finding(text)["Pleural Effusion"]
    assert (f["severity"], f["severity_cue"], f["typicality"]) == (level, cue, typ)


@pytest.mark.parametrize("text,change,typ", [
    ("New left pleural effusion.", "new", "typical"),
    ("Increased left pleural effusion.", "worsened", "typical"),
    ("The left pleural effusion has worsened.", "worsened", "typical"),
    ("Decreased left pleural effusion.", "improved", "atypical"),
    ("Improving left pleural effusion.", "improved", "atypical"),
    ("Stable left pleural effusion.", "stable", "typical"),
    ("Left pleural effusion is unchanged.", "stable", "typical"),
    ("No change in the left pleural effusion.", "stable", "typical"),
])
def test_change_over_time(text: str, change: str, typ: str) -> None:
    f = by_finding(text)["Pleural Effusion"]
    assert f["status"] == "positive"
    assert (f["change"], f["typicality"]) == (change, typ)


def test_resolved_is_negative_with_change_resolved() -> None:
    f = by_finding("Interval resolution of the left pleural effusion.")["Pleural Effusion"]
    assert (f["status"], f["change"], f["typicality"]) == ("negative", "resolved", "")


# ----------------------------------------------------------------------------- attributes, No Finding, merge
def test_heart_size_needs_a_qualifier() -> None:
    assert by_finding("Heart size is normal.")["Cardiomegaly"]["status"] == "negative"
    assert by_finding("The heart is mildly enlarged.")["Cardiomegaly"]["severity"] == "mild"
    assert by_finding("The heart is enlarged.")["Cardiomegaly"]["status"] == "positive"
    assert "Cardiomegaly" not in by_finding("Pacemaker leads project over the heart.")
    assert by_finding("Borderline heart size.")["Cardiomegaly"]["status"] == "uncertain"


def test_no_finding_rules() -> None:
    assert by_finding("Lungs are clear. No effusion.")["No Finding"]["status"] == "positive"
    assert "No Finding" not in by_finding("Small effusion.")
    assert "No Finding" in by_finding("Right PICC line. No pneumothorax.")  # support devices do not block
    assert "No Finding" not in by_finding("Possible pneumonia.")  # uncertain blocks
    assert "No Finding" not in by_finding("Thoracic scoliosis. Lungs clear.")  # other abnormality blocks
    assert "No Finding" in by_finding("No scoliosis. Lungs clear.")
    assert mine_report("") == [] and mine_report("   ") == []


def test_merge_positive_beats_uncertain_beats_negative() -> None:
    f = by_finding("No effusion on the right. Possible small left effusion. Left effusion is present.")
    eff = f["Pleural Effusion"]
    assert eff["status"] == "positive" and eff["n_mentions"] == 3
    g = by_finding("No pneumonia in the right lung. Left base pneumonia cannot be excluded.")
    assert g["Pneumonia"]["status"] == "uncertain"


# ----------------------------------------------------------------------------- real-text phenomena
def test_numbered_lists_deid_and_abbreviations() -> None:
    text = ("1. No pneumothorax. 2. Approx. 2 cm nodule in the XXXX lobe, d/w Dr. ___ at 10:00.\n"
            "3. Small effusion and/or atelectasis.")
    f = by_finding(text)
    assert f["Pneumothorax"]["status"] == "negative"
    assert f["Lung Lesion"]["status"] == "positive"
    assert f["Pleural Effusion"]["status"] == "uncertain" and f["Atelectasis"]["status"] == "uncertain"
    spans = split_sentences(text, abbreviations=frozenset({"approx", "dr"}))
    assert len(spans) == 3


def test_spans_index_the_original_text() -> None:
    text = "IMPRESSION:\n  Mild  CARDIOMEGALY.   No   Pleural-Effusion."
    for f in mine_report(text):
        if f["finding"] != "No Finding":
            frag = text[f["start"]:f["end"]].lower().replace("-", " ")
            assert frag.split()[-1] in {"cardiomegaly", "effusion"}
            assert f["sentence"] in text


def test_sections() -> None:
    text = "INDICATION: rule out pneumonia.\nFINDINGS: Small effusion.\nIMPRESSION: Small effusion, no pneumonia."
    names = [s[0] for s in find_sections(text)]
    assert names == ["indication", "findings", "impression"]
    only_imp = by_finding(text, sections="impression")
    assert only_imp["Pneumonia"]["start"] > text.index("IMPRESSION")
    assert by_finding("Small effusion.", sections="impression")["Pleural Effusion"]["status"] == "positive"


@pytest.mark.parametrize("vocab", ["chexpert14", "nih14", "ltml39"])
def test_vocabularies(vocab: str) -> None:
    f = mine_report("Small left pleural effusion. Massive cardiomegaly. Small hiatal hernia.", vocab=vocab)
    names = {x["finding"] for x in f}
    assert ("Effusion" if vocab == "nih14" else "Pleural Effusion") in names
    assert "Cardiomegaly" in names
    if vocab == "ltml39":
        assert {"Massive Cardiomegaly", "Diaphragmatic Hernia"} <= names
    validate_findings(mine([("s1", "Small left pleural effusion.")], vocab=vocab))


def test_word_boundaries_and_unmentions() -> None:
    f = by_finding("Massive weight loss. Pericardial effusion.")
    assert "Lung Lesion" not in f and "Pleural Effusion" not in f


# ----------------------------------------------------------------------------- API: mine / readers / writers
def test_lazy_top_level_api() -> None:
    assert repgls.mine is mine and repgls.mine_report is mine_report


def test_mine_returns_schema_table_deterministically() -> None:
    reports = [("a", "Small effusion. No pneumothorax."), ("b", "Possible pneumonia."), ("c", float("nan"))]
    t1 = mine(reports)
    t2 = mine(reports, workers=2)
    assert t1.schema.names == list(FINDINGS_COLUMNS)
    validate_findings(t1)
    assert t1.equals(t2)
    assert set(t1.column("study_id").to_pylist()) == {"a", "b"}
    assert set(t1.column("source").to_pylist()) == {"rules"}
    assert all("cues-v" in v for v in t1.column("lexicon_version").to_pylist())


@pytest.fixture
def reports_csv(tmp_path: Path) -> Path:
    p = tmp_path / "reports.csv"
    pd.DataFrame({
        "uid": ["r1", "r2", "r3", "r4"],
        "findings": ["Small left effusion.", "", "Heart size normal.", None],
        "impression": ["No pneumothorax.", "Possible pneumonia.", "No acute disease.", None],
    }).to_csv(p, index=False)
    return p


def test_readers_formats_agree(tmp_path: Path, reports_csv: Path) -> None:
    df = pd.read_csv(reports_csv)
    df.to_csv(tmp_path / "r.tsv", sep="\t", index=False)
    df.to_parquet(tmp_path / "r.parquet")
    df.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    base = list(iter_reports(reports_csv, text_col=["findings", "impression"]))
    assert base[0] == ("r1", "FINDINGS:\nSmall left effusion.\n\nIMPRESSION:\nNo pneumothorax.")
    assert base[3] == ("r4", "")
    for name in ("r.tsv", "r.parquet", "r.jsonl"):
        assert list(iter_reports(tmp_path / name, text_col=["findings", "impression"])) == base, name


def test_mimic_tree_reader(tmp_path: Path) -> None:
    for pid, sid, text in (("p10000032", "s50414267", "FINDINGS: No effusion.\nIMPRESSION: Normal."),
                           ("p10000033", "s50000001", "IMPRESSION: Small left effusion.")):
        d = tmp_path / "files" / "p10" / pid
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{sid}.txt").write_text(text)
    got = list(iter_reports(tmp_path))
    assert [g[0] for g in got] == ["s50414267", "s50000001"]  # sorted path order (p10000032 < p10000033)
    t = mine(tmp_path, sections="impression")
    assert ("s50000001", "Pleural Effusion", "positive") in zip(*(t.column(c).to_pylist()
                                                                  for c in ("study_id", "finding", "status")), strict=False)


def test_mine_to_file_formats(tmp_path: Path, reports_csv: Path) -> None:
    s = mine_to_file(reports_csv, tmp_path / "f.parquet", text_col=["findings", "impression"])
    assert (s.reports, s.empty) == (4, 1) and s.findings > 0 and s.reports_per_s > 0
    t = validate_findings(pq.read_table(tmp_path / "f.parquet"))
    assert t.num_rows == s.findings
    meta = json.loads(pq.read_schema(tmp_path / "f.parquet").metadata[b"repgls"])
    assert meta["vocab"] == "chexpert14" and meta["source"] == "rules"
    mine_to_file(reports_csv, tmp_path / "f.csv", fmt="csv", text_col=["findings", "impression"])
    assert pd.read_csv(tmp_path / "f.csv").shape == (t.num_rows, len(FINDINGS_COLUMNS))
    mine_to_file(reports_csv, tmp_path / "c.csv", fmt="chexpert-csv", text_col=["findings", "impression"])
    with open(tmp_path / "c.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "Reports" and len(rows) == 5  # header + one row per report, empty ones included
    hdr = rows[0]
    assert rows[1][hdr.index("Pleural Effusion")] == "1.0" and rows[1][hdr.index("Pneumothorax")] == "0.0"
    assert rows[2][hdr.index("Pneumonia")] == "-1.0" and rows[4][1:] == [""] * 14


def test_batches_stream_and_workers_match(tmp_path: Path) -> None:
    reports = [(f"s{i}", "Small effusion." if i % 3 else "No pneumothorax. Mild edema.") for i in range(500)]
    a = mine_to_file(reports, tmp_path / "a.parquet", batch_size=64)
    b = mine_to_file(reports, tmp_path / "b.parquet", batch_size=64, workers=2)
    assert a.findings == b.findings
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


# ----------------------------------------------------------------------------- bad input
def test_missing_column_names_existing_columns(reports_csv: Path) -> None:
    with pytest.raises(ValueError, match=r"no text column 'report_body'.*columns are: uid, findings, impression"):
        list(iter_reports(reports_csv, text_col="report_body"))
    with pytest.raises(ValueError, match="no id column 'sid'"):
        list(iter_reports(reports_csv, id_col="sid", text_col="findings"))


def test_duplicate_ids(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"id": ["a", "b", "a"], "report": ["No effusion.", "Effusion.", "Edema."]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match=r"row 3: duplicate study id 'a'.*--allow-duplicates"):
        mine(p)
    assert mine(p, allow_duplicates=True).num_rows >= 3


def test_undecodable_bytes_are_replaced_and_counted(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(b"id,report\na,Small effusion \xff\xfe here.\nb,No pneumothorax.\n")
    s = mine_to_file(p, tmp_path / "o.parquet")
    assert (s.reports, s.undecodable) == (2, 1)
    assert "Pleural Effusion" in pq.read_table(tmp_path / "o.parquet").column("finding").to_pylist()


def test_unwritable_out_fails_before_work(tmp_path: Path, reports_csv: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        mine_to_file(reports_csv, tmp_path / "nope" / "f.parquet")
    with pytest.raises(ValueError, match="is a folder"):
        mine_to_file(reports_csv, tmp_path)


def test_failed_run_leaves_no_output(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"id": ["a", "a"], "report": ["x", "y"]}).to_csv(p, index=False)
    with pytest.raises(ValueError):
        mine_to_file(p, tmp_path / "f.parquet")
    assert not (tmp_path / "f.parquet").exists() and not (tmp_path / "f.parquet.part").exists()


# ----------------------------------------------------------------------------- CLI
def test_cli_mine_parquet_and_summary(tmp_path: Path, reports_csv: Path) -> None:
    out = tmp_path / "findings.parquet"
    r = runner.invoke(app, ["mine", str(reports_csv), "--out", str(out), "--id-col", "uid",
                            "--text-col", "findings,impression", "--vocab", "nih14",
                            "--sections", "impression,findings", "--workers", "1"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps at the terminal width (long tmp paths)
    assert "4 reports" in said and "1 empty" in said and "reports/s" in said
    assert "Small left effusion" not in said  # never print report text
    t = validate_findings(pq.read_table(out))
    assert set(t.column("finding").to_pylist()) <= set(repgls.load_vocab("nih14").classes)


def test_cli_errors(tmp_path: Path, reports_csv: Path) -> None:
    r = runner.invoke(app, ["mine", str(reports_csv), "--out", str(tmp_path / "x.parquet"), "--text-col", "nope"])
    assert r.exit_code == 2 and "columns are" in r.output
    r = runner.invoke(app, ["mine", str(reports_csv), "--out", str(tmp_path / "no" / "x.parquet")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["mine", str(reports_csv), "--out", str(tmp_path / "x.parquet"), "--format", "xls"])
    assert r.exit_code == 2 and "--format" in r.output
    r = runner.invoke(app, ["mine", str(reports_csv), "--out", str(tmp_path / "x.parquet"), "--vocab", "nope"])
    assert r.exit_code == 2 and "unknown vocabulary" in r.output


def test_cli_stdin_txt(tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    r = runner.invoke(app, ["mine", "-", "--out", str(out), "--format", "csv"],
                      input="No pneumothorax.\nSmall left effusion.\n")
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert set(df["study_id"].astype(str)) == {"1", "2"}


def test_cli_llm_engine_is_called_lazily(tmp_path: Path, reports_csv: Path, monkeypatch) -> None:
    """--engine llm passes (study_id, text) pairs and the options to repgls.mining.llm.mine_llm."""
    import types

    seen = {}

    def fake_mine_llm(reports, vocab, **kw):
        seen["reports"] = list(reports)
        seen.update(kw)
        return mine(seen["reports"], vocab=vocab.name)  # a FINDINGS_SCHEMA table, as the LLM miner returns

    monkeypatch.setitem(sys.modules, "repgls.mining.llm", types.SimpleNamespace(mine_llm=fake_mine_llm))
    out = tmp_path / "llm.parquet"
    r = runner.invoke(app, ["mine", str(reports_csv), "--out", str(out), "--engine", "llm", "--text-col",
                            "findings,impression", "--concurrency", "3", "--model", "tiny"])
    assert r.exit_code == 0, r.output
    assert seen["concurrency"] == 3 and seen["model"] == "tiny" and len(seen["reports"]) == 4
    validate_findings(pq.read_table(out))


def test_mine_command_does_not_import_torch() -> None:
    code = ("import sys; from repgls.cli import app; import repgls.mining; "
            "print('torch' in sys.modules or 'transformers' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert res.stdout.strip() == "False", res.stderr


def test_rows_to_table_empty() -> None:
    from repgls.mining.writers import rows_to_table

    t = rows_to_table([])
    assert t.num_rows == 0 and t.schema.equals(pa.schema(t.schema))


def test_cli_stdin_csv_with_progress(tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    r = runner.invoke(app, ["mine", "-", "--input-format", "csv", "--out", str(out), "--progress"],
                      input="id,report\nx1,Small effusion.\nx2,No pneumothorax.\n")
    assert r.exit_code == 0, r.output
    t = validate_findings(pq.read_table(out))
    assert set(t.column("study_id").to_pylist()) == {"x1", "x2"}


def test_bundled_sample_reports() -> None:
    from importlib import resources

    src = resources.files("repgls.data").joinpath("samples/example_reports.csv")
    t = mine(str(src), text_col=["findings", "impression"])
    validate_findings(t)
    rows = set(zip(*(t.column(c).to_pylist() for c in ("study_id", "finding", "status", "change")), strict=True))
    assert ("demo-002", "Pleural Effusion", "positive", "worsened") in rows
    assert ("demo-003", "Pneumonia", "uncertain", "none") in rows
    assert ("demo-004", "Pneumothorax", "negative", "resolved") in rows


@pytest.mark.parametrize("text,status", [
    ("No focal consolidation concerning for pneumonia.", "negative"),
    ("No focal opacity to suggest pneumonia.", "negative"),
    ("Right basilar opacity concerning for pneumonia.", "uncertain"),
    ("No effusion, likely pneumonia.", "uncertain"),
])
def test_linking_hedges_inside_negation(text: str, status: str) -> None:
    assert by_finding(text)["Pneumonia"]["status"] == status


# ----------------------------------------------------------------------------- alternatives, hedge scope, hypotheticals
@pytest.mark.parametrize("text,a,b,p", [
    ("Streaky left basal opacity, atelectasis or scarring.", "Atelectasis", None, 0.39),
    ("Right lower lobe atelectasis versus pneumonia.", "Atelectasis", "Pneumonia", 0.31),
    ("Right lower lobe atelectasis vs. pneumonia.", "Atelectasis", "Pneumonia", 0.31),
    ("Basilar opacities representing atelectasis and/or pneumonia.", "Atelectasis", "Pneumonia", 0.39),
    ("Either atelectasis or early pneumonia at the left base.", "Atelectasis", "Pneumonia", 0.39),
    ("Patchy left base atelectasis/pneumonia.", "Atelectasis", "Pneumonia", 0.39),
])
def test_differential_alternatives_share_belief(text: str, a: str, b: str | None, p: float) -> None:
    """cues v4: each member of a two-way differential takes the connector's p (Lunguage++ 'or' 0.39, 'versus'
    0.31; 'and/or', 'either ... or', '/' at the 'or' value), below a single 'could be' (0.42)."""
    f = by_finding(text)
    for name in (a, b):
        if name:
            assert (f[name]["status"], f[name]["certainty"]) == ("uncertain", p), (name, f[name])
            assert f[name]["certainty"] < by_finding(f"Could be {name.lower()}.")[name]["certainty"]


def test_hedge_over_an_alternative_keeps_the_lower_p() -> None:
    f = by_finding("Findings consistent with atelectasis or pneumonia.")
    # a hedge that states a positive leaves a plain differential
    assert (f["Atelectasis"]["certainty"], f["Atelectasis"]["cue"]) == (0.39, "or")
    assert f["Pneumonia"]["status"] == "uncertain"
    g = by_finding("The opacity may reflect atelectasis or pneumonia.")
    assert g["Atelectasis"]["certainty"] == 0.39 and g["Atelectasis"]["cue"] == "may reflect"
    assert by_finding("One or more small nodules.", vocab="nih14")["Nodule"]["status"] == "positive"


@pytest.mark.parametrize("text,name,cue", [
    ("Upper lobe opacity, possibly related to overlapping vessels versus a developing pulmonary nodule.",
     "Nodule", "possibly"),
    ("The opacity may be secondary to an infectious process or an underlying mass lesion.", "Mass", "may be"),
    ("Basilar opacity, likely related to atelectasis.", "Atelectasis", "likely"),
])
def test_pre_hedge_scope_crosses_causal_connectors_and_alternatives(text: str, name: str, cue: str) -> None:
    f = by_finding(text, vocab="nih14")[name]
    assert f["status"] == "uncertain" and f["cue"] == cue, f


def test_negation_scope_still_ends_at_causal_connectors() -> None:
    f = by_finding("No effusion due to pneumonia.", vocab="nih14")
    assert f["Effusion"]["status"] == "negative" and f["Pneumonia"]["status"] == "positive"


@pytest.mark.parametrize("text,name", [
    ("Please correlate clinically for pneumonia.", "Pneumonia"),
    ("Overlying bone could obscure a small pulmonary nodule.", "Nodule"),
    ("A small nodule may be obscured by the overlying clavicle.", "Nodule"),
    ("Chest CT is more sensitive in detecting small nodules.", "Nodule"),
    ("Recommend a chest CT to exclude an underlying mass.", "Mass"),
    ("Follow-up radiograph to evaluate for pneumonia.", "Pneumonia"),
    ("Repeat film is suggested to assess for possible pneumothorax.", "Pneumothorax"),
    ("Rule out pneumonia.", "Pneumonia"),
])
def test_hypothetical_frames_are_uncertain_and_low(text: str, name: str) -> None:
    f = by_finding(text, vocab="nih14")[name]
    assert f["status"] == "uncertain" and f["certainty"] == 0.25, f


def test_does_not_exclude_is_doubt() -> None:
    f = by_finding("The study does not exclude pneumonia.")["Pneumonia"]
    assert f["status"] == "uncertain" and f["cue"] == "does not exclude"


@pytest.mark.parametrize("text", [
    "The nodules and the mass seen on the earlier study are smaller and not definitely seen today.",
    "The left upper lobe nodules described on the prior radiograph are no longer seen.",
    "The small nodules in both lower lobes on the outside CT of last year have resolved.",
])
def test_post_negation_reaches_the_subject_of_its_clause(text: str) -> None:
    f = by_finding(text, vocab="nih14")
    assert f["Nodule"]["status"] == "negative", f["Nodule"]
    if "mass" in text:
        assert f["Mass"]["status"] == "negative"


@pytest.mark.parametrize("text", [
    "The pneumonia in the right lower lobe has improved, and the pleural effusion has resolved.",
    "The pneumonia has improved and the effusion resolved.",
    "Effusion is small and pneumothorax is not seen.",
])
def test_post_negation_does_not_cross_into_another_clause(text: str) -> None:
    f = by_finding(text, vocab="nih14")
    first = "Pneumonia" if "pneumonia" in text else "Effusion"
    assert f[first]["status"] == "positive", f[first]


def test_attribute_with_negated_qualifier() -> None:
    assert by_finding("The heart is not grossly enlarged.")["Cardiomegaly"]["status"] == "negative"


@pytest.mark.parametrize("text", ["The mediastinum is not widened.", "Mediastinal contours are not prominent.",
                                  "The heart is no longer enlarged."])
def test_negated_abnormal_qualifier_is_a_normal_statement(text):
    """An attribute whose abnormal qualifier is negated ("not widened") is a negative mention, never positive."""
    found = [f for f in repgls.mine_report(text) if f["finding"] != "No Finding"]
    assert found and all(f["status"] == "negative" for f in found), found


def test_attribute_qualifiers_stay_in_their_noun_phrase() -> None:
    def cardio(t: str) -> list[str]:
        return [f["status"] for f in repgls.mine_report(t) if f["finding"] == "Cardiomegaly"]

    assert cardio("Stable heart size, moderately enlarged and tortuous calcified aorta.") == []
    assert cardio("Abnormal configuration of the heart suggestive of dextrocardia.") == []
    assert cardio("The heart size is mildly enlarged, unchanged.") == ["positive"]
    assert cardio("Heart size is stable, enlarged.") == ["positive"]
    assert cardio("Enlargement of the heart.") == ["positive"]
    assert cardio("Heart size is normal, enlarged aorta.") == ["negative"]


# ----------------------------------------------------------------------------- templated reports ("HEART: Enlarged.")
_TEMPLATE_CASES = [
    # (text, finding per vocabulary {vocab: finding}, expected status)
    ("HEART: Enlarged.", "Cardiomegaly", "positive"),
    ("Heart size: enlarged.", "Cardiomegaly", "positive"),
    ("Cardiac silhouette: Mildly enlarged.", "Cardiomegaly", "positive"),
    ("Heart size: normal.", "Cardiomegaly", "negative"),
    ("HEART: Normal size.", "Cardiomegaly", "negative"),
    ("Heart: No enlargement.", "Cardiomegaly", "negative"),
    ("Heart size: Borderline.", "Cardiomegaly", "uncertain"),
    ("PLEURA: No effusion.", "Pleural Effusion", "negative"),
    ("PLEURA: No effusion or pneumothorax.", "Pneumothorax", "negative"),
    ("Pleura: Small left effusion.", "Pleural Effusion", "positive"),
    ("Lungs: Mild bibasilar atelectasis.", "Atelectasis", "positive"),
    ("Pneumothorax: none.", "Pneumothorax", "negative"),
    ("PNEUMOTHORAX: No.", "Pneumothorax", "negative"),
    ("Pleural effusion: Absent.", "Pleural Effusion", "negative"),
    ("Pleural effusion: Small left.", "Pleural Effusion", "positive"),
]
_NIH_NAME = {"Pleural Effusion": "Effusion"}


@pytest.mark.parametrize("vocab", ["chexpert14", "nih14"])
@pytest.mark.parametrize("text,finding,status", _TEMPLATE_CASES)
def test_template_label_is_read_with_its_value(vocab: str, text: str, finding: str, status: str) -> None:
    name = _NIH_NAME.get(finding, finding) if vocab == "nih14" else finding
    f = by_finding(text, vocab=vocab)
    assert name in f and f[name]["status"] == status, f


@pytest.mark.parametrize("text,status", [
    ("Mediastinum: Widened.", "positive"),
    ("Cardiomediastinal silhouette: Enlarged.", "positive"),
    ("MEDIASTINUM: Within normal limits.", "negative"),
    ("CARDIOMEDIASTINAL SILHOUETTE: Normal.", "negative"),
    ("Mediastinum: No widening.", "negative"),
])
def test_template_mediastinum_label(text: str, status: str) -> None:
    assert by_finding(text)["Enlarged Cardiomediastinum"]["status"] == status


@pytest.mark.parametrize("vocab", ["chexpert14", "nih14"])
@pytest.mark.parametrize("text", ["LUNGS: Clear.", "Lungs: Clear.   Pleura: Normal.   Bones: Intact.",
                                  "Heart size: normal.   Lungs: clear.", "HEART: Normal. LUNGS: Clear. PLEURA: Normal."])
def test_template_normal_labels_give_no_positive(vocab: str, text: str) -> None:
    found = [f for f in mine_report(text, vocab=vocab) if f["finding"] != "No Finding"]
    assert all(f["status"] == "negative" for f in found), found
    if vocab == "chexpert14":
        assert "No Finding" in by_finding(text)


@pytest.mark.parametrize("vocab", ["chexpert14", "nih14"])
@pytest.mark.parametrize("text", [
    "HEART: Enlarged.            LUNGS: Clear.            PLEURA: No effusion or pneumothorax.",
    "HEART: Enlarged   LUNGS: Clear   PLEURA: No effusion or pneumothorax",    # column layout, no periods
    "HEART: Enlarged\nLUNGS: Clear\nPLEURA: No effusion or pneumothorax",      # one label per line, no periods
    "FINDINGS:\nHEART: Enlarged.\nLUNGS: Clear.\nPLEURA: No effusion or pneumothorax.\n\nIMPRESSION: Cardiomegaly.",
])
def test_template_lines_are_separate_clauses(vocab: str, text: str) -> None:
    f = by_finding(text, vocab=vocab)
    eff = "Effusion" if vocab == "nih14" else "Pleural Effusion"
    assert f["Cardiomegaly"]["status"] == "positive", f
    assert f[eff]["status"] == "negative" and f["Pneumothorax"]["status"] == "negative", f


def test_template_multi_field_line_and_compound_labels() -> None:
    f = by_finding("Heart size: normal.         Mediastinum: Within normal limits.   "
                   "Lungs: Mild bibasilar atelectasis.")
    assert f["Cardiomegaly"]["status"] == "negative"
    assert f["Enlarged Cardiomediastinum"]["status"] == "negative"
    assert f["Atelectasis"]["status"] == "positive"
    f = by_finding("Heart and mediastinum: Normal.")
    assert f["Cardiomegaly"]["status"] == "negative" and f["Enlarged Cardiomediastinum"]["status"] == "negative"
    f = by_finding("CARDIOMEDIASTINAL SILHOUETTE: Normal.   BONES: Degenerative changes.   Tubes/lines: none.")
    assert f["Enlarged Cardiomediastinum"]["status"] == "negative"
    assert f["Support Devices"]["status"] == "negative"
    assert "No Finding" not in f  # degenerative changes block it
    assert by_finding("Tubes/lines: Endotracheal tube in place.")["Support Devices"]["status"] == "positive"


def test_template_labels_keep_section_headers_and_sections_option() -> None:
    text = "FINDINGS:\nHEART: Enlarged.\nLUNGS: Clear.\n\nIMPRESSION:\nPLEURA: No effusion."
    assert [(s[0]) for s in find_sections(text)] == ["findings", "impression"]
    imp = by_finding(text, sections=("impression",))
    assert "Cardiomegaly" not in imp and imp["Pleural Effusion"]["status"] == "negative"
    fnd = by_finding(text, sections=("findings",))
    assert fnd["Cardiomegaly"]["status"] == "positive" and "Pleural Effusion" not in fnd
    # a header colon is still a scope terminator, and non-label colons are too
    assert by_finding("No acute disease: mild cardiomegaly.")["Cardiomegaly"]["status"] == "positive"
    assert by_finding("IMPRESSION: No pneumothorax. FINDINGS: Cardiomegaly.")["Cardiomegaly"]["status"] == "positive"
    # no label in the middle of a negated list: "pneumothorax" after a comma is no label
    f = by_finding("No effusion, pneumothorax: lungs are clear.")
    assert f["Pneumothorax"]["status"] == "negative"


@pytest.mark.parametrize("text", ["Negative for: pneumothorax or effusion.",
                                  "There is no evidence of: pneumothorax or effusion."])
def test_colon_after_a_negation_introduces_its_object(text: str) -> None:
    f = by_finding(text)
    assert f["Pneumothorax"]["status"] == "negative" and f["Pleural Effusion"]["status"] == "negative", f


@pytest.mark.parametrize("text", ["The mediastinum shows no widening.", "Heart size without enlargement.",
                                  "The heart is not markedly enlarged."])
def test_negation_between_attribute_and_abnormal_qualifier(text: str) -> None:
    found = [f for f in mine_report(text) if f["finding"] != "No Finding"]
    assert found and all(f["status"] == "negative" for f in found), found


def test_inline_parenthesis_list_items_are_sentences() -> None:
    assert split_sentences("1) No effusion 2) Cardiomegaly") == [(0, 14), (15, 30)]
    f = by_finding("1) No effusion 2) Cardiomegaly", vocab="nih14")
    assert f["Cardiomegaly"]["status"] == "positive" and f["Effusion"]["status"] == "negative"
    # "(grade 2) nodule" is no list item
    assert len(split_sentences("Cardiomegaly (grade 2) noted.")) == 1


@pytest.mark.parametrize("text,finding", [("Left chest wall pacemaker/defibrillator.", "Support Devices"),
                                          ("Lines/tubes in place.", "Support Devices"),
                                          ("Findings compatible with infection/pneumonia.", "Pneumonia")])
def test_slash_between_phrases_of_one_class_is_no_alternative(text: str, finding: str) -> None:
    assert by_finding(text)[finding]["status"] == "positive"
    f = by_finding("Atelectasis/scarring at the left base.")
    assert f["Atelectasis"]["status"] == "uncertain" and f["Atelectasis"]["cue"] == "/"
