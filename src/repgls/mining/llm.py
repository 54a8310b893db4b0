"""LLM miner: report text -> findings rows (``FINDINGS_SCHEMA``) by a chat LLM with JSON-schema output.

Per report the model is asked, for each finding of the vocabulary that the report mentions: status,
certainty category, hedge cue as written, severity (+ words), change (+ words) and the evidence phrase,
as JSON constrained by a JSON schema whose finding names are an enum of the vocabulary. The prompt is a
versioned data file (``mining/prompts/findings_v1.yaml``, ``PROMPT_VERSION``).

Conversion to findings rows (documented rules):

* certainty = the category's probability on the scale of the prompt file (rep-gls.md section 3.6).
  When the model's status contradicts its category, the status wins: ``negative`` with p >= 0.5 -> 0.0,
  ``positive`` with p < 0.5 -> 1.0, ``uncertain`` with p in {0, 1} -> 0.5.
* start/end: the evidence phrase located in the original text (first case-insensitive occurrence), else
  the cue, else the finding name, else its vocabulary synonyms; -1..-1 (and an empty sentence) when none
  is found verbatim.
* typicality (PU-RM): ``atypical`` when the severity / change words or levels say small or improving
  (word lists in the prompt file), ``typical`` otherwise; ``""`` for negatives.
* the same finding listed twice is merged: positive beats uncertain beats negative, then the most
  certain mention is kept (highest p; lowest p among negatives); ``n_mentions`` counts them.
* source = ``llm:<model>``; lexicon_version = ``<PROMPT_VERSION>/<vocab name>-<vocab version>`` (also the
  cache's prompt version, since the vocabulary is part of the prompt).

Invalid output (bad JSON, schema violation, truncated answer) is retried ``invalid_retries`` times (the
retries sample at ``retry_temperature`` with seeds 1, 2, ...); a report that still fails is never dropped
silently: it is listed in the table's metadata (``repgls_llm`` JSON: counts and ``failures``), counted in a
logged warning, and written to ``failures_path`` when given. Failures are not cached, so a rerun retries
them. Error messages never contain report text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import json
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from repgls.mining.llm_cache import LLMCache, report_sha256
from repgls.mining.schema import CHANGES, FINDINGS_SCHEMA, SEVERITIES, STATUSES

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "findings_v1.yaml"
METADATA_KEY = b"repgls_llm"
_STATUS_RANK = {"positive": 2, "uncertain": 1, "negative": 0}


class InvalidOutput(ValueError):
    """The model's answer is not valid JSON for the schema (message holds no report text)."""


# ------------------------------------------------------------------------------------------ prompt
@dataclass(frozen=True)
class Prompt:
    """A prompt template file: version, certainty scale, typicality words, system/user templates."""

    version: str
    system: str
    user: str
    scale: dict[str, float]
    scale_examples: dict[str, str]
    atypical_severity_words: tuple[str, ...]
    atypical_change_words: tuple[str, ...]
    atypical_severity_levels: tuple[str, ...]
    atypical_change_levels: tuple[str, ...]
    path: str = field(default="", compare=False)


@lru_cache(maxsize=8)
def load_prompt(path: str | None = None) -> Prompt:
    """Load a prompt template (the packaged default, or a user's YAML file).

    Raises:
        ValueError: naming the file and the missing or bad key.
    """
    if path is None:
        src = resources.files("repgls.mining").joinpath("prompts", DEFAULT_PROMPT)
        where, data = f"prompt {DEFAULT_PROMPT}", yaml.safe_load(src.read_text(encoding="utf-8"))
    else:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"prompt file {p} not found")
        where, data = str(p), yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{where}: not a YAML mapping")
    for key in ("PROMPT_VERSION", "certainty_scale", "system", "user"):
        if key not in data:
            raise ValueError(f"{where}: missing key {key!r}")
    scale, examples = {}, {}
    for name, entry in data["certainty_scale"].items():
        p_val = float(entry["p"]) if isinstance(entry, dict) else float(entry)
        if not 0.0 <= p_val <= 1.0:
            raise ValueError(f"{where}: certainty_scale.{name}: p={p_val} is not in [0, 1]")
        scale[str(name)] = p_val
        examples[str(name)] = str(entry.get("examples", "")) if isinstance(entry, dict) else ""
    if "{report}" not in data["user"]:
        raise ValueError(f"{where}: the user template has no {{report}} field")

    def words(key: str) -> tuple[str, ...]:
        return tuple(str(w).lower() for w in data.get(key, []))

    return Prompt(
        version=str(data["PROMPT_VERSION"]),
        system=str(data["system"]),
        user=str(data["user"]),
        scale=scale,
        scale_examples=examples,
        atypical_severity_words=words("atypical_severity_words"),
        atypical_change_words=words("atypical_change_words"),
        atypical_severity_levels=words("atypical_severity_levels"),
        atypical_change_levels=words("atypical_change_levels"),
        path=where,
    )


