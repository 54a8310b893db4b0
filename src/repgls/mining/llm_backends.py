"""Backends of the LLM miner: an OpenAI-compatible HTTP client and in-process transformers generation.

Both answer ``await backend.chat(messages, schema, ...) -> Completion`` with the output constrained to
the JSON schema: over HTTP by ``response_format = {"type": "json_schema", ...}`` (vLLM, llama.cpp
server, Ollama, ``repgls serve``), in process by xgrammar's logits processor for ``generate``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The backend could not answer (after the transport retries); the report is recorded as failed."""


@dataclass(frozen=True)
class Completion:
    """One chat completion: the text and why generation stopped (``stop`` | ``length``)."""

    content: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend(Protocol):
    """What the miner needs from a backend."""

    async def chat(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------------------------- HTTP
class OpenAIBackend:
    """Async client of an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Transport errors, timeouts, HTTP 429 and 5xx are retried ``max_retries`` times with exponential
    backoff (``backoff * 2**attempt`` seconds, or the server's ``Retry-After`` when shorter than
    ``max_backoff``); other 4xx answers fail at once. Concurrency is bounded by the caller's semaphore
    and by the connection pool (``concurrency`` connections).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        concurrency: int = 16,
        chat_template_kwargs: dict[str, Any] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.chat_template_kwargs = chat_template_kwargs
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency))
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout), limits=limits
        )

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        last = ""
        for attempt in range(self.max_retries + 1):
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            try:
                resp = await self._client.request(method, path, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}"
                    retry_after = resp.headers.get("retry-after")
                    if retry_after and retry_after.replace(".", "", 1).isdigit():
                        delay = min(self.max_backoff, float(retry_after))
                elif resp.status_code >= 400:
                    raise BackendError(f"{method} {self.base_url}{path}: HTTP {resp.status_code}: "
                                       f"{_error_message(resp)}")
                else:
                    try:
                        return resp.json()
                    except ValueError as e:
                        raise BackendError(f"{method} {self.base_url}{path}: answer is not JSON") from e
            if attempt < self.max_retries:
                log.debug("retrying %s %s in %.2fs (%s)", method, path, delay, last)
                await asyncio.sleep(delay)
        raise BackendError(f"{method} {self.base_url}{path}: gave up after {self.max_retries + 1} tries ({last})")

    async def models(self) -> list[str]:
        """Model ids the server lists at ``/models``."""
        data = await self._request("GET", "/models")
        return [str(m.get("id")) for m in data.get("data", [])]

    async def chat(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "findings", "schema": schema, "strict": True},
            },
        }
        if seed is not None:
            body["seed"] = seed
        if self.chat_template_kwargs is not None:
            body["chat_template_kwargs"] = self.chat_template_kwargs
        body.update(self.extra_body)
        data = await self._request("POST", "/chat/completions", body)
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise BackendError(f"{self.base_url}/chat/completions: answer has no choices[0].message.content") from e
        usage = data.get("usage") or {}
        return Completion(
            content=content,
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_message(resp: Any) -> str:
    try:
        err = resp.json().get("error")
        return str(err.get("message") if isinstance(err, dict) else err)[:300]
    except Exception:
        return resp.text[:300]


# -------------------------------------------------------------------------------------- transformers
class TransformersBackend:
    """In-process generation with Hugging Face transformers and xgrammar constrained decoding.

    Generation is serialised by a lock (one model, one forward at a time) and runs in a worker thread so
    the asyncio loop stays free. Greedy when ``temperature == 0``; otherwise sampling seeded by ``seed``.
    ``enable_thinking=False`` is passed to the chat template (Qwen3's switch; other templates ignore it).
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        enable_thinking: bool | None = False,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        import xgrammar as xgr
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device.startswith("cuda")
                                                           else torch.float32)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=torch_dtype, trust_remote_code=trust_remote_code
            ).to(self.device)
        except OSError as e:
            raise BackendError(f"cannot load model {model!r} with transformers: {e}") from e
        self.model.eval()
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(f"model {model!r}: the tokenizer has no chat template")
        self.enable_thinking = enable_thinking
        vocab_size = getattr(config, "vocab_size", None) or len(self.tokenizer)
        self._tokenizer_info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(self._tokenizer_info)
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _grammar(self, schema: dict[str, Any] | None) -> Any:
        key = json.dumps(schema) if schema is not None else "<json>"
        if key not in self._grammars:
            if schema is None:
                self._grammars[key] = self._compiler.compile_builtin_json_grammar()
            else:
                # any_whitespace=False: free whitespace lets weak (or random) weights loop on blanks.
                self._grammars[key] = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        return self._grammars[key]

    def prompt_text(self, messages: list[dict[str, str]], chat_template_kwargs: dict[str, Any] | None = None) -> str:
        """The chat-templated prompt string."""
        kwargs: dict[str, Any] = {}
        if self.enable_thinking is not None:
            kwargs["enable_thinking"] = self.enable_thinking
        kwargs.update(chat_template_kwargs or {})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)

    def generate(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any] | None,
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
        constrained: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> Completion:
        """Blocking generation (thread-safe); ``schema=None`` with ``constrained`` means any JSON."""
        import torch
        import xgrammar as xgr

        text = self.prompt_text(messages, chat_template_kwargs)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        n_prompt = int(enc["input_ids"].shape[1])
        processors = [xgr.contrib.hf.LogitsProcessor(self._grammar(schema))] if constrained else []
        gen_kwargs: dict[str, Any] = {"max_new_tokens": int(max_tokens), "logits_processor": processors}
        if temperature and temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with self._lock, torch.inference_mode():
            if seed is not None or gen_kwargs["do_sample"]:
                torch.manual_seed(int(seed or 0))
            out = self.model.generate(**enc, eos_token_id=eos, pad_token_id=pad, **gen_kwargs)
        new = out[0, n_prompt:]
        stopped = bool(len(new)) and eos is not None and int(new[-1]) == eos
        n_new = len(new)
        finish = "stop" if stopped or n_new < max_tokens else "length"
        content = self.tokenizer.decode(new, skip_special_tokens=True)
        return Completion(content=content, finish_reason=finish, prompt_tokens=n_prompt, completion_tokens=n_new)

    async def chat(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> Completion:
        return await asyncio.to_thread(
            self.generate, messages, schema, temperature=temperature, max_tokens=max_tokens, seed=seed
        )

    async def aclose(self) -> None:
        return None
