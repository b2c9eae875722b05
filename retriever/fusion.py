"""Reciprocal rank fusion (Cormack et al., 2009): merge ranked lists by summing 1 / (c + rank)."""

from __future__ import annotations

from typing import Hashable, Sequence, TypeVar

Key = TypeVar("Key", bound=Hashable)

RRF_C = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Key]], *, c: int = RRF_C, weights: Sequence[float] | None = None
) -> list[tuple[Key, float]]:
    """Fuse best-first rankings into one list of (key, score), best first.

    Each list adds `weight / (c + rank)` (rank from 1) for the keys it contains; ties keep the order
    of first appearance, so the result is deterministic.
    """
    if c < 0:
        raise ValueError(f"c must be >= 0, got {c}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"got {len(weights)} weights for {len(rankings)} rankings")
    scores: dict[Key, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + weight / (c + rank)
    return sorted(scores.items(), key=lambda item: -item[1])
