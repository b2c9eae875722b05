"""(instruction, text) pairs to token ids and a pooling mask, using character offsets.

The instruction is joined to the text as the reference library does (`"{instruction} {text}"`),
the pair is tokenized once, and a token is pooled when its character span overlaps the text
part. This replaces the reference's magic separator string and its second tokenization of
every text. Documents longer than `doc_max_length` tokens are cut on word boundaries first,
exactly as the reference does, so released checkpoints see the inputs they were tuned on; a text
with no word boundary to cut at (no spaces) is cut after its last token that fits instead.
Text written entirely in capitals is lower-cased first (`fold_all_caps`), the one deliberate
departure from the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .casing import fold_all_caps

# Instruct models the reference library wraps in their chat markup, keyed by the base model's
# hub id (`_name_or_path` in its config.json). The suffix is pooled with the text, as there.
CHAT_TEMPLATES: dict[str, tuple[str, str]] = {
    "meta-llama/Meta-Llama-3-8B-Instruct": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "mistralai/Mistral-7B-Instruct-v0.2": ("[INST] ", " [/INST]"),
    "meta-llama/Llama-2-7b-chat-hf": ("[INST] ", " [/INST]"),
    "google/gemma-2-9b-it": ("<bos><start_of_turn>user\n", "<end_of_turn>"),
    "Qwen/Qwen2-1.5B-Instruct": ("<|im_start|>user\n", "<|im_end|>"),
    "Qwen/Qwen2-7B-Instruct": ("<|im_start|>user\n", "<|im_end|>"),
}


@dataclass(frozen=True)
class TokenizedText:
    """One input ready for batching: token ids and which of them are pooled."""

    input_ids: list[int]
    pool_mask: list[bool]


@dataclass(frozen=True)
class PromptFormat:
    """How inputs are laid out around the text for one encoder."""

    max_length: int
    doc_max_length: int
    skip_instruction: bool = True
    chat_template: tuple[str, str] | None = None
    append_eos: bool = False
    prepend_bos: bool = False
    fold_all_caps: bool = False


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its BOS token in front of every text (Gemma, Llama; not SmolLM2)."""
    return tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]


def truncate_words(texts: Sequence[str], tokenizer: Any, fmt: PromptFormat) -> list[str]:
    """Cut texts longer than `doc_max_length` tokens on word boundaries, as the reference does."""
    lengths = [
        len(ids)
        for ids in tokenizer(
            list(texts), add_special_tokens=False, truncation=True, max_length=fmt.max_length
        )["input_ids"]
    ]
    out = list(texts)
    for i, length in enumerate(lengths):
        text = out[i]
        while length > fmt.doc_max_length:
            words = text.split()
            cut = " ".join(words[: int(len(words) * fmt.doc_max_length / length)])
            if not cut.strip() or len(cut) >= len(text):
                # No word boundary to cut at (Chinese, Japanese, Thai, minified code): cut at a token.
                text = _token_prefix(text, tokenizer, fmt.doc_max_length)
                break
            text = cut
            length = len(
                tokenizer(text, add_special_tokens=False, truncation=True, max_length=fmt.max_length)["input_ids"]
            )
        out[i] = text
    return out


def _token_prefix(text: str, tokenizer: Any, n_tokens: int) -> str:
    """The longest prefix of `text` made of its first `n_tokens` tokens."""
    offsets = tokenizer(text, add_special_tokens=False, truncation=True, max_length=n_tokens,
                        return_offsets_mapping=True)["offset_mapping"]
    return text[: offsets[-1][1]] if offsets else text


def _assemble(instruction: str | None, text: str, fmt: PromptFormat) -> tuple[str, int]:
    """The string fed to the tokenizer and the character where the text part starts."""
    lead = f"{instruction} " if instruction else ""
    body, start = lead + text, len(lead)
    if fmt.chat_template is not None:
        prefix, suffix = fmt.chat_template
        stripped = body.strip()
        start = max(0, start - (len(body) - len(body.lstrip())))
        body, start = prefix + stripped + suffix, start + len(prefix)
    if fmt.append_eos:
        body = body.strip()
    return body, start


def tokenize(
    instructions: Sequence[str | None],
    texts: Sequence[str],
    tokenizer: Any,
    fmt: PromptFormat,
) -> list[TokenizedText]:
    """Tokenize every pair once; mark the tokens whose span overlaps the text part."""
    if fmt.fold_all_caps:
        texts = [fold_all_caps(text) for text in texts]
    texts = truncate_words(texts, tokenizer, fmt)
    assembled = [_assemble(instr, text, fmt) for instr, text in zip(instructions, texts)]
    reserved = int(fmt.append_eos) + int(fmt.prepend_bos)
    encoded = tokenizer(
        [body for body, _ in assembled],
        add_special_tokens=True,
        truncation=True,
        max_length=fmt.max_length - reserved,
        return_offsets_mapping=True,
    )
    items = []
    for (_, start), ids, offsets in zip(assembled, encoded["input_ids"], encoded["offset_mapping"]):
        if fmt.skip_instruction:
            mask = [end > begin and end > start for begin, end in offsets]
        else:  # the reference then pools every token, special ones included
            mask = [True] * len(ids)
        ids = list(ids)
        if fmt.prepend_bos:
            ids, mask = [tokenizer.bos_token_id] + ids, [False] + mask
        if fmt.append_eos:
            ids, mask = ids + [tokenizer.eos_token_id], mask + [True]
        items.append(TokenizedText(ids, mask))
    return items


def collate(items: Sequence[TokenizedText], pad_token_id: int) -> dict[str, np.ndarray]:
    """Left-pad a batch (the reference's layout): input_ids, attention_mask (int64) and pool_mask (bool)."""
    width = max(len(item.input_ids) for item in items)
    input_ids = np.full((len(items), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(items), width), dtype=np.int64)
    pool_mask = np.zeros((len(items), width), dtype=bool)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        if n == 0:
            continue
        input_ids[row, width - n :] = item.input_ids
        attention_mask[row, width - n :] = 1
        pool_mask[row, width - n :] = item.pool_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pool_mask": pool_mask}
