"""LangChain integration: `LLM2VecEmbeddings`, `LLM2VecRetriever` and `LLM2VecVectorStore`.

    from retriever.langchain import LLM2VecEmbeddings, LLM2VecRetriever, LLM2VecVectorStore

    embeddings = LLM2VecEmbeddings(model="smollm2-135m", task="scifact")
    retriever = LLM2VecRetriever(index_dir="my-index", k=5, task="scifact")   # an `l2v index build` index
    store = LLM2VecVectorStore.from_texts(["..."], embeddings, index_dir="lc-index")

Documents are embedded without an instruction and queries with the task's one, as LLM2Vec does.
The async methods run the sync ones in LangChain's executor (langchain-core's defaults): encoding
is CPU/GPU-bound and torch releases the GIL while it runs.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import BaseModel, ConfigDict, Field, model_validator

from indexer import LLM2VecEncoder

from .encoders import load_encoder
from .errors import RetrieverError
from .instructions import resolve_instruction
from .remote import LLM2VecRemoteRetriever
from .retriever import Hit, Retriever
from .vectorstore import LLM2VecVectorStore

DEFAULT_MODEL = "smollm2-135m"
SEARCH_TYPES = ("similarity", "mmr", "hybrid")

__all__ = ["LLM2VecEmbeddings", "LLM2VecRemoteRetriever", "LLM2VecRetriever", "LLM2VecVectorStore", "hit_to_document"]


class LLM2VecEmbeddings(BaseModel, Embeddings):
    """LangChain `Embeddings` over an `LLM2VecEncoder`: unit vectors, queries with an instruction.

    Give `model` (directory, hub id, .gguf file or embedded name) and `adapters`, or an already
    loaded `encoder`. The query instruction is `query_instruction` if set, else `task`'s, else the
    generic one; `document_instruction` is None (LLM2Vec encodes documents bare).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str = DEFAULT_MODEL
    adapters: list[str] = Field(default_factory=list)
    task: str | None = None
    query_instruction: str | None = None
    document_instruction: str | None = None
    batch_size: int = Field(default=32, ge=1)
    dtype: str | None = None
    device: str | None = None
    encoder: LLM2VecEncoder | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _load(self) -> "LLM2VecEmbeddings":
        self.query_instruction = resolve_instruction(self.task, self.query_instruction)
        if self.encoder is None:
            self.encoder = load_encoder(self.model, tuple(self.adapters), dtype=self.dtype, device=self.device)
        return self

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Unit vectors of `texts`, encoded with `document_instruction` (None: bare, as LLM2Vec)."""
        if not texts:
            return []
        return self.encoder.encode(list(texts), self.document_instruction, batch_size=self.batch_size,
                                   normalize=True, convert_to="list")

    def embed_query(self, text: str) -> list[float]:
        """The unit vector of `text` encoded with the query instruction."""
        return self.encoder.encode(text, self.query_instruction, normalize=True, convert_to="list")


def hit_to_document(hit: Hit) -> Document:
    """A LangChain `Document`: id is the document id, metadata the document's plus a `retrieval` entry.

    `retrieval` holds the score, chunk id and character span of the chunk in its document.
    """
    retrieval = {"score": hit.score, "chunk_id": hit.chunk_id, "position": hit.position,
                 "start": hit.start, "end": hit.end}
    return Document(id=hit.doc_id, page_content=hit.text, metadata={**hit.metadata, "retrieval": retrieval})


class LLM2VecRetriever(BaseRetriever):
    """LangChain retriever over an index built by `l2v index build` (or `indexer.Indexer`).

    Construct with `index_dir=` (the encoder the manifest names is loaded once and cached) or with
    an open `retriever=`. `search_type` is "similarity", "mmr" or "hybrid" (dense + BM25 by RRF);
    every search option can also be passed per call: `retriever.invoke("q", k=3, filter={...})`.
    `close()` (or a `with` block) releases the index.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever
    k: int = Field(default=4, ge=1)
    search_type: Literal["similarity", "mmr", "hybrid"] = "similarity"
    task: str | None = None
    instruction: str | None = None
    filter: dict[str, Any] | None = None
    score_threshold: float | None = None
    fetch_k: int | None = Field(default=None, ge=1)
    lambda_mult: float = Field(default=0.5, ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _open(cls, values: Any) -> Any:
        if isinstance(values, dict) and "index_dir" in values:
            values = dict(values)
            index_dir = values.pop("index_dir")
            if values.get("retriever") is None:
                values["retriever"] = Retriever.open(index_dir)
        return values

    def close(self) -> None:
        """Close the index (its SQLite connection and FAISS snapshot); the retriever is unusable after."""
        self.retriever.close()

    def __enter__(self) -> "LLM2VecRetriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        options = {
            "k": self.k, "task": self.task, "instruction": self.instruction, "filter": self.filter,
            "score_threshold": self.score_threshold, "fetch_k": self.fetch_k, "lambda_mult": self.lambda_mult,
            "search_type": self.search_type, **kwargs,
        }
        search_type = options.pop("search_type")
        if search_type not in SEARCH_TYPES:
            raise RetrieverError(f"search_type must be one of {', '.join(SEARCH_TYPES)}, got {search_type!r}")
        hits = self.retriever.search(query, mmr=search_type == "mmr", hybrid=search_type == "hybrid", **options)
        return [hit_to_document(hit) for hit in hits]
