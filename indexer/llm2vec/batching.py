"""Which inputs go through the model together: batches by padded tokens, of similar lengths.

Inputs are taken longest first, so each batch holds texts of similar length. A batch is closed
when the next text would take it past `max_texts` texts, past `max_tokens` padded tokens
(texts x longest: what the model computes, and what its memory holds), or past `MAX_PADDING`
of padding (a much shorter text waits for a batch of its own length rather than being padded
to the longest of a mixed batch). Short texts thus go in large batches and long ones in small
ones, and no batch spends more than an eighth of its work on padding.
"""

from __future__ import annotations

from typing import Sequence

MAX_PADDING = 0.125
"""The largest share of a batch's padded tokens that may be padding."""


def length_batches(lengths: Sequence[int], *, max_texts: int | None, max_tokens: int) -> list[list[int]]:
    """Indices of `lengths` grouped into batches, longest first (see the module docstring).

    A text longer than `max_tokens` gets a batch of its own.
    """
    if max_texts is not None and max_texts < 1:
        raise ValueError(f"max_texts must be a positive integer or None, got {max_texts!r}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = real = 0
    for index in order:
        length = lengths[index]
        if batch:
            rows = len(batch) + 1
            padded = rows * longest
            if ((max_texts is not None and rows > max_texts) or padded > max_tokens
                    or padded - real - length > MAX_PADDING * padded):
                batches.append(batch)
                batch, longest, real = [], 0, 0
        if not batch:
            longest = length
        batch.append(index)
        real += length
    if batch:
        batches.append(batch)
    return batches
