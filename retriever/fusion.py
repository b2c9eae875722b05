"""Fusing ranked candidate lists (hybrid search's dense and keyword hits) into one ranking.

- `reciprocal_rank_fusion` (Cormack et al., 2009): each list adds weight / (c + rank); ranks only.
- `convex_combination`: a weighted sum of each list's min-max normalised scores.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence, TypeVar

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
    weights = _checked_weights(weights, len(rankings))
    scores: dict[Key, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + weight / (c + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def convex_combination(
    scored: Sequence[Mapping[Key, float]], *, weights: Sequence[float] | None = None
) -> list[tuple[Key, float]]:
    """Fuse scored candidate lists into one list of (key, score), best first, by a weighted sum of
    scores min-max normalised within each list (Bruch et al., 2023, "An analysis of fusion functions
    for hybrid retrieval": a convex combination keeps how far apart two hits score, which RRF drops).

    A key missing from a list scores that list's minimum (0 once normalised); a list whose scores are
    all equal gives each of its keys 1. Ties keep the order of first appearance.
    """
    weights = _checked_weights(weights, len(scored))
    fused: dict[Key, float] = {}
    for candidates, weight in zip(scored, weights):
        for key in candidates:
            fused.setdefault(key, 0.0)
        if not candidates:
            continue
        low, high = min(candidates.values()), max(candidates.values())
        span = high - low
        for key, score in candidates.items():
            fused[key] += weight * ((score - low) / span if span > 0 else 1.0)
    return sorted(fused.items(), key=lambda item: -item[1])


def _checked_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    weights = [1.0] * count if weights is None else list(weights)
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} weights for {count} lists")
    return weights
