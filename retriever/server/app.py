"""The HTTP API (FastAPI): OpenAI-compatible embeddings, search and document writes over the library.

    POST   /v1/embeddings                 OpenAI's embeddings API (+ instruction, task, normalize)
    GET    /v1/models                     the served models
    POST   /v1/search                     Retriever.search_batch on a served index
    GET    /v1/indexes                    the served indexes
    GET    /v1/indexes/{name}             an index's stats (committed state)
    POST   /v1/indexes/{name}/documents   Indexer.upsert, answered once committed
    DELETE /v1/indexes/{name}/documents   Indexer.delete by ids and/or filter
    GET    /health  /ready  /metrics      liveness, readiness (models loaded), Prometheus

Models load on a background thread after start-up, so /health answers at once and /ready (and
every /v1 route, with 503) waits for them. Encoding runs on each model's batcher thread and
searches and writes on worker threads: the event loop never runs the model.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import anyio
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from indexer.vectors import normalize_rows

from ..instructions import resolve_instruction
from .auth import ApiKeyMiddleware
from .errors import ApiError, install_error_handlers
from .limits import BodyLimitMiddleware, check_texts
from .metrics import Metrics, MetricsMiddleware
from .registry import Registry
from .schemas import DeleteRequest, EmbeddingRequest, SearchRequest, UpsertRequest
from .settings import ServerSettings

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings, *, on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving `settings`; `on_load_error` is called (on the loader thread) if a model or
    index fails to load, e.g. to stop the server (the CLI exits with an error)."""
    metrics = Metrics()
    registry = Registry(settings, observer=metrics)

    def load() -> None:
        try:
            registry.load()
            log.info("ready: models %s; indexes %s", ", ".join(registry.models) or "none",
                     ", ".join(registry.indexes) or "none")
        except BaseException as exc:  # noqa: BLE001 - reported through /ready and on_load_error
            registry.error = f"{type(exc).__name__}: {exc}"
            log.error("loading failed: %s", registry.error)
            if on_load_error is not None:
                on_load_error(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # searches and writes wait on the batcher in worker threads: allow a full batch of them
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, 2 * settings.max_batch)
        loader = threading.Thread(target=load, name="l2v-loader", daemon=True)
        loader.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(loader.join)
            await anyio.to_thread.run_sync(registry.close)

    app = FastAPI(title="llm2vec-retriever", summary="LLM2Vec embeddings and retrieval over HTTP",
                  lifespan=lifespan, redoc_url=None)
    app.state.registry = registry
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def loaded() -> Registry:
        if not registry.ready.is_set():
            message = f"loading failed: {registry.error}" if registry.error else "the models are still loading"
            raise ApiError(503, message, code="not_ready")
        return registry

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def ready() -> JSONResponse:
        if registry.ready.is_set():
            return JSONResponse({"status": "ready", "models": list(registry.models), "indexes": list(registry.indexes)})
        status = "failed" if registry.error else "loading"
        return JSONResponse({"status": status, "error": registry.error}, status_code=503)

    @app.get("/metrics", tags=["operations"])
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    v1 = APIRouter(prefix="/v1")

    @v1.post("/embeddings", tags=["embeddings"])
    async def embeddings(body: EmbeddingRequest, served: Registry = Depends(loaded)) -> JSONResponse:
        model = served.model(body.model)
        texts = check_texts([body.input] if isinstance(body.input, str) else body.input, "input",
                            max_texts=settings.max_texts, max_chars=settings.max_chars)
        if body.dimensions is not None and body.dimensions != model.dim:
            raise ApiError(400, f"the model {model.id!r} gives {model.dim}-dimensional vectors; dimensions="
                                f"{body.dimensions} is not available (LLM2Vec vectors are not trained to be cut short)",
                           param="dimensions", code="invalid_dimensions")
        instruction = None
        if body.task is not None or body.instruction is not None:
            instruction = resolve_instruction(body.task, body.instruction)
        encoded = await asyncio.wrap_future(model.encoder.submit(texts, [instruction] * len(texts)))
        vectors = normalize_rows(encoded.vectors) if body.normalize else encoded.vectors
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": model.id,
                             "usage": {"prompt_tokens": encoded.tokens, "total_tokens": encoded.tokens}})

    @v1.get("/models", tags=["embeddings"])
    async def models(served: Registry = Depends(loaded)) -> dict[str, Any]:
        return {"object": "list", "data": [m.describe() for m in served.models.values()]}

    @v1.post("/search", tags=["search"])
    def search(body: SearchRequest, served: Registry = Depends(loaded)) -> JSONResponse:
        index = served.index(body.index)
        field = "query" if body.query is not None else "queries"
        queries = check_texts(body.texts, field, max_texts=settings.max_texts, max_chars=settings.max_chars)
        hits = index.retriever.search_batch(
            queries, body.k, task=body.task, instruction=body.instruction, filter=body.filter,
            score_threshold=body.score_threshold, mmr=body.mmr, fetch_k=body.fetch_k, lambda_mult=body.lambda_mult,
            hybrid=body.hybrid)
        return JSONResponse({"index": index.name, "results": [[hit.to_dict() for hit in row] for row in hits]})

    @v1.get("/indexes", tags=["indexes"])
    async def indexes(served: Registry = Depends(loaded)) -> dict[str, Any]:
        return {"data": [{"name": i.name, "model": i.model.id} for i in served.indexes.values()]}

    @v1.get("/indexes/{name}", tags=["indexes"])
    def index_stats(name: str, served: Registry = Depends(loaded)) -> dict[str, Any]:
        return served.index(name).stats()

    @v1.post("/indexes/{name}/documents", tags=["indexes"])
    async def upsert(name: str, body: UpsertRequest, served: Registry = Depends(loaded)) -> dict[str, Any]:
        index = served.index(name)
        check_texts([d.text for d in body.documents], "documents", max_texts=settings.max_texts,
                    max_chars=settings.max_chars)
        documents = [d.model_dump(exclude_none=True) for d in body.documents]
        stats = await asyncio.wrap_future(index.write(lambda indexer: indexer.upsert(documents)))
        return {"index": name, **stats.as_dict()}

    @v1.delete("/indexes/{name}/documents", tags=["indexes"])
    async def delete(name: str, body: DeleteRequest, served: Registry = Depends(loaded)) -> dict[str, Any]:
        index = served.index(name)
        if body.ids is not None and len(body.ids) > settings.max_texts:
            raise ApiError(400, f"ids has {len(body.ids)} entries; at most {settings.max_texts} per request "
                                "(--max-texts)", param="ids", code="too_many_inputs")
        deleted = await asyncio.wrap_future(index.write(lambda indexer: indexer.delete(body.ids, body.filter)))
        return {"index": name, "deleted": deleted}

    app.include_router(v1)
    return app


def _encode_vector(vector: Any, encoding_format: str) -> list[float] | str:
    """A row as OpenAI sends it: a list of floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
