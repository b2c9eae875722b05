"""Helpers to run the reference `llm2vec` library (0.2.3, transformers 4.44) next to our encoder.

The reference needs `transformers<=4.44.2`, so it lives in a venv of its own (`make
reference-venv`) and runs in a subprocess (`benchmarks/reference_encode.py`). Model directories
written by transformers 5 need small rewrites before transformers 4.44 / tokenizers 0.19 /
peft 0.12 can read them; `prepare_model_dir` and `prepare_adapter_dir` make such copies (the
weights are symlinked, never rewritten, so both sides use identical weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_PYTHON_ENV = "L2V_REFERENCE_PYTHON"
REFERENCE_SCRIPT = Path(__file__).resolve().parent / "reference_encode.py"


def reference_python() -> Path:
    """The reference venv's interpreter: `$L2V_REFERENCE_PYTHON`, else `.venv-ref/bin/python`."""
    override = os.environ.get(REFERENCE_PYTHON_ENV)
    return Path(override) if override else ROOT / ".venv-ref" / "bin" / "python"


def reference_available() -> tuple[bool, str]:
    """Whether the reference interpreter exists, and a reason when it does not."""
    python = reference_python()
    if not python.is_file():
        return False, (f"reference venv not found at {python} (run `make reference-venv`, "
                       f"or point ${REFERENCE_PYTHON_ENV} at a python with llm2vec==0.2.3)")
    return True, ""


def _config_for_transformers4(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 config keys -> their 4.44 spelling (rope_parameters, dtype)."""
    config = dict(config)
    rope = config.pop("rope_parameters", None)
    if isinstance(rope, dict):
        rope = dict(rope)
        config["rope_theta"] = rope.pop("rope_theta", config.get("rope_theta", 10000.0))
        if rope.get("rope_type", "default") != "default":
            config["rope_scaling"] = rope
    if "dtype" in config:
        config["torch_dtype"] = config.pop("dtype")
    # gemma: transformers 5 writes `use_bidirectional_attention: null`; 4.44 has no such switch
    config.pop("use_bidirectional_attention", None)
    return config


def _tokenizer_for_tokenizers019(tokenizer: dict[str, Any]) -> dict[str, Any]:
    """tokenizers >= 0.20 writes BPE merges as pairs; 0.19 reads only "a b" strings."""
    model = tokenizer.get("model", {})
    merges = model.get("merges")
    if merges and isinstance(merges[0], list):
        if any(" " in part for pair in merges for part in pair):
            raise ValueError("a BPE merge contains a space: tokenizers 0.19 cannot represent it")
        model["merges"] = [" ".join(pair) for pair in merges]
    return tokenizer


def prepare_model_dir(source: str | Path, target: str | Path) -> Path:
    """Copy a transformers-5 model directory into a form transformers 4.44 reads identically.

    Weights are symlinked; config.json, tokenizer.json and tokenizer_config.json are rewritten.
    """
    source, target = Path(source).resolve(), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            continue
        link = target / path.name
        if not link.exists():
            link.symlink_to(path)
    config = json.loads((source / "config.json").read_text())
    (target / "config.json").write_text(json.dumps(_config_for_transformers4(config), indent=2))
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    (target / "tokenizer.json").write_text(json.dumps(_tokenizer_for_tokenizers019(tokenizer), ensure_ascii=False),
                                           encoding="utf-8")
    tok_config = json.loads((source / "tokenizer_config.json").read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    # the generic fast tokenizer of 4.44 also returns token_type_ids, which LlamaModel rejects
    tok_config["model_input_names"] = ["input_ids", "attention_mask"]
    for key in ("backend", "is_local", "local_files_only"):
        tok_config.pop(key, None)
    (target / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    return target


def reference_lora_fields(python: Path | None = None) -> list[str]:
    """Field names of `LoraConfig` in the reference venv's peft (0.12 knows fewer than ours)."""
    code = "import dataclasses, json, peft; print(json.dumps([f.name for f in dataclasses.fields(peft.LoraConfig)]))"
    out = subprocess.run([str(python or reference_python()), "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare_adapter_dir(source: str | Path, target: str | Path, known_fields: Iterable[str]) -> Path:
    """Copy a PEFT adapter saved by a recent peft so that peft 0.12 loads it.

    peft 0.12 rejects keys it does not know in adapter_config.json (`lora_bias`, `use_qalora`,
    ...). Such keys are dropped when they hold our peft's default (the option is off) or are
    metadata (`peft_version`); an adapter that really uses a newer option is refused.
    """
    import dataclasses

    from peft import LoraConfig

    source, target = Path(source).resolve(), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name != "adapter_config.json" and not (target / path.name).exists():
            (target / path.name).symlink_to(path)
    config = json.loads((source / "adapter_config.json").read_text())
    known = set(known_fields)
    defaults = {f.name: f.default for f in dataclasses.fields(LoraConfig)}
    active = {k: v for k, v in config.items()
              if k not in known and k != "peft_version" and v != defaults.get(k, object())}
    if active:
        raise ValueError(f"adapter uses options peft 0.12 does not know: {active}")
    (target / "adapter_config.json").write_text(json.dumps({k: v for k, v in config.items() if k in known}, indent=2))
    return target


def write_inputs(path: str | Path, pairs: Sequence[tuple[str | None, str]]) -> Path:
    """Inputs JSONL for reference_encode.py: one {"instruction", "text"} object a line."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for instruction, text in pairs:
            handle.write(json.dumps({"instruction": instruction, "text": text}, ensure_ascii=False) + "\n")
    return path


def run_reference(spec: dict[str, Any], *, timeout: float = 1800) -> dict[str, Any]:
    """Run reference_encode.py on `spec` in the reference venv; returns its report (timings).

    `spec` is {"threads": int, "jobs": [{"model", "adapter", "bidirectional", "pooling_mode",
    "max_length", "doc_max_length", "runs": [{"inputs", "batch_size", "output", "repeats"}]}]};
    each run writes its embeddings (float32 .npy, rows in input order) to `output`.
    """
    ok, reason = reference_available()
    if not ok:
        raise FileNotFoundError(reason)
    with tempfile.TemporaryDirectory(prefix="l2v-ref-") as tmp:
        spec_path, report_path = Path(tmp) / "spec.json", Path(tmp) / "report.json"
        spec_path.write_text(json.dumps({**spec, "report": str(report_path)}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1")
        proc = subprocess.run([str(reference_python()), str(REFERENCE_SCRIPT), str(spec_path)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise RuntimeError(f"reference_encode.py failed with exit code {proc.returncode}")
        return json.loads(report_path.read_text())


def load_rows(path: str | Path) -> np.ndarray:
    return np.load(path).astype(np.float32)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `a` with the same row of `b`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.maximum(den, 1e-30)
