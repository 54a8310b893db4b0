"""Score the rule miner (nih14 vocabulary) against the Open-i human 14-class labels (dev split).

Reads ../shared/data/openi-dev/indiana_reports.dev.csv (text: findings + impression) and
openi_gld_std14.dev.csv (gold, keyed CXR<uid>); prints precision / recall / F1 per class, micro- and
macro-F1. The gold is positive-only, so a mined finding counts as predicted positive when its status is
positive, or uncertain with certainty >= --uncertain-threshold (default 0.5, i.e. the label y = 1 of the
rates mapping), or -- the Open-i coding convention -- uncertain as a member of a plain differential (its cue is
a differential connector: "atelectasis or scarring", "X versus Y", "X and/or Y", "X/Y"; p 0.31-0.39 in cues v4);
negatives and unmentioned classes are predicted 0. Why differentials: the Open-i indexers code every alternative
a report names for what it sees (about 90 % of the miner's plain-differential members are gold-positive on the dev
split), but no finding under a hedge of its own ("may represent X or Y": under 10 %; "possible X", "could be X":
0 %). With --alternatives certainty they count only by their certainty (below 0.5: absent).
With the cue lexicon's scale the threshold counts hedges from "may be" (0.50) upwards as present, and "may
represent" (0.48), "possible" (0.45), "cannot be excluded" (0.35) and hypothetical frames ("evaluate for X", 0.25)
as absent. Hernia has no gold positives (NegBio's file never codes it) and is left out of the macro average.

Usage: .venv/bin/python benchmarks/mine_openi.py [--data DIR] [--uncertain-threshold 0.5]
       [--alternatives present|certainty] [--errors CLASS]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("REPGLS_SHARED_DATA", REPO.parent / "shared" / "data")) / "openi-dev"


def load_openi(data: Path):
    """(study ids, texts, gold DataFrame [N, 14] of 0/1) for the Open-i dev split."""
    import pandas as pd

    reps = pd.read_csv(data / "indiana_reports.dev.csv")
    gold = pd.read_csv(data / "openi_gld_std14.dev.csv")
    reps["filename"] = "CXR" + reps["uid"].astype(str)
    df = reps.merge(gold, on="filename", how="inner")
    texts = []
    for f, i in zip(df["findings"], df["impression"], strict=False):
        parts = [str(x) for x in (f, i) if isinstance(x, str) and x.strip()]
        texts.append("\n\n".join(parts))
    return df["filename"].tolist(), texts, df


def score(data: Path = DEFAULT_DATA, threshold: float = 0.5, vocab: str = "nih14",
          alternatives: str = "present") -> dict:
    """Mine the dev reports and compare with the gold; returns per-class and summary figures.

    ``alternatives``: "present" counts members of a plain differential (cue = a differential connector) as
    present (the Open-i coding convention); "certainty" counts them by their certainty like any hedge."""
    import numpy as np

    from repgls.mining.rules import get_miner

    if alternatives not in ("present", "certainty"):
        raise ValueError(f"alternatives must be 'present' or 'certainty', got {alternatives!r}")
    ids, texts, df = load_openi(data)
    miner = get_miner(vocab)
    connectors = set(miner.cues.alt_connectors) | {"/"} if alternatives == "present" else set()
    classes = list(miner.classes)
    k_of = {c: k for k, c in enumerate(classes)}
    pred = np.zeros((len(ids), len(classes)), dtype=bool)
    t0 = time.perf_counter()
    for n, text in enumerate(texts):
        for r in miner.mine_rows(text, ids[n]):
            status, p = r[2], r[3]
            if status == "positive" or (status == "uncertain" and (p >= threshold or r[4] in connectors)):
                pred[n, k_of[r[1]]] = True
    secs = time.perf_counter() - t0
    gold = df[classes].to_numpy().astype(bool)
    per = {}
    tp_all = fp_all = fn_all = 0
    for k, c in enumerate(classes):
        tp = int((pred[:, k] & gold[:, k]).sum())
        fp = int((pred[:, k] & ~gold[:, k]).sum())
        fn = int((~pred[:, k] & gold[:, k]).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = dict(tp=tp, fp=fp, fn=fn, precision=prec, recall=rec, f1=f1, support=int(gold[:, k].sum()))
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    micro_p = tp_all / (tp_all + fp_all) if tp_all + fp_all else 0.0
    micro_r = tp_all / (tp_all + fn_all) if tp_all + fn_all else 0.0
    micro = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0
    macro_cls = [c for c in classes if per[c]["support"] > 0]
    macro = sum(per[c]["f1"] for c in macro_cls) / len(macro_cls)
    tp13 = sum(per[c]["tp"] for c in macro_cls)
    fp13 = sum(per[c]["fp"] for c in macro_cls)
    fn13 = sum(per[c]["fn"] for c in macro_cls)
    micro13 = 2 * tp13 / (2 * tp13 + fp13 + fn13) if tp13 else 0.0
    return dict(per_class=per, micro_f1=micro, micro_precision=micro_p, micro_recall=micro_r, macro_f1=macro,
                micro_f1_coded=micro13,
                n_reports=len(ids), seconds=secs, pred=pred, gold=gold, ids=ids, texts=texts, classes=classes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--uncertain-threshold", type=float, default=0.5,
                    help="uncertain mentions with certainty >= this count as positive (default 0.5)")
    ap.add_argument("--alternatives", choices=("present", "certainty"), default="present",
                    help="count members of a plain differential as present (default; Open-i's coding convention) "
                         "or by their certainty")
    ap.add_argument("--errors", default=None,
                    help="print the sentences of false positives/negatives of this class (patient text: local use only)")
    args = ap.parse_args(argv)
    if not (args.data / "indiana_reports.dev.csv").is_file():
        print(f"Open-i dev data not found in {args.data}", file=sys.stderr)
        return 1
    res = score(args.data, args.uncertain_threshold, alternatives=args.alternatives)
    print(f"Open-i dev: {res['n_reports']} reports, vocab nih14; mined in {res['seconds']:.2f} s (provisional)")
    alt_rule = ("or a member of a plain differential ('X or Y', 'X versus Y', 'X and/or Y', 'X/Y': cue = connector, "
                "p 0.31-0.39; Open-i codes named alternatives)" if args.alternatives == "present"
                else "(differential members count by their certainty, 0.31-0.39: absent)")
    print(f"counting rule: a finding is predicted present when it is positive, or uncertain with certainty >= "
          f"{args.uncertain_threshold}, {alt_rule}; with the default 0.5 this includes 'may be' (0.50), and "
          f"excludes 'may represent' (0.48), 'possible' (0.45), 'cannot be excluded' (0.35), hedged differentials "
          f"('may represent X or Y') and hypothetical frames ('evaluate for X', 0.25)")
    print(f"{'class':<20}{'support':>8}{'tp':>6}{'fp':>6}{'fn':>6}{'prec':>8}{'recall':>8}{'F1':>8}")
    for c, d in res["per_class"].items():
        print(f"{c:<20}{d['support']:>8}{d['tp']:>6}{d['fp']:>6}{d['fn']:>6}{d['precision']:>8.3f}"
              f"{d['recall']:>8.3f}{d['f1']:>8.3f}")
    print(f"micro: precision {res['micro_precision']:.3f} recall {res['micro_recall']:.3f} F1 {res['micro_f1']:.3f}")
    print(f"micro-F1 over the 13 classes the gold codes (Hernia is never coded in this file): "
          f"{res['micro_f1_coded']:.3f}")
    print(f"macro-F1 (13 classes with gold positives; Hernia has none): {res['macro_f1']:.3f}")
    print("policy comparison (how uncertain mentions are counted):")
    for name, thr, alt in (("U-Zeros: uncertain = 0", 1.01, "certainty"),
                           ("certainty >= 0.5 only", 0.5, "certainty"),
                           ("certainty >= 0.5 + differentials (default)", 0.5, "present"),
                           ("U-Ones: any uncertain = 1", 0.0, "certainty")):
        r = score(args.data, thr, alternatives=alt)
        print(f"  {name:<44} micro-F1 {r['micro_f1']:.3f} (P {r['micro_precision']:.3f} R {r['micro_recall']:.3f}; "
              f"13 coded classes {r['micro_f1_coded']:.3f})  macro-F1 {r['macro_f1']:.3f}")
    if args.errors:
        k = res["classes"].index(args.errors)
        for n in range(res["n_reports"]):
            p, g = res["pred"][n, k], res["gold"][n, k]
            if p != g:
                print(("FP " if p else "FN ") + res["ids"][n] + ": " + res["texts"][n].replace("\n", " "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
