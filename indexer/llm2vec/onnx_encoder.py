"""`OnnxEncoder`: an exported encoder run by ONNX Runtime, loaded without torch or transformers.

An export (`onnx_export`) is cached under `cache_dir()/onnx/<key>`, where the key hashes the
encoder's fingerprint (which already names its model, adapters, settings and precision), the
export format and the versions of onnxruntime and onnx. So whoever knows a fingerprint (an index
manifest does) can load its runtime in well under a second: `OnnxEncoder.cached(spec)` reads
`encoder.json`, the tokenizer (`rust_tokenizer`) and the graph, pre-optimized at export and with
its weights in an external file. An entry that is cut short or from another version is removed
and rebuilt by the next export, never loaded (`model_cache.entry_verified`).

fp32 graphs give the torch path's vectors (cosine 1 to 1e-6), so they stand in for it under
the same fingerprint; int8 graphs have their own (`precision`).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .config import LLM2VecConfig
from .errors import ModelLoadError
from .model_cache import entry_verified
from .rust_tokenizer import RustTokenizer
from .sources import cache_dir
from .fingerprint import spec_fingerprint
from .text_encoder import TextEncoder

FORMAT_VERSION = 1
GRAPH_FILE = "model.onnx"
WEIGHTS_FILE = "weights.bin"
SETTINGS_FILE = "encoder.json"
INPUTS = ("input_ids", "attention_mask", "pool_mask")


def onnx_root() -> Path:
    """Where exported encoders live: `cache_dir()/onnx`."""
    return cache_dir() / "onnx"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def entry_key(fingerprint: str) -> str:
    """The cache key of the export of the encoder with `fingerprint`."""
    identity = {"fingerprint": fingerprint, "format": FORMAT_VERSION,
                "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def entry_path(fingerprint: str) -> Path:
    return onnx_root() / entry_key(fingerprint)[:32]


def cached_entry(fingerprint: str) -> Path | None:
    """The folder of the verified cached export of the encoder with `fingerprint`, or None (a
    damaged or foreign entry is removed on the way; nothing is loaded)."""
    path = entry_path(fingerprint)
    return path if entry_verified(path, entry_key(fingerprint), "ONNX encoder") else None


def onnx_unavailable() -> str | None:
    """Why the ONNX runtime cannot run here (None when it can)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    return None


class OnnxEncoder(TextEncoder):
    """An exported LLM2Vec encoder run by ONNX Runtime on CPU: same `encode` as `LLM2VecEncoder`."""

    def __init__(self, directory: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        directory = Path(directory)
        settings = json.loads((directory / SETTINGS_FILE).read_text(encoding="utf-8"))
        chat_template = settings["chat_template"]
        super().__init__(RustTokenizer.load(directory), LLM2VecConfig(**settings["config"]),
                         chat_template=tuple(chat_template) if chat_template else None,
                         provenance=settings["provenance"], fold_all_caps=settings["fold_all_caps"])
        self._dim = int(settings["dim"])
        self.directory = directory
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimized at export
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(directory / GRAPH_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"ONNX Runtime could not load {directory / GRAPH_FILE}: {exc}") from exc

    @classmethod
    def cached(cls, spec: Mapping[str, Any]) -> "OnnxEncoder | None":
        """The cached export of the encoder `spec` describes (an index manifest's `encoder`), or None."""
        if onnx_unavailable() is not None:
            return None
        fingerprint = spec.get("fingerprint") or spec_fingerprint({k: v for k, v in spec.items() if k != "fingerprint"})
        path = cached_entry(fingerprint)
        if path is None:
            return None
        encoder = cls(path)
        return encoder if encoder.fingerprint() == fingerprint else None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def runtime(self) -> str:
        return "onnx"

    @property
    def bidirectional(self) -> bool:
        return bool(self.provenance.get("bidirectional", True))

    def _embed_batch(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: batch[name] for name in INPUTS})[0]

    def __repr__(self) -> str:
        return (f"OnnxEncoder(model={self.provenance.get('model')!r}, precision={self.precision!r}, "
                f"pooling={self.config.pooling_mode!r}, dim={self.dim})")
