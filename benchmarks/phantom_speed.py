"""Phantom-world rendering speed: images/s per core (render + PNG encode), and simulation speed.

Usage: python benchmarks/phantom_speed.py [--n 300] [--size 256] [--vocab chexpert14]
Prints figures per CPU-second of this process (time.process_time), so a loaded machine still gives a
fair per-core figure; wall-clock figures are printed beside them.
"""

from __future__ import annotations

import argparse
import io
import time

from PIL import Image

from repgls.data.phantom import render_study, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--vocab", default="chexpert14")
    args = ap.parse_args()
    c0, w0 = time.process_time(), time.perf_counter()
    studies = simulate(args.n, vocab=args.vocab, seed=0)
    sim = (time.process_time() - c0, time.perf_counter() - w0)
    render_study(studies[0], args.size)  # warm caches (grids, marking bank)
    c0, w0 = time.process_time(), time.perf_counter()
    for s in studies:
        render_study(s, args.size)
    ren = (time.process_time() - c0, time.perf_counter() - w0)
    c0, w0 = time.process_time(), time.perf_counter()
    nbytes = 0
    for s in studies:
        img, _ = render_study(s, args.size)
        buf = io.BytesIO()
        Image.fromarray(img, "L").save(buf, format="PNG", compress_level=1)
        nbytes += buf.tell()
    both = (time.process_time() - c0, time.perf_counter() - w0)
    print(f"phantom speed (vocab {args.vocab}, {args.size} px, n={args.n}, 1 process; per CPU-second | wall):")
    print(f"  simulate (world + reports): {args.n / sim[0]:7.0f} | {args.n / sim[1]:7.0f} studies/s")
    print(f"  render only               : {args.n / ren[0]:7.0f} | {args.n / ren[1]:7.0f} images/s per core")
    print(f"  render + PNG encode       : {args.n / both[0]:7.0f} | {args.n / both[1]:7.0f} images/s per core"
          f"  ({nbytes / args.n / 1024:.1f} KiB/image)")


if __name__ == "__main__":
    main()
