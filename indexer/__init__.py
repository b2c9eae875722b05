"""Indexer: documents to LLM2Vec vectors in a FAISS index with SQLite metadata.

Names are exported lazily (`indexer.lazy`): `import indexer` loads neither torch nor FAISS;
`from indexer import Indexer` loads what `Indexer` needs.
"""

from .lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "AddStats": ".writer",
    "Document": ".documents",
    "DocumentError": ".errors",
    "EncodedBatch": ".pipeline",
    "EncoderMismatchError": ".errors",
    "FilterError": ".errors",
    "IndexFormatError": ".errors",
    "IndexLockedError": ".errors",
    "IndexStore": ".store",
    "Indexer": ".writer",
    "IndexerError": ".errors",
    "LLM2VecEncoder": ".llm2vec",
    "RayBuildStats": ".ray_engine",
    "RayOptions": ".ray_engine",
    "ShardError": ".shards",
    "SourceError": ".errors",
    "UnknownFieldError": ".errors",
    "build_with_ray": ".ray_engine",
    "compile_filter": ".filters",
    "encode_documents": ".pipeline",
})
