"""Text normalisation the encoder applies before tokenizing (no model library needed, so the indexer's
chunking can measure chunks the same way without importing torch)."""

from __future__ import annotations


def fold_all_caps(text: str) -> str:
    """Lower-case a text written entirely in capitals (two or more capitalised words, no lowercase
    letter), as old collections write their titles and queries. LLM tokenizers cut such words into
    rare pieces that share nothing with the usual spelling; acronyms in normal text are kept."""
    if any(c.islower() for c in text):
        return text
    shouted = sum(1 for word in text.split() if any(c.isupper() for c in word))
    return text.lower() if shouted >= 2 else text
