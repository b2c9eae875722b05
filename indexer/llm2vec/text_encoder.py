"""`TextEncoder`: what every runtime of an LLM2Vec encoder shares, without importing torch.

Inputs are validated, tokenized with their instructions (`tokenization`), grouped into batches by
padded tokens (`batching`), run through the model by the subclass (`_embed_batch`: the torch
module in `encoder.LLM2VecEncoder`, an ONNX Runtime session in `onnx_encoder.OnnxEncoder`), and
optionally normalised. `spec()` and `fingerprint()` say what determines the vectors, so an index
can tell whether an encoder matches it whatever runtime computes them.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, Sequence

import numpy as np
from tqdm.auto import tqdm

from .batching import length_batches
from .config import LLM2VecConfig
from .errors import InputError, ModelLoadError
from .fingerprint import spec_fingerprint
from .tokenization import PromptFormat, TokenizedText, adds_bos, collate, tokenize
from ..vectors import normalize_rows

TextInput = str | Sequence[str] | Sequence[Sequence[str]]
CPU_MAX_BATCH_TOKENS = 2048
"""A CPU batch's padded tokens. Small enough that each activation ([tokens, intermediate] floats,
12 MB for SmolLM2) stays in cache and is reused from the allocator's heap rather than mapped afresh
and page-faulted in on every layer: at 16384, 32 SciFact passages took 1.6x as long with 4-5x the
kernel time (README, "The CPU batch budget"); ONNX Runtime's int8 gains 1.3x too."""
GPU_MAX_BATCH_TOKENS = 16384
"""A GPU batch's padded tokens: large enough to fill the device."""
ConvertTo = Literal["numpy", "torch", "list"]


