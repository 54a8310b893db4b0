"""Rule-miner speed: reports/s on one core, scaling with --workers 1 and 2, and peak RSS of a streamed CLI run.

1. In-process, one core: the Open-i dev reports (findings + impression) replicated to ~20,000 reports when
   ../shared/data/openi-dev is present, else generated Open-i-like text (same phrases, random mix).
2. ``mine_to_file`` with workers 1 and 2 on the same input (CSV file), with the CPU seconds of the parent
   (read, dispatch, write) and of the worker processes (mine): their ratio is how many workers the parent can
   feed, i.e. how far the scaling stays linear on a machine with that many free cores.
3. Peak RSS of ``repgls mine`` (a child process) on a generated 250,000-report CSV streamed to Parquet.

Figures depend on machine load: report them as provisional. Usage:
    .venv/bin/python benchmarks/mine_speed.py [--n 20000] [--big 250000] [--skip-big]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPENI = Path(os.environ.get("REPGLS_SHARED_DATA", REPO.parent / "shared" / "data")) / "openi-dev"

_SENTENCES = [
    "The heart size is normal.", "Heart size is mildly enlarged.", "The cardiomediastinal silhouette is within "
    "normal limits.", "No focal consolidation, pleural effusion, or pneumothorax.", "Lungs are clear.",
    "There is a small left pleural effusion.", "Mild bibasilar atelectasis.", "Stable mild cardiomegaly.",
    "Left lower lobe opacity may represent atelectasis or pneumonia.", "Pneumonia cannot be excluded.",
    "No acute cardiopulmonary abnormality.", "Degenerative changes of the thoracic spine.",
    "Calcified granuloma in the right upper lobe.", "Interval increase in the right pleural effusion.",
    "No pneumothorax. Right PICC line tip in the SVC.", "1. No acute disease. 2. Stable XXXX nodule.",
    "Hyperexpanded lungs consistent with emphysema.", "Mild pulmonary edema, improved since prior.",
]


def generated_reports(n: int, seed: int = 0) -> list[str]:
    """Open-i-like reports: 3-7 typical sentences each (deterministic)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_SENTENCES) for _ in range(rng.randint(3, 7))) for _ in range(n)]


def openi_like(n: int) -> tuple[list[str], str]:
    if (OPENI / "indiana_reports.dev.csv").is_file():
        import pandas as pd

        df = pd.read_csv(OPENI / "indiana_reports.dev.csv")
        base = ["\n\n".join(str(x) for x in (f, i) if isinstance(x, str) and x.strip())
                for f, i in zip(df["findings"], df["impression"], strict=False)]
        reps = (base * (n // len(base) + 1))[:n]
        return reps, f"Open-i dev reports ({len(base)}) replicated to {n}"
    return generated_reports(n), f"{n} generated Open-i-like reports"


def write_csv(path: Path, texts: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["study_id", "report"])
        for i, t in enumerate(texts):
            w.writerow([f"s{i}", t])


def _cpu(who: int) -> float:
    """User + system CPU seconds of this process (RUSAGE_SELF) or of its reaped children (RUSAGE_CHILDREN)."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--big", type=int, default=250000)
    ap.add_argument("--vocab", default="chexpert14")
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args(argv)

    from repgls.mining import mine_to_file
    from repgls.mining.rules import get_miner

    texts, desc = openi_like(args.n)
    miner = get_miner(args.vocab)
    miner.mine_rows("warm up")
    t0, c0 = time.perf_counter(), time.process_time()
    n_rows = sum(len(miner.mine_rows(t, str(i))) for i, t in enumerate(texts))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    print(f"[1] one core, in-process, vocab {args.vocab}: {desc}: {len(texts) / dt:,.0f} reports/s wall, "
          f"{len(texts) / dc:,.0f} reports per CPU-second ({n_rows} findings, {dt:.2f} s wall, {dc:.2f} s CPU; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)  [provisional]")

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "reports.csv"
        write_csv(src, texts)
        base = None
        for w in (1, 2):
            r0, c0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
            s = mine_to_file(src, Path(tmp) / f"w{w}.parquet", vocab=args.vocab, workers=w)
            parent, workers = _cpu(resource.RUSAGE_SELF) - r0, _cpu(resource.RUSAGE_CHILDREN) - c0
            base = base or s.reports_per_s
            line = (f"[2] mine_to_file CSV -> Parquet, --workers {w}: {s.reports_per_s:,.0f} reports/s "
                    f"(x{s.reports_per_s / base:.2f}; {s.findings} findings); CPU: parent {parent:.2f} s")
            if w > 1:
                # the parent reads, dispatches and writes; workers mine. Throughput grows linearly with workers
                # (given free cores) until the parent is busy all the time: at workers_cpu / parent_cpu workers.
                line += (f" ({1e6 * parent / s.reports:.0f} us/report), workers {workers:.2f} s "
                         f"({1e6 * workers / s.reports:.0f} us/report) -> linear up to ~{workers / parent:.0f} "
                         f"workers (parent-bound beyond); {os.cpu_count()} cores here")
            print(line)
        if not args.skip_big:
            big = Path(tmp) / "big.csv"
            write_csv(big, generated_reports(args.big, seed=1))
            out = Path(tmp) / "big.parquet"
            cmd = [sys.executable, "-m", "repgls.cli", "mine", str(big), "--out", str(out), "--vocab", args.vocab,
                   "--no-progress"]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            size_mb = big.stat().st_size / 2**20
            print(f"[3] repgls mine on {args.big:,} generated reports ({size_mb:.0f} MB CSV) -> Parquet: "
                  f"{dt:.1f} s wall, {args.big / dt:,.0f} reports/s incl. start-up, peak RSS {rss_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
