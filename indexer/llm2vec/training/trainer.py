"""The training loop shared by the stages: accumulation, bf16 autocast, logs, checkpoints, resume."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TextIO

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from ..config import LLM2VecConfig
from ..hardware import use_bf16
from ..sources import file_sha256
from .checkpoint import load_checkpoint, save_adapter, save_checkpoint
from .config import TrainConfig
from .data import batches, grouped_batches
from .stages import STAGE_BUILDERS

logger = logging.getLogger(__name__)
LOG_NAME = "train_log.jsonl"
PROVENANCE = "train_provenance.json"


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """The SDPA kernels training runs under: on CPU the math kernel, whose backward is plain matmuls
    (in a torch.profiler trace of one distill step, 72 texts x 80 tokens in bf16 on 2 cores, the CPU
    flash kernel's backward was a fifth of the step). Elsewhere, torch's choice."""
    if device.type == "cpu":
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def log_until(path: Path, step: int) -> str:
    """The records of a training log up to `step`: a run killed after its last checkpoint logged
    steps that its resume redoes."""
    return "".join(line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                   if line.strip() and json.loads(line)["step"] <= step)


def provenance(config: TrainConfig, steps: int) -> dict[str, object]:
    """What `train_provenance.json` holds: the training data's hash and the steps the adapter saw."""
    return {"data_sha256": file_sha256(config.data), "steps": steps}


def _open_log(path: Path, start: int) -> TextIO:
    """The training log for appending from step `start`, each step appearing once."""
    if start and path.is_file():
        staging = path.with_name(path.name + ".tmp")
        staging.write_text(log_until(path, start), encoding="utf-8")
        os.replace(staging, path)
    return path.open("a", encoding="utf-8")


def train(config: TrainConfig, *, show_progress: bool = True) -> Path:
    """Run (or resume) one stage; returns the directory holding the trained adapter."""
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    stage = STAGE_BUILDERS[config.stage](config)
    model = stage.model
    device = next(model.parameters()).device
    if config.gradient_checkpointing:
        model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    start = load_checkpoint(output, model, optimizer)

    bf16 = use_bf16(config.bf16, device)
    config.save(output / "train_config.json")
    log = _open_log(output / LOG_NAME, start)
    skip = start * config.grad_accum
    if stage.groups is not None:
        data = grouped_batches(stage.groups, config.batch_size, config.seed, skip=skip)
    else:
        data = batches(stage.size, config.batch_size, config.seed, skip=skip)
    model.train()
    progress = tqdm(total=config.max_steps, initial=start, desc=f"train {config.stage}", unit="step",
                    disable=not show_progress)
    try:
        for step in range(start, config.max_steps):
            began = time.perf_counter()
            torch.manual_seed(config.seed + step)  # dropout noise replays identically after a resume
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(step)
            total_loss, tokens = 0.0, 0
            for _ in range(config.grad_accum):
                with attention_kernels(device):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss, seen = stage.loss(next(data), step)
                    (loss / config.grad_accum).backward()
                total_loss += loss.item() / config.grad_accum
                tokens += seen
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, 1.0).item()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - began
            record = {"step": step + 1, "loss": round(total_loss, 5), "lr": optimizer.param_groups[0]["lr"],
                      "grad_norm": round(grad_norm, 4), "tokens_per_s": round(tokens / elapsed, 1),
                      "seconds": round(elapsed, 3), "bf16": bf16, "time": time.time()}
            if (step + 1) % config.log_steps == 0:
                log.write(json.dumps(record) + "\n")
                log.flush()
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
            if (step + 1) % config.save_steps == 0 or step + 1 == config.max_steps:
                save_checkpoint(output, model, optimizer, step + 1)
    finally:
        progress.close()
        log.close()
    save_adapter(model, output)
    LLM2VecConfig(pooling_mode=config.pooling).write(output)
    (output / PROVENANCE).write_text(json.dumps(provenance(config, config.max_steps), indent=2) + "\n")
    return output
