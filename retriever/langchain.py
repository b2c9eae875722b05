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

from indexer.llm2vec.sources import DEFAULT_MODEL
from indexer.llm2vec.text_encoder import TextEncoder

from .encoders import load_encoder
from .instructions import resolve_instruction
from .remote import LLM2VecRemoteRetriever
from .retriever import Hit, Retriever
from .search_settings import SearchSettings
from .vectorstore import LLM2VecVectorStore

__all__ = ["LLM2VecEmbeddings", "LLM2VecRemoteRetriever", "LLM2VecRetriever", "LLM2VecVectorStore", "hit_to_document"]


class LLM2VecEmbeddings(BaseModel, Embeddings):
    """LangChain `Embeddings` over an `LLM2VecEncoder`: unit vectors, queries with an instruction.

    Give `model` (directory, hub id, .gguf file or embedded name) and `adapters`, or an already
    loaded `encoder`; `precision="int8"` (or "auto") and `runtime="onnx"` as in
    `LLM2VecEncoder.from_pretrained`. The query instruction is `query_instruction` if set, else `task`'s, else the
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
    precision: Literal["fp32", "bf16", "int8", "auto"] = "fp32"
    runtime: Literal["torch", "onnx"] = "torch"
    encoder: TextEncoder | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _load(self) -> "LLM2VecEmbeddings":
        self.query_instruction = resolve_instruction(self.task, self.query_instruction)
        if self.encoder is None:
            self.encoder = load_encoder(self.model, tuple(self.adapters), dtype=self.dtype, device=self.device,
                                        precision=self.precision, runtime=self.runtime)
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


class LLM2VecRetriever(SearchSettings, BaseRetriever):
    """LangChain retriever over an index built by `l2v index build` (or `indexer.Indexer`).

    Construct with `index_dir=` (the encoder the manifest names is loaded once and cached) or with
    an open `retriever=`. `search_type` is None (the default: `Retriever`'s, hybrid), "hybrid"
    (dense + BM25 fused), "similarity" (dense only) or "mmr";
    every search option can also be passed per call: `retriever.invoke("q", k=3, filter={...})`.
    `close()` (or a `with` block) releases the index.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever

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
        hits = self.retriever.search(query, **self.search_options(kwargs))
        return [hit_to_document(hit) for hit in hits]
