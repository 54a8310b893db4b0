"""LLM miner without a model: prompt, schema, validation, conversion rules, cache/resume, HTTP retries."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa
import pytest

from repgls.mining import llm
from repgls.mining.llm_backends import BackendError, Completion, OpenAIBackend
from repgls.mining.llm_cache import LLMCache, report_sha256
from repgls.mining.schema import FINDINGS_SCHEMA, validate_findings
from repgls.vocab import load_vocab

VOCAB = load_vocab("chexpert14")
PROMPT = llm.load_prompt()
SCHEMA = llm.build_schema(VOCAB, PROMPT)


def item(finding: str, status: str = "positive", certainty: str = "definite", **kw: str) -> dict[str, str]:
    base = {"finding": finding, "status": status, "certainty": certainty, "cue": "", "severity": "none",
            "severity_cue": "", "change": "none", "change_cue": "", "evidence": ""}
    base.update(kw)
    return base


class ScriptedBackend:
    """Answers from a function of the report text; counts calls (a test double for the engine logic)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls = 0

    async def chat(self, messages, schema, *, temperature=0.0, max_tokens=1024, seed=None) -> Completion:
        self.calls += 1
        text = messages[-1]["content"].split("Report:\n", 1)[1].rstrip("\n")
        return self.answer(text, self.calls)

    async def aclose(self) -> None:
        return None


def test_prompt_and_schema_follow_the_vocabulary() -> None:
    assert PROMPT.version
    msgs = llm.build_messages(PROMPT, VOCAB, "Mild edema.")
    for cls in VOCAB.classes:
        assert f"- {cls}" in msgs[0]["content"]
    assert msgs[1]["content"].rstrip().endswith("Mild edema.")
    props = SCHEMA["properties"]["findings"]["items"]["properties"]
    assert props["finding"]["enum"] == list(VOCAB.classes)
    assert props["certainty"]["enum"] == list(PROMPT.scale)
    assert SCHEMA["properties"]["findings"]["maxItems"] == len(VOCAB.classes)
    # the scale is monotone from definite to negated, as in rep-gls.md section 3.6
    ps = list(PROMPT.scale.values())
    assert ps == sorted(ps, reverse=True) and ps[0] == 1.0 and ps[-1] == 0.0


def test_prompt_scale_agrees_with_the_rule_miner_on_differentials() -> None:
    """Both miners make a differential member less certain than one modal hedge ("may be", "possible"), and the
    LLM's one alternative category lies between the rule miner's "versus" and "or" values."""
    from repgls.mining.lexicon import load_cues

    alt = load_cues().alt_connectors
    s = PROMPT.scale
    assert s["alternative"] < min(s["equivocal"], s["possible"])
    assert alt["versus"] <= s["alternative"] <= alt["or"]
    assert "versus" in PROMPT.scale_examples["alternative"] and "versus" not in PROMPT.scale_examples["equivocal"]


@pytest.mark.parametrize(
    ("content", "finish", "needle"),
    [
        ('{"findings": [', "stop", "not JSON"),
        ('{"findings": []}', "length", "truncated"),
        (json.dumps({"findings": [item("Dragon Lung")]}), "stop", "findings/0/finding"),
        (json.dumps({"findings": [{**item("Edema"), "extra": "x"}]}), "stop", "additionalProperties"),
        (json.dumps({"findings": [item("Edema", status="maybe")]}), "stop", "findings/0/status"),
    ],
)
def test_invalid_answers_are_rejected_without_echoing_text(content: str, finish: str, needle: str) -> None:
    with pytest.raises(llm.InvalidOutput) as exc:
        llm.validate_answer(content, SCHEMA, finish)
    assert needle in str(exc.value)
    assert "Dragon" not in str(exc.value)


def test_conversion_rules() -> None:
    text = "Heart size normal. Small left pleural effusion, improving. Pneumonia cannot be excluded.\nNo edema."
    answer = {"findings": [
        item("Pleural Effusion", severity="mild", severity_cue="small", change="improved", change_cue="improving",
             evidence="left pleural effusion"),
        item("Pneumonia", "uncertain", "cannot_exclude", cue="cannot be excluded", evidence="Pneumonia"),
        item("Edema", "negative", "negated", cue="No", evidence="no edema"),
        item("Cardiomegaly", "positive", "probable", cue="", evidence="not in the text"),
        # status/category contradictions: the status wins
        item("Atelectasis", "negative", "probable"),
        item("Fracture", "uncertain", "definite"),
    ]}
    rows = {r["finding"]: r for r in llm.answer_to_rows("s1", text, answer, PROMPT, VOCAB, "llm:m", "v")}
    eff = rows["Pleural Effusion"]
    assert text[eff["start"]:eff["end"]].lower() == "left pleural effusion"
    assert eff["sentence"] == "Small left pleural effusion, improving."
    assert eff["certainty"] == 1.0 and eff["typicality"] == "atypical"
    pn = rows["Pneumonia"]
    assert pn["certainty"] == PROMPT.scale["cannot_exclude"] and pn["typicality"] == "typical"
    assert pn["sentence"] == "Pneumonia cannot be excluded."
    ed = rows["Edema"]
    assert ed["certainty"] == 0.0 and ed["typicality"] == "" and ed["sentence"] == "No edema."
    cm = rows["Cardiomegaly"]  # evidence and cue absent, name absent: -1..-1
    assert (cm["start"], cm["end"], cm["sentence"]) == (-1, -1, "")
    assert cm["certainty"] == PROMPT.scale["probable"]
    assert rows["Atelectasis"]["certainty"] == 0.0
    assert rows["Fracture"]["certainty"] == 0.5
    # rows come in vocabulary order and form a valid findings table
    assert [r["finding"] for r in rows.values()] == [c for c in VOCAB.classes if c in rows]
    validate_findings(pa.Table.from_pylist(list(rows.values()), schema=FINDINGS_SCHEMA))


