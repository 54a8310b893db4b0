"""Does the RGN carry mined rates to wording the lexicon does not know?

1. Mine the Open-i dev reports (findings + impression) with the rule miner; split studies 80/20 by seed.
2. Train an RGN (frozen packaged MiniLM) on the training studies' mined rates (policy gls, r0 = -0.2).
3. Held-out studies: MAE and Spearman of RGN rates vs mined rates (all mentions, and hedged ones only),
   against a per-class-mean baseline.
4. Paraphrase set (tests/data/hedge_paraphrases.tsv: hedges absent from the lexicon, each with the certainty
   that published scales give it): MAE against the intended rate and the intended certainty, for the RGN
   and for the lexicon's fallback (what the rule miner gives for an unknown hedge). In certainty space
   both use the miner's label y (as ``repgls rates --rgn`` does), so only the rate differs.

Prints figures only (no report text). Usage:
    .venv/bin/python benchmarks/rgn_generalisation.py [--reports PATH] [--epochs 40] [--seed 0] [--hedge-weight 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from repgls.mining import mine, mine_report
from repgls.rating.mapping import gls_rate, gls_target
from repgls.rating.rgn import mention_targets, train_rgn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS = REPO.parent / "shared" / "data" / "openi-dev" / "indiana_reports.dev.csv"
PARAPHRASES = REPO / "tests" / "data" / "hedge_paraphrases.tsv"


def split_studies(ids: np.ndarray, seed: int, frac: float = 0.2) -> np.ndarray:
    """Boolean [N]: True for held-out studies (a seeded permutation of the distinct ids)."""
    uniq = np.unique(ids)
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(uniq)[: round(frac * len(uniq))].tolist())
    return np.array([i in held for i in ids])


def paraphrase_eval(model, vocab: str = "chexpert14") -> dict:
    """RGN vs lexicon fallback on the paraphrase set (rate and certainty MAE)."""
    para = pd.read_csv(PARAPHRASES, sep="\t", comment="#")
    rows = []
    for i, rec in para.iterrows():
        mined = {m["finding"]: m for m in mine_report(rec["sentence"], vocab=vocab, study_id=str(i))}
        m = mined.get(rec["finding"])
        p_int = float(rec["intended_certainty"])
        _, r_int = gls_rate(np.array([p_int]))
        row = {"hedge": rec["hedge"], "finding": rec["finding"], "p_intended": p_int, "r_intended": float(r_int[0]),
               "detected": m is not None}
        if m is not None:
            df = pd.DataFrame([m])
            r_lex = float(mention_targets(df)[0])
            y_lex = 1.0 if m["certainty"] >= 0.5 else 0.0
            r_rgn = float(model.predict_pairs([m["sentence"]], [rec["finding"]])[0])
            row.update(status=m["status"], p_lexicon=float(m["certainty"]), r_lexicon=r_lex, r_rgn=r_rgn,
                       t_lexicon=float(gls_target(y_lex, r_lex)), t_rgn=float(gls_target(y_lex, r_rgn)))
        rows.append(row)
    res = pd.DataFrame(rows)
    d = res[res["detected"]]
    return {
        "n": len(res), "n_detected": len(d),
        "lexicon_hedge_recognised": int((d["status"] == "uncertain").sum()),
        "rate_mae_lexicon": float((d["r_lexicon"] - d["r_intended"]).abs().mean()),
        "rate_mae_rgn": float((d["r_rgn"] - d["r_intended"]).abs().mean()),
        "certainty_mae_lexicon": float((d["t_lexicon"] - d["p_intended"]).abs().mean()),
        "certainty_mae_rgn": float((d["t_rgn"] - d["p_intended"]).abs().mean()),
        "rgn_closer_share": float(((d["r_rgn"] - d["r_intended"]).abs()
                                   < (d["r_lexicon"] - d["r_intended"]).abs()).mean()),
        "spearman_rgn_vs_intended_rate": float(spearmanr(d["r_rgn"], d["r_intended"]).statistic),
        "per_hedge": d.groupby("hedge")[["r_intended", "r_lexicon", "r_rgn"]].mean().round(3).to_dict("index"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", default=None)
    ap.add_argument("--hedge-weight", type=float, default=1.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if not args.reports.is_file():
        raise SystemExit(f"reports not found: {args.reports}")

    t0 = time.perf_counter()
    findings = mine(args.reports, id_col="uid", text_col=["findings", "impression"]).to_pandas()
    t_mine = time.perf_counter() - t0
    held = split_studies(findings["study_id"].to_numpy(), args.seed)
    train, test = findings[~held].reset_index(drop=True), findings[held].reset_index(drop=True)
    print(f"mined {findings['study_id'].nunique()} studies, {len(findings)} mentions "
          f"({(findings['status'] == 'uncertain').sum()} uncertain) in {t_mine:.1f}s; "
          f"train {len(train)} / held-out {len(test)} mentions")

    t0 = time.perf_counter()
    model = train_rgn(train, epochs=args.epochs, seed=args.seed, encoder=args.encoder,
                      hedge_weight=args.hedge_weight)
    t_train = time.perf_counter() - t0
    print(f"RGN trained in {t_train:.1f}s (embedding + {args.epochs} epochs; "
          f"head {model.config['history']['seconds']:.1f}s)")

    r_true = mention_targets(test)
    r_rgn = model.predict(test)
    class_mean = pd.Series(mention_targets(train)).groupby(train["finding"].to_numpy()).mean()
    r_base = test["finding"].map(class_mean).fillna(float(np.mean(mention_targets(train)))).to_numpy()
    hedged = r_true > 0
    fig = {
        "n_train_mentions": len(train), "n_heldout_mentions": len(test), "n_heldout_hedged": int(hedged.sum()),
        "heldout_mae_rgn": float(np.abs(r_rgn - r_true).mean()),
        "heldout_mae_class_mean": float(np.abs(r_base - r_true).mean()),
        "heldout_spearman_rgn": float(spearmanr(r_rgn, r_true).statistic),
        "heldout_spearman_class_mean": float(spearmanr(r_base, r_true).statistic),
        "heldout_hedged_mae_rgn": float(np.abs(r_rgn - r_true)[hedged].mean()) if hedged.any() else None,
        "heldout_hedged_mae_class_mean": float(np.abs(r_base - r_true)[hedged].mean()) if hedged.any() else None,
        "seconds_mine": round(t_mine, 1), "seconds_train": round(t_train, 1),
    }
    fig["paraphrases"] = paraphrase_eval(model)
    print(json.dumps(fig, indent=2))
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
