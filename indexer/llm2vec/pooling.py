"""Pooling of token states into one vector, over the pooled (text) tokens only."""

from __future__ import annotations

import torch

from .config import POOLING_MODES


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool `hidden` [batch, seq, dim] (left-padded) into [batch, dim].

    - `mean`: average of the pooled tokens.
    - `weighted_mean`: pooled tokens weighted 1..n by position (later tokens have seen more).
    - `eos_token` / `last_token`: the last token of the sequence (the EOS, when appended).
    - `bos_token`: the first real token of the sequence (the BOS).
    """
    if mode in ("mean", "weighted_mean"):
        weights = pool_mask.to(hidden.dtype)
        if mode == "weighted_mean":
            weights = weights.cumsum(dim=1) * weights
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)
        return torch.einsum("bsd,bs->bd", hidden, weights)
    if mode in ("eos_token", "last_token"):
        return hidden[:, -1]
    if mode == "bos_token":
        first = attention_mask.long().argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    raise ValueError(f"unknown pooling mode {mode!r}; choose one of {', '.join(POOLING_MODES)}")
