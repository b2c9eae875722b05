"""Export a loaded `LLM2VecEncoder` to ONNX Runtime: the model and its pooling in one graph.

The graph takes the collated batch (`input_ids`, `attention_mask`, `pool_mask`) and returns the
pooled vectors, so bidirectional attention (traced from the torch model with `is_causal` off) and
instruction-excluded pooling (the same `pooling.pool`) are the torch path's, not a re-implementation.
"int8" quantizes the linear layers of a SmoothQuant-scaled copy (`precision.quantize_graph`). The graph is then
optimized once by ONNX Runtime and saved with its weights in an external file, which is what makes
a load take a fraction of a second. The folder also holds the tokenizer (`rust_tokenizer`) and
`encoder.json`, everything `onnx_encoder.OnnxEncoder` needs without torch or transformers.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import ModelLoadError
from .model_cache import staged_entry
from .onnx_encoder import (GRAPH_FILE, INPUTS, SETTINGS_FILE, WEIGHTS_FILE, OnnxEncoder, cached_entry, entry_key,
                           entry_path, onnx_root, onnx_unavailable)
from .pooling import pool
from .rust_tokenizer import RustTokenizer
from .fingerprint import spec_fingerprint

if TYPE_CHECKING:
    from .encoder import LLM2VecEncoder

OPSET = 18


class _PooledModel(nn.Module):
    """The encoder's model followed by its pooling: what the exported graph computes."""

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return pool(hidden.float(), attention_mask, pool_mask, self.mode)


def _example_batch(encoder: "LLM2VecEncoder") -> tuple[torch.Tensor, ...]:
    """Two left-padded rows of different lengths, one with an instruction (padding stays general)."""
    from .tokenization import collate

    items = encoder.tokenize(["A short text.", "A somewhat longer text, so that the first row is padded."],
                             ["An instruction", None])
    batch = collate(items, encoder.pad_token_id)
    return tuple(torch.as_tensor(batch[name]) for name in INPUTS)


def export_graph(encoder: "LLM2VecEncoder", model: nn.Module, path: Path) -> None:
    """Trace `model` (the encoder's, or a scaled copy) and the encoder's pooling into an fp32 ONNX
    graph at `path`, with dynamic batch size and length."""
    wrapper = _PooledModel(model, encoder.config.pooling_mode).eval()
    dynamic = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    dynamic["embeddings"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on Python branches over shapes: the tests check the graph
        torch.onnx.export(wrapper, _example_batch(encoder), str(path), input_names=list(INPUTS),
                          output_names=["embeddings"], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def optimize_graph(source: Path, directory: Path) -> None:
    """Optimize `source` with ONNX Runtime once and save it as `directory/model.onnx` + `weights.bin`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(directory / GRAPH_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def export_onnx(encoder: "LLM2VecEncoder", directory: str | Path, *, precision: str = "fp32") -> Path:
    """Write `encoder` as an ONNX Runtime folder (graph, weights, tokenizer, `encoder.json`); returns it."""
    from .precision import int8_model, int8_spec, quantize_graph

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    provenance = dict(encoder.provenance)
    with tempfile.TemporaryDirectory(prefix="l2v-onnx-") as scratch:
        raw = Path(scratch) / "raw.onnx"
        if precision == "int8":
            export_graph(encoder, int8_model(encoder), raw)
            raw = quantize_graph(raw, Path(scratch) / "int8.onnx")
            provenance.update(int8_spec())
        else:
            export_graph(encoder, encoder.model, raw)
        optimize_graph(raw, directory)
    RustTokenizer.of(encoder.tokenizer).save(directory)
    settings = {"config": asdict(encoder.config), "chat_template": encoder.format.chat_template,
                "fold_all_caps": encoder.format.fold_all_caps, "provenance": provenance, "dim": encoder.dim}
    (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return directory


def onnx_encoder(encoder: "LLM2VecEncoder", precision: str = "fp32") -> OnnxEncoder:
    """The ONNX Runtime version of `encoder` at `precision`, from the cache or exported into it."""
    reason = onnx_unavailable()
    if reason is not None:
        raise ModelLoadError(f"the ONNX runtime is not available: {reason}")
    if next(encoder.model.parameters()).dtype != torch.float32:
        raise ModelLoadError(f"ONNX Runtime exports start from the float32 model, not {encoder!r} in "
                             f"{next(encoder.model.parameters()).dtype}: load it with the default dtype")
    spec = encoder.spec()
    if precision == "int8":
        from .precision import int8_spec

        spec.update(int8_spec())
    fingerprint = spec_fingerprint(spec)
    path = entry_path(fingerprint)
    if cached_entry(fingerprint) is None:
        try:
            with staged_entry(onnx_root(), path, entry_key(fingerprint), {"fingerprint": fingerprint}) as staging:
                export_onnx(encoder, staging, precision=precision)
        except (OSError, ModelLoadError):
            raise
        except Exception as exc:  # the tracer and ONNX Runtime raise many types; name the step that failed
            raise ModelLoadError(f"could not export {encoder!r} to ONNX Runtime: {type(exc).__name__}: {exc}; "
                                 "use the torch runtime (runtime='torch', precision='fp32')") from exc
    loaded = OnnxEncoder(path)
    if loaded.fingerprint() != fingerprint:
        raise ModelLoadError(f"the ONNX export in {path} reports fingerprint {loaded.fingerprint()}, expected {fingerprint}")
    return loaded
