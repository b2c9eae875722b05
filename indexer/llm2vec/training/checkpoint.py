"""Crash-safe training checkpoints in safetensors + JSON (no pickle): adapter, optimizer, step.

A checkpoint is written to a temporary directory and swapped in with renames, so a crash at
any moment leaves either the previous or the new checkpoint complete.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

CHECKPOINT = "checkpoint"
OPTIMIZER_STATE = "optimizer.safetensors"
"""Adam's moments: twice the adapter's size, so runs git tracks leave them out (.gitignore) and a
fresh clone resumes without them (the learning-rate schedule and step carry on)."""

log = logging.getLogger(__name__)


def save_adapter(model: PeftModel, directory: Path) -> None:
    """`model.save_pretrained(directory)` with `target_modules` sorted in adapter_config.json: peft
    writes them in set order, which varies between processes, so each save of the same adapter
    would otherwise read as a change."""
    model.save_pretrained(directory)
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_checkpoint(output_dir: Path, model: PeftModel, optimizer: torch.optim.Optimizer, step: int) -> Path:
    final = output_dir / CHECKPOINT
    staging, previous = output_dir / f"{CHECKPOINT}.tmp", output_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(staging, ignore_errors=True)
    save_adapter(model, staging)
    state = optimizer.state_dict()
    tensors = {f"{index}.{key}": value.contiguous() for index, slots in state["state"].items()
               for key, value in slots.items() if torch.is_tensor(value)}
    save_file(tensors, str(staging / OPTIMIZER_STATE))
    (staging / "trainer_state.json").write_text(json.dumps({"step": step, "param_groups": state["param_groups"]}))
    if final.exists():
        shutil.rmtree(previous, ignore_errors=True)
        final.rename(previous)
    staging.rename(final)
    shutil.rmtree(previous, ignore_errors=True)
    return final


def newest_checkpoint(output_dir: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint of a run and its `trainer_state.json` ("step", "param_groups"):
    the previous one while a save is being swapped in, None before the first."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        state = output_dir / name / "trainer_state.json"
        if state.is_file():
            return state.parent, json.loads(state.read_text())
    return None


def load_checkpoint(output_dir: Path, model: PeftModel, optimizer: torch.optim.Optimizer) -> int:
    """Restore the newest complete checkpoint; returns the step to continue from (0 if none)."""
    newest = newest_checkpoint(output_dir)
    if newest is None:
        return 0
    directory, meta = newest
    set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    moments = directory / OPTIMIZER_STATE
    if moments.is_file():
        for key, value in load_file(str(moments)).items():
            index, name = key.split(".", 1)
            slots.setdefault(int(index), {})[name] = value
    else:
        log.warning("%s has no %s (a fresh clone of a run git tracks): resuming at step %d with Adam's moments "
                    "starting again from zero", directory, OPTIMIZER_STATE, meta["step"])
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    return int(meta["step"])