def lexicon_version(prompt: Prompt, vocab: Any) -> str:
    """The version string stored in ``lexicon_version`` and used as the cache's prompt version."""
    return f"{prompt.version}/{vocab.name}-{vocab.version}"


def _synonyms(vocab: Any, cls: str) -> list[str]:
    """The vocabulary's plain synonyms of a class (wildcard patterns left out)."""
    for e in getattr(vocab, "entries", ()):
        if isinstance(e, dict) and str(e.get("name")) == cls:
            return [str(w) for w in e.get("synonyms") or [] if "*" not in str(w)]
    return []


def system_message(prompt: Prompt, vocab: Any) -> str:
    """The system message: the template filled with the vocabulary and the certainty categories."""
    lines = []
    for c in vocab.classes:
        syn = _synonyms(vocab, c)[:5]
        lines.append(f"  - {c}" + (f" (e.g. {', '.join(syn)})" if syn else ""))
    findings = "\n".join(lines)
    cats = "\n".join(f"    - {k}: {v}" if v else f"    - {k}" for k, v in prompt.scale_examples.items())
    return prompt.system.replace("{findings}", findings).replace("{certainty_categories}", cats)


def build_messages(prompt: Prompt, vocab: Any, text: str) -> list[dict[str, str]]:
    """Chat messages for one report."""
    return [
        {"role": "system", "content": system_message(prompt, vocab)},
        {"role": "user", "content": prompt.user.replace("{report}", text)},
    ]


def build_schema(vocab: Any, prompt: Prompt, max_string: int = 80, max_findings: int | None = None) -> dict[str, Any]:
    """JSON schema of the answer: ``{"findings": [{finding (enum of the vocabulary), status, ...}]}``.

    String fields are capped at ``max_string`` characters and the list at one item per class, so
    constrained decoding always terminates.
    """
    text = {"type": "string", "maxLength": int(max_string)}
    item = {
        "type": "object",
        "properties": {
            "finding": {"type": "string", "enum": list(vocab.classes)},
            "status": {"type": "string", "enum": list(STATUSES)},
            "certainty": {"type": "string", "enum": list(prompt.scale)},
            "cue": text,
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "severity_cue": text,
            "change": {"type": "string", "enum": list(CHANGES)},
            "change_cue": text,
            "evidence": text,
        },
        "required": ["finding", "status", "certainty", "cue", "severity", "severity_cue", "change",
                     "change_cue", "evidence"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "findings": {"type": "array", "items": item, "maxItems": int(max_findings or len(vocab.classes))}
        },
        "required": ["findings"],
        "additionalProperties": False,
    }


