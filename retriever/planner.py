"""How a filtered search runs: chosen from the filter's selectivity and the kind of index.

A filter allows `allowed` of the index's `total` chunks. Three ways to find the top k among them:

* **exact**: score the allowed chunks' stored vectors directly. Always right, and the cheapest
  when few chunks are allowed (reading them costs less than any scan of the index).
* **faiss**: search FAISS with an ID selector (a cached bitmap or hash set of the allowed ids).
  Exact for Flat indexes. An approximate index (IVF, HNSW) visits only part of the index, and
  under a selective filter that part may hold fewer than k allowed chunks, so the plan widens the
  search in proportion: `nprobe` / `efSearch` divided by the selectivity (capped).
* **faiss, then exact**: when an approximate search still comes back short and the allowed set
  is small enough to score directly, the missing hits are found exactly.

So a filter returns k hits whenever k chunks match it, on every index type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

EXACT_SEARCH_MAX = 4_096
"""Allowed chunks up to which a filtered search scores the stored vectors directly."""
EXACT_FALLBACK_MAX = 50_000
"""Allowed chunks up to which a short approximate search is completed by exact scoring."""
MAX_EF_SEARCH = 4_096


@dataclass(frozen=True)
class Plan:
    """What `Retriever` runs: `strategy`, the FAISS parameters, and whether a short result is completed exactly."""

    strategy: Literal["exact", "faiss"]
    nprobe: int | None = None
    ef_search: int | None = None
    exact_fallback: bool = False


def plan_search(*, allowed: int | None, total: int, exact_index: bool, nprobe: int | None, nlist: int | None,
                ef_search: int | None) -> Plan:
    """The plan for a search where `allowed` of `total` chunks may be returned (None: no filter).

    `nprobe` / `ef_search` are the index's defaults (or the caller's choice) and `nlist` its IVF
    list count; `exact_index` says whether FAISS scans every vector anyway (Flat).
    """
    if allowed is None:
        return Plan("faiss", nprobe, ef_search)
    if allowed <= EXACT_SEARCH_MAX and not (exact_index and allowed * 8 > total):
        return Plan("exact")
    if exact_index:
        return Plan("faiss")
    selectivity = max(allowed / max(total, 1), 1e-6)
    widened_probe = min(nlist, math.ceil(nprobe / selectivity)) if nprobe and nlist else nprobe
    widened_ef = min(MAX_EF_SEARCH, math.ceil(ef_search / selectivity)) if ef_search else ef_search
    return Plan("faiss", widened_probe, widened_ef, exact_fallback=allowed <= EXACT_FALLBACK_MAX)
