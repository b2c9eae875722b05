"""`l2v serve`: the library behind HTTP (FastAPI + uvicorn), an extra: `pip install 'llm2vec-retriever[server]'`.

    from retriever.server import ServerSettings, create_app
    app = create_app(ServerSettings(indexes=("my-index",), api_key="..."))   # any ASGI server runs it

OpenAI-compatible `/v1/embeddings`, `/v1/search` (`Retriever.search_batch`), document writes through
one `Indexer` per index, micro-batching of concurrent requests, API-key auth, Prometheus metrics.
"""

from .app import create_app
from .batching import BatchingEncoder, Encoded
from .errors import ApiError
from .registry import Registry, ServedIndex, ServedModel
from .settings import ServerSettings, index_name, is_loopback

__all__ = [
    "ApiError",
    "BatchingEncoder",
    "Encoded",
    "Registry",
    "ServedIndex",
    "ServedModel",
    "ServerSettings",
    "create_app",
    "index_name",
    "is_loopback",
]
