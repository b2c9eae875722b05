"""Search several index directories as one: the parts of a corpus indexed separately.

Past one writer's reach (tens of millions of chunks, or parts built on different machines or Ray
clusters), a corpus is indexed as disjoint parts, one `l2v index build` each. `ShardedRetriever`
encodes each query once, searches every part with the same encoder (so the cosine scores
compare), and merges the parts' top-k by score: exact for `Flat` parts, and as good as each
part's own recall for approximate ones.
"""

from __future__ import annotations

import heapq
import os
from typing import Any, Sequence

from indexer.filters import compile_filter, known_fields, missing_fields, unknown_field_error

from .errors import RetrieverError
from .retriever import Filter, Hit, Retriever, _check_k, _check_queries


class ShardedRetriever:
    """`search` / `search_batch` over several `Retriever`s that share one encoder."""

    def __init__(self, parts: Sequence[Retriever]) -> None:
        if not parts:
            raise RetrieverError("a sharded retriever needs at least one index")
        self.parts = list(parts)

    @classmethod
    def open(cls, index_dirs: Sequence[str | os.PathLike], encoder: Any = None, *, dtype: str | None = None,
             device: str | None = None, batch_size: int = 32, runtime: str = "auto") -> "ShardedRetriever":
        """Open every directory read-only with one encoder: the first index's (`runtime` as in
        `Retriever.open`), unless `encoder` is given. An index built with another encoder raises
        `IndexMismatchError`."""
        parts: list[Retriever] = []
        try:
            for index_dir in index_dirs:
                part = Retriever.open(index_dir, encoder, dtype=dtype, device=device, batch_size=batch_size,
                                      runtime=runtime)
                encoder = part.encoder
                parts.append(part)
        except BaseException:
            for part in parts:
                part.close()
            raise
        return cls(parts)

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def __enter__(self) -> "ShardedRetriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def search(self, query: str, k: int = 10, **options: Any) -> list[Hit]:
        """The best `k` chunks for `query` across every part (options as `search_batch`)."""
        if not isinstance(query, str):
            raise RetrieverError(f"query must be a string, got {type(query).__name__}")
        return self.search_batch([query], k, **options)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *, instruction: str | None = None,
                     task: str | None = None, filter: Filter | None = None,
                     score_threshold: float | None = None, nprobe: int | None = None,
                     ef_search: int | None = None) -> list[list[Hit]]:
        """Encode `queries` once, search each part for its top `k` and keep the best `k` overall.

        The instruction comes from the first part's default task unless given. MMR and hybrid
        fusion rank within one candidate list, so they are not offered across parts.
        A document found in several parts (the parts should be disjoint) counts once per chunk.
        A filter field that some parts lack matches nothing there; one that no part has is an
        `UnknownFieldError`, as for a single index.
        """
        queries = _check_queries(queries)
        k = _check_k(k)
        if not queries:
            return []
        if filter is not None:
            self._check_filter_fields(filter)
        first = self.parts[0]
        vectors = first.encode_queries(queries, task=task, instruction=instruction)
        per_part = [part.search_by_vector(vectors, k, filter=filter, score_threshold=score_threshold, nprobe=nprobe,
                                          ef_search=ef_search, unknown_fields="ignore")
                    for part in self.parts]
        merged: list[list[Hit]] = []
        for row in range(len(queries)):
            seen: set[tuple[str, int]] = set()
            hits: list[Hit] = []
            for hit in heapq.merge(*(hits_of[row] for hits_of in per_part), key=lambda h: -h.score):
                if (hit.doc_id, hit.position) in seen:
                    continue
                seen.add((hit.doc_id, hit.position))
                hits.append(hit)
                if len(hits) == k:
                    break
            merged.append(hits)
        return merged

    def _check_filter_fields(self, filter: Filter) -> None:
        """`UnknownFieldError` for a required filter field that no part has."""
        compiled = compile_filter(filter)
        missing = set(compiled.required)
        known: set[str] = set()
        for part in self.parts:
            with part.store.snapshot():
                missing &= set(missing_fields(part.store.db, compiled.required))
                known.update(known_fields(part.store.db))
        if missing:
            raise unknown_field_error(sorted(missing)[0], sorted(known)[:30])
