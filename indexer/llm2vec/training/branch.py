"""Branch a long run into a finished adapter: its newest checkpoint, then a short cool-down.

A run sized for many sessions (an epoch on 2 CPU cores) sits midway at a high learning rate, and a
checkpoint there measures worse than the same weights would after the rate decays. Warmup-stable-
decay schedules (MiniCPM; Hägele et al., 2024, "Scaling Laws and Compute-Optimal Training Beyond
Fixed Training Durations") decay the rate over a short last stretch instead, from any point of the
run. `branch_run` starts such a stretch in a new folder: the run's checkpoint, its log up to that step
and its teacher's vectors are copied there, and the run's config gets `max_steps` = step +
`cooldown_steps`, the run's decay horizon and the cool-down. `train` then resumes it as any run, on the
batches the run itself would have seen next; the run is left as it is and goes on by itself.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from .checkpoint import CHECKPOINT, newest_checkpoint
from .config import TrainConfig
from .distill import TEACHER_FILE, TEACHER_META
from .trainer import LOG_NAME, log_until

CONFIG_NAME = "train_config.json"


def branch_run(run_dir: str | Path, output: str | Path, cooldown_steps: int) -> TrainConfig:
    """The config of a branch of `run_dir` in `output` that cools down over `cooldown_steps` from the
    run's newest checkpoint, set up for `train`; a branch already in `output` is resumed as it is."""
    run_dir, output = Path(run_dir), Path(output)
    if (output / CONFIG_NAME).is_file():
        return TrainConfig(**json.loads((output / CONFIG_NAME).read_text(encoding="utf-8")))
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"{output} holds files but no branch ({CONFIG_NAME}); name a new folder")
    newest = newest_checkpoint(run_dir)
    if newest is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint yet; let the run reach its first save_steps")
    checkpoint, state = newest
    step = int(state["step"])
    parent = TrainConfig(**json.loads((run_dir / CONFIG_NAME).read_text(encoding="utf-8")))
    if cooldown_steps < 1:
        raise ValueError(f"cooldown_steps must be a positive integer, got {cooldown_steps}")
    config = dataclasses.replace(parent, output_dir=str(output), max_steps=step + cooldown_steps,
                                 decay_steps=parent.decay_steps or parent.max_steps, cooldown_steps=cooldown_steps)
    staging = output.with_name(output.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copytree(checkpoint, staging / CHECKPOINT)
    for name in (TEACHER_FILE, TEACHER_META):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, staging / name)
    if (run_dir / LOG_NAME).is_file():
        (staging / LOG_NAME).write_text(log_until(run_dir / LOG_NAME, step), encoding="utf-8")
    config.save(staging / CONFIG_NAME)  # written last: its presence marks a complete branch
    if output.exists():
        output.rmdir()  # empty, checked above
    staging.rename(output)
    return config
