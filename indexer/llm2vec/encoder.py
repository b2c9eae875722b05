"""`LLM2VecEncoder`: a decoder-only LLM as a text encoder, composed of small parts.

loading (`sources`, `adapters`) -> attention (`attention`) -> tokenization with instructions
(`tokenization`) -> pooling (`pooling`) -> optional normalisation, behind one `encode(...)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .adapters import adapter_base_model, adapter_sha256, apply_adapters, is_adapter_dir, resolve_adapter
from .attention import is_bidirectional, set_bidirectional
from .batching import length_batches
from .config import LLM2VecConfig
from .errors import InputError, ModelLoadError
from .hardware import fast_bf16
from .model_cache import MergedModel
from .pooling import pool
from .precision import apply_precision, check_precision
from .sources import resolve_model
from .tokenization import CHAT_TEMPLATES, PromptFormat, TokenizedText, collate, tokenize

TextInput = str | Sequence[str] | Sequence[Sequence[str]]
DEFAULT_MAX_BATCH_TOKENS = 16384
ConvertTo = Literal["numpy", "torch", "list"]


def _torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(names)}")
    return names[dtype]


def _raw_name_or_path(location: str) -> str | None:
    """`_name_or_path` as written in a local config.json (the base model's hub id)."""
    try:
        return json.loads((Path(location) / "config.json").read_text()).get("_name_or_path")
    except (OSError, json.JSONDecodeError):
        return None


def _split_inputs(texts: Sequence[Any], instruction: str | Sequence[str | None] | None) -> tuple[list[str | None], list[str]]:
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


class LLM2VecEncoder:
    """Encode texts (optionally with task instructions) into vectors with an LLM2Vec model."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        config: LLM2VecConfig = LLM2VecConfig(),
        *,
        chat_template: tuple[str, str] | None = None,
        provenance: dict[str, Any] | None = None,
        fold_all_caps: bool = True,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError("LLM2VecEncoder needs a fast (Rust) tokenizer: it pools by character offsets")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        pooling = config.pooling_mode
        adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
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
            prepend_bos=pooling == "bos_token" and not adds_bos,
            fold_all_caps=fold_all_caps,
        )
        self.provenance = dict(provenance or {})

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        adapters: Sequence[str | os.PathLike] = (),
        *,
        bidirectional: bool = True,
        pooling: str | None = None,
        max_length: int | None = None,
        doc_max_length: int | None = None,
        skip_instruction: bool | None = None,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        attn_implementation: str | None = None,
        merge_adapters: bool = True,
        trust_remote_code: bool = False,
        fold_all_caps: bool = True,
        precision: str = "fp32",
    ) -> "LLM2VecEncoder":
        """Load a model (directory, hub id, .gguf file or embedded name) and stack `adapters` on it.

        An embedded name brings its shipped adapters ("smollm2-135m" = "smollm2-135m:mntp+supervised";
        "smollm2-135m:base" has none); `adapters` go on top of those.

        Settings left as None come from `llm2vec_config.json` in the last adapter (else the model
        directory), else the defaults: mean pooling, max_length 512, doc_max_length 400.
        Every adapter but the last is merged; the last is merged too unless `merge_adapters=False`.
        `fold_all_caps` lower-cases texts written entirely in capitals (see `tokenization`); turn it
        off for byte-for-byte parity with the reference library on such texts.

        The model with its merged adapters is cached (`model_cache`): the first load merges and
        saves it, later loads read it back in a second or two. `trust_remote_code` models are
        never cached.

        `precision="int8"` runs the linear layers in int8 on CPU (`precision`: about 1.3x faster
        on AVX2, rows within cosine 0.99 of fp32 on English passages and queries, less on short
        texts in other scripts); "auto" picks int8 where a short self-check finds it faster and
        within 0.99 on varied texts, else fp32. The precision used is part of `spec()` (and so
        of the fingerprint) when it is not fp32.
        """
        check_precision(precision)
        resolved = resolve_model(model)
        adapters = [str(resolve_adapter(a)) for a in adapters]
        location = resolved.location
        if is_adapter_dir(location) and not _has_weights(location):
            # A released "-mntp" directory: base config + adapter, the base named by the adapter.
            base = adapter_base_model(location)
            if base is None:
                raise ModelLoadError(f"{location} is an adapter that names no base model")
            adapters.insert(0, location)
            resolved = resolve_model(base)
            location = resolved.location
        recipe = list(resolved.adapters)  # an embedded recipe's shipped adapters go under the user's
        settings = LLM2VecConfig.read(location)
        if recipe or adapters:
            settings.update(LLM2VecConfig.read([*recipe, *adapters][-1]))
        overrides = {"pooling_mode": pooling, "max_length": max_length, "doc_max_length": doc_max_length,
                     "skip_instruction": skip_instruction}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        try:
            config = LLM2VecConfig(**settings)
        except ValueError as exc:
            raise InputError(str(exc)) from None

        torch_dtype = _torch_dtype(dtype)
        load_kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
        if attn_implementation is not None:
            load_kwargs["attn_implementation"] = attn_implementation
        stack = [*recipe, *adapters]
        merged, unmerged = (stack, []) if merge_adapters or not stack else (stack[:-1], stack[-1:])
        tokenizer, hf_model = _load_merged(location, merged, load_kwargs, resolved.source)
        if bidirectional or is_bidirectional(hf_model):
            set_bidirectional(hf_model, bidirectional)
        if unmerged:
            hf_model = apply_adapters(hf_model, unmerged, merge_last=False)
        target = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        hf_model.to(target)
        if torch_dtype == torch.bfloat16 and not fast_bf16(target):
            warnings.warn(f"bfloat16 on {target.type} without native bf16 support (AVX512-BF16/AMX) is much "
                          "slower than float32 here; use the default float32", RuntimeWarning, stacklevel=2)
        provenance = {
            "model": resolved.source,
            "model_sha256": resolved.sha256 or _weights_fingerprint(location),
            "model_adapters": [adapter_sha256(a) for a in recipe],
            "adapters": [{"path": a, "sha256": adapter_sha256(a)} for a in adapters],
            "bidirectional": bidirectional,
        }
        encoder = cls(hf_model, tokenizer, config, chat_template=CHAT_TEMPLATES.get(_raw_name_or_path(location) or ""),
                      provenance=provenance, fold_all_caps=fold_all_caps)
        used = apply_precision(encoder, precision)
        if used != "fp32":
            encoder.provenance["precision"] = used  # fp32 specs stay as they were: their fingerprints hold
        return encoder

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the model (or its unmerged adapter), tokenizer and `llm2vec_config.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.config.write(directory)
        return directory

    def save_sentence_transformers(self, directory: str | os.PathLike, *, prompts: dict[str, str] | None = None,
                                   normalize: bool = True, force: bool = False) -> Path:
        """Write a sentence-transformers folder: merged weights, prompts per task, model card
        (`st_export.export_sentence_transformers`; `ExportError` for what it cannot express)."""
        from .st_export import export_sentence_transformers

        return export_sentence_transformers(self, directory, prompts=prompts, normalize=normalize, force=force)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """"fp32", or "int8" for the quantized fast path (see `precision`)."""
        return self.provenance.get("precision", "fp32")

    @property
    def bidirectional(self) -> bool:
        return is_bidirectional(self.model)

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
        spec = self.spec()
        spec["adapters"] = [a["sha256"] for a in spec.get("adapters", [])]
        if spec.get("model_sha256"):
            spec.pop("model", None)
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"LLM2VecEncoder(model={self.provenance.get('model', type(self.model).__name__)!r}, "
                f"pooling={self.config.pooling_mode!r}, bidirectional={self.bidirectional}, dim={self.dim})")

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

    def embed(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled embeddings [batch, dim] for a collated batch (differentiable; used by training)."""
        device = self.device
        outputs = self.model(
            input_ids=features["input_ids"].to(device),
            attention_mask=features["attention_mask"].to(device),
        )
        hidden = outputs.last_hidden_state.float()
        return pool(hidden, features["attention_mask"].to(device), features["pool_mask"].to(device),
                    self.config.pooling_mode)

    def encode(
        self,
        texts: TextInput,
        instruction: str | Sequence[str | None] | None = None,
        *,
        batch_size: int | None = 32,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
        convert_to: ConvertTo = "numpy",
    ) -> np.ndarray | torch.Tensor | list:
        """Encode texts into float32 vectors, rows in input order.

        `texts` is a string, a list of strings, or a list of `[instruction, text]` pairs (as in the
        reference library). `instruction` is one string for all texts or one per text; it is seen
        by the model but not pooled. A single string gives a 1-D vector.

        Texts of similar length go through the model together: a batch holds at most `batch_size`
        texts (None: no limit) and `max_batch_tokens` padded tokens, and never pads a short text
        to the length of a much longer one (`batching`).
        """
        if convert_to not in ("numpy", "torch", "list"):
            raise InputError(f"convert_to must be 'numpy', 'torch' or 'list', got {convert_to!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if not isinstance(max_batch_tokens, int) or max_batch_tokens < 1:
            raise InputError(f"max_batch_tokens must be a positive integer, got {max_batch_tokens!r}")
        single = isinstance(texts, str)
        instructions, docs = _split_inputs([texts] if single else texts, instruction)
        items = self.tokenize(docs, instructions) if docs else []
        batches = length_batches([len(item.input_ids) for item in items], max_texts=batch_size,
                                 max_tokens=max_batch_tokens)
        result = torch.empty((len(items), self.dim), dtype=torch.float32)
        if show_progress_bar is None:
            show_progress_bar = len(batches) > 1 and sys.stderr.isatty()
        with torch.inference_mode(), tqdm(total=len(items), desc="encoding", unit="text",
                                          disable=not show_progress_bar) as bar:
            for rows in batches:
                batch = collate([items[i] for i in rows], self.pad_token_id)
                result[rows] = self.embed(batch).cpu()
                bar.update(len(rows))
        if normalize:
            result = torch.nn.functional.normalize(result, dim=-1)
        if single:
            result = result[0]
        if convert_to == "torch":
            return result
        if convert_to == "list":
            return result.tolist()
        return result.numpy()


def _load_directory(directory: str | Path, load_kwargs: dict[str, Any], source: str) -> tuple[Any, nn.Module]:
    """Tokenizer and base model (`AutoModel`) of a local model directory."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=load_kwargs["trust_remote_code"])
        with _quiet_weight_loading():
            model = AutoModel.from_pretrained(directory, **load_kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load model {source!r}: {exc}") from exc
    return tokenizer, model


def _load_merged(location: str, adapters: Sequence[str], load_kwargs: dict[str, Any],
                 source: str) -> tuple[Any, nn.Module]:
    """Tokenizer and model of `location` with `adapters` merged in: read from the merged-model cache
    when it holds them, else merged with peft and saved there for the next load."""
    if not adapters or load_kwargs["trust_remote_code"]:
        tokenizer, model = _load_directory(location, load_kwargs, source)
        return tokenizer, apply_adapters(model, adapters) if adapters else model
    entry = MergedModel.of(location, adapters, str(load_kwargs["dtype"]).removeprefix("torch."))
    if entry.verified():
        try:
            return _load_directory(entry.path, load_kwargs, source)
        except Exception as exc:  # a cache entry is never trusted over the inputs: rebuild it
            warnings.warn(f"the cached merged model {entry.path} does not load ({exc}); rebuilding it",
                          RuntimeWarning, stacklevel=3)
            shutil.rmtree(entry.path, ignore_errors=True)
    tokenizer, model = _load_directory(location, load_kwargs, source)
    model = apply_adapters(model, adapters)
    try:
        with _quiet_weight_loading():
            entry.save(model, tokenizer)
    except OSError as exc:  # a full or read-only cache costs the next load a merge, nothing else
        warnings.warn(f"could not cache the merged model in {entry.path}: {exc}", RuntimeWarning, stacklevel=3)
    return tokenizer, model


@contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" / "Writing model shards" bars (a local load takes a second or two)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _has_weights(directory: str) -> bool:
    return any(Path(directory).glob("*.safetensors")) and not all(
        p.name.startswith("adapter_") for p in Path(directory).glob("*.safetensors")
    )


def _weights_fingerprint(location: str) -> str:
    """A cheap content fingerprint of a model directory: config.json, then each weight file's
    name, size and first and last MiB (hashing whole multi-GB files on every load is too slow)."""
    digest = hashlib.sha256()
    directory = Path(location)
    config = directory / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for path in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()
