"""One self-contained ``report.html`` for an evaluation: figures, tables, CAMs, method comparison.

Everything is inline (matplotlib figures as base64 PNG ``<img>``, CSS in a ``<style>`` block, no scripts),
so the file can be mailed, archived or opened offline. Inputs are ``repgls.metrics.score`` results
plus, for the curves, the raw labels and scores. Sections appear only when their inputs are given:
summary, reference vs hidden truth (phantom world), ROC curves, per-class AUC bars, per-class table,
reliability diagram, head / medium / tail, method comparison (mean +- std over seeds), Grad-CAM grid.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SECTIONS", "write_report"]

#: (id, title) of every section the report can hold, in page order.
SECTIONS = (
    ("answer", "Did report-guided labels help?"),
    ("summary", "Summary"),
    ("truth", "Reference vs hidden truth"),
    ("roc", "ROC curves"),
    ("auc-bars", "Per-class AUC"),
    ("per-class", "Per-class metrics"),
    ("calibration", "Calibration"),
    ("groups", "Head / medium / tail"),
    ("comparison", "Method comparison"),
    ("cams", "Grad-CAM"),
    ("definitions", "Definitions"),
)
GROUP_COLOURS = {"head": "#3b6fb6", "medium": "#e08a2c", "tail": "#3a9a5b", None: "#8a8f98"}
REPORT_COLOUR, TRUTH_COLOUR = "#3b6fb6", "#c2452d"


def _summary_rows() -> list[tuple[str, str, bool]]:
    """(summary key, HTML label, higher is better) of every registered metric (:mod:`repgls.metrics`)."""
    from repgls.metrics import list_metrics

    return [(m.key, m.html_label, m.higher_is_better) for m in list_metrics()]


CSS = """
:root { --fg:#1d2330; --muted:#5f6776; --line:#dfe3ea; --bg:#f6f7f9; --accent:#3b6fb6; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 60px; }
header h1 { font-size: 24px; margin: 0 0 4px; }
header p { margin: 0; color: var(--muted); }
nav { margin: 14px 0 6px; display:flex; flex-wrap:wrap; gap:6px; }
nav a { font-size: 12px; color: var(--accent); text-decoration:none; border:1px solid var(--line);
  background:#fff; border-radius: 12px; padding: 2px 10px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:18px 22px; margin:18px 0; }
section h2 { font-size: 17px; margin: 0 0 4px; }
p.note { color: var(--muted); margin: 2px 0 12px; font-size: 13px; }
.cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap:10px; margin:10px 0; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:#fbfcfd; }
.card .k { font-size: 12px; color: var(--muted); }
.card .v { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .ci { font-size: 12px; color: var(--muted); font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f0f2f5; font-weight: 600; position: sticky; top: 0; }
th:first-child, td:first-child { text-align: left; }
td.txt { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.best { font-weight: 700; }
td .ci, td.na { color: var(--muted); }
.scroll { overflow-x: auto; }
.pill { display:inline-block; padding:0 7px; border-radius:9px; font-size:11px; color:#fff; }
figure { margin: 8px 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12px; }
.cams { display:grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.cams figure { margin:0; border:1px solid var(--line); border-radius:6px; padding:6px; background:#fbfcfd; }
.cams img { width: 100%; image-rendering: auto; border-radius: 4px; }
dl { display:grid; grid-template-columns: 190px 1fr; gap: 4px 14px; margin: 0; font-size: 13px; }
dt { font-weight: 600; } dd { margin: 0; color: #333a46; }
footer { color: var(--muted); font-size: 12px; text-align:center; }
"""


# ------------------------------------------------------------------------------------------- helpers
def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _fmt(v: Any, digits: int = 3) -> str:
    f = _num(v)
    return "&ndash;" if not math.isfinite(f) else f"{f:.{digits}f}"


def _fmt_ci(v: Any, ci: Any, digits: int = 3) -> str:
    s = _fmt(v, digits)
    if ci is not None and v is not None and all(c is not None for c in ci):
        s += f' <span class="ci">[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]</span>'
    return s


def _fig_to_img(fig: Any, alt: str, dpi: int = 110) -> str:
    """Render a matplotlib figure as an inline base64 PNG ``<img>`` and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _png_to_img(src: Any, alt: str) -> str:
    """A PNG file path, PNG bytes or an RGB / grey uint8 array as an inline ``<img>``."""
    if isinstance(src, (str, Path)):
        raw = Path(src).read_bytes()
    elif isinstance(src, bytes):
        raw = src
    else:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(src, dtype=np.uint8)).save(buf, format="PNG")
        raw = buf.getvalue()
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(raw).decode("ascii")}">'


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.titlesize": 9, "figure.dpi": 100})
    return plt


def _section(sid: str, body: str, note: str = "") -> str:
    title = dict(SECTIONS)[sid]
    n = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{sid}">\n<h2>{title}</h2>\n{n}\n{body}\n</section>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls_first_txt: bool = True) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in r) + "</tr>"
                     for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>'


def _pill(group: str | None) -> str:
    if not group:
        return ""
    return f'<span class="pill" style="background:{GROUP_COLOURS.get(group, "#8a8f98")}">{_esc(group)}</span>'


# ------------------------------------------------------------------------------------------ sections
def _summary(result: Mapping[str, Any]) -> str:
    s = result["summary"]
    cards = []
    for key, label, _ in _summary_rows():
        ci = s.get(f"{key}_ci")
        ci_txt = f'<div class="ci">95% CI {ci[0]:.3f} &ndash; {ci[1]:.3f}</div>' if ci and None not in ci else ""
        cards.append(f'<div class="card"><div class="k">{label}</div><div class="v">{_fmt(s.get(key))}</div>'
                     f"{ci_txt}</div>")
    st = result.get("settings", {})
    facts = (f"{result['n']} studies &middot; {len(result['classes'])} classes &middot; "
             f"{s.get('n_auc_defined', 0)} with a defined AUC &middot; {s.get('n_labelled', 0)} labelled "
             f"entries &middot; thresholds: {_esc(st.get('threshold_source', '?'))} &middot; "
             f"bootstrap: {st.get('n_boot', 0)} replicates")
    return _section("summary", f'<div class="cards">{"".join(cards)}</div>', facts)


def _truth(result: Mapping[str, Any], truth: Mapping[str, Any]) -> str:
    rows = []
    for key, label, _ in _summary_rows():
        a, b = _num(result["summary"].get(key)), _num(truth["summary"].get(key))
        d = b - a
        rows.append([label, _fmt_ci(result["summary"].get(key), result["summary"].get(f"{key}_ci")),
                     _fmt_ci(truth["summary"].get(key), truth["summary"].get(f"{key}_ci")),
                     "&ndash;" if not math.isfinite(d) else f"{d:+.3f}"])
    for g in result.get("groups", {}):
        if g in truth.get("groups", {}):
            a, b = _num(result["groups"][g].get("auc")), _num(truth["groups"][g].get("auc"))
            rows.append([f"AUC, {_esc(g)} classes", _fmt(a), _fmt(b), "&ndash;" if not math.isfinite(b - a)
                         else f"{b - a:+.3f}"])
    summary = _table(["Metric", "vs reference", "vs hidden truth", "truth &minus; reference"], rows)
    per = []
    for c in result["classes"]:
        e, t = result["per_class"][c], truth["per_class"].get(c, {})
        per.append([f'<td class="txt">{_esc(c)} {_pill(e.get("group"))}</td>', _fmt(e.get("auc")),
                    _fmt(t.get("auc")), _fmt(e.get("bacc")), _fmt(t.get("bacc")), _fmt(e.get("auc_fg")),
                    _fmt(t.get("auc_fg"))])
    per_tab = _table(["Class", "AUC reference", "AUC truth", "bAcc reference", "bAcc truth", "AUC<sup>FG</sup> reference",
                      "AUC<sup>FG</sup> truth"], per)
    note = ("The same predictions scored twice: against the reference derived from the reports (what a "
            "real study could measure) and against the phantom world's hidden ground truth.")
    return _section("truth", summary + "<h3 style='font-size:14px;margin:16px 0 6px'>Per class</h3>" + per_tab,
                    note)


def _grid(k: int, ncols: int) -> tuple[int, int]:
    ncols = min(ncols, k)
    return math.ceil(k / ncols), ncols


def _roc(classes: Sequence[str], y: np.ndarray, s: np.ndarray, y_truth: np.ndarray | None,
         result: Mapping[str, Any]) -> str:
    from sklearn.metrics import roc_curve

    plt = _plt()
    nrows, ncols = _grid(len(classes), 5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.1 * ncols, 2.15 * nrows), squeeze=False)
    for k, c in enumerate(classes):
        ax = axes[k // ncols][k % ncols]
        ax.plot([0, 1], [0, 1], color="#c8ccd4", lw=0.8, ls=":")
        title = c
        for yy, colour, name, ls in ((y, REPORT_COLOUR, "reference", "-"), (y_truth, TRUTH_COLOUR, "truth", "--")):
            if yy is None:
                continue
            m = np.isfinite(yy[:, k])
            if m.sum() and 0 < np.nansum(yy[m, k]) < m.sum():
                fpr, tpr, _ = roc_curve(yy[m, k], s[m, k])
                ax.plot(fpr, tpr, color=colour, lw=1.4, ls=ls, label=name)
        auc = result["per_class"][c].get("auc")
        if auc is None:
            ax.text(0.5, 0.5, result["per_class"][c].get("auc_reason") or "undefined", ha="center",
                    va="center", fontsize=8, color="#8a8f98")
        ax.set_title(f"{title}\nAUC {_fmt(auc).replace('&ndash;', 'n/a')}", fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        if k % ncols == 0:
            ax.set_ylabel("TPR", fontsize=8)
        if k // ncols == nrows - 1:
            ax.set_xlabel("FPR", fontsize=8)
    for k in range(len(classes), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    if y_truth is not None:
        axes[0][0].legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    note = "One panel per class, on its labelled rows (ignored labels left out)."
    if y_truth is not None:
        note += " Solid: against the reference; dashed: against hidden truth."
    return _section("roc", f"<figure>{_fig_to_img(fig, 'ROC curves per class')}</figure>", note)


def _auc_bars(result: Mapping[str, Any], truth: Mapping[str, Any] | None) -> str:
    plt = _plt()
    classes = list(result["classes"])
    k = len(classes)
    fig, ax = plt.subplots(figsize=(9, 0.28 * k + 1.1))
    pos = np.arange(k)[::-1]
    h = 0.38 if truth is not None else 0.7
    sets = [(result, 0.0, None, "reference")]
    if truth is not None:
        sets = [(result, h / 2, None, "reference"), (truth, -h / 2, TRUTH_COLOUR, "hidden truth")]
    for res, off, colour, name in sets:
        vals = np.array([_num(res["per_class"].get(c, {}).get("auc")) for c in classes])
        cis = [res["per_class"].get(c, {}).get("auc_ci") for c in classes]
        colours = colour or [GROUP_COLOURS.get(res["per_class"][c].get("group"), "#8a8f98") for c in classes]
        ax.barh(pos + off, np.nan_to_num(vals, nan=0.0), height=h, color=colours, alpha=0.9 if colour is None
                else 0.75, label=name)
        if any(ci is not None and None not in ci for ci in cis):
            lo = np.array([v - ci[0] if ci and None not in ci else 0 for v, ci in zip(vals, cis, strict=True)])
            hi = np.array([ci[1] - v if ci and None not in ci else 0 for v, ci in zip(vals, cis, strict=True)])
            # a percentile interval need not contain the point estimate (few replicates): clip the whiskers at 0
            xerr = np.maximum(np.nan_to_num(np.vstack([lo, hi])), 0.0)
            ax.errorbar(np.nan_to_num(vals), pos + off, xerr=xerr, fmt="none",
                        ecolor="#30343b", elinewidth=0.9, capsize=2)
        for p, v in zip(pos + off, vals, strict=True):
            if not math.isfinite(v):
                ax.text(0.505, p, "undefined", va="center", fontsize=7, color="#8a8f98")
    ax.axvline(0.5, color="#9aa0aa", lw=0.8, ls=":")
    mean = _num(result["summary"].get("mean_auc"))
    if math.isfinite(mean):
        ax.axvline(mean, color="#30343b", lw=1, ls="--")
        ax.text(mean, k - 0.3, f" mean {mean:.3f}", fontsize=7.5, va="bottom")
    ax.set_yticks(pos)
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlim(0.5 if np.nanmin([_num(result["per_class"][c].get("auc")) for c in classes] + [1.0]) >= 0.5
                else 0.0, 1.0)
    ax.set_ylim(-0.7, k - 0.1)
    ax.set_xlabel("ROC-AUC")
    handles = [plt.Rectangle((0, 0), 1, 1, color=GROUP_COLOURS[g]) for g in ("head", "medium", "tail")
               if any(result["per_class"][c].get("group") == g for c in classes)]
    labels = [g for g in ("head", "medium", "tail") if any(result["per_class"][c].get("group") == g for c in classes)]
    if truth is not None:
        handles.append(plt.Rectangle((0, 0), 1, 1, color=TRUTH_COLOUR, alpha=0.75))
        labels.append("vs hidden truth")
    if handles:
        ax.legend(handles, labels, fontsize=7.5, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                  ncol=len(handles))
    fig.tight_layout()
    note = "Bars coloured by frequency group; whiskers are bootstrap 95% intervals when computed."
    return _section("auc-bars", f"<figure>{_fig_to_img(fig, 'Per-class AUC')}</figure>", note)


def _per_class(result: Mapping[str, Any]) -> str:
    rows = []
    for c in result["classes"]:
        e = result["per_class"][c]
        auc = _fmt_ci(e.get("auc"), e.get("auc_ci"))
        if e.get("auc") is None and e.get("auc_reason"):
            auc = f'<span class="ci">{_esc(e["auc_reason"])}</span>'
        rows.append([f'<td class="txt">{_esc(c)}</td>', f'<td class="txt">{_pill(e.get("group"))}</td>',
                     str(e.get("n_pos", "")), str(e.get("n_neg", "")), str(e.get("n_ignored", "")), auc,
                     _fmt(e.get("threshold")), _fmt(e.get("bacc")), _fmt(e.get("bacc_logit0")),
                     _fmt(e.get("auc_fg")), _fmt(e.get("ece")), _fmt(e.get("brier"))])
    has_ci = any(result["per_class"][c].get("auc_ci") for c in result["classes"])
    header = ["Class", "Group", "Pos", "Neg", "Ignored", "AUC [95% CI]" if has_ci else "AUC", "Thr.", "bAcc",
              "bAcc (logit&gt;0)", "AUC<sup>FG</sup>", "ECE", "Brier"]
    return _section("per-class", _table(header, rows), "Ignored = NaN labels (uncertain or not supervised).")


def _calibration(y: np.ndarray, s: np.ndarray, y_truth: np.ndarray | None, n_bins: int,
                 result: Mapping[str, Any], truth: Mapping[str, Any] | None) -> str:
    from repgls.metrics import reliability_bins

    plt = _plt()
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5.4, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="#9aa0aa", lw=0.9, ls=":", label="perfect calibration")
    width = 1.0 / n_bins
    for yy, colour, name, res in ((y, REPORT_COLOUR, "reference", result),
                                  (y_truth, TRUTH_COLOUR, "hidden truth", truth)):
        if yy is None:
            continue
        r = reliability_bins(yy, s, n_bins)
        ok = r["count"] > 0
        ece = _fmt((res or {}).get("summary", {}).get("ece"))
        ax.plot(r["mean_prob"][ok], r["frac_pos"][ok], "o-", color=colour, ms=4, lw=1.4,
                label=f"vs {name} (ECE {ece})")
        if name == "reference":
            centres = (r["edges"][:-1] + r["edges"][1:]) / 2
            axh.bar(centres, r["count"], width=width * 0.9, color="#b8c4d8")
    ax.set_ylabel("observed frequency of positives")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    axh.set_xlabel("predicted probability")
    axh.set_ylabel("entries")
    axh.set_yscale("log")
    fig.tight_layout()
    note = (f"All labelled (study, class) entries pooled, {n_bins} equal-width bins. ECE = sum over bins of "
            "(share of entries) &times; |observed frequency &minus; mean predicted probability|.")
    return _section("calibration", f"<figure>{_fig_to_img(fig, 'Reliability diagram')}</figure>", note)


def _groups(result: Mapping[str, Any], truth: Mapping[str, Any] | None) -> str:
    rows = []
    for g, e in result["groups"].items():
        row = [f'<td class="txt">{_pill(g)}</td>', str(len(e["classes"])), _fmt_ci(e.get("auc"), e.get("auc_ci")),
               _fmt_ci(e.get("bacc"), e.get("bacc_ci")), _fmt_ci(e.get("bacc_logit0"), e.get("bacc_logit0_ci")),
               _fmt(e.get("auc_fg"))]
        if truth is not None:
            t = truth.get("groups", {}).get(g, {})
            row += [_fmt(t.get("auc")), _fmt(t.get("bacc"))]
        rows.append(row)
    header = ["Group", "Classes", "AUC", "bAcc", "bAcc (logit&gt;0)", "AUC<sup>FG</sup>"]
    if truth is not None:
        header += ["AUC (truth)", "bAcc (truth)"]
    members = "; ".join(f"<b>{_esc(g)}</b>: {_esc(', '.join(e['classes']))}" for g, e in result["groups"].items())
    return _section("groups", _table(header, rows) + f'<p class="note" style="margin-top:10px">{members}</p>',
                    "Unweighted means of the per-class metrics over each group's classes (LTML).")


SHORT_LABELS = {"mean_auc": "Mean AUC", "bacc": "bAcc (val. thr.)", "bacc_logit0": "bAcc (logit&gt;0)",
                "mean_auc_fg": "AUC<sup>FG</sup>", "ece": "ECE", "brier": "Brier"}


def _comparison_table(tab: Any) -> str:
    """HTML table of a ``summary_table`` frame: mean +- std per metric (no "best" marks: differences are judged
    by the paired comparison of the first section, not by eye)."""
    cols: list[tuple[str, str, bool]] = []
    for key, _, higher in _summary_rows():
        if f"{key}_mean" in tab and np.isfinite(tab[f"{key}_mean"].to_numpy(dtype=float)).any():
            cols.append((key, SHORT_LABELS.get(key, _esc(key)), higher))
    for g in ("head", "medium", "tail"):
        if f"{g}_auc_mean" in tab and np.isfinite(tab[f"{g}_auc_mean"].to_numpy(dtype=float)).any():
            cols.append((f"{g}_auc", f"AUC {g}", True))
    rows = []
    for method in tab.index:
        row = [f'<td class="txt">{_esc(method)}</td>', str(int(tab.loc[method, "n_runs"]))]
        for key, _, _higher in cols:
            m, sd = float(tab.loc[method, f"{key}_mean"]), float(tab.loc[method, f"{key}_std"])
            row.append(_fmt(m) + (f' <span class="ci">&plusmn; {sd:.3f}</span>' if math.isfinite(sd) else ""))
        rows.append(row)
    return _table(["Method", "Seeds"] + [c[1] for c in cols], rows)


def _comparison(runs: Mapping[str, Any], runs_truth: Mapping[str, Any] | None) -> str:
    from repgls.metrics import summary_table

    body = _comparison_table(summary_table(runs))
    if runs_truth:
        body = ("<h3 style='font-size:14px;margin:10px 0 6px'>Against the reference</h3>" + body
                + "<h3 style='font-size:14px;margin:16px 0 6px'>Against hidden truth</h3>"
                + _comparison_table(summary_table(runs_truth)))
    return _section("comparison", body,
                    "Mean &plusmn; sample standard deviation over seeds (lower is better for ECE and Brier). "
                    "Whether two methods differ is read from the paired intervals of the first section.")


def _answer_plot(comp: Any, baseline: str | None) -> str:
    """Forest plot: each method's mean AUC and, beside it, its paired difference to the baseline, with 95% CIs."""
    plt = _plt()
    methods = list(comp.index)
    pos = np.arange(len(methods))[::-1]
    fig, axes = plt.subplots(1, 2 if baseline else 1, figsize=(9 if baseline else 5, 0.42 * len(methods) + 1.2),
                             squeeze=False, sharey=True)
    specs = [("auc", "mean AUC vs truth", None)] + ([(f"d_auc_vs_{baseline}", f"difference to {baseline}", 0.0)]
                                                    if baseline else [])
    for ax, (key, label, zero) in zip(axes[0], specs, strict=True):
        v = comp[key].to_numpy(dtype=float)
        lo = comp[f"{key}_lo"].to_numpy(dtype=float)
        hi = comp[f"{key}_hi"].to_numpy(dtype=float)
        ax.errorbar(v, pos, xerr=np.maximum(np.vstack([v - lo, hi - v]), 0.0), fmt="o", color=REPORT_COLOUR,
                    ecolor="#30343b", elinewidth=1.2, capsize=3, ms=5)
        if zero is not None:
            ax.axvline(zero, color="#9aa0aa", lw=1, ls=":")
        ax.set_xlabel(label)
    axes[0][0].set_yticks(pos)
    axes[0][0].set_yticklabels(methods, fontsize=9)
    fig.tight_layout()
    return f"<figure>{_fig_to_img(fig, 'Paired comparison of the methods')}</figure>"


def _answer(comp: Any, baselines: Sequence[str], oracle: str | None) -> str:
    """The first section: mean AUC vs truth, paired differences to the baselines and the gap recovered, each
    with its 95% interval, and one sentence per method that says what the interval allows one to conclude."""
    rows = []
    for m, r in comp.iterrows():
        row = [f'<td class="txt">{_esc(m)}</td>', _fmt_ci(r.get("auc"), [r.get("auc_lo"), r.get("auc_hi")])]
        row += [_fmt_ci(r.get(f"d_auc_vs_{b}"), [r.get(f"d_auc_vs_{b}_lo"), r.get(f"d_auc_vs_{b}_hi")])
                for b in baselines]
        if "gap_recovered" in comp:
            row.append(_fmt_ci(r.get("gap_recovered"), [r.get("gap_recovered_lo"), r.get("gap_recovered_hi")], 2))
        rows.append(row)
    header = ["Method", "Mean AUC vs truth [95% CI]"] + [f"&Delta; vs {_esc(b)} [95% CI]" for b in baselines]
    if "gap_recovered" in comp:
        header.append("Gap recovered [95% CI]")
    verdicts = []
    base = baselines[0] if baselines else None
    for m, r in comp.iterrows():
        if base is None or m in (base, oracle):
            continue
        lo, hi, d = r.get(f"d_auc_vs_{base}_lo"), r.get(f"d_auc_vs_{base}_hi"), r.get(f"d_auc_vs_{base}")
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        word = "better than" if lo > 0 else "worse than" if hi < 0 else "not distinguishable from"
        verdicts.append(f"<li><b>{_esc(m)}</b> is {word} {_esc(base)} ({d:+.3f} mean AUC, 95% CI "
                        f"[{lo:+.3f}, {hi:+.3f}])</li>")
    if oracle is not None and base is not None and oracle in comp.index:
        r = comp.loc[oracle]
        d, lo, hi = r[f"d_auc_vs_{base}"], r[f"d_auc_vs_{base}_lo"], r[f"d_auc_vs_{base}_hi"]
        tail = ("the most any labelling could recover here" if comp.attrs.get("gap_defined", True) else
                "not distinguishable from 0: here the report's labels already give what the truth gives, so there "
                "is no gap to recover and the gap recovered is undefined")
        verdicts.append(f"<li>Training on the hidden truth ({_esc(oracle)}) instead of {_esc(base)} labels gains "
                        f"{d:+.3f} mean AUC (95% CI [{lo:+.3f}, {hi:+.3f}]): {tail}.</li>")
    a = comp.attrs
    note = (f"Paired over {a.get('n_seeds', '?')} seeds and {a.get('n_patients', '?')} test patients; intervals from "
            f"{a.get('n_boot', '?')} replicates that resample patients and seeds together for every method. Gap "
            "recovered = (method &minus; baseline) / (oracle &minus; baseline); it is undefined when the oracle "
            "barely beats the baseline.")
    body = _answer_plot(comp, base) + _table(header, rows) + (f"<ul>{''.join(verdicts)}</ul>" if verdicts else "")
    return _section("answer", body, note)


def _caption(path: str | Path) -> str:
    """Caption from a ``save_cam_pngs`` file name: ``<image>__<class>.png`` -> ``image: class``."""
    stem = Path(path).stem
    return ": ".join(part.replace("_", " ") for part in stem.split("__", 1))


def _cams(cams: Any) -> str:
    items: list[tuple[Any, str]] = []
    if isinstance(cams, (str, Path)) and Path(cams).is_dir():
        items = [(p, _caption(p)) for p in sorted(Path(cams).glob("*.png"))]
    else:
        for it in cams:
            if isinstance(it, Mapping):
                items.append((it["image"], str(it.get("caption", ""))))
            elif isinstance(it, (tuple, list)) and len(it) == 2:
                items.append((it[1], str(it[0])))
            else:
                items.append((it, _caption(it) if isinstance(it, (str, Path)) else ""))
    figs = "\n".join(f"<figure>{_png_to_img(src, cap)}<figcaption>{_esc(cap)}</figcaption></figure>"
                     for src, cap in items)
    return _section("cams", f'<div class="cams">{figs}</div>',
                    "Grad-CAM of the named class over the input image (red = regions that raise its logit).")


def _definitions(result: Mapping[str, Any] | None) -> str:
    st = (result or {}).get("settings", {})
    items = [
        ("AUC", "ROC-AUC per class on its labelled rows (scikit-learn); undefined when a class has only one "
                "label value. Mean AUC averages the defined classes."),
        ("bAcc (val. threshold)", "Balanced accuracy (TPR + TNR) / 2 with per-class thresholds chosen on the "
                                  "validation split to maximise it (equivalently Youden's J), applied to test."),
        ("bAcc (logit &gt; 0)", "Balanced accuracy at probability &gt; 0.5, the rule of LTML's evaluation code."),
        ("AUC<sup>FG</sup>", "PU-RM: among positives, AUC of the class score for atypical (0) vs typical (1) "
                             "positives (mild / improving vs severe / worsening or unqualified)."),
        ("ECE", f"Expected calibration error over {st.get('n_bins', 15)} equal-width probability bins, all "
                "labelled entries pooled."),
        ("Brier", "Mean squared difference between probability and label over labelled entries."),
        ("Head / medium / tail", "Classes grouped by training frequency (vocabulary groups); group values are "
                                 "unweighted means of per-class values."),
        ("95% CI", f"Percentile bootstrap over patients ({st.get('n_boot', 0)} replicates, seed "
                   f"{st.get('seed', 0)})." if st.get("n_boot") else "Not computed (n_boot = 0)."),
    ]
    body = "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    return _section("definitions", body)


# ---------------------------------------------------------------------------------------- entry point
def write_report(path: str | Path, result: Mapping[str, Any] | None = None, *, y_true: Any = None,
                 scores: Any = None, truth: Mapping[str, Any] | None = None, y_truth: Any = None,
                 cams: Any = None, runs: Mapping[str, Any] | None = None,
                 runs_truth: Mapping[str, Any] | None = None, comparison: Any = None,
                 baselines: Sequence[str] = (), oracle: str | None = None, title: str = "repgls evaluation",
                 subtitle: str = "") -> Path:
    """Write one self-contained HTML report and return its path.

    Args:
        path: output file (folders are created).
        result: :func:`repgls.metrics.score` result against the reference (summary, per-class, groups sections).
        y_true / scores: [N, K] labels (1 / 0 / NaN) and probabilities behind ``result``, for the ROC curves
            and the reliability diagram (skipped when absent).
        truth / y_truth: ``evaluate`` result and labels [N, K] against hidden truth (phantom world): shown
            side by side with the values against the reference.
        cams: a folder of PNGs, or a list of PNG paths, ``(caption, path | RGB array)`` pairs or
            ``{"image", "caption"}`` dicts.
        runs / runs_truth: method name -> list of ``evaluate`` results (one per seed), for the comparison table.
        comparison / baselines / oracle: a :func:`repgls.benchmarking.compare.comparison` frame, shown first
            ("Did report-guided labels help?") with its paired intervals.
        title / subtitle: page heading.
    """
    if result is None and not runs and cams is None and comparison is None:
        raise ValueError("nothing to report: give a result, runs or cams")
    y = s = yt = None
    if result is not None and (y_true is not None or scores is not None):
        if y_true is None or scores is None:
            raise ValueError("give both y_true and scores")
        y, s = np.asarray(y_true, float), np.asarray(scores, float)
        if y.shape != s.shape or y.shape[1] != len(result["classes"]):
            raise ValueError(f"y_true {y.shape} / scores {s.shape} do not match {len(result['classes'])} classes")
        if y_truth is not None:
            yt = np.asarray(y_truth, float)
            if yt.shape != s.shape:
                raise ValueError(f"y_truth {yt.shape} does not match scores {s.shape}")
    parts: list[str] = []
    if comparison is not None:
        parts.append(_answer(comparison, list(baselines), oracle))
    if result is not None:
        parts.append(_summary(result))
        if truth is not None:
            parts.append(_truth(result, truth))
        if y is not None:
            parts.append(_roc(result["classes"], y, s, yt, result))
        parts.append(_auc_bars(result, truth))
        parts.append(_per_class(result))
        if y is not None:
            parts.append(_calibration(y, s, yt, int(result.get("settings", {}).get("n_bins", 15)), result, truth))
        if result.get("groups"):
            parts.append(_groups(result, truth))
    if runs:
        parts.append(_comparison(runs, runs_truth))
    if cams is not None:
        parts.append(_cams(cams))
    parts.append(_definitions(result))
    present = [sid for sid, _ in SECTIONS if f'<section id="{sid}">' in "".join(parts)]
    nav = "".join(f'<a href="#{sid}">{dict(SECTIONS)[sid]}</a>' for sid in present)
    try:
        from repgls import __version__ as version
    except ImportError:  # pragma: no cover
        version = "?"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header><h1>{_esc(title)}</h1><p>{_esc(subtitle)}</p></header>
<nav>{nav}</nav>
{chr(10).join(parts)}
<footer>Generated by repgls {_esc(version)} on {stamp}. Self-contained file: no external resources.</footer>
</main>
</body>
</html>
"""
    from repgls._io import atomic_write_text

    return atomic_write_text(path, doc)
