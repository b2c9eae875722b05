"""Indexer: documents to LLM2Vec vectors in a FAISS index with SQLite metadata."""

from .documents import Document
from .errors import (DocumentError, EncoderMismatchError, FilterError, IndexerError, IndexFormatError,
                     IndexLockedError, SourceError, UnknownFieldError)
from .filters import compile_filter
from .llm2vec import LLM2VecEncoder
from .pipeline import EncodedBatch, encode_documents
from .ray_engine import RayBuildStats, RayOptions, build_with_ray
from .shards import ShardError
from .store import IndexStore
from .writer import AddStats, Indexer

__all__ = [
    "AddStats",
    "Document",
    "DocumentError",
    "EncodedBatch",
    "EncoderMismatchError",
    "FilterError",
    "IndexFormatError",
    "IndexLockedError",
    "IndexStore",
    "Indexer",
    "IndexerError",
    "LLM2VecEncoder",
    "RayBuildStats",
    "RayOptions",
    "ShardError",
    "SourceError",
    "UnknownFieldError",
    "build_with_ray",
    "compile_filter",
    "encode_documents",
]
