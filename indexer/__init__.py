"""Indexer: documents to LLM2Vec vectors in a FAISS index with SQLite metadata."""

from .documents import Document
from .errors import (DocumentError, EncoderMismatchError, IndexerError, IndexFormatError, IndexLockedError,
                     SourceError)
from .llm2vec import LLM2VecEncoder
from .pipeline import EncodedBatch, encode_documents
from .ray_engine import RayBuildStats, RayOptions, build_with_ray
from .shards import ShardError
from .store import IndexStore
from .writer import AddStats, Indexer, metadata_where

__all__ = [
    "AddStats",
    "Document",
    "DocumentError",
    "EncodedBatch",
    "EncoderMismatchError",
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
    "build_with_ray",
    "encode_documents",
    "metadata_where",
]
