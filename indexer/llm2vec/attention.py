"""Bidirectional attention for decoder-only models, through transformers' own switches.

transformers 5 builds every attention mask in `masking_utils`; when `config.is_causal` is
False, `create_causal_mask` and `create_sliding_window_causal_mask` return bidirectional
(padding-only, or symmetric-window) masks for every attention implementation. The attention
modules carry an `is_causal` flag that SDPA and flash-attention read when no mask is needed.
Setting both is what Gemma's `use_bidirectional_attention` does; it needs no model subclass.
"""

from __future__ import annotations

from torch import nn

from .errors import UnsupportedArchitectureError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text")


def check_supported(model_type: str) -> None:
    """Raise a clear error for architectures whose masks we have not verified."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"bidirectional attention is not supported for model type {model_type!r}; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)} (use bidirectional=False for causal attention)"
        )


def set_bidirectional(model: nn.Module, enabled: bool) -> None:
    """Switch `model` (a transformers PreTrainedModel) between bidirectional and causal attention."""
    check_supported(model.config.model_type)
    configs = {id(model.config): model.config}
    text_config = getattr(model.config, "text_config", None)
    if text_config is not None:
        configs[id(text_config)] = text_config
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None:
            configs[id(config)] = config
        if hasattr(module, "is_causal"):
            module.is_causal = not enabled
    for config in configs.values():
        config.is_causal = not enabled


def is_bidirectional(model: nn.Module) -> bool:
    return not getattr(model.config, "is_causal", True)
