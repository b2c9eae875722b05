"""Exceptions of the indexer: each names the problem and what to do about it."""

from __future__ import annotations


class IndexerError(Exception):
    """Base class of every error the indexer raises on purpose."""


class IndexFormatError(IndexerError):
    """An index directory is missing a file, has a damaged one, or was written by a newer version."""


class EncoderMismatchError(IndexerError):
    """The encoder differs from the one the index was built with (its vectors would not compare)."""


class IndexLockedError(IndexerError):
    """Another process is writing to the index."""


class FilterError(IndexerError, ValueError):
    """A malformed metadata filter: unknown operator, wrong value type, bad field name."""


class UnknownFieldError(FilterError):
    """A filter names a metadata field that no document in the index has."""


class DocumentError(IndexerError, ValueError):
    """A document cannot be indexed: empty or oversized text, bad id or metadata, duplicate id."""


class SourceError(IndexerError):
    """An input file cannot be read (missing, undecodable, corrupt, unsupported format)."""
