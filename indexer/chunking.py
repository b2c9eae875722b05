"""Token-aware chunking: windows of `chunk_tokens` encoder tokens overlapping by `overlap` tokens.

Boundaries come from the tokenizer's offset mapping, so every chunk keeps its character span
in the document. Spans tile the text without gaps (a chunk runs to the start of the token after
its last one), so overlapping chunks stitch back into the exact document text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Chunk:
    position: int
    start: int
    end: int
    text: str


def check_chunking(chunk_tokens: int, overlap: int, doc_max_length: int | None = None) -> None:
    """ValueError unless 0 <= overlap < chunk_tokens (<= the encoder's doc_max_length)."""
    if not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < chunk_tokens:
        raise ValueError(f"overlap must be an integer in [0, chunk_tokens={chunk_tokens}), got {overlap!r}")
    if doc_max_length is not None and chunk_tokens > doc_max_length:
        raise ValueError(f"chunk_tokens={chunk_tokens} is over the encoder's doc_max_length={doc_max_length}: "
                         "the encoder would cut every chunk short")


def chunk_text(text: str, tokenizer: Any, chunk_tokens: int, overlap: int) -> list[Chunk]:
    """Split `text` into overlapping token windows (whitespace-only windows are dropped)."""
    offsets = tokenizer(text, add_special_tokens=False, truncation=False, return_offsets_mapping=True,
                        return_attention_mask=False, verbose=False)["offset_mapping"]
    n = len(offsets)
    chunks: list[Chunk] = []
    first = 0
    while first < n:
        last = min(first + chunk_tokens, n)
        start = 0 if first == 0 else offsets[first][0]
        end = len(text) if last == n else offsets[last][0]
        if text[start:end].strip():
            chunks.append(Chunk(len(chunks), start, end, text[start:end]))
        if last == n:
            break
        first = last - overlap
    return chunks
