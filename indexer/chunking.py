"""Token-aware chunking: windows of `chunk_tokens` encoder tokens overlapping by `overlap` tokens.

Boundaries come from the tokenizer's offset mapping, so every chunk keeps its character span
in the document. Spans tile the text without gaps (a chunk runs to the start of the token after
its last one), so overlapping chunks stitch back into the exact document text.

A window is cut in the context of the whole document, but the encoder tokenizes each chunk alone
(and lower-cases all-caps text), where the pieces at its edges can come out longer: every chunk is
measured again the way the encoder will see it and shrunk until it fits, so the encoder never
re-cuts a chunk, in any script (text without spaces, minified code, long URL lists included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .llm2vec.casing import fold_all_caps
from .llm2vec.recipes import index_chunk_tokens


@dataclass(frozen=True)
class Chunk:
    position: int
    start: int
    end: int
    text: str


def default_chunk_tokens(encoder: Any) -> int:
    """The chunk length of a new index for `encoder`: what its shipped recipe names
    (`recipes.INDEX_CHUNK_TOKENS`), else its doc_max_length."""
    return index_chunk_tokens(encoder.spec()) or encoder.config.doc_max_length


def check_chunking(chunk_tokens: int, overlap: int, doc_max_length: int | None = None) -> None:
    """ValueError unless 0 <= overlap < chunk_tokens (<= the encoder's doc_max_length)."""
    if not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < chunk_tokens:
        raise ValueError(f"overlap must be an integer in [0, chunk_tokens={chunk_tokens}), got {overlap!r}")
    if doc_max_length is not None and chunk_tokens > doc_max_length:
        raise ValueError(f"chunk_tokens={chunk_tokens} is over the encoder's doc_max_length={doc_max_length}: "
                         "the encoder would cut every chunk short")


def encoded_length(text: str, tokenizer: Any) -> int:
    """Tokens `text` takes when the encoder tokenizes it alone, whether or not it folds all-caps text."""
    variants = {text, fold_all_caps(text)}
    return max(len(tokenizer(variant, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])
               for variant in variants)


def chunk_text(text: str, tokenizer: Any, chunk_tokens: int, overlap: int) -> list[Chunk]:
    """Split `text` into overlapping token windows that fit `chunk_tokens` (whitespace-only ones dropped)."""
    offsets = tokenizer(text, add_special_tokens=False, truncation=False, return_offsets_mapping=True,
                        return_attention_mask=False, verbose=False)["offset_mapping"]
    n = len(offsets)
    chunks: list[Chunk] = []
    first = 0
    while first < n:
        last = min(first + chunk_tokens, n)
        while True:
            start = 0 if first == 0 else offsets[first][0]
            end = len(text) if last == n else offsets[last][0]
            excess = encoded_length(text[start:end], tokenizer) - chunk_tokens
            if excess <= 0 or last - first <= 1:
                break
            last = max(first + 1, last - excess)
        if text[start:end].strip():
            chunks.append(Chunk(len(chunks), start, end, text[start:end]))
        if last == n:
            break
        first = max(last - overlap, first + 1)
    return chunks


def stitch(spans: Iterable[tuple[int, int, str]]) -> str:
    """A document's text rebuilt from its chunks' (start, end, text), in position order (overlaps
    are kept once)."""
    text, covered = "", None
    for start, end, piece in spans:
        if covered is None:
            text, covered = piece, end
        else:
            text += piece[max(0, covered - start) :]
            covered = max(covered, end)
    return text
