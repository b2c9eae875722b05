"""Exceptions raised by the retriever: each says what was wrong and how to fix it."""

from __future__ import annotations

from indexer.errors import FilterError, UnknownFieldError  # shared with Indexer.delete(where=...)

__all__ = ["FilterError", "IndexMismatchError", "IndexOpenError", "RetrieverError", "UnknownFieldError",
           "UnknownTaskError"]


class RetrieverError(ValueError):
    """Base class of every error the retriever raises on purpose (bad query, k, task, index);
    a bad metadata filter raises `FilterError`, shared with the indexer."""


class UnknownTaskError(RetrieverError):
    """A `task=` name that is not in the instruction registry."""


class IndexMismatchError(RetrieverError):
    """The index and the encoder (or embeddings) given to read it do not produce the same vectors."""


class IndexOpenError(RetrieverError):
    """The index directory cannot be opened (missing, damaged, or written by a newer version)."""
