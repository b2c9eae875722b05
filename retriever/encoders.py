"""The encoder an index was built with: loaded from its manifest once per process, and checked.

An index manifest's `encoder` entry is `LLM2VecEncoder.spec()` plus its `fingerprint`. Loading
that model twice (several `Retriever.open` calls, a retriever and a vector store) would double the
memory and the start-up time, so loaded encoders are cached by (spec, dtype, device).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from indexer.loading import encoder_from_manifest
from indexer.llm2vec import LLM2VecError
from indexer.llm2vec.recipes import check_manifest_recipe

from .errors import IndexMismatchError, RetrieverError

if TYPE_CHECKING:
    from indexer.llm2vec.text_encoder import TextEncoder


def load_encoder(model: str, adapters: tuple[str, ...] = (), **settings: Any) -> TextEncoder:
    """`LLM2VecEncoder.from_pretrained(model, adapters, **settings)`, loaded once per process.

    Settings are keyword arguments of `from_pretrained` with hashable values (dtype as a string).
    A load failure is a `RetrieverError` naming the model.
    """
    return _load(str(model), tuple(str(a) for a in adapters), tuple(sorted(settings.items())))


@lru_cache(maxsize=4)
def _load(model: str, adapters: tuple[str, ...], settings: tuple[tuple[str, Any], ...]) -> TextEncoder:
    from indexer.llm2vec import LLM2VecEncoder  # torch

    try:
        return LLM2VecEncoder.from_pretrained(model, adapters, **dict(settings))
    except LLM2VecError as exc:
        raise RetrieverError(f"cannot load the encoder {model!r}: {exc}") from exc


def encoder_for_manifest(manifest: Mapping[str, Any], *, dtype: str | None = None, device: str | None = None,
                         index_dir: str | Path | None = None, runtime: str = "auto") -> TextEncoder:
    """The encoder the manifest names, loaded with its settings (cached) and fingerprint-checked
    (a recipe version not shipped: `RetrieverError` with the command that rebuilds `index_dir`).
    `runtime` as in `indexer.loading.encoder_from_manifest`: "auto" takes a cached ONNX export."""
    spec = manifest.get("encoder") or {}
    if not spec.get("model"):
        raise RetrieverError(
            "the index manifest names no LLM2Vec model (its vectors came from other embeddings): "
            "open it with those embeddings, or pass an encoder"
        )
    try:
        check_manifest_recipe(manifest, index_dir)
    except LLM2VecError as exc:
        raise RetrieverError(str(exc)) from exc
    encoder = _load_for_spec(json.dumps(spec, sort_keys=True), dtype, device, runtime)
    check_compatible(manifest, encoder)
    return encoder


@lru_cache(maxsize=4)
def _load_for_spec(spec_json: str, dtype: str | None, device: str | None, runtime: str) -> TextEncoder:
    spec = json.loads(spec_json)
    try:
        return encoder_from_manifest({"encoder": spec}, dtype=dtype, device=device, runtime=runtime)
    except LLM2VecError as exc:
        raise RetrieverError(f"cannot load the index's encoder {spec['model']!r}: {exc}") from exc


def check_compatible(manifest: Mapping[str, Any], encoder: TextEncoder) -> None:
    """Raise `IndexMismatchError` unless `encoder` produces the vectors the index holds."""
    spec = manifest.get("encoder") or {}
    expected = spec.get("fingerprint")
    if expected != encoder.fingerprint():
        raise IndexMismatchError(
            f"the index was built with encoder {spec.get('model')!r} (fingerprint {expected}); the encoder "
            f"given ({encoder!r}) has fingerprint {encoder.fingerprint()}: its query vectors would not be "
            "comparable. Open the index without an encoder to load its own."
        )
