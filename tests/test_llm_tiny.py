"""LLM miner end to end with a real (tiny, random) Qwen3 model: in process, and over HTTP via `repgls serve`.

The model is built here from a Qwen3Config (hidden 64, 2 layers) with a byte-level BPE tokenizer trained
on the fly: no network, no download. Its answers are meaningless but must be schema-valid, and the HTTP
path must survive a server crash: the rerun resumes from the SQLite cache and loses no report.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from repgls.mining import llm
from repgls.mining.schema import validate_findings
from repgls.vocab import load_vocab

VOCAB = load_vocab("chexpert14")
# Short answers keep the random model fast: at most 2 findings, strings of <= 24 characters.
OPTS = {"max_findings": 2, "max_string": 24, "max_tokens": 1024}
REPORTS = [
    ("s1", "Small left pleural effusion. No pneumothorax."),
    ("s2", "Possible pneumonia in the right lower lobe; atelectasis cannot be excluded."),
    ("s3", "Heart size is normal. Lungs are clear."),
    ("s4", "Moderate pulmonary edema, worse than prior. Pleural effusion likely."),
    ("s5", "Support devices in place. No acute cardiopulmonary process."),
    ("s6", "Cardiomegaly. Mild interstitial edema, improving."),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from repgls.mining.llm_tiny import build_tiny_model

    torch.set_num_threads(1)  # a 64-wide model: one thread is fastest, and the machine is shared
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3-tiny", seed=6)


@pytest.fixture(scope="module")
def in_process_table(tiny_model):
    return llm.mine_llm(REPORTS, VOCAB, model=str(tiny_model), base_url=None, **OPTS)


def test_tiny_model_is_a_qwen3_chat_model(tiny_model) -> None:
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tiny_model)
    assert cfg.model_type == "qwen3" and cfg.hidden_size == 64 and cfg.num_hidden_layers == 2
    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=False)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_in_process_constrained_decoding_gives_valid_findings(in_process_table, tiny_model) -> None:
    table = in_process_table
    info = llm.run_info(table)
    assert info["n_failed"] == 0 and info["n_reports"] == len(REPORTS)
    validate_findings(table)
    assert table.num_rows > 0  # this seed's random model lists findings under the shipped prompt (an edit of the
    # prompt changes what a random model says: pick another seed of build_tiny_model if this fails after one)
    assert set(table.column("finding").to_pylist()) <= set(VOCAB.classes)
    assert set(table.column("source").to_pylist()) == {f"llm:{tiny_model}"}
    assert set(table.column("lexicon_version").to_pylist()) == {llm.lexicon_version(llm.load_prompt(), VOCAB)}
    texts = dict(REPORTS)
    for r in table.to_pylist():
        if r["start"] >= 0:  # spans point into the original text
            assert r["sentence"] and r["sentence"] in texts[r["study_id"]]
            assert r["end"] > r["start"]


def test_raw_generation_is_schema_valid_json(tiny_model) -> None:
    from repgls.mining.llm_backends import TransformersBackend

    be = TransformersBackend(str(tiny_model))
    prompt = llm.load_prompt()
    schema = llm.build_schema(VOCAB, prompt, max_string=24, max_findings=2)
    comp = be.generate(llm.build_messages(prompt, VOCAB, REPORTS[0][1]), schema, max_tokens=1024)
    data = llm.validate_answer(comp.content, schema, comp.finish_reason)
    assert isinstance(data["findings"], list)
    assert comp.completion_tokens > 0 and comp.prompt_tokens > 0


@pytest.fixture(scope="module")
def servers(tiny_model):
    """Two `repgls serve` subprocesses started together on free loopback ports: a normal one (API key
    "secret") and one that crashes after 2 completions (--max-requests 2)."""
    from repgls.mining.server import spawn_server, wait_ready

    started = [spawn_server(tiny_model, None, "--served-model-name", "tiny", "--api-key", "secret"),
               spawn_server(tiny_model, None, "--served-model-name", "tiny", "--max-requests", "2")]
    procs, ports = [p for p, _ in started], [port for _, port in started]
    try:
        for proc, port in started:
            wait_ready(proc, port)
        yield ports, procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(servers) -> int:
    return servers[0][0]


def test_http_server_crash_then_resume_loses_nothing(in_process_table, servers, tmp_path) -> None:
    cache = tmp_path / "cache.sqlite"
    (server, crashing_port), (_, crashing) = servers
    url = f"http://127.0.0.1:{crashing_port}/v1"
    # 1) the server dies abruptly after 2 completions, mid-run
    first = llm.mine_llm(REPORTS, VOCAB, model="tiny", base_url=url, cache=cache, concurrency=2,
                         max_retries=2, backoff=0.05, **OPTS)
    assert crashing.wait(timeout=30) == 3
    info1 = llm.run_info(first)
    assert info1["n_failed"] == len(REPORTS) - 2
    assert all("backend:" in f["error"] for f in info1["failures"])
    from repgls.mining.llm_cache import LLMCache

    with LLMCache(cache) as c:
        assert len(c) == 2
    # 2) another server (same model); the rerun asks only for the missing reports
    url = f"http://127.0.0.1:{server}/v1"
    before = httpx.get(f"http://127.0.0.1:{server}/health").json()["requests_served"]
    second = llm.mine_llm(REPORTS, VOCAB, model="tiny", base_url=url, api_key="secret", cache=cache,
                          concurrency=4, **OPTS)
    served = httpx.get(f"http://127.0.0.1:{server}/health").json()["requests_served"] - before
    info2 = llm.run_info(second)
    assert info2["n_failed"] == 0 and info2["n_cached"] == 2 and served == len(REPORTS) - 2
    # every report answered, and the answers equal the in-process run (same model, greedy decoding)
    drop = ["source"]
    assert second.drop_columns(drop).replace_schema_metadata(None).equals(
        in_process_table.drop_columns(drop).replace_schema_metadata(None))


def test_server_rejects_bad_requests(server) -> None:
    base = f"http://127.0.0.1:{server}/v1"
    h = {"Authorization": "Bearer secret"}
    assert httpx.get(f"{base}/models").status_code == 401
    assert [m["id"] for m in httpx.get(f"{base}/models", headers=h).json()["data"]] == ["tiny"]
    r = httpx.post(f"{base}/chat/completions", headers=h, json={"messages": []})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = httpx.post(f"{base}/chat/completions", headers=h, content=b"{not json")
    assert r.status_code == 400
    r = httpx.post(f"{base}/chat/completions", headers=h, json={
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64, "temperature": 0,
        "response_format": {"type": "json_object"}})
    assert r.status_code == 200
    body = r.json()
    assert body["usage"]["completion_tokens"] > 0


def test_server_json_object_is_an_object_and_unknown_models_are_404(server) -> None:
    """Issue #13 row 8: JSON mode yields an object (never a top-level array); a model the server does not serve
    is a 404 ``model_not_found``, as OpenAI-compatible servers answer; the served name (or none) is accepted."""
    base = f"http://127.0.0.1:{server}/v1"
    h = {"Authorization": "Bearer secret"}
    msg = [{"role": "user", "content": "Give a JSON answer."}]
    r = httpx.post(f"{base}/chat/completions", headers=h, json={
        "model": "gpt-4o", "messages": msg, "max_tokens": 8})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and "gpt-4o" in r.json()["error"]["message"]
    for seed in range(3):  # the random model's first token, free, is as often "[" as "{"
        r = httpx.post(f"{base}/chat/completions", headers=h, json={
            "model": "tiny", "messages": msg, "max_tokens": 48, "temperature": 1.0, "seed": seed,
            "response_format": {"type": "json_object"}})
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["message"]["content"].lstrip().startswith("{"), choice["message"]["content"][:20]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["message"]["content"]), dict)
