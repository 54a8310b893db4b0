"""repgls.html_report: one self-contained, valid HTML file holding every section it was given data for."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repgls.html_report import SECTIONS, write_report
from repgls.metrics import score

CLASSES = ["Atelectasis", "Edema", "Nodule", "Hernia"]
GROUPS = {"Atelectasis": "head", "Edema": "head", "Nodule": "medium", "Hernia": "tail"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Collects section ids, resource URLs and tag-nesting errors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: list[str] = []
        self.urls: list[str] = []
        self.imgs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def _world(seed: int, n: int = 160):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, 4)) < [0.4, 0.3, 0.15, 0.08]).astype(float)
    rep = truth.copy()
    flip = rng.random(truth.shape) < 0.08
    rep[flip] = 1 - rep[flip]
    rep[rng.random(truth.shape) < 0.1] = np.nan
    typ = np.where(rep == 1, (rng.random(truth.shape) < 0.5).astype(float), np.nan)
    scores = 1 / (1 + np.exp(-(rng.normal(size=truth.shape) + 2.5 * truth - 1.5)))
    return truth, rep, typ, scores


def _parse(path: Path) -> _Checker:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    chk = _Checker()
    chk.feed(text)
    chk.close()
    assert not chk.errors, chk.errors[:5]
    assert chk.stack == [], chk.stack
    return chk


def test_full_report_is_self_contained_valid_and_has_every_section(tmp_path):
    truth, rep, typ, s = _world(0)
    res = score(rep, s, CLASSES, groups=GROUPS, typical=typ, thresholds=0.5, n_boot=30)
    tru = score(truth, s, CLASSES, groups=GROUPS, typical=typ, thresholds=0.5, n_boot=30)
    runs, runs_t = {}, {}
    for m in ("bce", "gls"):
        for seed in range(2):
            t2, r2, _, s2 = _world(10 + seed, 80)
            runs.setdefault(m, []).append(score(r2, s2, CLASSES, groups=GROUPS, thresholds=0.5))
            runs_t.setdefault(m, []).append(score(t2, s2, CLASSES, groups=GROUPS, thresholds=0.5))
    cam_dir = tmp_path / "cams"
    cam_dir.mkdir()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(cam_dir / "img0001__Edema.png")
    cams = [cam_dir / "img0001__Edema.png", ("array cam", np.zeros((8, 8, 3), np.uint8))]
    import pandas as pd

    comp = pd.DataFrame({"auc": [0.86, 0.84], "auc_lo": [0.83, 0.81], "auc_hi": [0.89, 0.87],
                         "d_auc_vs_bce": [0.0, -0.02], "d_auc_vs_bce_lo": [0.0, -0.03],
                         "d_auc_vs_bce_hi": [0.0, -0.01]}, index=pd.Index(["bce", "gls"], name="method"))
    comp.attrs.update(n_seeds=2, n_patients=40, n_boot=100)
    out = write_report(tmp_path / "sub" / "report.html", res, y_true=rep, scores=s, truth=tru, y_truth=truth,
                       cams=cams, runs=runs, runs_truth=runs_t, comparison=comp, baselines=["bce"],
                       title="T <&> title")
    chk = _parse(out)
    assert chk.sections == [sid for sid, _ in SECTIONS]  # the comparison ("answer") first
    html = out.read_text(encoding="utf-8")
    assert "<b>gls</b> is worse than bce (-0.020 mean AUC, 95% CI [-0.030, -0.010])" in html
    assert not [u for u in chk.urls if re.match(r"(https?:)?//", u)]
    assert all(u.startswith("#") for u in chk.urls if u not in chk.imgs)
    assert not {"script", "link", "iframe"} & chk.tags
    for src in chk.imgs:  # every image is an inline PNG that decodes
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    text = out.read_text(encoding="utf-8")
    assert "T &lt;&amp;&gt; title" in text
    for c in CLASSES:
        assert c in text
    # values shown are the ones evaluate() computed, side by side with the truth values
    assert f"{res['summary']['mean_auc']:.3f}" in text and f"{tru['summary']['mean_auc']:.3f}" in text
    lo, hi = res["per_class"]["Edema"]["auc_ci"]
    assert f"[{lo:.3f}, {hi:.3f}]" in text
    bce = np.mean([r["summary"]["mean_auc"] for r in runs["bce"]])
    sd = np.std([r["summary"]["mean_auc"] for r in runs["bce"]], ddof=1)
    assert f"{bce:.3f} <span class=\"ci\">&plusmn; {sd:.3f}</span>" in text
    assert "Edema" in text and "img0001: Edema" in text and "array cam" in text


def test_minimal_reports(tmp_path):
    _, rep, _, s = _world(1)
    res = score(rep, s, CLASSES)  # no groups, no thresholds, no typicality, no bootstrap
    out = write_report(tmp_path / "r.html", res)
    chk = _parse(out)
    assert chk.sections == ["summary", "auc-bars", "per-class", "definitions"]
    only_runs = write_report(tmp_path / "bench.html", runs={"bce": [res], "focal": [res]})
    assert _parse(only_runs).sections == ["comparison", "definitions"]
    with pytest.raises(ValueError, match="nothing to report"):
        write_report(tmp_path / "x.html")
    with pytest.raises(ValueError, match="both"):
        write_report(tmp_path / "x.html", res, y_true=rep)
    with pytest.raises(ValueError, match="do not match"):
        write_report(tmp_path / "x.html", res, y_true=rep[:, :2], scores=s[:, :2])


def test_undefined_class_is_reported_not_dropped(tmp_path):
    _, rep, _, s = _world(2)
    rep[:, 3] = np.where(np.isfinite(rep[:, 3]), 0.0, np.nan)  # Hernia: no positives
    res = score(rep, s, CLASSES, groups=GROUPS)
    out = write_report(tmp_path / "r.html", res, y_true=rep, scores=s)
    _parse(out)
    assert "no positives" in out.read_text(encoding="utf-8")
