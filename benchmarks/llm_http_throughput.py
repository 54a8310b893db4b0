"""Requests in flight vs reports/s of the LLM miner's HTTP path against a loopback `repgls serve`.

What it measures: the client/server path (httpx async client, semaphore, JSON-schema request, server
parsing, xgrammar-constrained generation, validation, conversion) with a TINY RANDOM Qwen3 model
(hidden 64, 2 layers) on CPU. It says nothing about Qwen3-4B's speed or quality: `repgls serve` runs one
generation at a time, so reports/s stays flat with concurrency here; with vLLM on a GPU, in-flight
requests are batched and concurrency is what buys throughput. In-process GPU reports/s: not measured
(no GPU on the development machine).

    .venv/bin/python benchmarks/llm_http_throughput.py [--reports 24] [--levels 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=24, help="reports per level (distinct texts, no cache)")
    ap.add_argument("--levels", default="1,2,4,8,16", help="requests in flight to try")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    args = ap.parse_args()

    import torch

    from repgls.mining.llm import mine_llm, run_info
    from repgls.mining.llm_tiny import build_tiny_model
    from repgls.mining.server import spawn_server, wait_ready
    from repgls.vocab import load_vocab

    torch.set_num_threads(args.threads)
    vocab = load_vocab("chexpert14")
    opts = {"max_findings": 2, "max_string": 24, "max_tokens": 1024}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "qwen3-tiny", seed=2)
        proc, port = spawn_server(model, None, "--served-model-name", "tiny", threads=args.threads)
        try:
            wait_ready(proc, port)
            url = f"http://127.0.0.1:{port}/v1"
            mine_llm([("warm", "Warm-up report.")], vocab, model="tiny", base_url=url, **opts)
            print(f"tiny random Qwen3 (hidden 64, 2 layers), repgls serve on loopback, {args.reports} reports "
                  f"per level, server threads={args.threads}")
            print(f"{'in flight':>9}  {'reports/s':>9}  {'s/report':>8}  {'failed':>6}")
            for level in [int(x) for x in args.levels.split(",")]:
                reports = [(f"c{level}-{i}", f"Run {level}, report {i}: small left pleural effusion, likely "
                            f"atelectasis. No pneumothorax.") for i in range(args.reports)]
                t0 = time.perf_counter()
                table = mine_llm(reports, vocab, model="tiny", base_url=url, concurrency=level, **opts)
                dt = time.perf_counter() - t0
                print(f"{level:>9}  {len(reports) / dt:>9.2f}  {dt / len(reports):>8.3f}  "
                      f"{run_info(table)['n_failed']:>6}")
            from repgls.mining.llm_backends import TransformersBackend

            backend = TransformersBackend(str(model))  # loaded before timing, like the server's model
            mine_llm([("warm", "Warm-up report.")], vocab, model="tiny", backend=backend, **opts)
            reports = [(f"ip-{i}", f"In-process report {i}: small left pleural effusion, likely "
                        f"atelectasis. No pneumothorax.") for i in range(args.reports)]
            t0 = time.perf_counter()
            mine_llm(reports, vocab, model="tiny", backend=backend, **opts)
            dt = time.perf_counter() - t0
            print(f"in-process, same model, no HTTP: {len(reports) / dt:.2f} reports/s")
        finally:
            proc.kill()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