def test_duplicate_findings_are_merged() -> None:
    answer = {"findings": [
        item("Edema", "negative", "negated"),
        item("Edema", "uncertain", "possible"),
        item("Edema", "uncertain", "probable"),
    ]}
    (row,) = llm.answer_to_rows("s", "edema", answer, PROMPT, VOCAB, "llm:m", "v")
    assert row["status"] == "uncertain" and row["certainty"] == PROMPT.scale["probable"]
    assert row["n_mentions"] == 3


def test_typicality_words_follow_pu_rm() -> None:
    for sev_cue in ("trace", "tiny", "mild-to-moderate", "minimal"):
        assert llm.typicality(PROMPT, "positive", "moderate", sev_cue, "none", "") == "atypical"
    for ch_cue in ("decreased", "interval improvement", "clearing"):
        assert llm.typicality(PROMPT, "uncertain", "moderate", "", "none", ch_cue) == "atypical"
    assert llm.typicality(PROMPT, "positive", "severe", "large", "worsened", "increased") == "typical"
    assert llm.typicality(PROMPT, "negative", "mild", "small", "none", "") == ""


def _good(text: str, n: int) -> Completion:
    finding = "Edema" if "edema" in text.lower() else "Pneumothorax"
    return Completion(json.dumps({"findings": [item(finding, "positive", "definite", evidence=finding.lower())]}))


def test_cache_resume_dedup_and_failures(tmp_path) -> None:
    reports = [("a", "Edema."), ("b", "Pneumothorax."), ("c", "Edema."), ("d", "Pneumothorax, large.")]
    cache = tmp_path / "c.sqlite"
    be = ScriptedBackend(_good)
    t1 = llm.mine_llm(reports, VOCAB, model="m", cache=cache, backend=be)
    assert be.calls == 3  # "Edema." asked once for a and c
    info = llm.run_info(t1)
    assert info["n_failed"] == 0 and info["n_requested"] == 3
    assert t1.column("study_id").to_pylist() == ["a", "b", "c", "d"]
    assert set(t1.column("source").to_pylist()) == {"llm:m"}
    with LLMCache(cache) as c:
        assert len(c) == 3
        assert set(c.get_many([report_sha256("Edema.")], llm.lexicon_version(PROMPT, VOCAB), "m"))
    assert sqlite3.connect(cache).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # rerun: nothing asked, same table
    be2 = ScriptedBackend(_good)
    t2 = llm.mine_llm(reports, VOCAB, model="m", cache=cache, backend=be2)
    assert be2.calls == 0 and t2.equals(t1)
    # another model name is another cache key
    be3 = ScriptedBackend(_good)
    llm.mine_llm(reports[:1], VOCAB, model="other", cache=cache, backend=be3)
    assert be3.calls == 1


def test_invalid_output_is_retried_then_recorded(tmp_path) -> None:
    def flaky(text: str, n: int) -> Completion:
        if "bad" in text:
            return Completion('{"findings": [{"finding": "Nope"')
        if n == 1:  # first answer for the good report is invalid, the retry is fine
            return Completion('{"findings": [{"finding": "Unknown Thing"}]}')
        return _good(text, n)

    be = ScriptedBackend(flaky)
    fail_csv = tmp_path / "failures.csv"
    cache = tmp_path / "c.sqlite"
    table = llm.mine_llm([("ok", "Edema."), ("bad", "bad report")], VOCAB, model="m", backend=be,
                         invalid_retries=2, failures_path=fail_csv, cache=cache, concurrency=1)
    info = llm.run_info(table)
    assert info["n_failed"] == 1
    (f,) = info["failures"]
    assert f["study_id"] == "bad" and f["attempts"] == 3 and "not JSON" in f["error"]
    assert "bad report" not in f["error"]
    assert table.column("study_id").to_pylist() == ["ok"]
    assert "bad" in fail_csv.read_text()
    with LLMCache(cache) as c:
        assert len(c) == 1  # the failure is not cached, so a rerun retries it


