"""LLM2Vec encoder: any decoder-only LLM as a bidirectional text encoder (transformers 5.x)."""

from .attention import SUPPORTED_MODEL_TYPES, set_bidirectional
from .config import CONFIG_NAME, POOLING_MODES, LLM2VecConfig
from .encoder import LLM2VecEncoder
from .errors import InputError, LLM2VecError, ModelLoadError, UnsupportedArchitectureError
from .sources import EMBEDDED_MODELS, cache_dir, resolve_model

__all__ = [
    "CONFIG_NAME",
    "EMBEDDED_MODELS",
    "POOLING_MODES",
    "SUPPORTED_MODEL_TYPES",
    "InputError",
    "LLM2VecConfig",
    "LLM2VecEncoder",
    "LLM2VecError",
    "ModelLoadError",
    "UnsupportedArchitectureError",
    "cache_dir",
    "resolve_model",
    "set_bidirectional",
]
