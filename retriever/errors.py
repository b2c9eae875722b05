"""Exceptions raised by the retriever: each says what was wrong and how to fix it."""

from __future__ import annotations


class RetrieverError(ValueError):
    """Base class of every error the retriever raises on purpose (bad query, k, filter, task, index)."""


class UnknownTaskError(RetrieverError):
    """A `task=` name that is not in the instruction registry."""


class FilterError(RetrieverError):
    """A malformed metadata filter: unknown operator, wrong value type, bad field name."""


class UnknownFieldError(FilterError):
    """A filter names a metadata field that no document in the index has."""


class IndexMismatchError(RetrieverError):
    """The index and the encoder (or embeddings) given to read it do not produce the same vectors."""


class IndexOpenError(RetrieverError):
    """The index directory cannot be opened (missing, damaged, or written by a newer version)."""
