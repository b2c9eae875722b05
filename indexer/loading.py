"""Load the encoder an index manifest names (model, adapters and settings from `encoder`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .llm2vec import LLM2VecEncoder

DEFAULT_MODEL = "smollm2-135m"


def encoder_from_manifest(manifest: dict[str, Any], *, model: str | None = None,
                          adapters: Sequence[str] = (), index_dir: str | Path | None = None,
                          **kwargs: Any) -> LLM2VecEncoder:
    """The encoder of `manifest` (`model`/`adapters` override the recorded paths, e.g. after a move).
    A recipe version this installation does not ship is a `RecipeVersionError` with the command that
    rebuilds `index_dir`."""
    from .llm2vec import LLM2VecEncoder  # torch: only when an encoder is loaded
    from .llm2vec.recipes import check_manifest_recipe

    if model is None:
        check_manifest_recipe(manifest, index_dir)
    spec = manifest["encoder"]
    return LLM2VecEncoder.from_pretrained(
        model or spec["model"],
        list(adapters) or [a["path"] for a in spec.get("adapters", [])],
        bidirectional=spec.get("bidirectional", True),
        pooling=spec.get("pooling_mode"),
        max_length=spec.get("max_length"),
        doc_max_length=spec.get("doc_max_length"),
        skip_instruction=spec.get("skip_instruction"),
        fold_all_caps=spec.get("fold_all_caps", True),
        precision=spec.get("precision", "fp32"),
        **kwargs,
    )
