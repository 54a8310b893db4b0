"""repgls audit: the HTML page to check mined labels against their reports (library, CLI, headless Chromium)."""

from __future__ import annotations

import html
import json
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from repgls.mining import mine_to_file
from repgls.mining.audit import (
    DEFAULT_MAX_REPORTS,
    HARD_MAX_REPORTS,
    Selection,
    audit,
    audit_page,
    render_html,
)
from repgls.mining.readers import join_text

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                    "(apt-get install chromium; .ci/run installs it)")
TEXT = ["findings", "impression"]


def chromium(page: Path, *args: str, fragment: str = "") -> str:
    """Run headless Chromium on a file URL (flags that keep it off the closed network); return stdout."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args, page.resolve().as_uri() + fragment]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def dom(page: Path, fragment: str = "") -> str:
    """The DOM after the page's script ran (body carries data-ready / data-visible / data-rendered)."""
    out = chromium(page, "--dump-dom", fragment=fragment)
    assert 'data-ready="1"' in out, "the page script did not run"
    return out


def body_attr(dom_text: str, name: str) -> int:
    m = re.search(rf'<body[^>]*\bdata-{name}="(\d+)"', dom_text)
    assert m, f"no data-{name} on <body>"
    return int(m.group(1))


def page_data(page: Path) -> dict:
    """The JSON blob embedded in the page."""
    m = re.search(r'<script type="application/json" id="audit-data">(.*?)</script>', page.read_text("utf-8"), re.S)
    assert m
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A small phantom world, mined twice: whole report (A) and impression only (B, a second reading)."""
    from repgls.data.phantom import make_phantom

    root = tmp_path_factory.mktemp("audit_world")
    make_phantom(root / "world", n=60, size=32, seed=0)
    reports = root / "world" / "reports.csv"
    mine_to_file(reports, root / "a.parquet", text_col=TEXT)
    mine_to_file(reports, root / "b.parquet", text_col=TEXT, sections="impression")
    return {"root": root, "reports": reports, "a": root / "a.parquet", "b": root / "b.parquet"}


def expected_visible(findings: Path, ids: set[str], cls: str | None = None, status: str | None = None,
                     lo: float = 0.0, hi: float = 1.0) -> int:
    """Reports of ``ids`` with a mention matching the filters, counted from the Parquet file itself."""
    df = pd.read_parquet(findings)
    df = df[df.study_id.isin(ids) & df.certainty.between(lo - 1e-6, hi + 1e-6)]
    if cls:
        df = df[df.finding == cls]
    if status:
        df = df[df.status == status]
    return df.study_id.nunique()


def test_page_holds_every_report_with_spans_that_index_the_mined_text(world, tmp_path) -> None:
    out = audit(world["a"], world["reports"], tmp_path / "audit.html", text_col=TEXT, notify=None)
    data = page_data(out)
    src = pd.read_csv(world["reports"], dtype=str)
    assert [r["id"] for r in data["reports"]] == src.study_id.tolist()  # file order, reports without findings too
    first = src.iloc[0]
    assert data["reports"][0]["text"] == join_text([first.findings, first.impression], TEXT)  # as mine joins it
    mined = pq.read_table(world["a"]).to_pandas()
    placed = [(r["id"], m) for r in data["reports"] for m in r["a"] if m["ok"]]
    assert len(placed) == int((mined.n_mentions > 0).sum()) and not data["notes"]
    texts = {r["id"]: r["text"] for r in data["reports"]}
    for sid, m in placed:  # the highlighted phrase sits inside the sentence the miner kept
        row = mined[(mined.study_id == sid) & (mined.finding == m["f"])].iloc[0]
        assert texts[sid][m["b"]:m["e"]] in row.sentence and m["s"] == row.status
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.html"]
    in_memory = audit(pq.read_table(world["a"]), src, tmp_path / "mem" / "audit.html", text_col=TEXT, notify=None)
    assert page_data(in_memory)["reports"] == data["reports"]


@needs_chromium
def test_browser_renders_filters_and_screenshots(world, tmp_path) -> None:
    out = tmp_path / "audit.html"
    res = CliRunner().invoke(__import__("repgls.cli", fromlist=["app"]).app,
                             ["audit", str(world["a"]), "--reports", str(world["reports"]), "--text-col",
                              "findings,impression", "--out", str(out)])
    assert res.exit_code == 0, res.output
    ids = {r["id"] for r in page_data(out)["reports"]}
    d = dom(out)
    assert body_attr(d, "visible") == len(ids) == 60
    assert body_attr(d, "rendered") == d.count('<article class="card') == 60
    assert d.count('class="mk st-uncertain') > 0 and d.count('class="mk st-negative') > 0
    mined = pd.read_parquet(world["a"])
    cls = mined[mined.status == "uncertain"].finding.value_counts().index[0]
    d = dom(out, f"#class={cls.replace(' ', '%20')}&status=uncertain")
    n = expected_visible(world["a"], ids, cls, "uncertain")
    assert 0 < n < 60 and body_attr(d, "visible") == n == d.count('<article class="card')
    assert re.search(r'<tr class="cur" data-cls="' + re.escape(cls), d)  # the counts table marks the class
    d = dom(out, "#cmin=0.4&cmax=0.6")
    assert body_attr(d, "visible") == expected_visible(world["a"], ids, lo=0.4, hi=0.6)
    png = tmp_path / "audit.png"
    chromium(out, "--window-size=1400,1000", "--hide-scrollbars", f"--screenshot={png}",
             fragment=f"#status=uncertain,positive&class={cls.replace(' ', '%20')}")
    assert png.stat().st_size > 20_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


HOSTILE = ('\U0001fac1 Small left effusion. <script>document.body.setAttribute("data-pwned","1")</script> '
           '<img src=x onerror="document.body.setAttribute(\'data-pwned\',\'2\')"> Cannot exclude pneumonia; '
           '"quoted" l\'oedème naïve — 肺 </script><!-- end')


def hostile_page(tmp_path: Path) -> Path:
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"study_id": ["x1", "x2"], "report": [HOSTILE, "No pneumothorax."]}).to_csv(reports, index=False)
    mine_to_file(reports, tmp_path / "f.parquet")
    return audit(tmp_path / "f.parquet", reports, tmp_path / "audit.html", notify=None)


def test_report_text_cannot_close_the_data_script(tmp_path) -> None:
    page = hostile_page(tmp_path)
    raw = page.read_text("utf-8")
    assert raw.count("<script") == 2 and raw.count("</script") == 2  # the data element and the page's own code
    assert "<img" not in raw and "<!-- end" not in raw
    assert page_data(page)["reports"][0]["text"] == HOSTILE  # the blob round-trips the exact text
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', raw).group(1)
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "connect-src" not in csp and "default-src 'none'" in csp  # no network at all


@needs_chromium
def test_browser_shows_hostile_text_as_text(tmp_path) -> None:
    page = hostile_page(tmp_path)
    d = dom(page)
    assert "data-pwned" not in d.split("<body", 1)[1].split(">", 1)[0]
    assert d.count("<script") == 2 and "<img" not in d  # no element was made from report text
    text = html.unescape(re.sub(r"<[^>]+>", "", d.split('<section id="list">', 1)[1].split("</section>", 1)[0]))
    assert HOSTILE in text  # shown verbatim: tags, quotes and non-ASCII as written
    assert "Pleural Effusion · positive" in text and "Pneumonia · uncertain" in text
    row = pd.read_parquet(tmp_path / "f.parquet").query("study_id == 'x1' and finding == 'Pleural Effusion'").iloc[0]
    marks = re.findall(r'<span class="mk st-positive"[^>]*>([^<]*)</span>', d)  # after an astral character (2
    assert HOSTILE[row.start:row.end] in marks  # UTF-16 units in JS): the highlight covers the mined words exactly


def test_compare_lists_disagreements_first_side_by_side(world, tmp_path) -> None:
    summary = audit_page(world["a"], world["reports"], tmp_path / "audit.html", compare=world["b"],
                         text_col=TEXT, notify=None)
    data = page_data(summary.out)
    a, b = pd.read_parquet(world["a"]), pd.read_parquet(world["b"])
    j = a.merge(b, on=["study_id", "finding"], how="outer", suffixes=("_a", "_b"))
    truth = j[j.status_a.fillna("") != j.status_b.fillna("")].groupby("study_id").size().to_dict()
    dis = [r["dis"] for r in data["reports"]]
    assert {r["id"]: r["dis"] for r in data["reports"] if r["dis"]} == truth and 0 < len(truth) < 60
    assert dis == sorted(dis, reverse=True)  # disagreements first, the most first
    gaps = [r["dp"] for r in data["reports"] if not r["dis"]]
    assert gaps == sorted(gaps, reverse=True)  # then same statuses with certainties >= delta_p apart
    for r in data["reports"]:  # dp counted independently of the library's helper
        pa_ = {m["f"]: m for m in r["a"]}
        assert r["dp"] == sum(1 for m in r["b"] if m["f"] in pa_ and pa_[m["f"]]["s"] == m["s"]
                              and abs(pa_[m["f"]]["p"] - m["p"]) >= data["delta_p"])
    assert summary.disagreements == len(truth) and len(data["labels"]) == 2
    r0 = data["reports"][0]
    assert {m["f"] for m in r0["a"]} == set(a[a.study_id == r0["id"]].finding)
    assert {m["f"] for m in r0["b"]} == set(b[b.study_id == r0["id"]].finding)
    only = page_data(audit(world["a"], world["reports"], tmp_path / "d.html", compare=world["b"], text_col=TEXT,
                           disagreements_only=True, notify=None))
    assert {r["id"] for r in only["reports"]} == set(truth)


@needs_chromium
def test_browser_disagreement_filter(world, tmp_path) -> None:
    page = audit(world["a"], world["reports"], tmp_path / "audit.html", compare=world["b"], text_col=TEXT,
                 notify=None)
    n = sum(1 for r in page_data(page)["reports"] if r["dis"])
    d = dom(page, "#dis=1")
    assert body_attr(d, "visible") == n and d.count('<article class="card dis"') == n
    assert d.count('class="collabel"') == 2 * n  # both readings side by side
    r = next(r for r in page_data(page)["reports"] if any(m["s"] == "uncertain" for m in r["a"]))
    m = next(m for m in r["a"] if m["s"] == "uncertain")
    d = dom(page, f"#report={r['id']}&status=uncertain")  # a link to one report opens its first matching mention
    assert body_attr(d, "visible") == 1 and f'data-id="{r["id"]}"' in d
    details = html.unescape(re.sub(r"<[^>]+>", "|", d.split('id="details"', 1)[1].split('<div class="box">', 1)[0]))
    assert f"|{m['f']}|" in details and f"|{m['p']:.2f}|" in details and f"|{m['cue']}|" in details


def test_filters_select_reports_before_rendering(world, tmp_path) -> None:
    mined = pd.read_parquet(world["a"])
    cls = mined[mined.status == "uncertain"].finding.value_counts().index[0]
    data = page_data(audit(world["a"], world["reports"], tmp_path / "a.html", text_col=TEXT, classes=[cls],
                           statuses=["uncertain"], notify=None))
    want = set(mined[(mined.finding == cls) & (mined.status == "uncertain")].study_id)
    assert {r["id"] for r in data["reports"]} == want
    assert all(any(m["f"] == cls and m["s"] == "uncertain" for m in r["a"]) for r in data["reports"])
    assert data["selection"] == f"class {cls}; status uncertain"
    lo = page_data(audit(world["a"], world["reports"], tmp_path / "b.html", text_col=TEXT, min_certainty=0.3,
                         max_certainty=0.6, notify=None))
    assert {r["id"] for r in lo["reports"]} == set(mined[mined.certainty.between(0.3, 0.6)].study_id)


def test_cap_samples_down_deterministically_and_says_so(world, tmp_path) -> None:
    notes: list[str] = []
    s = audit_page(world["a"], world["reports"], tmp_path / "a.html", text_col=TEXT, max_reports=7,
                   notify=notes.append)
    ids = [r["id"] for r in page_data(s.out)["reports"]]
    assert (s.matched, s.shown, len(ids)) == (60, 7, 7)
    assert notes == ["60 reports match; the page holds a sample of 7 (seed 0, by the cap of 7 reports per page "
                     "(--max-reports))"]
    again = [r["id"] for r in page_data(audit(world["a"], world["reports"], tmp_path / "b.html", text_col=TEXT,
                                              max_reports=7, notify=None))["reports"]]
    other = [r["id"] for r in page_data(audit(world["a"], world["reports"], tmp_path / "c.html", text_col=TEXT,
                                              max_reports=7, seed=1, notify=None))["reports"]]
    assert again == ids and other != ids
    order = pd.read_csv(world["reports"], dtype=str).study_id.tolist()
    assert ids == sorted(ids, key=order.index)  # the sample keeps file order
    notes.clear()
    s = audit_page(world["a"], world["reports"], tmp_path / "d.html", text_col=TEXT, sample=20, max_reports=10,
                   notify=notes.append)
    assert s.shown == 10 and notes[0].startswith("--sample 20 is above the cap of 10 reports per page")
    s = audit_page(world["a"], world["reports"], tmp_path / "e.html", text_col=TEXT, sample=12, notify=None)
    assert s.shown == 12 and s.notes == ["60 reports match; the page holds a sample of 12 (seed 0, by --sample 12)"]
    assert DEFAULT_MAX_REPORTS == 2000
    s = audit_page(world["a"], world["reports"], tmp_path / "f.html", text_col=TEXT, max_reports=HARD_MAX_REPORTS + 1,
                   notify=None)
    assert s.shown == 60 and s.notes == [f"--max-reports {HARD_MAX_REPORTS + 1:,} is above the ceiling of "
                                         f"{HARD_MAX_REPORTS:,} reports per page; using {HARD_MAX_REPORTS:,} "
                                         "(filter with --class / --status, or sample)"]
    s = audit_page(world["a"], world["reports"], tmp_path / "g.html", text_col=TEXT, max_reports=3,
                   selection=Selection(statuses=["negative"]), notify=None)
    assert s.shown == 3 and s.notes[0].startswith(f"{s.matched} reports match (status negative); the page holds")


def test_wrong_reports_file_is_refused_in_one_line(world, tmp_path) -> None:
    from repgls.cli import app

    out = tmp_path / "audit.html"
    # impression only: the text differs from what was mined (findings + impression)
    res = CliRunner().invoke(app, ["audit", str(world["a"]), "--reports", str(world["reports"]), "--text-col",
                                   "impression", "--out", str(out)])
    assert res.exit_code == 2 and not out.exists()
    line = res.output.strip()
    assert "\n" not in line and str(world["reports"]) in line and "do not match this file's text" in line
    other = tmp_path / "other.csv"
    pd.DataFrame({"id": ["q1", "q2"], "report": ["No effusion.", "Mild edema."]}).to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"other\.csv: none of the \d+ study ids"):
        audit(world["a"], other, out, notify=None)
    assert not out.exists() and not list(tmp_path.glob("*.part"))


def test_cli_says_where_the_page_went_and_nothing_else(world, tmp_path) -> None:
    from repgls.cli import app

    out = tmp_path / "sub" / "page.html"
    res = CliRunner().invoke(app, ["audit", str(world["a"]), "--reports", str(world["reports"]), "--text-col",
                                   "findings,impression", "--out", str(out), "--sample", "5", "--seed", "3",
                                   "--class", "Pleural Effusion,Edema", "--status", "positive"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and str(out) in res.stderr and "report text" in res.stderr
    data = page_data(out)
    assert len(data["reports"]) == 5 and data["seed"] == 3
    texts = [r["text"] for r in data["reports"]]
    assert not any(t[:40] in res.stderr for t in texts)  # no report text on the terminal
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["page.html"]
    res = CliRunner().invoke(app, ["audit", "--help"])
    assert "Example: repgls audit findings.parquet --reports reports.csv --out audit.html --sample 200" in \
        " ".join(res.output.replace("\\\n", " ").split())  # the example may continue on a second line
    res = CliRunner().invoke(app, ["audit", str(world["a"]), "--reports", str(world["reports"]), "--out",
                                   str(out), "--status", "maybe"])
    assert res.exit_code == 2 and "status 'maybe'" in res.output


def test_cli_module_imports_no_heavy_library() -> None:
    code = ("import sys, repgls.cli.audit; heavy = [m for m in ('torch', 'pandas', 'pyarrow') if m in sys.modules];"
            " print(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_render_html_escapes_every_angle_bracket() -> None:
    page = render_html({"reports": [{"text": "</script><script>alert(1)</script>&amp;\u2028"}], "labels": ["A"]})
    blob = page.split('id="audit-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in blob and ">" not in blob and "&" not in blob and "\u2028" not in blob
    assert json.loads(blob)["reports"][0]["text"] == "</script><script>alert(1)</script>&amp;\u2028"


@pytest.mark.external
def test_openi_dev_reports(shared_data, tmp_path) -> None:
    reports = shared_data / "openi-dev" / "indiana_reports.dev.csv"
    if not reports.is_file():
        pytest.skip(f"{reports} not found")
    findings = tmp_path / "openi.parquet"
    mine_to_file(reports, findings, id_col="uid", text_col=TEXT)
    s = audit_page(findings, reports, tmp_path / "audit.html", id_col="uid", text_col=TEXT, sample=50,
                   selection=Selection(statuses=["uncertain"]), notify=None)
    data = page_data(s.out)
    assert s.shown == 50 and s.matched > 50 and s.reports_read == 3080
    assert all(any(m["s"] == "uncertain" for m in r["a"]) for r in data["reports"])
    assert not any("do not match" in n for n in s.notes)  # every span indexes the text it came from
    assert all(m["ok"] is not False for r in data["reports"] for m in r["a"])
    with pytest.raises(ValueError, match=r"indiana_reports\.dev\.csv: the start/end offsets"):
        audit(findings, reports, tmp_path / "bad.html", id_col="uid", text_col=["impression"], notify=None)
    if CHROMIUM is not None:
        assert body_attr(dom(s.out, "#status=uncertain"), "visible") == 50


def test_headerless_reports_as_the_labeler_reads_them(tmp_path) -> None:
    """A one-column CSV with no header row (the CheXpert labeler's input): mined and audited with --no-header, and
    with the header left to detection, the page holds every report and the spans index its text."""
    from repgls.cli import app

    texts = ["Small left pleural effusion. No pneumothorax.", "Mild cardiomegaly, possible early edema.",
             "No acute cardiopulmonary process."]
    reports = tmp_path / "sample_reports.csv"
    reports.write_text("".join(f'"{t}"\n' for t in texts), encoding="utf-8")
    findings = tmp_path / "f.parquet"
    mine_to_file(reports, findings, header=False)
    for flag in (["--no-header"], []):
        out = tmp_path / f"page{len(flag)}.html"
        res = CliRunner().invoke(app, ["audit", str(findings), "--reports", str(reports), "--out", str(out), *flag])
        assert res.exit_code == 0, res.output
        data = page_data(out)
        assert sorted(r["text"] for r in data["reports"]) == sorted(texts)
        mined = pq.read_table(findings).to_pandas()
        placed = [(r["id"], m) for r in data["reports"] for m in r["a"] if m["ok"]]
        assert len(placed) == int((mined.n_mentions > 0).sum()) and not data["notes"]
        by_id = {r["id"]: r["text"] for r in data["reports"]}
        for sid, m in placed:
            row = mined[(mined.study_id == sid) & (mined.finding == m["f"])].iloc[0]
            assert by_id[sid][m["b"]:m["e"]] in row.sentence and m["s"] == row.status
    res = CliRunner().invoke(app, ["audit", str(findings), "--reports", str(reports), "--out",
                                   str(tmp_path / "no.html"), "--header"])  # the flag reaches the reader
    assert res.exit_code == 2 and "no text column found" in res.output and not (tmp_path / "no.html").exists()