def validate_answer(content: str, schema: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    """Parse and check one answer against the schema.

    Raises:
        InvalidOutput: truncated, not JSON, or a schema violation (the path and rule, never the text).
    """
    import jsonschema

    if finish_reason == "length":
        raise InvalidOutput("answer truncated (max_tokens reached)")
    try:
        data = json.loads(content)
    except json.JSONDecodeError as e:
        raise InvalidOutput(f"not JSON ({e.msg} at char {e.pos})") from None
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        raise InvalidOutput(f"schema violation at {where}: '{e.validator}' rule failed")
    return data


# -------------------------------------------------------------------------------------- conversion
_SENT_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence of ``text`` around [start, end) (split on . ! ? followed by blanks, and newlines)."""
    s0 = 0
    for m in _SENT_END.finditer(text):
        if m.end() <= start:
            s0 = m.end()
        elif m.start() >= end:
            return text[s0 : m.start()].strip()
    return text[s0:].strip()


def locate(text: str, *phrases: str) -> tuple[int, int]:
    """Span of the first phrase found (case-insensitive) in ``text``; (-1, -1) when none is."""
    low = text.lower()
    for ph in phrases:
        ph = (ph or "").strip().lower()
        if ph:
            i = low.find(ph)
            if i >= 0:
                return i, i + len(ph)
    return -1, -1


def _has_word(phrase: str, words: tuple[str, ...]) -> bool:
    tokens = set(re.findall(r"[a-z]+(?:-[a-z]+)*", phrase.lower()))
    return any(w in tokens or (" " in w and w in phrase.lower()) for w in words)


def typicality(prompt: Prompt, status: str, severity: str, severity_cue: str, change: str, change_cue: str) -> str:
    """PU-RM Table 1: atypical for small / improving findings, typical otherwise; "" for negatives."""
    if status not in ("positive", "uncertain"):
        return ""
    atypical = (
        severity in prompt.atypical_severity_levels
        or change in prompt.atypical_change_levels
        or _has_word(severity_cue, prompt.atypical_severity_words)
        or _has_word(change_cue, prompt.atypical_change_words)
    )
    return "atypical" if atypical else "typical"


def certainty_of(prompt: Prompt, status: str, category: str) -> float:
    """Probability for a (status, category) pair; the status wins where the two disagree (module doc)."""
    p = prompt.scale[category]
    if status == "negative" and p >= 0.5:
        return 0.0
    if status == "positive" and p < 0.5:
        return 1.0
    if status == "uncertain" and p in (0.0, 1.0):
        return 0.5
    return p


def answer_to_rows(
    study_id: str, text: str, answer: dict[str, Any], prompt: Prompt, vocab: Any, source: str, version: str
) -> list[dict[str, Any]]:
    """Findings rows (dicts in ``FINDINGS_SCHEMA`` order) of one validated answer, merged per finding."""
    best: dict[str, dict[str, Any]] = {}
    for item in answer.get("findings", []):
        status = item["status"]
        p = certainty_of(prompt, status, item["certainty"])
        start, end = locate(text, item.get("evidence", ""), item.get("cue", ""), item["finding"],
                            *_synonyms(vocab, item["finding"]))
        row = {
            "study_id": study_id,
            "finding": item["finding"],
            "status": status,
            "certainty": p,
            "cue": item.get("cue", "").strip(),
            "severity": item["severity"],
            "severity_cue": item.get("severity_cue", "").strip(),
            "change": item["change"],
            "change_cue": item.get("change_cue", "").strip(),
            "typicality": typicality(prompt, status, item["severity"], item.get("severity_cue", ""),
                                     item["change"], item.get("change_cue", "")),
            "sentence": _sentence(text, start, end) if start >= 0 else "",
            "start": start,
            "end": end,
            "n_mentions": 1,
            "source": source,
            "lexicon_version": version,
        }
        old = best.get(row["finding"])
        if old is None:
            best[row["finding"]] = row
            continue
        n = old["n_mentions"] + 1

        def rank(r: dict[str, Any]) -> tuple[int, float]:
            return _STATUS_RANK[r["status"]], (-r["certainty"] if r["status"] == "negative" else r["certainty"])

        keep = row if rank(row) > rank(old) else old
        keep["n_mentions"] = n
        best[row["finding"]] = keep
    order = {c: i for i, c in enumerate(vocab.classes)}
    return [best[f] for f in sorted(best, key=order.__getitem__)]


# ------------------------------------------------------------------------------------------ engine
@dataclass
class MineStats:
    """Counts of one run (no report text)."""

    n_reports: int = 0
    n_unique: int = 0
    n_cached: int = 0
    n_requested: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"n_reports": self.n_reports, "n_unique": self.n_unique, "n_cached": self.n_cached,
                "n_requested": self.n_requested, "n_failed": len(self.failures), "failures": self.failures}


def _check_reports(reports: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
    out = []
    for i, rec in enumerate(reports):
        try:
            sid, text = rec
        except (TypeError, ValueError):
            raise ValueError(f"reports: row {i}: expected a (study_id, text) pair") from None
        if sid is None or str(sid) == "":
            raise ValueError(f"reports: row {i}: empty study_id")
        if not isinstance(text, str):
            raise ValueError(f"reports: row {i} (study {sid}): text is {type(text).__name__}, not str")
        out.append((str(sid), text))
    return out


async def _ask(
    backend: Any, messages: list[dict[str, str]], schema: dict[str, Any], *, temperature: float,
    retry_temperature: float, max_tokens: int, invalid_retries: int,
) -> tuple[str | None, str, int]:
    """One report: (canonical validated JSON or None, error, attempts)."""
    from repgls.mining.llm_backends import BackendError

    err = ""
    for attempt in range(invalid_retries + 1):
        temp, seed = (temperature, None) if attempt == 0 else (max(temperature, retry_temperature), attempt)
        try:
            comp = await backend.chat(messages, schema, temperature=temp, max_tokens=max_tokens, seed=seed)
        except BackendError as e:
            return None, f"backend: {e}", attempt + 1
        try:
            data = validate_answer(comp.content, schema, comp.finish_reason)
        except InvalidOutput as e:
            err = f"invalid output: {e}"
            continue
        return json.dumps(data, ensure_ascii=False, sort_keys=True), "", attempt + 1
    return None, err, invalid_retries + 1


async def _mine_async(
    todo: dict[str, str], backend: Any, cache: LLMCache | None, prompt: Prompt, vocab: Any, model: str,
    version: str, schema: dict[str, Any], *, concurrency: int, progress: bool, **ask_kw: Any,
) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """Ask for every text of ``todo`` (sha -> text); returns answers and errors by sha."""
    answers: dict[str, str] = {}
    errors: dict[str, tuple[str, int]] = {}
    sem = asyncio.Semaphore(max(1, int(concurrency)))
    from repgls.progress import progress_bar

    bar = progress_bar("LLM mining", len(todo), enabled=None if progress and todo else False).start()

    async def one(sha: str, text: str) -> None:
        async with sem:
            raw, err, attempts = await _ask(backend, build_messages(prompt, vocab, text), schema, **ask_kw)
        if raw is not None:
            answers[sha] = raw
            if cache is not None:
                cache.put(sha, version, model, raw)
        else:
            errors[sha] = (err, attempts)
        bar.advance()

    try:
        await asyncio.gather(*(one(sha, text) for sha, text in todo.items()))
    finally:
        bar.close()
    return answers, errors


def _run(coro: Any) -> Any:
    """Run a coroutine from sync code, also when the caller already runs an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


def make_backend(
    model: str, base_url: str | None = None, api_key: str | None = None, *, concurrency: int = 16,
    timeout: float = 120.0, max_retries: int = 5, backoff: float = 0.5, enable_thinking: bool | None = False,
    device: str | None = None,
) -> Any:
    """The HTTP backend when ``base_url`` is given, else the in-process transformers backend."""
    from repgls.mining.llm_backends import OpenAIBackend, TransformersBackend

    if base_url:
        ctk = None if enable_thinking is None else {"enable_thinking": bool(enable_thinking)}
        return OpenAIBackend(base_url, model, api_key, timeout=timeout, max_retries=max_retries,
                             backoff=backoff, concurrency=concurrency, chat_template_kwargs=ctk)
    return TransformersBackend(model, device=device, enable_thinking=enable_thinking)


async def _ask_all(todo: dict[str, str], backend: Any, store: LLMCache | None, pr: Prompt, vocab: Any, model: str,
                   version: str, schema: dict[str, Any], *, own_backend: bool, check_server: bool,
                   **kw: Any) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """Check the server (``/models``) then ask for every text of ``todo``; closes a backend made here."""
    from repgls.mining.llm_backends import BackendError

    try:
        if check_server and hasattr(backend, "models"):
            try:
                served = await backend.models()
            except BackendError as e:
                raise ValueError(f"LLM server not usable (is it running?): {e}") from None
            if served and model not in served:
                log.warning("model %r is not among the server's models %s", model, served[:5])
        return await _mine_async(todo, backend, store, pr, vocab, model, version, schema, **kw)
    finally:
        if own_backend:
            await backend.aclose()


def _rows(items: list[tuple[Any, str]], shas: list[str], answers: dict[str, str],
          errors: dict[str, tuple[str, int]], pr: Prompt, vocab: Any, source: str, version: str,
          stats: MineStats) -> list[dict[str, Any]]:
    """Findings rows of every answered report, in input order; unanswered ones go to ``stats.failures``."""
    rows: list[dict[str, Any]] = []
    for (sid, text), sha in zip(items, shas, strict=True):
        if not text.strip():
            continue
        if sha in answers:
            rows.extend(answer_to_rows(sid, text, json.loads(answers[sha]), pr, vocab, source, version))
        else:
            err, attempts = errors.get(sha, ("not answered", 0))
            stats.failures.append({"study_id": sid, "error": err, "attempts": attempts})
    return rows


def mine_llm(
    reports: Iterable[tuple[Any, str]],
    vocab: Any,
    model: str = "Qwen/Qwen3-4B",
    base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int = 16,
    cache: str | Path | None = None,
    progress: bool = False,
    *,
    backend: Any = None,
    prompt: str | Path | Prompt | None = None,
    timeout: float = 120.0,
    max_retries: int = 5,
    backoff: float = 0.5,
    invalid_retries: int = 2,
    temperature: float = 0.0,
    retry_temperature: float = 0.7,
    max_tokens: int = 2048,
    max_string: int = 80,
    max_findings: int | None = None,
    enable_thinking: bool | None = False,
    device: str | None = None,
    failures_path: str | Path | None = None,
    check_server: bool = True,
) -> pa.Table:
    """Mine reports with an LLM into a findings table (``FINDINGS_SCHEMA``).

    Args:
        reports: (study_id, text) pairs (blank texts give no rows and no request).
        vocab: a ``repgls.vocab.Vocabulary`` (or a vocabulary name).
        model: model name on the server, or a Hugging Face id / folder for the in-process backend.
        base_url: OpenAI-compatible API root (``http://host:8000/v1``); None = in-process transformers.
        api_key: bearer token for the server, if it needs one.
        concurrency: requests in flight (HTTP); the in-process backend runs one generation at a time.
        cache: SQLite file of validated answers (created if absent); a rerun skips what it holds.
        progress: show a progress bar on stderr.
        backend: a ready backend object (tests, or to reuse a loaded model); overrides base_url.
        prompt: a prompt YAML path or ``Prompt`` (default: the packaged one).
        invalid_retries: extra attempts for an invalid answer before the report is recorded as failed.
        failures_path: write failed reports (study_id, error, attempts) to this CSV.
        check_server: ask ``/models`` first, so a wrong URL fails at once instead of per report.

    Raises:
        ValueError: bad input (naming the row), a model that cannot be loaded, or a server that does not
            answer ``/models`` (after the retries).

    Returns:
        The findings table; its schema metadata ``repgls_llm`` holds JSON run counts and the failures.
    """
    from repgls.vocab import load_vocab

    vocab = load_vocab(vocab) if isinstance(vocab, str) else vocab
    pr = prompt if isinstance(prompt, Prompt) else load_prompt(None if prompt is None else str(prompt))
    version = lexicon_version(pr, vocab)
    schema = build_schema(vocab, pr, max_string=max_string, max_findings=max_findings)
    items = _check_reports(reports)
    shas = [report_sha256(t) for _, t in items]
    # blank reports mention nothing: no request, no rows
    texts = {sha: t for sha, (_, t) in zip(shas, items, strict=True) if t.strip()}
    stats = MineStats(n_reports=len(items), n_unique=len(texts))
    from repgls.mining.llm_backends import BackendError

    store = LLMCache(cache) if cache is not None else None
    own_backend = backend is None
    try:
        cached = store.get_many(texts, version, model) if store is not None else {}
        stats.n_cached = len(cached)
        todo = {s: t for s, t in texts.items() if s not in cached}
        stats.n_requested = len(todo)
        answers: dict[str, str] = dict(cached)
        errors: dict[str, tuple[str, int]] = {}
        if todo:
            if backend is None:
                try:
                    backend = make_backend(model, base_url, api_key, concurrency=concurrency, timeout=timeout,
                                           max_retries=max_retries, backoff=backoff,
                                           enable_thinking=enable_thinking, device=device)
                except BackendError as e:
                    raise ValueError(str(e)) from None

            new, errors = _run(_ask_all(
                todo, backend, store, pr, vocab, model, version, schema, own_backend=own_backend,
                check_server=check_server, concurrency=concurrency, progress=progress, temperature=temperature,
                retry_temperature=retry_temperature, max_tokens=max_tokens, invalid_retries=invalid_retries))
            answers.update(new)
    finally:
        if store is not None:
            store.close()

    rows = _rows(items, shas, answers, errors, pr, vocab, f"llm:{model}", version, stats)
    if stats.failures:
        log.warning("LLM miner: %d of %d reports failed (not cached; rerun with the same cache to retry). "
                    "First error: %s", len(stats.failures), stats.n_reports, stats.failures[0]["error"])
    if failures_path is not None:
        write_failures(stats.failures, failures_path)
    meta = {"model": model, "prompt_version": version, **stats.as_dict()}
    table = pa.Table.from_pylist(rows, schema=FINDINGS_SCHEMA) if rows else FINDINGS_SCHEMA.empty_table()
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})


