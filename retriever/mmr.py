"""Maximal marginal relevance (Carbonell & Goldstein, 1998) over unit vectors.

Vectorised with a running max-similarity per candidate, so selecting k of n costs O(k * n * dim)
(langchain-core's helper recomputes all similarities in a Python loop at every step).
"""

from __future__ import annotations

import numpy as np


def maximal_marginal_relevance(
    query: np.ndarray, candidates: np.ndarray, k: int, lambda_mult: float = 0.5
) -> list[int]:
    """Indices of `k` rows of `candidates` [n, dim] balancing relevance to `query` [dim] and diversity.

    Each step takes argmax of `lambda_mult * sim(query, c) - (1 - lambda_mult) * max sim(c, chosen)`;
    `lambda_mult=1` is plain similarity order, `0` is maximal diversity. Vectors should be unit length.
    """
    if not 0.0 <= lambda_mult <= 1.0:
        raise ValueError(f"lambda_mult must be between 0 and 1, got {lambda_mult}")
    candidates = np.asarray(candidates, dtype=np.float32)
    n = candidates.shape[0]
    relevance = candidates @ np.asarray(query, dtype=np.float32)
    redundancy = np.zeros(n, dtype=np.float32)
    available = np.ones(n, dtype=bool)
    chosen: list[int] = []
    for _ in range(min(k, n)):
        scores = np.where(available, lambda_mult * relevance - (1.0 - lambda_mult) * redundancy, -np.inf)
        best = int(np.argmax(scores))
        chosen.append(best)
        available[best] = False
        similarity = candidates @ candidates[best]
        redundancy = similarity if len(chosen) == 1 else np.maximum(redundancy, similarity)
    return chosen
