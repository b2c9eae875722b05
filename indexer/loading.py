"""Load the encoder an index manifest names (model, adapters and settings from `encoder`).

With `runtime="auto"` (the default) a cached ONNX Runtime export of that encoder (`onnx_encoder`:
same fingerprint, same vectors) is loaded when there is one, in well under a second and without
importing torch; otherwise the torch model. `runtime="onnx"` exports it first when it is missing; `runtime="torch"`, a `dtype` or a `device`
(a GPU) load the torch model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .llm2vec.text_encoder import TextEncoder


def encoder_from_manifest(manifest: dict[str, Any], *, model: str | None = None,
                          adapters: Sequence[str] = (), index_dir: str | Path | None = None,
                          runtime: str = "auto", **kwargs: Any) -> TextEncoder:
    """The encoder of `manifest` (`model`/`adapters` override the recorded paths, e.g. after a move).
    A recipe version this installation does not ship is a `RecipeVersionError` with the command that
    rebuilds `index_dir`."""
    from .llm2vec.recipes import check_manifest_recipe

    if model is None:
        check_manifest_recipe(manifest, index_dir)
    spec = manifest["encoder"]
    on_cpu = kwargs.get("dtype") in (None, "float32", "fp32") and kwargs.get("device") in (None, "cpu")
    if runtime not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown runtime {runtime!r}; choose auto, onnx or torch")
    if runtime in ("auto", "onnx") and model is None and not adapters and on_cpu:
        from .llm2vec.onnx_encoder import OnnxEncoder

        cached = OnnxEncoder.cached(spec)
        if cached is not None:
            return cached
    from .llm2vec import LLM2VecEncoder  # torch: only when the torch model is loaded

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
        runtime="onnx" if runtime == "onnx" and on_cpu else "torch",
        **kwargs,
    )
