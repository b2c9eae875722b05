"""`LLM2VecEncoder`: a decoder-only LLM as a text encoder, composed of small parts.

loading (`sources`, `adapters`) -> attention (`attention`) -> tokenization with instructions
(`tokenization`) -> pooling (`pooling`) -> optional normalisation, behind one `encode(...)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .adapters import adapter_base_model, adapter_sha256, apply_adapters, is_adapter_dir, resolve_adapter
from .attention import is_bidirectional, set_bidirectional
from .config import LLM2VecConfig
from .errors import InputError, ModelLoadError
from .hardware import fast_bf16
from .model_cache import MergedModel
from .pooling import pool
from .precision import apply_precision, check_precision
from .sources import resolve_model
from .text_encoder import CPU_MAX_BATCH_TOKENS, GPU_MAX_BATCH_TOKENS, TextEncoder
from .tokenization import CHAT_TEMPLATES


RUNTIMES = ("torch", "onnx")


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


class LLM2VecEncoder(TextEncoder):
    """Encode texts (optionally with task instructions) into vectors with an LLM2Vec model (torch)."""

    def __init__(self, model: nn.Module, tokenizer: Any, config: LLM2VecConfig = LLM2VecConfig(),
                 **settings: Any) -> None:
        """`settings`: `TextEncoder`'s keyword arguments (chat_template, provenance, fold_all_caps)."""
        super().__init__(tokenizer, config, **settings)
        self.model = model.eval()

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
        runtime: str = "torch",
    ) -> TextEncoder:
        """Load a model (directory, hub id, .gguf file or embedded name) and stack `adapters` on it.

        An embedded name brings its shipped adapters ("smollm2-135m" =
        "smollm2-135m:mntp+supervised+distill2"; "smollm2-135m:base" has none); `adapters` go on top
        of those.

        Settings left as None come from `llm2vec_config.json` in the last adapter (else the model
        directory), else the defaults: mean pooling, max_length 512, doc_max_length 400.
        Every adapter but the last is merged; the last is merged too unless `merge_adapters=False`.
        `fold_all_caps` lower-cases texts written entirely in capitals (see `tokenization`); turn it
        off for byte-for-byte parity with the reference library on such texts.

        The model with its merged adapters is cached (`model_cache`): the first load merges and
        saves it, later loads read it back in a second or two. `trust_remote_code` models are
        never cached.

        `runtime="onnx"` returns an `OnnxEncoder`: the same model and pooling exported once to ONNX
        Runtime (cached, `onnx_encoder`), same vectors, and later loads from an index need neither
        torch nor transformers. `precision="int8"` runs the linear layers in int8 on that runtime
        (`precision`: rows within cosine 0.99 of fp32 on English passages and queries, less on
        short texts in other scripts). `precision="bf16"` casts the torch model to bfloat16 where
        the hardware multiplies bf16 natively (AVX512-BF16/AMX, GPUs), and is refused elsewhere; its
        rows agree with fp32's, so it keeps the fp32 fingerprint. "auto" picks, of int8 and bf16, the
        fastest that a short self-check finds faster than fp32 and within 0.99 on varied texts, else
        fp32. int8 is part of `spec()` (and so of the fingerprint).
        """
        check_precision(precision)
        if runtime not in RUNTIMES:
            raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if runtime == "onnx" and precision == "bf16":
            raise InputError("precision='bf16' runs on the torch runtime; use runtime='torch', or precision 'fp32' or "
                             "'int8' with runtime='onnx'")
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
        chosen = apply_precision(encoder, precision)
        if runtime == "onnx" and chosen.runtime != "onnx" and chosen.precision == "fp32":
            from .onnx_export import onnx_encoder

            return onnx_encoder(encoder)
        return chosen

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
    def max_batch_tokens(self) -> int:
        return CPU_MAX_BATCH_TOKENS if self.device.type == "cpu" else GPU_MAX_BATCH_TOKENS

    @property
    def runtime(self) -> str:
        return "torch"

    @property
    def precision(self) -> str:
        """"bf16" for a bfloat16 model (same fingerprint as fp32: see `precision`), else the recorded one."""
        return "bf16" if next(self.model.parameters()).dtype == torch.bfloat16 else super().precision

    @property
    def bidirectional(self) -> bool:
        return is_bidirectional(self.model)

    def __repr__(self) -> str:
        return (f"LLM2VecEncoder(model={self.provenance.get('model', type(self.model).__name__)!r}, "
                f"pooling={self.config.pooling_mode!r}, bidirectional={self.bidirectional}, dim={self.dim})")

    # ------------------------------------------------------------------ encoding
    def embed(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled embeddings [batch, dim] for a collated batch (differentiable; used by training)."""
        device = self.device
        input_ids, attention_mask, pool_mask = (torch.as_tensor(features[name]).to(device)
                                                for name in ("input_ids", "attention_mask", "pool_mask"))
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        return pool(hidden, attention_mask, pool_mask, self.config.pooling_mode)

    def _embed_batch(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return self.embed(batch).cpu().numpy()


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
