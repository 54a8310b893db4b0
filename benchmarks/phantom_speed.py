"""Phantom-world rendering speed: images/s per core (render + PNG encode), and simulation speed.

Usage: python benchmarks/phantom_speed.py [--n 300] [--size 256] [--vocab chexpert14] [--repeat 3]
Prints figures per CPU-second of this process (time.process_time), so a loaded machine still gives a
fair per-core figure; wall-clock figures are printed beside them, and the load average. Each timed loop
runs ``--repeat`` times, the loops taking turns, and the best run is kept (other processes only ever slow
a run down).

PNG encoders timed: ``encode_png`` (repgls.data.phantom.render: Up filter + Huffman-only zlib), the same
uncompressed (``compress=False``) and Pillow ``save(format="PNG", compress_level=1)`` (what
``make_phantom`` writes as of this version).
"""

from __future__ import annotations

import argparse
import io
import os
import time

from PIL import Image

from repgls.data.phantom import render_study, simulate
from repgls.data.phantom.render import encode_png


def _best(fns: dict, repeat: int) -> dict:
    """{name: (CPU seconds, wall seconds)} of the fastest of ``repeat`` runs of each function (by CPU time).

    The functions take turns (round-robin), so a slow spell of a shared machine hits them all alike."""
    runs: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            runs[k].append((time.process_time() - c0, time.perf_counter() - w0))
    return {k: min(v) for k, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--vocab", default="chexpert14")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    c0, w0 = time.process_time(), time.perf_counter()
    studies = simulate(args.n, vocab=args.vocab, seed=0)
    sim = (time.process_time() - c0, time.perf_counter() - w0)
    render_study(studies[0], args.size)  # warm caches (grids, marking bank, noise table)
    nbytes = {"fast": 0, "stored": 0, "pil": 0}

    def fast() -> None:
        nbytes["fast"] = sum(len(encode_png(render_study(s, args.size)[0])) for s in studies)

    def stored() -> None:
        nbytes["stored"] = sum(len(encode_png(render_study(s, args.size)[0], compress=False)) for s in studies)

    def pil() -> None:
        n = 0
        for s in studies:
            buf = io.BytesIO()
            Image.fromarray(render_study(s, args.size)[0], "L").save(buf, format="PNG", compress_level=1)
            n += buf.tell()
        nbytes["pil"] = n

    def render_only() -> None:
        for s in studies:
            render_study(s, args.size)

    t = _best({"render": render_only, "fast": fast, "stored": stored, "pil": pil}, args.repeat)
    ren, both, both_stored, both_pil = t["render"], t["fast"], t["stored"], t["pil"]
    n = args.n
    print(f"phantom speed (vocab {args.vocab}, {args.size} px, n={n}, 1 process, best of {args.repeat}; "
          f"per CPU-second | wall; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}):")
    print(f"  simulate (world + reports)       : {n / sim[0]:7.0f} | {n / sim[1]:7.0f} studies/s")
    print(f"  render only                      : {n / ren[0]:7.0f} | {n / ren[1]:7.0f} images/s per core")
    print(f"  render + PNG (encode_png)        : {n / both[0]:7.0f} | {n / both[1]:7.0f} images/s per core"
          f"  ({nbytes['fast'] / n / 1024:.1f} KiB/image)")
    print(f"  render + PNG (stored, level 0)   : {n / both_stored[0]:7.0f} | {n / both_stored[1]:7.0f} images/s per core"
          f"  ({nbytes['stored'] / n / 1024:.1f} KiB/image)")
    print(f"  render + PNG (Pillow, level 1)   : {n / both_pil[0]:7.0f} | {n / both_pil[1]:7.0f} images/s per core"
          f"  ({nbytes['pil'] / n / 1024:.1f} KiB/image)")


if __name__ == "__main__":
    main()
