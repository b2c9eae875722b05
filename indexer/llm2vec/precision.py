"""The CPU fast paths: `LLM2VecEncoder.from_pretrained(..., precision="int8" | "bf16" | "auto")`.

A SmoothQuant-scaled copy of the model is exported to ONNX Runtime (`onnx_export`) and its linear
layers quantized there (`quantize_graph`: int8 weights per output channel, activations quantized
per batch on the fly). The scaling divides the norms in front of q/k/v and gate/up, and multiplies
those layers' weights, by per-channel factors (`max|x|^a / max|w|^(1-a)`, a = 0.5, from activation
maxima on a fixed calibration set): nothing changes in fp32, but activation outliers move into the
weights, where per-channel int8 absorbs them. The MLP's down projection stays fp32: its inputs
carry outliers of up to 80x their median, and no scaling brought it to the accuracy bar; so does
the attention output projection (o_proj, 9% of the linear weights), which has no norm in front to
fold factors into. Attention, the norms and the pooling stay fp32 and are traced from the torch
model, so bidirectional attention and instruction-excluded pooling are the fp32 path's.

Measured with torch's int8 kernels on SmolLM2-135M + shipped adapters (AVX2 CPU, 2 threads), min
(mean) row cosine to fp32 on 32 SciFact passages: int8 everywhere 0.957 (0.978); per-channel
weights 0.962 (0.983); smoothed 0.974 (0.993); smoothed with down_proj kept fp32 0.9988 (0.9991),
which also gave 0.994 on 100 SciFact claims with their instruction. ONNX Runtime's kernels (this
module) with the same recipe gave min 0.992 on passages but 0.988 on claims; keeping o_proj in fp32
as well gives 0.993 on passages and 0.991 on claims (the three-claim test in test_precision.py),
the recipe here. Short texts in other scripts fare worse (0.93-0.97 for a one-line Japanese or
Russian sentence; 0.970 min over the calibration set): activations are quantized with one scale
per batch. The self-check set below holds such texts, so "auto" keeps fp32 where they fall below
the bar.

Also measured and not adopted: ONNX Runtime's MatMulNBits at 8 bits (weights in blocks of 32,
activations quantized per block, accuracy level 4, every projection, no smoothing). It is by far
the most accurate int8 (min row cosine 0.9997 on passages, 0.997 on instructed claims, 0.9956 on
the self-check set, on both CPUs), but it is slower than fp32 on an AVX2 CPU (0.76 passages/s
against 0.97 for ONNX Runtime fp32 and 1.29 for this recipe, medians of 3, 2 threads) and only
1.3x fp32 with AVX512-VNNI, against 1.6x for this recipe.

"bf16" casts the torch model to bfloat16 where the hardware multiplies bf16 natively (AVX512-BF16
or AMX, or a GPU) and runs inputs under 16 tokens on the fp32 model (`bf16_encoder`: bf16 rows of
two-word texts fall to cosine 0.93): on the shipped SmolLM2 adapters rows agree with fp32 to 0.9989
or better, so a bf16 encoder keeps the fp32 fingerprint (its index is searched with fp32 queries,
and vice versa); on other CPUs it is refused, since torch's fallback kernels run bf16 at a few
GFLOP/s.

"auto" runs a short self-check on the calibration set: of int8 and (where native) bf16, the
fastest whose rows agree with fp32 (min cosine >= `AUTO_MIN_COSINE`) and that encodes them faster than
fp32 is used; otherwise fp32, with a warning saying why. Calibration maxima and the auto decision
are cached under `cache_dir()/precision`, keyed by the encoder's fingerprint, this recipe and (for
the decision) the CPU; the int8 graph itself is cached by `onnx_encoder`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .errors import InputError, ModelLoadError
from .hardware import fast_bf16
from .onnx_encoder import onnx_unavailable
from .sources import cache_dir

if TYPE_CHECKING:
    from .encoder import LLM2VecEncoder
    from .text_encoder import TextEncoder

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8", "auto")
MIN_COSINE = 0.99
"""The row bar of an explicit int8 (issue 16): cosine to fp32 on real passages and queries."""
AUTO_MIN_COSINE = 0.995
"""The self-check bar of "auto", stricter: int8 rows at min cosine 0.990-0.994 on this set (AVX2 and
AVX512-VNNI CPUs) still cost 0.016-0.05 NDCG@10 on our quick sets, bf16 rows (0.9999) nothing."""
SMOOTHING_ALPHA = 0.5
KEEP_FP32 = ("down_proj", "o_proj")
RECIPE_VERSION = 2
SMOOTHED_INPUTS = {"q_proj": ("input_layernorm", ("q_proj", "k_proj", "v_proj")),
                   "gate_proj": ("post_attention_layernorm", ("gate_proj", "up_proj"))}
"""Projection whose input is measured -> (the norm that feeds it, the projections sharing that input)."""
SMOOTHABLE_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
"""Architectures whose norms feed q/k/v and gate/up directly with a plain `x * weight` scale (Gemma's
norms scale by `1 + weight` and sit elsewhere: not covered yet)."""

CALIBRATION_TEXTS = (
    "Vitamin D supplementation reduces the risk of hip fractures in elderly women living in care homes.",
    "The mitochondrion is the organelle in which cellular respiration produces most of the cell's ATP.",
    "How do I reset a forgotten password on my laptop without losing my files?",
    "def merge_sorted(a, b):\n    out = []\n    while a and b:\n        out.append((a if a[0] < b[0] else b).pop(0))\n"
    "    return out + a + b",
    "The Treaty of Westphalia, signed in 1648, ended the Thirty Years' War and reshaped European borders.",
    "Photosynthesis converts light energy into chemical energy stored in glucose, releasing oxygen.",
    "Given a question, retrieve passages that answer the question: what causes the seasons on Earth?",
    "Low-rank adaptation freezes the pretrained weights and trains two small matrices per layer.",
    "Der Hauptbahnhof liegt im Zentrum der Stadt; die Züge fahren alle zehn Minuten.",
    "La fotosíntesis ocurre en los cloroplastos de las células vegetales.",
    "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。",
    "Patients receiving the experimental drug showed a 23% reduction in systolic blood pressure (p < 0.01).",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 10 ORDER BY 2 DESC;",
    "Espresso is brewed by forcing nearly boiling water through finely ground coffee under pressure.",
    "Neutron stars are the collapsed cores of massive stars, so dense that a teaspoon weighs a billion tons.",
    "The committee approved the budget after a lengthy debate about infrastructure and school funding.",
)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def int8_unavailable(model: nn.Module, device: torch.device, dtype: torch.dtype) -> str | None:
    """Why int8 cannot run for this model here (None when it can)."""
    if device.type != "cpu":
        return f"int8 runs on CPU only (the model is on {device.type}; use dtype='float16' or 'bfloat16' there)"
    if dtype != torch.float32:
        return f"int8 quantizes a float32 model (got dtype {dtype}); leave dtype at its default"
    if hasattr(model, "peft_config"):
        return "int8 needs the adapters merged (merge_adapters=True)"
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SMOOTHABLE_MODEL_TYPES:
        return (f"int8 is calibrated for model types {', '.join(SMOOTHABLE_MODEL_TYPES)}, not {model_type!r}; "
                "use precision='fp32'")
    return onnx_unavailable()


def _layers(model: nn.Module) -> nn.ModuleList:
    return model.layers


def _cache_path(encoder: "LLM2VecEncoder", kind: str) -> Path:
    key = hashlib.sha256(json.dumps({"fingerprint": encoder.fingerprint(), "recipe": RECIPE_VERSION,
                                     "alpha": SMOOTHING_ALPHA, "texts": CALIBRATION_TEXTS, "kind": kind, "precisions": PRECISIONS,
                                     "torch": torch.__version__,
                                     "cpu": torch.backends.cpu.get_cpu_capability() if kind == "auto" else None},
                                    sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "precision" / f"{key}.{kind}.json"


def _read_cached(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_cached(path: Path, payload: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as out:
            json.dump(payload, out)
        os.replace(out.name, path)
    except OSError as exc:  # a read-only cache costs the next load a calibration, nothing else
        logger.debug("could not cache %s: %s", path, exc)


def activation_maxima(encoder: "LLM2VecEncoder") -> dict[str, list[float]]:
    """Max |input| per channel of each layer's q_proj and gate_proj over the calibration texts (cached)."""
    path = _cache_path(encoder, "maxima")
    cached = _read_cached(path)
    if cached is not None:
        return cached
    maxima: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            maxima[name] = torch.maximum(maxima[name], x) if name in maxima else x
        return record

    hooks = [getattr(getattr(layer, part), probe).register_forward_pre_hook(recorder(f"{i}.{probe}"))
             for i, layer in enumerate(_layers(encoder.model))
             for probe, part in (("q_proj", "self_attn"), ("gate_proj", "mlp"))]
    try:
        encoder.encode(list(CALIBRATION_TEXTS), show_progress_bar=False)
    finally:
        for hook in hooks:
            hook.remove()
    result = {name: values.tolist() for name, values in maxima.items()}
    _write_cached(path, result)
    return result


