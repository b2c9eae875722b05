"""The encoding step as pure functions over batches: documents -> chunks -> normalised vectors.

Nothing here touches the index, so batches can be chunked and encoded anywhere (threads,
processes, machines) and their `EncodedBatch`es committed by the single writer
(`Indexer.commit`), which is the only part that needs the index directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .chunking import Chunk, chunk_text
from .documents import Document


@dataclass(frozen=True)
class EncodedBatch:
    """Documents with their chunks and one L2-normalised float32 vector per chunk (in chunk order)."""

    documents: list[Document]
    chunks: list[list[Chunk]]
    vectors: np.ndarray

    @property
    def n_chunks(self) -> int:
        return sum(len(c) for c in self.chunks)


def encode_chunks(encoder: Any, chunks: Sequence[Sequence[Chunk]], *, instruction: str | None,
                  batch_size: int) -> np.ndarray:
    """Normalised vectors [total chunks, dim] for chunk lists (documents without instruction by default)."""
    texts = [chunk.text for doc_chunks in chunks for chunk in doc_chunks]
    if not texts:
        return np.empty((0, encoder.dim), dtype=np.float32)
    vectors = encoder.encode(texts, instruction=instruction, batch_size=batch_size, normalize=True,
                             show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def encode_documents(encoder: Any, documents: Sequence[Document], *, chunk_tokens: int, overlap: int,
                     instruction: str | None = None, batch_size: int = 32) -> EncodedBatch:
    """Chunk and encode `documents` with `encoder`: a pure function of its inputs."""
    chunks = [chunk_text(doc.text, encoder.tokenizer, chunk_tokens, overlap) for doc in documents]
    vectors = encode_chunks(encoder, chunks, instruction=instruction, batch_size=batch_size)
    return EncodedBatch(list(documents), chunks, vectors)
