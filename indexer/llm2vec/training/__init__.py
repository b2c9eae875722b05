"""LLM2Vec training: MNTP, unsupervised SimCSE and supervised contrastive, each a LoRA adapter.

Names are exported lazily (`indexer.lazy`), so `l2v train --help` does not import torch.
"""

from ...lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "STAGES": ".config",
    "TrainConfig": ".config",
    "branch_run": ".branch",
    "export_adapter": ".export",
    "train": ".trainer",
})