@torch.no_grad()
def smooth(model: nn.Module, maxima: dict[str, list[float]], alpha: float = SMOOTHING_ALPHA) -> None:
    """Fold per-channel factors into the norms and the projections they feed (exact in fp32)."""
    for i, layer in enumerate(_layers(model)):
        for probe, (norm_name, projections) in SMOOTHED_INPUTS.items():
            part = layer.self_attn if probe == "q_proj" else layer.mlp
            linears = [getattr(part, name) for name in projections]
            x_max = torch.tensor(maxima[f"{i}.{probe}"]).clamp(min=1e-5)
            w_max = torch.cat([lin.weight.abs() for lin in linears]).amax(0).float().clamp(min=1e-5)
            factors = (x_max.pow(alpha) / w_max.pow(1 - alpha)).clamp(min=1e-5)
            norm = getattr(layer, norm_name)
            norm.weight.div_(factors.to(norm.weight.dtype))
            for lin in linears:
                lin.weight.mul_(factors.to(lin.weight.dtype)[None, :])


def quantize_graph(source: Path, target: Path) -> Path:
    """Quantize the MatMuls of the ONNX graph `source` (int8 weights per output channel, dynamic
    activations), all but those of the layers named in `KEEP_FP32`; returns `target`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False)
    keep = [node.name for node in graph.graph.node if node.op_type == "MatMul" and any(k in node.name for k in KEEP_FP32)]
    del graph
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process is for convolutional image models
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                         nodes_to_exclude=keep, extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return target


def int8_spec() -> dict[str, Any]:
    """What an int8 encoder adds to its spec: the precision and this recipe's version, so that a
    changed recipe gives another fingerprint (and another cached export), never stale vectors."""
    return {"precision": "int8", "int8_recipe": RECIPE_VERSION}


def int8_model(encoder: "LLM2VecEncoder") -> nn.Module:
    """A SmoothQuant-scaled copy of `encoder.model`, ready to quantize (same outputs in fp32)."""
    model = copy.deepcopy(encoder.model)
    smooth(model, activation_maxima(encoder))
    return model


def _timed_rows(encoder: "TextEncoder", repeats: int = 2) -> tuple[float, np.ndarray]:
    """The best of `repeats` timed encodes of the calibration texts, after an untimed one: the first
    pass over new batch shapes builds kernels (oneDNN's bf16 ones take seconds), which is not speed."""
    texts = list(CALIBRATION_TEXTS)
    rows = encoder.encode(texts, normalize=True, show_progress_bar=False)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode(texts, normalize=True, show_progress_bar=False)
        best = min(best, time.perf_counter() - start)
    return best, rows


def bf16_unavailable(device: torch.device) -> str | None:
    """Why bf16 would not be fast for a model on `device` (None when it is)."""
    if fast_bf16(device):
        return None
    if device.type == "cpu":
        return ("this CPU has no native bf16 (AVX512-BF16 or AMX), where torch runs bf16 many times slower "
                "than fp32; use precision='fp32' or 'int8' (dtype='bfloat16' forces it)")
    return f"{device.type} has no fast bf16 here"


def bf16_encoder(encoder: "LLM2VecEncoder") -> "LLM2VecEncoder":
    """A bfloat16 copy of the fp32 torch `encoder` (same settings, same fingerprint) that runs its
    shortest inputs on `encoder` itself (module `bf16_encoder`)."""
    from .bf16_encoder import Bf16Encoder

    return Bf16Encoder(encoder)


def choose(fp32_seconds: float, candidates: dict[str, dict[str, float]]) -> str:
    """The fastest candidate precision whose rows meet `AUTO_MIN_COSINE` and that beats fp32, else "fp32"."""
    passing = [(c["seconds"], name) for name, c in candidates.items()
               if c["min_cosine"] >= AUTO_MIN_COSINE and c["seconds"] < fp32_seconds]
    return min(passing)[1] if passing else "fp32"


def _self_check(encoder: "LLM2VecEncoder") -> tuple[dict[str, Any], dict[str, "TextEncoder"]]:
    """Time fp32 and each candidate (int8 where it runs, bf16 where native) on the calibration
    texts and compare their rows; returns the decision and the candidate encoders."""
    from .onnx_export import onnx_encoder

    fp32_seconds, fp32_rows = _timed_rows(encoder)
    built: dict[str, "TextEncoder"] = {}
    if int8_unavailable(encoder.model, encoder.device, next(encoder.model.parameters()).dtype) is None:
        built["int8"] = onnx_encoder(encoder, "int8")
    if bf16_unavailable(encoder.device) is None:
        built["bf16"] = bf16_encoder(encoder)
    candidates = {}
    for name, candidate in built.items():
        seconds, rows = _timed_rows(candidate)
        candidates[name] = {"seconds": round(seconds, 3), "min_cosine": round(float((rows * fp32_rows).sum(-1).min()), 6)}
    return {"precision": choose(fp32_seconds, candidates), "fp32_seconds": round(fp32_seconds, 3),
            "candidates": candidates, "cpu": torch.backends.cpu.get_cpu_capability()}, built


def _fallback_reason(decision: dict[str, Any]) -> str:
    if not decision.get("candidates"):
        return "neither int8 nor bf16 runs here"
    return "; ".join(f"{name} rows had min cosine {c['min_cosine']} to fp32 (bar {AUTO_MIN_COSINE}) and took "
                     f"{c['seconds']} s against {decision.get('fp32_seconds')} s"
                     for name, c in decision["candidates"].items())


def apply_precision(encoder: "LLM2VecEncoder", precision: str) -> "TextEncoder":
    """The encoder to use for a freshly loaded fp32 `encoder` at `precision`: itself for fp32, its
    int8 ONNX Runtime export for int8, a bf16 copy for bf16 ("auto" resolves to one of them).
    Asking for "int8" or "bf16" where it cannot run (fast) is a `ModelLoadError` naming what is
    missing; "auto" then falls back to fp32 with a warning."""
    from .onnx_export import onnx_encoder

    check_precision(precision)
    if precision == "fp32":
        return encoder
    dtype = next(encoder.model.parameters()).dtype
    if precision == "bf16":
        reason = bf16_unavailable(encoder.device)
        if reason is not None:
            raise ModelLoadError(f"precision='bf16' is not available: {reason}")
        return encoder if dtype == torch.bfloat16 else bf16_encoder(encoder)
    reason = int8_unavailable(encoder.model, encoder.device, dtype)
    if precision == "int8":
        if reason is not None:
            raise ModelLoadError(f"precision='int8' is not available: {reason}")
        return onnx_encoder(encoder, "int8")
    if dtype != torch.float32:
        warnings.warn(f"precision='auto' keeps the loaded dtype {str(dtype).removeprefix('torch.')}: {reason}",
                      RuntimeWarning, stacklevel=3)
        return encoder
    decision_path = _cache_path(encoder, "auto")
    decision, built = _read_cached(decision_path), {}
    if decision is None:
        decision, built = _self_check(encoder)
        _write_cached(decision_path, decision)
    chosen = decision.get("precision")
    if chosen == "int8":
        return built.get("int8") or onnx_encoder(encoder, "int8")
    if chosen == "bf16":
        return built.get("bf16") or bf16_encoder(encoder)
    warnings.warn(f"precision='auto' uses fp32: {_fallback_reason(decision)}", RuntimeWarning, stacklevel=3)
    return encoder
