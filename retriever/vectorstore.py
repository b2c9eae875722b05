"""`LLM2VecVectorStore`: a LangChain `VectorStore` persisted in our index format (no pickle).

Each LangChain document is one entry (one chunk covering its whole text; split long texts
before adding them, as usual with LangChain). Writes go through `indexer.Indexer.commit`, so the
directory is a normal index: `l2v search` and `Retriever.open` read it when the embeddings are
`LLM2VecEmbeddings`, whose encoder spec and fingerprint the manifest records.

Any other LangChain `Embeddings` works too: the store then holds the vectors it is given, and the
manifest's `encoder` entry records what identifies those vectors (an allow-list: the embeddings
class, its model name and the dimension, never credentials, endpoints or tunables such as
timeouts), so reopening with different embeddings is refused and `Retriever.open` explains that
the index needs those embeddings. The index is created on the first write, when the dimension is
known.

Thread safety: the store may be shared by threads and by LangChain's async methods under
`asyncio.gather` (they run the sync methods in executor threads). Writes go through the one
`Indexer` of the directory, which applies them one at a time; each search reads one committed
state.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from indexer import EncodedBatch, EncoderMismatchError, Indexer
from indexer.llm2vec.text_encoder import TextEncoder
from indexer.writer import check_unique_ids
from indexer.chunking import Chunk
from indexer.documents import as_document
from indexer.llm2vec import LLM2VecConfig
from indexer.manifest import MANIFEST_NAME, read_manifest
from indexer.vectors import normalize_rows

from .errors import IndexMismatchError
from .retriever import Hit, Retriever


class ExternalEmbeddingsSpec:
    """Stands in for an encoder when the Indexer records vectors made by other LangChain embeddings."""

    IDENTITY_FIELDS = ("model", "model_name", "model_id", "deployment", "size")
    """Attributes that identify the vectors an `Embeddings` makes (the allow-list the manifest records)."""

    def __init__(self, embeddings: Embeddings, dim: int) -> None:
        cls = type(embeddings)
        identity = {name: getattr(embeddings, name) for name in self.IDENTITY_FIELDS
                    if isinstance(getattr(embeddings, name, None), (str, int))}
        self._spec = {"embeddings": f"{cls.__module__}.{cls.__qualname__}", "params": identity, "dim": dim}
        self.dim = dim
        self.config = LLM2VecConfig()  # chunking settings the manifest needs; entries are never chunked

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self._spec, sort_keys=True).encode()).hexdigest()[:16]


def _document(hit: Hit) -> Document:
    return Document(id=hit.doc_id, page_content=hit.text, metadata=hit.metadata)


class LLM2VecVectorStore(VectorStore):
    """A LangChain vector store in an index directory (a temporary one when `index_dir` is None).

    Scores are cosine similarities; relevance scores map them to [0, 1] as (1 + cos) / 2. `filter`
    takes the metadata filter language of `indexer.filters`. Holds the index's write lock until
    `close()`: one writer per index directory at a time.
    """

    def __init__(self, embedding: Embeddings, index_dir: str | Path | None = None, *,
                 factory: str | None = None, batch_size: int = 32) -> None:
        self.embedding = embedding
        self._tmp = tempfile.TemporaryDirectory(prefix="l2v-vectorstore-") if index_dir is None else None
        self.index_dir = Path(self._tmp.name if self._tmp else index_dir)
        self.factory = factory
        self.batch_size = batch_size
        self._indexer: Indexer | None = None
        self._retriever: Retriever | None = None
        self._opening = threading.Lock()
        if (self.index_dir / MANIFEST_NAME).is_file():
            manifest = read_manifest(self.index_dir)
            self._open(int(manifest["encoder"]["dim"]))

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    def _open(self, dim: int) -> Indexer:
        """The directory's one `Indexer` (created on first use: factory Flat unless given; an existing
        index keeps its own)."""
        with self._opening:
            return self._open_once(dim)

    def _open_once(self, dim: int) -> Indexer:
        if self._indexer is None:
            encoder = getattr(self.embedding, "encoder", None)
            if not isinstance(encoder, TextEncoder):
                encoder = ExternalEmbeddingsSpec(self.embedding, dim)
            try:
                self._indexer = Indexer(self.index_dir, encoder, factory=self.factory, batch_size=self.batch_size,
                                        document_instruction=getattr(self.embedding, "document_instruction", None),
                                        default_task=getattr(self.embedding, "task", None))
            except EncoderMismatchError as exc:
                raise IndexMismatchError(f"{exc} (these embeddings cannot read this vector store)") from exc
            self._retriever = Retriever(self._indexer.store, None)
        return self._indexer

    def close(self) -> None:
        """Write the FAISS snapshot and release the index (and remove it if it was temporary)."""
        if self._indexer is not None:
            self._indexer.close()
            self._indexer = self._retriever = None
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ writing
    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Embed and store `texts` (one entry each); an id already present is replaced (upsert)."""
        texts = list(texts)
        if not texts:
            return []
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        ids = list(ids) if ids is not None else [None] * len(texts)
        if not len(texts) == len(metadatas) == len(ids):
            raise ValueError(f"got {len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids")
        ids = [str(i) if i is not None else str(uuid.uuid4()) for i in ids]
        check_unique_ids(ids)
        documents = [as_document({"id": i, "text": t, "metadata": m}) for i, t, m in zip(ids, texts, metadatas)]
        vectors = normalize_rows(self.embedding.embed_documents(texts))
        indexer = self._open(vectors.shape[1])
        chunks = [[Chunk(position=0, start=0, end=len(doc.text), text=doc.text)] for doc in documents]
        for start in range(0, len(documents), self.batch_size):
            stop = start + self.batch_size
            indexer.commit(EncodedBatch(documents[start:stop], chunks[start:stop], vectors[start:stop]))
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete documents by id (absent ids are ignored); `ids=None` deletes everything."""
        if self._indexer is None:
            return True
        if ids is None:
            with self._indexer.store.snapshot():
                ids = [row[0] for row in self._indexer.store.db.execute("SELECT id FROM documents").fetchall()]
        self._indexer.delete(ids=list(ids))
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents by id in the order given; ids not in the store (never added, deleted) are left out."""
        if self._indexer is None:
            return []
        with self._indexer.store.snapshot():
            documents = self._indexer.store.get_documents(list(ids))
        return [Document(id=d["id"], page_content=d["text"], metadata=d["metadata"]) for d in documents]

    # ------------------------------------------------------------------ searching
    def _search(self, embedding: Sequence[float], k: int, **options: Any) -> list[Hit]:
        if self._retriever is None:
            return []
        return self._retriever.search_by_vector(embedding, k, **options)[0]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """(document, cosine similarity) pairs, best first."""
        if self._retriever is None:
            return []
        hits = self._search(self.embedding.embed_query(query), k, filter=filter)
        return [(_document(hit), hit.score) for hit in hits]

    def similarity_search(self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: dict | None = None,
                                    **kwargs: Any) -> list[Document]:
        return [_document(hit) for hit in self._search(embedding, k, filter=filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda score: (1.0 + score) / 2.0

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: dict | None = None, **kwargs: Any) -> list[Document]:
        if self._retriever is None:
            return []
        return self.max_marginal_relevance_search_by_vector(self.embedding.embed_query(query), k, fetch_k,
                                                            lambda_mult, filter=filter)

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, filter: dict | None = None,
                                                **kwargs: Any) -> list[Document]:
        hits = self._search(embedding, k, filter=filter, mmr=True, fetch_k=fetch_k, lambda_mult=lambda_mult)
        return [_document(hit) for hit in hits]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, *,
                   ids: list[str] | None = None, index_dir: str | Path | None = None,
                   **kwargs: Any) -> "LLM2VecVectorStore":
        """A store in `index_dir` (temporary when None) holding `texts`."""
        store = cls(embedding, index_dir, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
