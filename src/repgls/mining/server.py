"""``repgls serve``: a small OpenAI-compatible server over the in-process transformers backend.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (non-streaming; ``response_format`` of type
``json_schema`` or ``json_object`` (a JSON object) is enforced by xgrammar constrained decoding; a ``model``
other than the served name is a 404 ``model_not_found``; ``temperature``,
``max_tokens`` / ``max_completion_tokens``, ``seed``, ``chat_template_kwargs`` honoured), ``GET /health``
(``{"status": "ok", "requests_served": n}``).

Why: ``transformers serve`` (transformers 5) rejects ``response_format`` and needs FastAPI / uvicorn /
openai; vLLM needs a GPU. This one needs only the standard library (threaded ``http.server``), serves
any small HF chat model on CPU or one GPU, and is what the miner's HTTP tests run against. One model,
one generation at a time (requests queue on a lock): use vLLM for throughput. Requests and answers are
never logged (they hold report text).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], backend: Any, served_name: str, max_requests: int | None,
                 api_key: str | None) -> None:
        super().__init__(addr, _Handler)
        self.backend = backend
        self.served_name = served_name
        self.max_requests = max_requests
        self.api_key = api_key
        self.served = 0
        self.count_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no request logging by default
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _error(self, status: int, message: str, kind: str = "invalid_request_error", **extra: Any) -> None:
        """An OpenAI-style error body; ``extra`` adds or replaces fields (``param``, ``code``)."""
        self._send(status, {"error": {"message": message, "type": kind, "code": status, **extra}})

    def _authorised(self) -> bool:
        if not self.server.api_key:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {self.server.api_key}":
            return True
        self._error(401, "invalid API key", "authentication_error")
        return False

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/health":  # liveness needs no key
            self._send(200, {"status": "ok", "requests_served": self.server.served})
            return
        if not self._authorised():
            return
        if path in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [
                {"id": self.server.served_name, "object": "model", "created": 0, "owned_by": "repgls"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(req, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as e:
            self._error(400, f"bad JSON body: {e}")
            return
        model = req.get("model")
        if model is not None and model != self.server.served_name:  # as OpenAI-compatible servers answer
            self._error(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")
            return
        try:
            kwargs = _parse_request(req)
        except ValueError as e:
            self._error(400, str(e))
            return
        try:
            comp = self.server.backend.generate(**kwargs)
        except Exception as e:  # the model failed: a 500 the client may retry
            log.exception("generation failed")
            self._error(500, f"generation failed: {type(e).__name__}", "server_error")
            return
        with self.server.count_lock:
            self.server.served += 1
            n = self.server.served
        self._send(200, {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": comp.content},
                         "finish_reason": comp.finish_reason}],
            "usage": {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens,
                      "total_tokens": comp.prompt_tokens + comp.completion_tokens},
        })
        if self.server.max_requests is not None and n >= self.server.max_requests:
            # Crash on purpose (tests of resume): no clean shutdown, in-flight requests are cut.
            sys.stderr.write(f"repgls serve: served {n} requests (--max-requests); exiting\n")
            sys.stderr.flush()
            os._exit(3)


def _parse_request(req: dict[str, Any]) -> dict[str, Any]:
    """OpenAI chat request -> ``TransformersBackend.generate`` keyword arguments."""
    if req.get("stream"):
        raise ValueError("stream=true is not supported by repgls serve")
    if req.get("n", 1) != 1:
        raise ValueError("only n=1 is supported")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] needs string 'role' and 'content'")
    fmt = req.get("response_format") or {"type": "text"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise ValueError("response_format.json_schema.schema must be an object")
        constrained = True
    elif kind == "json_object":  # a JSON object, as OpenAI's JSON mode gives (any JSON would allow arrays)
        schema, constrained = {"type": "object"}, True
    elif kind == "text":
        schema, constrained = None, False
    else:
        raise ValueError(f"unsupported response_format type {kind!r}")
    max_tokens = req.get("max_completion_tokens", req.get("max_tokens")) or 1024
    temperature = req.get("temperature")
    seed = req.get("seed")
    ctk = req.get("chat_template_kwargs")
    if ctk is not None and not isinstance(ctk, dict):
        raise ValueError("chat_template_kwargs must be an object")
    return {
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "schema": schema,
        "constrained": constrained,
        "temperature": float(1.0 if temperature is None else temperature),
        "max_tokens": int(max_tokens),
        "seed": None if seed is None else int(seed),
        "chat_template_kwargs": ctk,
    }


def check_model_source(model: str) -> None:
    """Before loading anything: a local model must be a folder with ``config.json``; a path that does not exist
    (absolute, ``./``, ``~``, or more than one ``/``) is no Hugging Face id (``org/name``) either.

    Raises:
        ValueError: one line naming the path.
    """
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ValueError(f"{model}: is a file, not a model folder")
        if not (p / "config.json").is_file():
            raise ValueError(f"{model}: not a model folder (no config.json)")
    elif model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise ValueError(f"{model}: no such model folder")


def make_server(
    model: str, host: str = "127.0.0.1", port: int = 8000, *, served_model_name: str | None = None,
    device: str | None = None, dtype: str | None = None, threads: int | None = None,
    max_requests: int | None = None, api_key: str | None = None,
) -> _Server:
    """Load the model and bind the server (call ``serve_forever()`` on the result; port 0 = any free)."""
    check_model_source(model)
    from repgls.mining.llm_backends import TransformersBackend

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    backend = TransformersBackend(model, device=device, dtype=dtype, enable_thinking=None)
    return _Server((host, port), backend, served_model_name or model, max_requests, api_key)


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, **kw: Any) -> None:
    """Serve ``model`` until interrupted."""
    server = make_server(model, host, port, **kw)
    h, p = server.server_address[:2]
    sys.stderr.write(f"repgls serve: {server.served_name} on http://{h}:{p}/v1\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for a server started right after)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spawn_server(model: str, port: int | None = None, *args: str, threads: int = 1,
                 env: dict[str, str] | None = None) -> tuple[Any, int]:
    """Start ``repgls serve MODEL`` as a subprocess on 127.0.0.1 (tests, benchmarks, notebooks).

    Returns (Popen, port) at once; call ``wait_ready`` before sending requests, and ``kill()`` after.
    """
    import subprocess

    port = port or free_port()
    full_env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "repgls.cli", "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--threads", str(threads), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env, text=True,
    )
    return proc, port


def wait_ready(proc: Any, port: int, timeout: float = 180.0) -> None:
    """Poll ``/health`` until the server answers.

    Raises:
        RuntimeError: the process exited (with its last stderr lines) or did not answer in time.
    """
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"repgls serve exited with code {proc.returncode}: {err}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"repgls serve did not answer on port {port} within {timeout:.0f} s")
