"""The search options the LangChain retrievers (local and remote) share, and how a call overrides them."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from .errors import RetrieverError

SearchType = Literal["similarity", "mmr", "hybrid"]
SEARCH_TYPES = get_args(SearchType)


class SearchSettings(BaseModel):
    """Defaults of every search a retriever runs; each can be overridden per call
    (`retriever.invoke("q", k=3, filter={...})`)."""

    k: int = Field(default=4, ge=1)
    search_type: SearchType | None = None
    """None: `Retriever`'s default (hybrid: dense + BM25 fused); "similarity": dense only."""
    task: str | None = None
    instruction: str | None = None
    filter: dict[str, Any] | None = None
    score_threshold: float | None = None
    fetch_k: int | None = Field(default=None, ge=1)
    lambda_mult: float = Field(default=0.5, ge=0.0, le=1.0)

    def search_options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The options of one search (`Retriever.search` keywords): these settings, then `overrides`,
        with `search_type` turned into the `mmr` / `hybrid` flags (None: the `Retriever`'s default)."""
        options = {name: getattr(self, name) for name in SearchSettings.model_fields} | overrides
        search_type = options.pop("search_type")
        if search_type is None:
            return {**options, "mmr": False, "hybrid": None}
        if search_type not in SEARCH_TYPES:
            raise RetrieverError(f"search_type must be one of {', '.join(SEARCH_TYPES)}, got {search_type!r}")
        return {**options, "mmr": search_type == "mmr", "hybrid": search_type == "hybrid"}
