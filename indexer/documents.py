"""`Document`: what the indexer stores, and the checks that turn user input into one.

Accepted inputs: a `Document`, a dict with `text` (or `page_content`), optional `id`,
`metadata` and `source`, or any object with those attributes (e.g. a LangChain Document).
A document without an id gets a stable one from the hash of its text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import DocumentError

DEFAULT_MAX_CHARS = 5_000_000


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Document:
    """A document to index: `metadata` must be a JSON object (dict with JSON-serialisable values)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def content_hash(self) -> str:
        return text_hash(self.text)

    @property
    def metadata_json(self) -> str:
        return json.dumps(self.metadata, sort_keys=True, ensure_ascii=False)


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def as_document(obj: Any, *, max_chars: int = DEFAULT_MAX_CHARS) -> Document:
    """Validate `obj` into a `Document`; `DocumentError` says what is wrong with it."""
    if isinstance(obj, Document):
        doc_id, text, metadata, source = obj.id, obj.text, obj.metadata, obj.source
    else:
        text = _field(obj, "text", "page_content")
        doc_id, metadata, source = _field(obj, "id"), _field(obj, "metadata"), _field(obj, "source")
    label = repr(doc_id) if doc_id is not None else "without id"
    if not isinstance(text, str):
        raise DocumentError(f"document {label}: text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise DocumentError(f"document {label}: text is empty or whitespace-only")
    if len(text) > max_chars:
        raise DocumentError(f"document {label}: {len(text):,} characters is over the limit of {max_chars:,} "
                            "(raise max_chars / --max-chars to index it anyway)")
    if doc_id is None:
        doc_id = text_hash(text)[:32]
    elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise DocumentError(f"document {label}: id must be a non-empty string")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise DocumentError(f"document {doc_id!r}: metadata must be a dict (JSON object), got {type(metadata).__name__}")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"document {doc_id!r}: metadata is not JSON-serialisable ({exc})") from None
    return Document(doc_id, text, dict(metadata), None if source is None else str(source))
