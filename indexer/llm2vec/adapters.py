"""PEFT LoRA adapters stacked on a base model, as the released LLM2Vec checkpoints are."""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from torch import nn

from .errors import ModelLoadError
from .sources import cached_file_sha256, download

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_model(path: str | os.PathLike) -> str | None:
    """The base model an adapter directory was trained on, as its adapter_config.json names it."""
    try:
        return json.loads((Path(path) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    except (OSError, KeyError, json.JSONDecodeError):
        return None


def adapter_sha256(path: str | os.PathLike) -> str:
    """Content hash of an adapter's weights (what makes two adapters the same)."""
    for name in ADAPTER_WEIGHTS:
        if (Path(path) / name).is_file():
            return cached_file_sha256(Path(path) / name)
    raise ModelLoadError(f"{path} holds no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")


def resolve_adapter(adapter: str | os.PathLike) -> Path:
    """A local adapter directory; hub ids ("org/name" that is not a local path) are downloaded."""
    path = Path(adapter).expanduser()
    text = os.fspath(adapter)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        return path
    return Path(download(text))


@contextmanager
def peft_without_deprecation_noise() -> Iterator[None]:
    """Silence the one FutureWarning peft triggers in transformers 5 on every `PeftModel(...)` and
    `get_peft_model(...)`.

    peft (0.21.2, the newest release) reads `model.is_gradient_checkpointing`, which transformers 5
    deprecated in favour of `is_activation_checkpointing`; the user can do nothing about it, and
    nothing in this package reads the deprecated property. Only that message is filtered.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def apply_adapters(model: nn.Module, adapters: Sequence[str | os.PathLike], *, merge_last: bool = True) -> nn.Module:
    """Load each adapter on top of the previous ones; all but (optionally) the last are merged."""
    from peft import PeftModel

    for position, adapter in enumerate(adapters):
        path = resolve_adapter(adapter)
        if not is_adapter_dir(path):
            raise ModelLoadError(f"adapter not found: {path} has no {ADAPTER_CONFIG}")
        try:
            with peft_without_deprecation_noise():
                model = PeftModel.from_pretrained(model, str(path))
        except (RuntimeError, ValueError, KeyError) as exc:
            base = adapter_base_model(path)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"adapter {path} does not fit this model (it was trained on {base!r}): {first_line}"
            ) from exc
        if position < len(adapters) - 1 or merge_last:
            model = model.merge_and_unload()
    return model
