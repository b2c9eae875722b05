"""The three LLM2Vec training objectives as plain functions over a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, mask_token_id: int, ratio: float,
                vocab_size: int, special_ids: set[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking: `ratio` of real tokens are targets; 80 % -> mask, 10 % random, 10 % kept.

    Returns (masked input ids, labels) with labels = IGNORE everywhere but the targets.
    """
    candidates = attention_mask.bool().clone()
    for special in special_ids:
        candidates &= input_ids != special
    chosen = (torch.rand(input_ids.shape, generator=generator) < ratio) & candidates
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    masked = input_ids.clone()
    roll = torch.rand(input_ids.shape, generator=generator)
    masked[chosen & (roll < 0.8)] = mask_token_id
    random_slots = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[random_slots] = torch.randint(vocab_size, input_ids.shape, generator=generator)[random_slots]
    return masked, labels


def mntp_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module) -> torch.Tensor:
    """Masked next token prediction: the token at i is predicted from the output at i - 1.

    The LM head runs only at those positions: with a large vocabulary it dominates the cost.
    """
    targets = labels[:, 1:]
    selected = targets != IGNORE
    if not selected.any():
        return hidden.sum() * 0.0
    logits = lm_head(hidden[:, :-1][selected])
    return F.cross_entropy(logits.float(), targets[selected])


def contrastive_loss(queries: torch.Tensor, candidates: torch.Tensor, scale: float) -> torch.Tensor:
    """InfoNCE over cosine similarities: query i's positive is candidate i; every other candidate
    (the other positives in the batch, then any hard negatives appended after them) is a negative."""
    scores = F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T * scale
    return F.cross_entropy(scores, torch.arange(queries.shape[0], device=queries.device))
