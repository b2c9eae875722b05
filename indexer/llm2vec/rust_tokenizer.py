"""A transformers-free tokenizer: `tokenizers.Tokenizer` behind the call API this package uses.

transformers' fast tokenizers run the same Rust `tokenizers.Tokenizer` (`backend_tokenizer`); the
Python around it costs seconds of imports. `RustTokenizer` wraps the backend of a loaded fast
tokenizer (saved as `tokenizer.json` with the special-token ids beside it), and answers
`tokenizer(texts, add_special_tokens=..., truncation=True, max_length=..., return_offsets_mapping=True)`
with the same ids and offsets, so `tokenization`, `chunking` and the server's batcher run on it
unchanged. It is what the ONNX runtime (`onnx_encoder`) loads.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Sequence

from tokenizers import Tokenizer

SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


class RustTokenizer:
    """`tokenizers.Tokenizer` with the transformers call API subset (ids, offsets, truncation)."""

    is_fast = True

    def __init__(self, tokenizer: Tokenizer, *, bos_token_id: int | None = None, eos_token_id: int | None = None,
                 pad_token_id: int | None = None) -> None:
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._lock = threading.Lock()  # truncation is state of the Rust tokenizer
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id

    @classmethod
    def of(cls, hf_tokenizer: Any) -> "RustTokenizer":
        """A copy of a loaded transformers fast tokenizer's backend, with its special-token ids."""
        backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        return cls(backend, **{name: getattr(hf_tokenizer, name) for name in SPECIAL_IDS})

    def save(self, directory: str | Path) -> None:
        """Write `tokenizer.json` and `special_tokens.json` into `directory`."""
        directory = Path(directory)
        self._tokenizer.save(str(directory / "tokenizer.json"))
        ids = {name: getattr(self, name) for name in SPECIAL_IDS}
        (directory / "special_tokens.json").write_text(json.dumps(ids), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "RustTokenizer":
        """Read what `save` wrote."""
        directory = Path(directory)
        ids = json.loads((directory / "special_tokens.json").read_text(encoding="utf-8"))
        return cls(Tokenizer.from_file(str(directory / "tokenizer.json")), **{k: ids.get(k) for k in SPECIAL_IDS})

    def __call__(self, text: str | Sequence[str], *, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, return_offsets_mapping: bool = False,
                 return_attention_mask: bool = False, verbose: bool = True) -> dict[str, Any]:
        """`input_ids` (and `offset_mapping`) of one text or a list, as transformers returns them
        (no attention mask: nothing is padded; `verbose` has nothing to warn about here)."""
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        with self._lock:
            if truncation and max_length is not None:
                self._tokenizer.enable_truncation(max_length)
            else:
                self._tokenizer.no_truncation()
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        return {key: value[0] for key, value in out.items()} if single else out
