"""The three papers' headline claims, checked on a finished bench (``repgls bench`` output folder).

For each claim, the metric the paper reports, per method, is compared with the paper's baselines, paired by seed
(seed k of both methods: same backbone features, same data order), against the phantom's hidden truth:
mean difference over seeds and a 95% t-interval over the seeds' differences. (The patient x seed bootstrap of
``comparison.csv`` covers mean AUC; this script covers the other metrics the claims are stated in.)

    python benchmarks/paper_claims.py bench_out/phantom-small
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

#: (paper, claim, metric key in metrics.json summary / group, method, baselines)
CLAIMS = (
    ("Rep-GLS", "GLS with report-derived rates beats BCE on mean AUC", "mean_auc", "gls-lexicon",
     ("u-ones", "u-zeros", "u-ignore")),
    ("Rep-GLS", "the same, with rates from the Rate Generation Network", "mean_auc", "gls-rgn", ("u-ones",)),
    ("Rep-GLS", "the same, with LU-ViT's joint loss (GLS + rate head)", "mean_auc", "lu-vit", ("u-ones",)),
    ("Rep-GLS", "GLS's gains are largest on rarer findings (medium group AUC)", "group:medium:auc", "gls-lexicon",
     ("u-ones",)),
    ("PU-RM", "PCE on U-Ones (PU-RM) separates typical from atypical positives better (AUC^FG)", "mean_auc_fg",
     "pu-rm-pce", ("u-ones", "u-zeros", "u-ignore")),
    ("LTML", "ANR-LLA raises balanced accuracy over BCE, focal and DB", "bacc", "anr-lla", ("u-ones", "focal", "db")),
    ("LTML", "ANR-LLM raises balanced accuracy over BCE", "bacc", "anr-llm", ("u-ones",)),
    ("LTML", "ANR-LLA raises mean AUC over BCE, focal and DB", "mean_auc", "anr-lla", ("u-ones", "focal", "db")),
)
T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def _value(summary: dict, groups: dict, key: str) -> float:
    if key.startswith("group:"):
        _, g, m = key.split(":")
        v = (groups.get(g) or {}).get(m)
    else:
        v = summary.get(key)
    return math.nan if v is None else float(v)


def load(out: Path) -> dict[str, dict[int, tuple[dict, dict]]]:
    """method -> seed -> (summary vs truth, groups vs truth) from the runs' metrics.json."""
    runs: dict[str, dict[int, tuple[dict, dict]]] = {}
    for line in (out / "runs.jsonl").read_text().splitlines():
        rec = json.loads(line)
        m = json.loads(Path(rec["metrics"]).read_text())["vs_truth"]
        runs.setdefault(rec["method"], {})[int(rec["seed"])] = (m["summary"], m["groups"])
    return runs


def paired(runs: dict, key: str, a: str, b: str) -> tuple[float, float, float, int]:
    """Mean of the per-seed differences a - b and its 95% t-interval."""
    seeds = sorted(set(runs[a]) & set(runs[b]))
    d = np.array([_value(*runs[a][s], key) - _value(*runs[b][s], key) for s in seeds])
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.nan, math.nan, len(d)
    half = T975.get(len(d), 1.96) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half), len(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="a finished bench's output folder (holds runs.jsonl)")
    args = ap.parse_args()
    runs = load(args.out)
    print("| paper | claim | metric | method vs baseline | difference [95% CI] | seeds | verdict |")
    print("|---|---|---|---|---|---|---|")
    for paper, claim, key, method, baselines in CLAIMS:
        for b in baselines:
            if method not in runs or b not in runs:
                continue
            d, lo, hi, n = paired(runs, key, method, b)
            verdict = ("holds" if lo > 0 else "reversed" if hi < 0 else "not shown") if math.isfinite(lo) else "n/a"
            print(f"| {paper} | {claim} | {key} | {method} vs {b} | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] | {n} | {verdict} |")


if __name__ == "__main__":
    main()
