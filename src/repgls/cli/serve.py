"""``repgls serve``: an OpenAI-compatible chat server (JSON-schema constrained) over a local HF model."""

from __future__ import annotations

import typer

from repgls.cli._common import fail

ORDER = 90


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        model: str = typer.Argument(..., help="Hugging Face model id or folder (a chat model)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
        port: int = typer.Option(8000, "--port", help="Port (0 = any free one, printed at start)."),
        served_model_name: str = typer.Option(None, "--served-model-name", help="Name in /v1/models "
                                              "(default: MODEL)."),
        device: str = typer.Option(None, "--device", help="cpu | cuda | cuda:N (default: cuda if present)."),
        dtype: str = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: bf16 on "
                                  "GPU, fp32 on CPU)."),
        threads: int = typer.Option(None, "--threads", help="torch CPU threads."),
        api_key: str = typer.Option(None, "--api-key", envvar="REPGLS_SERVE_API_KEY",
                                    help="Require this bearer token."),
        max_requests: int = typer.Option(None, "--max-requests", help="Exit abruptly after N completions "
                                         "(to test crash recovery)."),
    ) -> None:
        """Serve /v1/chat/completions with response_format json_schema (xgrammar), one request at a time.

        For real throughput use vLLM (docs/mining.md); this one is for CPU, tests and small jobs.
        """
        from repgls.mining.server import serve as run

        try:
            run(model, host, port, served_model_name=served_model_name, device=device, dtype=dtype,
                threads=threads, api_key=api_key, max_requests=max_requests)
        except (OSError, ValueError, RuntimeError) as e:
            fail(f"repgls serve: {e}")
