"""Training configuration: the LLM2Vec paper's recipe as defaults, read from YAML/JSON, scaled by flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..config import check_positive_ints
from ..sources import DEFAULT_MODEL

STAGES = ("mntp", "simcse", "supervised", "distill")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Per-stage defaults from the paper (BehnamGhader et al., 2024, appendix D): learning rates,
# masking, dropout and contrastive temperatures. Lengths are shorter than the paper's 512 so
# CPU runs stay affordable; raise them with --max-length on a GPU.
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "mntp": {"learning_rate": 5e-5, "max_length": 512, "batch_size": 32, "max_steps": 1000},
    "simcse": {"learning_rate": 3e-5, "max_length": 128, "batch_size": 128, "max_steps": 1000},
    "supervised": {"learning_rate": 2e-4, "max_length": 512, "batch_size": 64, "max_steps": 1000},
    "distill": {"learning_rate": 2e-4, "max_length": 512, "batch_size": 64, "max_steps": 1000},
}


@dataclass
class TrainConfig:
    """Everything one training run needs; saved next to the adapter it produces."""

    stage: str
    data: str
    output_dir: str
    model: str = f"{DEFAULT_MODEL}:base"
    """The untrained default embedded model (its plain name, e.g. "gemma3-270m", carries the shipped adapters)."""
    adapters: list[str] = field(default_factory=list)
    """Adapters merged into the model before training (the MNTP adapter for SimCSE/supervised)."""
    max_steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 5e-5
    warmup_steps: int = 0
    decay_steps: int | None = None
    """Where the linear decay after warm-up reaches zero (None: max_steps). A branch of a longer run
    keeps the run's, so it trains at the run's learning rates until its cool-down."""
    cooldown_steps: int = 0
    """The last `cooldown_steps` steps decay linearly from the rate scheduled at their start to zero
    (warmup-stable-decay): how `l2v train branch` turns a run stopped midway into a finished adapter."""
    weight_decay: float = 0.0
    max_length: int = 512
    seed: int = 42
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    gradient_checkpointing: bool = True
    bf16: str = "auto"
    """"auto" (bf16 autocast where the hardware has fast bf16), "true" or "false"."""
    save_steps: int = 50
    log_steps: int = 1
    # MNTP
    mask_ratio: float | None = None
    """Share of tokens masked; None picks 0.2 (0.8 for Mistral-like models) as in the paper."""
    # SimCSE
    simcse_dropout: float = 0.3
    # SimCSE and supervised
    pooling: str = "mean"
    scale: float | None = None
    """Similarity scale (1 / temperature): 20 for SimCSE, 50 for supervised when None."""
    instruction: str | None = None
    """Supervised: query instruction for pairs that carry none (else per-source defaults)."""
    batch_by_source: bool = True
    """Supervised: every batch from one `source` of the pairs file, as the official E5 loader does
    (harder in-batch negatives, less padding); false mixes sources within a batch."""
    # Distill (training/distill.py)
    teacher: str | None = None
    """Sentence-transformers folder, "all-MiniLM-L6-v2" or "all-mpnet-base-v2"."""
    distill_weight: float = 0.5
    """Share of the KL term in the loss: (1 - w) * InfoNCE + w * KL(teacher || student)."""
    teacher_temperature: float = 0.05
    teacher_max_length: int | None = None
    """Tokens of each text the teacher reads (None: its own limit, 256 for the MiniLM and mpnet
    teachers); set it near `max_length` so the soft targets score what the student sees."""
    mined_negatives: int = 2
    """Hard negatives mined by the teacher per pair."""
    negative_margin: float = 0.95
    """A mined negative scores below this share of the positive's teacher score."""
    paragraphs: str | None = None
    """Text file of paragraphs made into (first sentence -> rest) pairs, besides `data`."""
    paragraph_pairs: int | None = None
    """At most this many paragraph pairs (None: all)."""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        check_positive_ints(self, ("max_steps", "batch_size", "grad_accum", "max_length", "save_steps", "log_steps"))
        if self.decay_steps is not None and self.decay_steps < 1:
            raise ValueError(f"decay_steps must be a positive integer, got {self.decay_steps}")
        if not 0 <= self.cooldown_steps <= self.max_steps:
            raise ValueError(f"cooldown_steps must be in [0, max_steps={self.max_steps}], got {self.cooldown_steps}")
        if self.mask_ratio is not None and not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.teacher_max_length is not None and self.teacher_max_length < 1:
            raise ValueError(f"teacher_max_length must be a positive integer, got {self.teacher_max_length}")
        if self.teacher_temperature <= 0 or self.negative_margin <= 0 or self.mined_negatives < 0:
            raise ValueError("teacher_temperature and negative_margin must be positive, mined_negatives >= 0")
        if self.teacher and self.stage != "distill":
            raise ValueError(f"a teacher is for the distill stage (l2v train distill), not {self.stage}")
        if self.bf16 not in ("auto", "true", "false"):
            raise ValueError(f"bf16 must be auto, true or false, got {self.bf16!r}")

    @classmethod
    def build(cls, stage: str, file: str | Path | None = None, **overrides: Any) -> "TrainConfig":
        """Defaults for `stage`, then the YAML/JSON `file`, then non-None `overrides` (CLI flags)."""
        values: dict[str, Any] = dict(STAGE_DEFAULTS.get(stage, {}))
        if file is not None:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{file}: expected a mapping of settings")
            unknown = set(loaded) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"{file}: unknown settings {', '.join(sorted(unknown))}")
            values.update(loaded)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["stage"] = stage
        missing = [name for name in ("data", "output_dir") if name not in values]
        if missing:
            raise ValueError(f"missing setting(s): {', '.join(missing)}")
        return cls(**values)

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of 0-based `step`: linear warm-up, linear decay to zero at `decay_steps`,
        and over the last `cooldown_steps` a linear decay from the rate scheduled at their start."""

        def scheduled(at: int) -> float:
            if at < self.warmup_steps:
                return (at + 1) / self.warmup_steps
            horizon = self.decay_steps or self.max_steps
            return max(0.0, (horizon - at) / max(1, horizon - self.warmup_steps))

        cooldown_start = self.max_steps - self.cooldown_steps
        if self.cooldown_steps and step >= cooldown_start:
            return self.learning_rate * scheduled(cooldown_start) * (self.max_steps - step) / self.cooldown_steps
        return self.learning_rate * scheduled(step)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
