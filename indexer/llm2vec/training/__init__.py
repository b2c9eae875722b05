"""LLM2Vec training: MNTP, unsupervised SimCSE and supervised contrastive, each a LoRA adapter."""

from .config import STAGES, TrainConfig
from .export import export_adapter
from .trainer import train

__all__ = ["STAGES", "TrainConfig", "export_adapter", "train"]