def write_failures(failures: list[dict[str, Any]], path: str | Path) -> None:
    """Write the failed reports as CSV (study_id, error, attempts); header only when none failed."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["study_id", "error", "attempts"])
        w.writeheader()
        w.writerows(failures)


def run_info(table: pa.Table) -> dict[str, Any]:
    """The run counts and failures stored in a table returned by ``mine_llm`` ({} when absent)."""
    meta = table.schema.metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


# --------------------------------------------------------------------------------------------- Ray
class _RayMiner:
    """Ray Data callable class: one HTTP engine per actor; each batch -> findings rows."""

    def __init__(self, id_column: str, text_column: str, failures_dir: str, kwargs: dict[str, Any]) -> None:
        self.id_column, self.text_column = id_column, text_column
        self.failures_dir = Path(failures_dir)
        self.kwargs = kwargs

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = [str(v) for v in batch.column(self.id_column).to_pylist()]
        texts = ["" if v is None else str(v) for v in batch.column(self.text_column).to_pylist()]
        table = mine_llm(zip(ids, texts, strict=True), **self.kwargs)
        failures = run_info(table).get("failures", [])
        if failures:
            self.failures_dir.mkdir(parents=True, exist_ok=True)
            write_failures(failures, self.failures_dir / f"{uuid.uuid4().hex}.csv")
        return table.replace_schema_metadata(None)


def ray_mine(
    parquet_in: str | Path,
    parquet_out: str | Path,
    *,
    vocab: str = "chexpert14",
    model: str = "Qwen/Qwen3-4B",
    base_url: str,
    api_key: str | None = None,
    concurrency: int = 16,
    cache: str | Path | None = None,
    id_column: str = "study_id",
    text_column: str = "text",
    batch_size: int = 256,
    num_actors: int = 1,
    actor_num_cpus: float = 0.0,
    failures_dir: str | Path | None = None,
    **mine_kw: Any,
) -> dict[str, Any]:
    """Mine a Parquet file (or folder) of reports with Ray Data through an OpenAI-compatible server.

    Reads ``id_column`` / ``text_column``, maps batches through ``mine_llm`` on ``num_actors`` actors
    (each with ``concurrency`` requests in flight), writes the findings as a Parquet folder. Connect to a
    cluster with ``ray.init(address=...)`` before calling; otherwise a local Ray starts. ``cache`` must be
    on a file system all actors see (SQLite: one machine). Failed reports go to CSV files in
    ``failures_dir`` (default ``<parquet_out>.failures``). The actors only wait on HTTP, so they reserve
    ``actor_num_cpus`` = 0 CPUs by default (a reserved CPU per actor would starve the read/write tasks
    on a small cluster).

    Returns:
        {"n_reports", "n_rows", "n_failed", "failures_dir"}.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import ray

    if not base_url:
        raise ValueError("ray_mine needs base_url (an OpenAI-compatible server); the in-process backend "
                         "would load the model in every actor")
    parquet_out = Path(parquet_out)
    fdir = Path(failures_dir) if failures_dir is not None else parquet_out.with_name(parquet_out.name + ".failures")
    kwargs = dict(vocab=vocab, model=model, base_url=base_url, api_key=api_key, concurrency=concurrency,
                  cache=str(cache) if cache is not None else None, **mine_kw)
    ds = ray.data.read_parquet(str(parquet_in), columns=[id_column, text_column])
    n_reports = ds.count()
    out = ds.map_batches(
        _RayMiner,
        fn_constructor_kwargs={"id_column": id_column, "text_column": text_column,
                               "failures_dir": str(fdir), "kwargs": kwargs},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=max(1, int(num_actors))),
        num_cpus=actor_num_cpus,
    )
    out.write_parquet(str(parquet_out))
    n_failed = 0
    if fdir.is_dir():
        n_failed = sum(pacsv.read_csv(f).num_rows for f in sorted(fdir.glob("*.csv")))
    n_rows = sum(pq.read_metadata(f).num_rows for f in Path(parquet_out).glob("*.parquet"))
    return {"n_reports": n_reports, "n_rows": n_rows, "n_failed": n_failed, "failures_dir": str(fdir)}
