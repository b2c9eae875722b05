"""Request bodies of the HTTP API (pydantic): strict types, unknown fields refused.

`EmbeddingRequest` follows OpenAI's `/v1/embeddings` (plus `instruction`, `task`, `normalize`);
`SearchRequest` mirrors `Retriever.search_batch`; the document bodies mirror `Indexer.upsert`
and `Indexer.delete`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _strings(value: Any, field: str) -> Any:
    """Reject token-id arrays and non-string items with a message saying what to send instead."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, int) or (isinstance(item, list) and item and all(isinstance(t, int) for t in item)):
                raise ValueError(f"{field}[{i}] is a token-id array: this server takes text only "
                                 "(LangChain's OpenAIEmbeddings: pass check_embedding_ctx_length=False)")
            if not isinstance(item, str):
                raise ValueError(f"{field}[{i}] is {type(item).__name__}, expected a string")
    elif not isinstance(value, str):
        raise ValueError(f"{field} must be a string or a list of strings, got {type(value).__name__}")
    return value


class EmbeddingRequest(_Body):
    """OpenAI's embeddings request, with LLM2Vec's query instruction as an extension."""

    input: str | list[str]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    instruction: str | None = None
    task: str | None = None
    normalize: bool = True

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        return _strings(value, "input")


class SearchRequest(_Body):
    """`Retriever.search_batch` over HTTP: one `query` or a list of `queries`."""

    index: str
    query: str | None = None
    queries: list[str] | None = None
    k: int = Field(default=10, ge=1)
    task: str | None = None
    instruction: str | None = None
    filter: dict[str, Any] | None = None
    hybrid: bool | None = None
    """None: `Retriever`'s default (hybrid unless mmr); false: dense only."""
    mmr: bool = False
    fetch_k: int | None = Field(default=None, ge=1)
    lambda_mult: float = Field(default=0.5, ge=0.0, le=1.0)
    score_threshold: float | None = None

    @field_validator("queries", mode="before")
    @classmethod
    def _queries(cls, value: Any) -> Any:
        return value if value is None else _strings(value, "queries")

    @model_validator(mode="after")
    def _one_form(self) -> "SearchRequest":
        if (self.query is None) == (self.queries is None):
            raise ValueError("give either query (one string) or queries (a list of strings)")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


class DocumentIn(_Body):
    """One document to upsert; without `id` it gets its content hash, as in `Indexer`."""

    id: str | None = None
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class UpsertRequest(_Body):
    documents: list[DocumentIn] = Field(min_length=1)


class DeleteRequest(_Body):
    """Delete documents by id and/or by a metadata filter (the language of `indexer.filters`)."""

    ids: list[str] | None = None
    filter: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _something(self) -> "DeleteRequest":
        if self.ids is None and self.filter is None:
            raise ValueError("give ids (a list of document ids), filter (a metadata filter), or both")
        return self