def test_bad_input_is_named() -> None:
    be = ScriptedBackend(_good)
    with pytest.raises(ValueError, match="row 1: expected a"):
        llm.mine_llm([("a", "x"), ("b",)], VOCAB, model="m", backend=be)
    with pytest.raises(ValueError, match="row 0: empty study_id"):
        llm.mine_llm([("", "x")], VOCAB, model="m", backend=be)
    with pytest.raises(ValueError, match=r"LLM server not usable .*gave up"):
        llm.mine_llm([("a", "x")], VOCAB, model="m", base_url="http://127.0.0.1:9/v1", max_retries=1,
                     backoff=0.01)
    table = llm.mine_llm([("a", "  \n"), ("b", "Edema.")], VOCAB, model="m", backend=be)
    assert be.calls == 1 and table.column("study_id").to_pylist() == ["b"]  # blank: no request, no row
    assert llm.run_info(table)["n_failed"] == 0
    with pytest.raises(ValueError, match=r"row 0 .*not str"):
        llm.mine_llm([("a", None)], VOCAB, model="m", backend=be)
    with pytest.raises(ValueError, match="not found"):
        llm.load_prompt("/nonexistent/prompt.yaml")


# ------------------------------------------------------------------ HTTP client against a loopback server
class _Flaky(BaseHTTPRequestHandler):
    """503, then 429, then a valid chat completion; records the request bodies."""

    protocol_version = "HTTP/1.1"
    bodies: list[dict[str, Any]] = []  # noqa: RUF012
    n = 0

    def log_message(self, *a: Any) -> None:
        pass

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        type(self).n += 1
        if self.headers.get("Authorization") != "Bearer k":
            self._send(401, {"error": {"message": "bad key"}})
        elif type(self).n == 1:
            self._send(503, {"error": {"message": "busy"}})
        elif type(self).n == 2:
            self._send(429, {"error": {"message": "slow down"}})
        else:
            content = json.dumps({"findings": [item("Edema")]})
            self._send(200, {"choices": [{"message": {"content": content}, "finish_reason": "stop"}]})


@pytest.fixture
def flaky_server():
    _Flaky.bodies, _Flaky.n = [], 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_http_backend_retries_5xx_and_429(flaky_server) -> None:
    table = llm.mine_llm([("s", "Edema.")], VOCAB, model="m", base_url=flaky_server, api_key="k",
                         backoff=0.01, max_retries=3, check_server=False)
    assert table.column("finding").to_pylist() == ["Edema"]
    assert _Flaky.n == 3
    body = _Flaky.bodies[-1]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["findings"]["items"]["properties"][
        "finding"]["enum"] == list(VOCAB.classes)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["temperature"] == 0.0


def test_http_backend_gives_up_and_4xx_fails_fast(flaky_server) -> None:
    import asyncio

    async def go() -> None:
        be = OpenAIBackend(flaky_server, "m", api_key="wrong", backoff=0.01, max_retries=3)
        try:
            with pytest.raises(BackendError, match="HTTP 401"):
                await be.chat([{"role": "user", "content": "x"}], SCHEMA)
        finally:
            await be.aclose()
        dead = OpenAIBackend("http://127.0.0.1:9/v1", "m", backoff=0.01, max_retries=2)
        try:
            with pytest.raises(BackendError, match="gave up after 3 tries"):
                await dead.models()
        finally:
            await dead.aclose()

    asyncio.run(go())
    assert _Flaky.n == 1  # 401 is not retried


def test_works_inside_a_running_event_loop(tmp_path) -> None:
    """Notebooks run an event loop: mine_llm then runs its own loop in a worker thread."""
    import asyncio

    async def inside() -> pa.Table:
        return llm.mine_llm([("a", "Edema.")], VOCAB, model="m", backend=ScriptedBackend(_good),
                            cache=tmp_path / "c.sqlite")

    table = asyncio.run(inside())
    assert table.column("finding").to_pylist() == ["Edema"]


def test_prompt_lists_synonyms_and_spans_fall_back_to_them() -> None:
    entry = next(e for e in VOCAB.entries if e["name"] == "Cardiomegaly")
    syn = [w for w in entry.get("synonyms", []) if "*" not in w]
    if not syn:
        pytest.skip("vocabulary has no synonyms for Cardiomegaly")
    assert syn[0] in llm.system_message(PROMPT, VOCAB)
    text = f"Stable {syn[-1]}."
    (row,) = llm.answer_to_rows("s", text, {"findings": [item("Cardiomegaly", evidence="not there")]},
                                PROMPT, VOCAB, "llm:m", "v")
    assert text[row["start"]:row["end"]].lower() == syn[-1].lower()
