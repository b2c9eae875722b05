"""Turn a training run directory into a shippable adapter: half-size weights, portable config.

A run directory holds optimizer checkpoints and a base-model path of the machine that trained it.
`export_adapter` copies only what loading and reproducing need (adapter weights in float16, the
adapter and LLM2Vec configs, the training config, log and data hash, and for a distilled adapter
`teacher.json`: the teacher's and the data's hashes its soft targets came from) and names the base model
portably, e.g. "smollm2-135m:base".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .distill import TEACHER_META
from .trainer import LOG_NAME

WEIGHTS = "adapter_model.safetensors"
KEPT = ("llm2vec_config.json", "train_config.json", "train_provenance.json", LOG_NAME, TEACHER_META)


def export_adapter(run_dir: str | Path, target: str | Path, *, base_model: str | None = None,
                   dtype: torch.dtype = torch.float16) -> Path:
    """Write the adapter of `run_dir` to `target` (replaced atomically); returns `target`."""
    run_dir, target = Path(run_dir), Path(target)
    if not (run_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{run_dir} holds no finished adapter ({WEIGHTS}); finish the run first")
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tensors = {name: value.to(dtype) for name, value in load_file(str(run_dir / WEIGHTS)).items()}
    save_file(tensors, str(staging / WEIGHTS), metadata={"format": "pt"})
    adapter_config = json.loads((run_dir / "adapter_config.json").read_text(encoding="utf-8"))
    train_config = json.loads((run_dir / "train_config.json").read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = base_model or train_config["model"]
    (staging / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8")
    for name in KEPT:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, staging / name)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
