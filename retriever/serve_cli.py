"""`l2v serve`: run the HTTP retrieval service (`retriever.server`) with uvicorn.

FastAPI, uvicorn and the model are imported inside the command, so `l2v --help` stays fast and
works without the `server` extra.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

API_KEY_ENV = "L2V_API_KEY"


def _read_api_key(api_key_file: str | None) -> str | None:
    if api_key_file is not None:
        key = Path(api_key_file).read_text(encoding="utf-8").strip()
        if not key:
            raise click.BadParameter(f"{api_key_file} is empty", param_hint="--api-key-file")
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None


@click.command()
@click.argument("index_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--model", "-m", help="Also serve this model for /v1/embeddings (alone: embeddings only). "
                                    "A model directory, hub id, .gguf file or embedded name.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; a non-loopback one needs an API key (or --insecure).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False),
              help=f"File holding the API key clients send as 'Authorization: Bearer KEY' (else ${API_KEY_ENV}).")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without an API key.")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(min=1),
              help="Most texts per forward pass (concurrent requests are batched together).")
@click.option("--max-wait-ms", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Longest wait for more texts to fill a batch once one is queued.")
@click.option("--max-body-bytes", default=16 * 2**20, show_default=True, type=click.IntRange(min=1),
              help="Largest request body (413 above).")
@click.option("--max-texts", default=2048, show_default=True, type=click.IntRange(min=1),
              help="Most texts (inputs, queries, documents, ids) per request.")
@click.option("--max-chars", default=100_000, show_default=True, type=click.IntRange(min=1),
              help="Most characters per text.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]),
              help="Model weights' dtype (default float32; bfloat16 only pays where the hardware has it).")
@click.option("--device", help="Device for the models, e.g. cpu or cuda (default: cuda when available).")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow browser requests from this origin (repeat); CORS is off without it.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(index_dirs: tuple[str, ...], model: str | None, host: str, port: int, api_key_file: str | None,
          insecure: bool, max_batch: int, max_wait_ms: float, max_body_bytes: int, max_texts: int, max_chars: int,
          dtype: str | None, device: str | None, cors_origins: tuple[str, ...], log_level: str) -> None:
    """Serve INDEX_DIRS (each under its directory name) and their models over HTTP.

    \b
    Routes (see http://HOST:PORT/docs):
      POST /v1/embeddings   OpenAI-compatible (the openai client, LangChain's OpenAIEmbeddings)
      POST /v1/search       {"index": NAME, "query": "..."} -> hits, as Retriever.search_batch
      POST/DELETE /v1/indexes/NAME/documents   upsert / delete, answered once committed
      GET  /v1/models  /v1/indexes/NAME  /health  /ready  /metrics

    \b
    Examples:
      l2v serve demo-index
      l2v serve scifact-index notes-index --port 9000 --api-key-file key.txt
      l2v serve --model smollm2-135m          # embeddings only
      curl localhost:8000/v1/search -d '{"index": "demo-index", "query": "what is LLM2Vec?", "k": 3}'

    Indexes built with the same encoder share one loaded model. Ctrl-C or SIGTERM finishes the
    requests in flight and closes every index.
    """
    from .server import ServerSettings, create_app, index_name, is_loopback

    api_key = _read_api_key(api_key_file)
    if not is_loopback(host) and api_key is None and not insecure:
        raise click.UsageError(f"--host {host} is reachable from other machines: give --api-key-file (or "
                               f"${API_KEY_ENV}), or --insecure to serve without a key")
    try:
        settings = ServerSettings(indexes=tuple(Path(d) for d in index_dirs), model=model, dtype=dtype, device=device,
                                  api_key=api_key, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                  max_body_bytes=max_body_bytes, max_texts=max_texts, max_chars=max_chars,
                                  cors_origins=cors_origins)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    failures: list[BaseException] = []

    def stop(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    app = create_app(settings, on_load_error=stop)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    log = logging.getLogger("retriever.serve")
    for path in settings.indexes:
        log.info("index %s from %s: POST %s/v1/search", index_name(path), path, url)
    log.info("loading %s; GET %s/ready answers 200 once loaded%s",
             ", ".join(filter(None, [model, f"{len(index_dirs)} index encoder(s)" if index_dirs else None])),
             url, "" if api_key else " (no API key: /v1 is open)")
    server.run()
    if failures:
        raise click.ClickException(f"could not start: {failures[0]}")
