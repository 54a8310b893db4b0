"""Are the phantom radiologist's hedges calibrated? P(finding present | cue) against the cue's certainty p.

For each reader (``hedge_calibration``: ``bayes``, the default, and ``visibility``), simulates a world (reports
and truth, no images), groups every hedged mention by the certainty p of its cue and prints the share of
those findings that are really present, plus the mention-weighted mean |p - P(present | cue)|.
Usage:
    .venv/bin/python benchmarks/phantom_calibration.py [--n 3000] [--seed 0] [--vocab chexpert14]
"""

from __future__ import annotations

import argparse

from repgls.data.phantom import hedge_calibration, simulate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", default="chexpert14")
    args = ap.parse_args(argv)
    for mode in ("bayes", "visibility"):
        g, err = hedge_calibration(simulate(args.n, vocab=args.vocab, seed=args.seed, hedge_calibration=mode))
        print(f"reader {mode}: {int(g['mentions'].sum())} hedged mentions; mean |p - P(present | cue)| = {err:.3f}")
        print("  p            " + " ".join(f"{p:5.2f}" for p in g.index))
        print("  P(present)   " + " ".join(f"{m:5.2f}" for m in g["present"]))
        print("  mentions     " + " ".join(f"{n:5d}" for n in g["mentions"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
