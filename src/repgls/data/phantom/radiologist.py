"""The phantom world's simulated radiologist: writes a report from what is visible on a study.

For each finding present: missed with probability ``miss_rate * (1 - visibility)^2``; otherwise stated as
fact when the perceived visibility (visibility + noise) exceeds ``definite_above``, else hedged with a cue
whose certainty tracks the perceived visibility (faint -> "cannot be excluded", clearer -> "likely").
Absent findings are sometimes over-called (usually hedged); findings seen on the prior study and gone now
are reported as resolved. Severity words follow the perceived latent severity, change words the prior
study. Standard negatives ("No pleural effusion or pneumothorax.") cover what was not reported.
Every phrase comes from ``phantom.yaml``; what was written is recorded in ``study.reported``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from repgls.data.phantom.study import Study, onset_extras

SIDE_WORD = {-1: "right", 1: "left", 0: "bilateral"}
CHANGE_OF_PRIOR = {"absent": "new", "present-smaller": "worsened", "present-larger": "improved", "same": "stable"}


def _pick(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(0, len(items)))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _level(cfg: dict[str, Any], sev: float) -> str:
    for lvl, hi in cfg["severity_levels"].items():
        if sev < hi:
            return lvl
    return "severe"


def _location(ccfg: dict[str, Any], extras: dict[str, Any]) -> tuple[str, str]:
    """(prefix, suffix) location words for a finding phrase."""
    side = extras.get("side", 0)
    sw = SIDE_WORD.get(side, "")
    if ccfg.get("lobe") and "lobe" in extras:
        lobe = extras["lobe"]
        if side == 1 and lobe == "middle lobe":
            return "lingular", ""
        return f"{sw} {lobe}", ""
    if ccfg.get("zone") and "lobe" in extras:
        return "", f" in the {sw} {extras['lobe'].replace(' lobe', ' lung')}"
    if ccfg.get("base"):
        return "", (" at the lung bases" if side == 0 else f" at the {sw} base")
    if ccfg.get("apical"):
        return f"{sw} apical", ""
    if ccfg.get("side"):
        return sw, ""
    return "", ""


def _phrase(cfg, ccfg, extras, rng, sev_word: str, chg_word: str) -> str:
    pre, post = _location(ccfg, extras)
    term = _pick(rng, list(ccfg["terms"]))
    words = [w for w in (chg_word, sev_word, pre, term) if w]
    return " ".join(words) + post


def _choose_hedge(cfg: dict[str, Any], target: float, rng: np.random.Generator) -> dict[str, Any]:
    """A hedge whose certainty is near ``target`` (Gaussian weights on the distance)."""
    hedges = cfg["hedges"]
    p = np.array([h["p"] for h in hedges], dtype=float)
    w = np.exp(-(((p - target) / 0.07) ** 2)) + 1e-9
    return hedges[int(rng.choice(len(hedges), p=w / w.sum()))]


def belief_tables(cfg: dict[str, Any], studies: list[Any], classes: tuple[str, ...] | list[str],
                  grid: int = 64) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class, the calibrated radiologist's belief P(present | hedged, perceived visibility v) on a grid of v.

    Bayes over the world's own population (what an experienced reader knows): prior = the class's prevalence
    in ``studies``; present findings are hedged at perceived v with density E_vis[(1 - miss(vis)) N(v; vis,
    sd)] over the world's visibilities of that class; absent findings are over-called and hedged at rate
    ``overcall_rate x overcall weight x overcall_hedged`` with v ~ U(0.05, 0.45). The hedge written for a
    faint finding is then the cue whose certainty is nearest this belief, so P(present | cue) ~ cue's p: the
    premise of report-guided labels ("the hedge is a probability"). Returns {class: (v grid, belief)}.
    """
    rad = cfg["radiologist"]
    v = np.linspace(0.0, float(rad["definite_above"]), grid)
    sd = float(rad["perception_sd"])
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    n = max(1, len(studies))
    for c in classes:
        if c == "No Finding" or c not in cfg["classes"]:
            continue
        vis = np.array([st.truth[c]["visibility"] for st in studies if st.truth[c]["present"]], dtype=float)
        prior = float(np.clip(len(vis) / n, 1e-4, 1 - 1e-4))
        if len(vis) == 0:
            vis = np.array([0.5])
        keep = 1.0 - rad["miss_rate"] * (1.0 - vis) ** 2
        dens = np.exp(-0.5 * ((v[:, None] - vis[None, :]) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
        like1 = (dens * keep[None, :]).mean(axis=1)
        oc = rad["overcall_rate"] * float(cfg["classes"][c].get("overcall", 1.0)) * rad["overcall_hedged"]
        like0 = np.where((v >= 0.05) & (v <= 0.45), oc / 0.40, 0.0)
        num = prior * like1
        out[c] = (v, num / np.maximum(num + (1 - prior) * like0, 1e-12))
    return out


def hedge_target(cfg: dict[str, Any], cls: str, perceived: float) -> float:
    """The certainty the radiologist means to convey for a hedged finding seen at ``perceived`` visibility.

    ``radiologist.hedge_calibration``: ``bayes`` (default) -> the calibrated belief of ``belief_tables``
    (clipped to the hedge scale); ``visibility`` -> 0.30 + 0.6 x perceived / definite_above, a reader whose
    hedges track how faint the finding looks, not how often such findings are real (miscalibrated: use it to
    test how methods cope when the report's doubt is not a probability).
    """
    rad = cfg["radiologist"]
    mode = rad.get("hedge_calibration", "bayes")
    if mode == "visibility" or cls not in cfg.get("_belief", {}):
        return 0.30 + 0.6 * float(np.clip(perceived / rad["definite_above"], 0.0, 1.0))
    if mode != "bayes":
        raise ValueError(f"radiologist.hedge_calibration must be 'bayes' or 'visibility', got {mode!r}")
    grid, belief = cfg["_belief"][cls]
    return float(np.interp(perceived, grid, belief))


def _add_negatives(study: Study, cfg: dict[str, Any], classes: tuple[str, ...],
                   reported: dict[str, dict[str, Any]], sentences: list[tuple[float, str]],
                   rng: np.random.Generator) -> set[str]:
    """Standard negatives for what was not reported (missed findings may be negated: label noise).

    Appends to ``sentences`` and ``reported`` in place; returns the classes the report now speaks of."""
    rad = cfg["radiologist"]
    order_of = {c: i for i, c in enumerate(classes)}
    said = {c for c, r in reported.items() if r.get("status")}
    for neg in cfg["negatives"]:
        cls = [c for c in neg["classes"] if c in study.truth]
        if not cls or any(c in said for c in cls) or any(
                reported.get(u, {}).get("status") in ("positive", "uncertain") for u in neg.get("unless", ())):
            continue
        if rng.random() < neg["p"] * rad["negative_rate"]:
            sentences.append((order_of[cls[0]], neg["text"]))
            for c in cls:
                reported[c] = {"status": "negative", "cue": neg.get("cue", "no"), "certainty": 0.0,
                               "severity": "none", "change": "none",
                               "error": "missed" if study.truth[c]["present"] else ""}
                said.add(c)
    for c in classes:  # rarer single-class negatives
        ccfg = cfg["classes"].get(c, {})
        if c in said or c == "No Finding" or not ccfg.get("negative"):
            continue
        if rng.random() < 0.08 * rad["negative_rate"]:
            sentences.append((order_of[c], ccfg["negative"]))
            reported[c] = {"status": "negative", "cue": "no", "certainty": 0.0, "severity": "none",
                           "change": "none", "error": "missed" if study.truth[c]["present"] else ""}
            said.add(c)
    return said


def dictate(study: Study, prior: Study | None, cfg: dict[str, Any], classes: tuple[str, ...],
                 rng: np.random.Generator) -> None:
    """Fill ``study.findings_text``, ``study.impression_text`` and ``study.reported`` (class -> dict with
    status, cue, certainty, severity, change, error)."""
    rad = cfg["radiologist"]
    sentences: list[tuple[int, str]] = []  # (order key, sentence)
    impression: list[str] = []
    reported: dict[str, dict[str, Any]] = {}
    order_of = {c: i for i, c in enumerate(classes)}
    for c in classes:
        if c == "No Finding":
            continue
        ccfg = cfg["classes"][c]
        t = study.truth[c]
        vis = t["visibility"]
        extras = t["extras"]
        key = -1 if ccfg["kind"] == "devices" else order_of[c]
        if t["present"]:
            if rng.random() < rad["miss_rate"] * (1.0 - vis) ** 2:
                reported[c] = {"error": "missed", "_missed": True}
                continue
            perceived = vis + rng.normal(0, rad["perception_sd"])
            definite = perceived >= rad["definite_above"]
            sev_seen = float(np.clip(t["severity"] + rng.normal(0, 0.1 * (1 - vis)), 0.0, 1.0))
            error = ""
            chg_state = t["prior_state"]
        else:
            was_seen = (prior is not None and prior.truth[c]["present"]
                        and prior.reported.get(c, {}).get("status") in ("positive", "uncertain"))
            if was_seen and rng.random() < rad["change_word_rate"]:
                pextras = prior.truth[c]["extras"]
                f = _phrase(cfg, ccfg, pextras, rng, "", "")
                text = _pick(rng, cfg["resolved_forms"]).format(f=f, F=_cap(f))
                sentences.append((key, text))
                reported[c] = {"status": "negative", "cue": "resolved", "certainty": 0.0, "severity": "none",
                               "change": "resolved", "error": ""}
                continue
            if rng.random() >= rad["overcall_rate"] * float(ccfg.get("overcall", 1.0)):
                continue
            extras = _fake_extras(ccfg, cfg, rng)
            definite = rng.random() >= rad["overcall_hedged"]
            perceived = float(rng.uniform(0.05, 0.45))
            sev_seen = float(rng.uniform(0.05, 0.35))
            error = "overcall"
            chg_state = "none"
        if ccfg["kind"] == "devices":
            devs = extras.get("devices", ["central_line"])
            for d in devs:
                side = SIDE_WORD[extras.get("line_side", -1)]
                sentences.append((key, _pick(rng, cfg["devices"][d]).format(Side=_cap(side), side=side)))
            reported[c] = {"status": "positive", "cue": "", "certainty": 1.0, "severity": "none",
                           "change": "none", "error": error}
            continue
        sev_word, sev_level = "", "none"
        fam = ccfg.get("sev")
        if fam and rng.random() < rad["severity_word_rate"]:
            sev_level = _level(cfg, sev_seen)
            sev_word = _pick(rng, cfg["severity_words"][fam][sev_level])
        chg_word, change = "", "none"
        if chg_state in CHANGE_OF_PRIOR and rng.random() < rad["change_word_rate"]:
            chg_word = _pick(rng, cfg["change_words"][chg_state])
            change = CHANGE_OF_PRIOR[chg_state]
        f = _phrase(cfg, ccfg, extras, rng, sev_word, chg_word)
        if definite:
            text = _pick(rng, cfg["positive_forms"]).format(f=f, F=_cap(f))
            rec = {"status": "positive", "cue": "", "certainty": 1.0}
        else:
            h = _choose_hedge(cfg, hedge_target(cfg, c, perceived), rng)
            text = _pick(rng, h["forms"]).format(f=f, F=_cap(f))
            rec = {"status": h["status"], "cue": h["cue"], "certainty": float(h["p"])}
        rec.update(severity=sev_level, change=change, error=error)
        reported[c] = rec
        sentences.append((key, text))
        if len(impression) < 3 and ((t["present"] and vis > 0.5) or not definite):
            impression.append(text)
    # a finding that implies another (Massive Cardiomegaly -> Cardiomegaly) reports it too, with the same words
    for c in classes:
        tgt = cfg["classes"].get(c, {}).get("implies")
        r = reported.get(c, {})
        if tgt in study.truth and r.get("status") in ("positive", "uncertain") \
                and reported.get(tgt, {}).get("status") not in ("positive", "uncertain"):
            reported[tgt] = dict(r, error="" if study.truth[tgt]["present"] else "overcall")
    said = _add_negatives(study, cfg, classes, reported, sentences, rng)
    for c, r in list(reported.items()):
        if r.pop("_missed", False):
            reported[c] = {"error": "missed"} if c not in said else r
    lung_said = any(cfg["classes"][c]["kind"] in ("opacity", "consolidation", "pneumonia", "edema", "atelectasis",
                                                   "lesion", "alveolar", "nodules", "small_nodules")
                    for c in said if c in cfg["classes"] and reported[c].get("status") != "negative")
    if not lung_said:
        sentences.append((order_of.get("Lung Opacity", 0) - 0.5, cfg["fillers"]["clear_lungs"]))
    positives = [c for c, r in reported.items() if r.get("status") in ("positive", "uncertain")
                 and cfg["classes"][c]["kind"] != "devices"]
    if not positives:
        impression = [_pick(rng, cfg["fillers"]["normal_impression"])]
        if "No Finding" in study.truth:
            reported["No Finding"] = {"status": "positive", "cue": "", "certainty": 1.0, "severity": "none",
                                      "change": "none",
                                      "error": "" if study.truth["No Finding"]["present"] else "overcall"}
    elif not impression:
        impression = [s for k, s in sentences if k >= 0][:1]
    sentences.sort(key=lambda ks: ks[0])
    study.findings_text = " ".join(s for _, s in sentences)
    study.impression_text = " ".join(impression)
    study.reported = {c: r for c, r in reported.items() if r}


def _fake_extras(ccfg: dict[str, Any], cfg: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Location for an over-called (absent) finding."""
    return onset_extras(ccfg["kind"], ccfg, cfg, rng)


def report_text(study: Study) -> str:
    """The study's report as one text with FINDINGS / IMPRESSION headers (what a miner reads)."""
    return f"FINDINGS: {study.findings_text}\n\nIMPRESSION: {study.impression_text}\n"


def hedge_calibration(studies: list[Study]) -> tuple[pd.DataFrame, float]:
    """How well the reader's hedges are calibrated: per cue certainty p, P(finding present | cue).

    Returns (table indexed by p with columns ``present`` = share truly present and ``mentions``, and the
    mention-weighted mean |p - P(present | cue)|) over every reported hedged mention.
    """
    rows = [(r["certainty"], bool(s.truth[c]["present"])) for s in studies for c, r in s.reported.items()
            if r.get("status") in ("positive", "uncertain") and r.get("cue")]
    d = pd.DataFrame(rows, columns=["p", "present"])
    g = d.groupby(d["p"].round(2))["present"].agg(present="mean", mentions="size")
    err = float((abs(g.index.to_numpy() - g["present"].to_numpy()) * g["mentions"]).sum() / max(len(d), 1))
    return g, err


def miner_agreement(studies: list[Study], vocab: str = "chexpert14") -> dict[str, Any]:
    """Check a report miner against the radiologist's intent on the phantom reports.

    Runs ``repgls.mining.mine_report`` on every report and compares, for each finding the radiologist
    wrote about: status, cue (the hedge/negation phrase; "" for plain positives), severity level (when a
    severity word was written) and change (when a change word was written).
    Returns rates and up to 20 examples of each kind of disagreement.
    """
    from repgls.mining import mine_report

    counts = {k: [0, 0] for k in ("status", "cue", "severity", "change")}
    extra = 0
    bad: dict[str, list[dict[str, Any]]] = {k: [] for k in counts}
    for s in studies:
        mined = {r["finding"]: r for r in mine_report(report_text(s), vocab=vocab, study_id=s.study_id)}
        for c, r in s.reported.items():
            if not r.get("status"):
                continue
            m = mined.get(c, {})
            checks = {"status": (r["status"], m.get("status", ""))}
            if r["status"] != "negative" or r.get("cue") not in ("no", ""):
                checks["cue"] = (r.get("cue", ""), m.get("cue", ""))
            if r.get("severity", "none") != "none":
                checks["severity"] = (r["severity"], m.get("severity", ""))
            if r.get("change", "none") != "none":
                checks["change"] = (r["change"], m.get("change", ""))
            for k, (want, got) in checks.items():
                w, g = str(want).lower(), str(got).lower()
                ok = w == g or (k == "cue" and w != "" and (w in g or (w == "resolved" and "resol" in g)))
                counts[k][0] += ok
                counts[k][1] += 1
                if not ok and len(bad[k]) < 20:
                    bad[k].append({"study_id": s.study_id, "finding": c, "want": want, "got": got,
                                   "text": report_text(s)})
        extra += sum(1 for c in mined if c not in s.reported or not s.reported[c].get("status"))
    return {"agreement": {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in counts.items()},
            "n": {k: v[1] for k, v in counts.items()}, "extra_mentions": extra, "disagreements": bad}
