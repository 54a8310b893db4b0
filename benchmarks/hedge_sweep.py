"""When do report-guided labels help? The power bench at several hedge frequencies of the phantom radiologist.

Runs ``repgls bench`` once per level of ``world.hedge_fraction`` (the share of the reader's mentions of a finding
as present that carry a hedge; ``default`` = phantom.yaml's reader) into ``OUT/h-<level>`` (finished runs and the
shared backbone are reused), then plots each method's paired difference in mean AUC against U-Ones (95%
intervals: patients and seeds resampled) and the oracle's gain, per level, and prints a Markdown table.

    python benchmarks/hedge_sweep.py --config configs/bench/phantom-small.yaml --out bench_out/sweep \
        --levels default,0.0,0.1,0.25,0.4 --plot docs/hedge_sweep.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_METHODS = "oracle,u-ones,u-zeros,u-ignore,pu-rm-pce,gls-lexicon,gls-soft,lu-vit"


def run_level(config: str, out: Path, level: str, methods: list[str]) -> tuple[pd.DataFrame, float, float]:
    """One bench at one hedge level; returns its paired comparison, the realised hedge share and seconds."""
    import repgls

    t0 = time.perf_counter()
    overrides = [] if level == "default" else [f"world.hedge_fraction={level}"]
    res = repgls.bench(config, out=out / f"h-{level}", overrides=overrides, methods=methods, progress=False,
                       report=False, log=lambda m: print(f"[{level}] {m}", flush=True))
    meta = json.loads((res.out / "world" / "meta.json").read_text())
    return res.comparison, float(meta["radiologist"]["hedge_share"]), time.perf_counter() - t0


def plot(rows: pd.DataFrame, path: Path, leave_out: list[str]) -> None:
    """Difference in mean AUC against U-Ones per method and hedge share, with 95% intervals (``leave_out``:
    methods far off the scale of the others, listed in the title; the table has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in rows["method"].unique() if m != "u-ones" and m not in leave_out]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    offsets = np.linspace(-0.012, 0.012, len(methods))
    for off, m in zip(offsets, methods, strict=True):
        r = rows[rows["method"] == m].sort_values("hedge_share")
        x = r["hedge_share"].to_numpy() + off
        d = r["d"].to_numpy()
        err = np.vstack([d - r["lo"].to_numpy(), r["hi"].to_numpy() - d])
        ax.errorbar(x, d, yerr=np.maximum(err, 0), fmt="o-", ms=4, lw=1.2, capsize=2, label=m)
    ax.axhline(0, color="#666", lw=0.8, ls=":")
    ax.set_xlabel("share of the reader's positive / hedged mentions that carry a hedge")
    ax.set_ylabel("mean AUC vs truth, difference to U-Ones")
    title = "Phantom power bench: paired differences to U-Ones (95% CI), 5 seeds"
    ax.set_title(title + (f"\n(not shown, off this scale: {', '.join(leave_out)}; see the table)" if leave_out else ""),
                 fontsize=10)
    ax.legend(fontsize=7.5, ncol=2, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/bench/phantom-small.yaml")
    ap.add_argument("--out", default="bench_out/sweep")
    ap.add_argument("--levels", default="default,0.0,0.1,0.25,0.4")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--plot", default=None, help="PNG to write (default OUT/hedge_sweep.png)")
    ap.add_argument("--leave-out", default="pu-rm-pce", help="methods not drawn (comma list; the table has them)")
    args = ap.parse_args()
    out = Path(args.out)
    methods = args.methods.split(",")
    rows = []
    for level in args.levels.split(","):
        comp, share, secs = run_level(args.config, out, level, methods)
        print(f"level {level}: hedge share {share:.3f}, {secs:.0f}s", flush=True)
        for m, r in comp.iterrows():
            rows.append({"level": level, "hedge_share": share, "method": m, "auc": r["auc"],
                         "d": r["d_auc_vs_u-ones"], "lo": r["d_auc_vs_u-ones_lo"], "hi": r["d_auc_vs_u-ones_hi"]})
    table = pd.DataFrame(rows)
    table.to_csv(out / "hedge_sweep.csv", index=False, float_format="%.6g")
    plot(table, Path(args.plot) if args.plot else out / "hedge_sweep.png",
         [m for m in args.leave_out.split(",") if m])
    wide = table.assign(cell=[f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                              zip(table["d"], table["lo"], table["hi"], strict=True)])
    shares = table.groupby("level", sort=False)["hedge_share"].first()
    print("| method | " + " | ".join(f"{lv} ({shares[lv]:.0%} hedged)" for lv in shares.index) + " |")
    print("|---|" + "---|" * len(shares))
    for m in methods:
        cells = [wide[(wide["method"] == m) & (wide["level"] == lv)]["cell"].iloc[0] for lv in shares.index]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
