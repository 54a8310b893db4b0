"""Ray Data path of the LLM miner: Parquet in -> map_batches through the HTTP engine -> Parquet out.

A local Ray (1 CPU) and a `repgls serve` subprocess with the tiny random Qwen3 model on loopback.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repgls.mining import llm
from repgls.mining.llm_cache import LLMCache
from repgls.mining.schema import validate_findings
from repgls.vocab import load_vocab

pytestmark = pytest.mark.slow

OPTS = {"max_findings": 2, "max_string": 24, "max_tokens": 1024}


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    from repgls.mining.llm_tiny import build_tiny_model
    from repgls.mining.server import spawn_server, wait_ready

    model = build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3-tiny", seed=6)
    proc, port = spawn_server(model, None, "--served-model-name", "tiny")
    try:
        wait_ready(proc, port)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_ray_mine_matches_mine_llm(served_model, tmp_path) -> None:
    import ray

    url = served_model
    reports = [(f"r{i}", f"Report {i}: {'mild' if i % 2 else 'large'} left pleural effusion. No pneumothorax.")
               for i in range(6)]
    src = tmp_path / "reports.parquet"
    pq.write_table(pa.table({"study_id": [r[0] for r in reports], "text": [r[1] for r in reports]}), src)
    out = tmp_path / "findings"
    cache = tmp_path / "cache.sqlite"
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        summary = llm.ray_mine(src, out, vocab="chexpert14", model="tiny", base_url=url, cache=cache,
                               batch_size=3, num_actors=1, concurrency=2, **OPTS)
    finally:
        ray.shutdown()
    assert summary["n_reports"] == 6 and summary["n_failed"] == 0
    got = validate_findings(pq.read_table(out))
    assert got.num_rows == summary["n_rows"] > 0
    with LLMCache(cache) as c:
        assert len(c) == 6
    # the same rows as the plain call (served from the cache the Ray run filled)
    ref = llm.mine_llm(reports, load_vocab("chexpert14"), model="tiny", base_url=url, cache=cache, **OPTS)
    assert llm.run_info(ref)["n_cached"] == 6
    key = ["study_id", "finding"]
    assert got.sort_by([(k, "ascending") for k in key]).replace_schema_metadata(None).equals(
        ref.sort_by([(k, "ascending") for k in key]).replace_schema_metadata(None))
