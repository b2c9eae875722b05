"""Turn a training run directory into a shippable adapter: half-size weights, portable config.

A run directory holds optimizer checkpoints and a base-model path of the machine that trained it.
`export_adapter` copies only what loading and reproducing need (adapter weights in float16, the
adapter and LLM2Vec configs, the training config, log and data hash, and for a distilled adapter
`teacher.json`: the teacher's and the data's hashes its soft targets came from) and names the base model
portably, e.g. "smollm2-135m:base". With `checkpoint=True` it exports the newest checkpoint of a run
still going (or stopped) instead, its provenance and log cut at that step, to measure a long run
midway.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import LLM2VecConfig
from .checkpoint import newest_checkpoint
from .config import TrainConfig
from .distill import TEACHER_META
from .trainer import LOG_NAME, PROVENANCE, log_until, provenance

WEIGHTS = "adapter_model.safetensors"
KEPT = ("train_config.json", TEACHER_META)
"""Copied from the run as they are; its provenance and log too for a finished run."""


def export_adapter(run_dir: str | Path, target: str | Path, *, base_model: str | None = None,
                   dtype: torch.dtype = torch.float16, checkpoint: bool = False) -> Path:
    """Write the adapter of `run_dir` (its newest checkpoint with `checkpoint`) to `target`, replaced
    atomically; returns `target`."""
    run_dir, target = Path(run_dir), Path(target)
    weights, step = run_dir, None
    if checkpoint:
        newest = newest_checkpoint(run_dir)
        if newest is None:
            raise FileNotFoundError(f"{run_dir} holds no checkpoint yet; let the run reach its first save_steps")
        weights, step = newest[0], int(newest[1]["step"])
    elif not (run_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{run_dir} holds no finished adapter ({WEIGHTS}); finish the run first, or "
                                "export its newest checkpoint with --checkpoint")
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tensors = {name: value.to(dtype) for name, value in load_file(str(weights / WEIGHTS)).items()}
    save_file(tensors, str(staging / WEIGHTS), metadata={"format": "pt"})
    adapter_config = json.loads((weights / "adapter_config.json").read_text(encoding="utf-8"))
    config = TrainConfig(**json.loads((run_dir / "train_config.json").read_text(encoding="utf-8")))
    adapter_config["base_model_name_or_path"] = base_model or config.model
    (staging / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8")
    LLM2VecConfig(pooling_mode=config.pooling).write(staging)  # as the trainer writes it when done
    for name in KEPT + ((PROVENANCE, LOG_NAME) if step is None else ()):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, staging / name)
    if step is not None:
        made = provenance(config, step)
        (staging / PROVENANCE).write_text(json.dumps(made, indent=2) + "\n", encoding="utf-8")
        if (run_dir / LOG_NAME).is_file():
            (staging / LOG_NAME).write_text(log_until(run_dir / LOG_NAME, step), encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