def split_inputs(texts: Sequence[Any], instruction: str | Sequence[str | None] | None) -> tuple[list[str | None], list[str]]:
    """Validate inputs into parallel lists of (instruction or None, text)."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    pairs = [t for t in texts if isinstance(t, (list, tuple))]
    if pairs and len(pairs) != len(texts):
        raise InputError("mix of plain texts and [instruction, text] pairs; use one form for the whole call")
    if pairs:
        if instruction is not None:
            raise InputError("give instructions either as [instruction, text] pairs or with instruction=, not both")
        for i, pair in enumerate(texts):
            if len(pair) != 2:
                raise InputError(f"input {i} must be an [instruction, text] pair, got {len(pair)} items")
        instructions, docs = [p[0] for p in texts], [p[1] for p in texts]
    else:
        docs = list(texts)
        if instruction is None or isinstance(instruction, str):
            instructions = [instruction] * len(docs)
        elif isinstance(instruction, Sequence):
            if len(instruction) != len(docs):
                raise InputError(f"got {len(instruction)} instructions for {len(docs)} texts; give one, or one per text")
            instructions = list(instruction)
        else:
            raise InputError(f"instruction must be a string or a list of strings, got {type(instruction).__name__}")
    for i, text in enumerate(docs):
        if not isinstance(text, str):
            raise InputError(f"text {i} is {type(text).__name__}, expected str")
        if not text.strip():
            raise InputError(f"text {i} is empty or whitespace-only: there is nothing to encode")
    cleaned: list[str | None] = []
    for i, instr in enumerate(instructions):
        if instr is not None and not isinstance(instr, str):
            raise InputError(f"instruction {i} is {type(instr).__name__}, expected str or None")
        cleaned.append(instr.strip() or None if instr else None)
    return cleaned, docs


class TextEncoder:
    """Encode texts (optionally with task instructions) into vectors; subclasses run the model."""

    def __init__(
        self,
        tokenizer: Any,
        config: LLM2VecConfig = LLM2VecConfig(),
        *,
        chat_template: tuple[str, str] | None = None,
        provenance: dict[str, Any] | None = None,
        fold_all_caps: bool = True,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError("LLM2VecEncoder needs a fast (Rust) tokenizer: it pools by character offsets")
        self.tokenizer = tokenizer
        self.config = config
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        pooling = config.pooling_mode
        if pooling == "bos_token" and tokenizer.bos_token_id is None:
            raise ModelLoadError("bos_token pooling needs a tokenizer with a BOS token; this one has none")
        if pooling == "eos_token" and tokenizer.eos_token_id is None:
            raise ModelLoadError("eos_token pooling needs a tokenizer with an EOS token; this one has none")
        self.format = PromptFormat(
            max_length=config.max_length,
            doc_max_length=config.doc_max_length,
            skip_instruction=config.skip_instruction,
            chat_template=chat_template,
            append_eos=pooling == "eos_token",
            prepend_bos=pooling == "bos_token" and not adds_bos(tokenizer),
            fold_all_caps=fold_all_caps,
        )
        self.provenance = dict(provenance or {})

    # ------------------------------------------------------------------ what the vectors depend on
    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def max_batch_tokens(self) -> int:
        """`encode`'s default cap on a batch's padded tokens for the device this encoder runs on."""
        return CPU_MAX_BATCH_TOKENS

    @property
    def precision(self) -> str:
        """"fp32", or "int8" for the quantized fast path (see `precision`)."""
        return self.provenance.get("precision", "fp32")

    @property
    def runtime(self) -> str:
        """What computes the vectors: "torch" or "onnx"."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """What determines this encoder's vectors: stored in index manifests and compared on open."""
        return {
            **self.provenance,
            "pooling_mode": self.config.pooling_mode,
            "max_length": self.config.max_length,
            "doc_max_length": self.config.doc_max_length,
            "skip_instruction": self.config.skip_instruction,
            "fold_all_caps": self.format.fold_all_caps,
            "dim": self.dim,
        }

    def fingerprint(self) -> str:
        """A short hash of `spec()` without local paths: equal fingerprints give equal vectors."""
        return spec_fingerprint(self.spec())

    # ------------------------------------------------------------------ encoding
    def tokenize(self, texts: Sequence[str], instructions: Sequence[str | None] | None = None) -> list[TokenizedText]:
        """Token ids and pooling masks for texts (instructions already validated)."""
        instructions = list(instructions) if instructions is not None else [None] * len(texts)
        items = tokenize(instructions, texts, self.tokenizer, self.format)
        if self.config.pooling_mode in ("mean", "weighted_mean"):
            for i, item in enumerate(items):
                if not any(item.pool_mask):
                    raise InputError(
                        f"text {i} has no token left to pool: its instruction fills max_length={self.config.max_length}"
                    )
        return items

    def _embed_batch(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Pooled float32 vectors [batch, dim] of one collated batch."""
        raise NotImplementedError

    def encode(
        self,
        texts: TextInput,
        instruction: str | Sequence[str | None] | None = None,
        *,
        batch_size: int | None = 32,
        max_batch_tokens: int | None = None,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
        convert_to: ConvertTo = "numpy",
    ) -> Any:
        """Encode texts into float32 vectors, rows in input order.

        `texts` is a string, a list of strings, or a list of `[instruction, text]` pairs (as in the
        reference library). `instruction` is one string for all texts or one per text; it is seen
        by the model but not pooled. A single string gives a 1-D vector.

        Texts of similar length go through the model together: a batch holds at most `batch_size`
        texts (None: no limit) and `max_batch_tokens` padded tokens (None: the device's default,
        `self.max_batch_tokens`), and never pads a short text to the length of a much longer one
        (`batching`).
        """
        if convert_to not in ("numpy", "torch", "list"):
            raise InputError(f"convert_to must be 'numpy', 'torch' or 'list', got {convert_to!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if max_batch_tokens is None:
            max_batch_tokens = self.max_batch_tokens
        if not isinstance(max_batch_tokens, int) or max_batch_tokens < 1:
            raise InputError(f"max_batch_tokens must be a positive integer, got {max_batch_tokens!r}")
        single = isinstance(texts, str)
        instructions, docs = split_inputs([texts] if single else texts, instruction)
        items = self.tokenize(docs, instructions) if docs else []
        batches = length_batches([len(item.input_ids) for item in items], max_texts=batch_size,
                                 max_tokens=max_batch_tokens)
        result = np.empty((len(items), self.dim), dtype=np.float32)
        if show_progress_bar is None:
            show_progress_bar = len(batches) > 1 and sys.stderr.isatty()
        with tqdm(total=len(items), desc="encoding", unit="text", disable=not show_progress_bar) as bar:
            for rows in batches:
                result[rows] = self._embed_batch(collate([items[i] for i in rows], self.pad_token_id))
                bar.update(len(rows))
        if normalize:
            result = normalize_rows(result)
        if single:
            result = result[0]
        if convert_to == "torch":
            import torch

            return torch.from_numpy(result)
        if convert_to == "list":
            return result.tolist()
        return result
