"""LLM2Vec encoder: any decoder-only LLM as a bidirectional text encoder (transformers 5.x).

Names are exported lazily (`indexer.lazy`): `from indexer.llm2vec import LLM2VecError` does not
import torch; `LLM2VecEncoder` does, when first used (`OnnxEncoder`, the ONNX Runtime encoder, never does).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "CONFIG_NAME": ".config",
    "DEFAULT_MODEL": ".sources",
    "EMBEDDED_MODELS": ".sources",
    "ExportError": ".st_export",
    "POOLING_MODES": ".config",
    "SUPPORTED_MODEL_TYPES": ".attention",
    "InputError": ".errors",
    "LLM2VecConfig": ".config",
    "LLM2VecEncoder": ".encoder",
    "LLM2VecError": ".errors",
    "ModelLoadError": ".errors",
    "OnnxEncoder": ".onnx_encoder",
    "TextEncoder": ".text_encoder",
    "RecipeVersionError": ".recipes",
    "UnsupportedArchitectureError": ".errors",
    "cache_dir": ".sources",
    "export_onnx": ".onnx_export",
    "export_sentence_transformers": ".st_export",
    "resolve_model": ".sources",
    "set_bidirectional": ".attention",
})
