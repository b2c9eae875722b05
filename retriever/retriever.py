"""`Retriever`: encode queries with a task instruction, search the index, return hydrated hits.

Documents were encoded without an instruction when the index was built; queries are encoded with
one (LLM2Vec's asymmetric recipe), chosen by `task=` or given as `instruction=`, else the index's
default task. Metadata filters run as `planner` decides (exact scoring of few allowed chunks, or
FAISS with a cached ID selector and a widened search); every search reads one committed state
(`IndexStore.snapshot`), so concurrent writers never show through. A text query is hybrid by
default: its dense hits and the index's BM25 keyword hits (`indexer.keywords`) fused as the index's
recipe chose (`recipes.HYBRID_FUSIONS`: reciprocal ranks, or a convex combination of normalised
scores), which beat dense alone on every full collection measured (RESULTS.md); `hybrid=False` ranks
by the dense hits alone, and `mmr=True` re-ranks `fetch_k` dense candidates for diversity.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from indexer.llm2vec.text_encoder import TextEncoder
from indexer.errors import IndexerError
from indexer.faiss_index import Selector
from indexer.store import IndexStore
from indexer.vectors import normalize_rows

from .encoders import check_compatible, encoder_for_manifest
from .errors import IndexOpenError, RetrieverError
from indexer.filters import check_fields, compile_filter
from indexer.llm2vec.recipes import FUSION_FUNCTIONS, HybridFusion, hybrid_fusion
from .fusion import convex_combination, reciprocal_rank_fusion
from .instructions import resolve_instruction
from .mmr import maximal_marginal_relevance
from .planner import plan_search

Filter = Mapping[str, Any]
SELECTION_CACHE_SIZE = 16
"""Filters whose allowed-chunk selectors are kept (per retriever, until the next write)."""
KEYWORD_FETCH_MAX = 10_000
"""Cap on the BM25 hits fetched for hybrid search under a filter (which FTS5 cannot apply itself)."""


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its text, the document it came from, that document's metadata, a score.

    `score` is the fused score when the search was hybrid (the default for text queries): an RRF
    sum (about 1/61 for a hit first in one list) or a convex combination of min-max normalised
    cosine and BM25 scores, as `Retriever.fusion` says; else the cosine similarity to the query.
    `start`/`end` are character offsets of the chunk in its document.
    """

    doc_id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk_id: int = -1
    position: int = 0
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RetrieverError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _check_queries(queries: Any) -> list[str]:
    if isinstance(queries, str) or not isinstance(queries, Sequence):
        raise RetrieverError(f"queries must be a list of strings, got {type(queries).__name__}")
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise RetrieverError(f"query {i} is {type(query).__name__}, expected str")
        if not query.strip():
            raise RetrieverError(f"query {i} is empty: give some text to search for")
    return list(queries)


class Retriever:
    """Search an index built by `indexer.Indexer` (open it with `Retriever.open(index_dir)`)."""

    def __init__(self, store: IndexStore, encoder: TextEncoder | None, *, batch_size: int = 32,
                 dense_weight: float | None = None, fusion: str | None = None) -> None:
        self.store = store
        self.encoder = encoder
        self.batch_size = _check_k(batch_size, "batch_size")
        recipes_fusion = hybrid_fusion(store.manifest.get("encoder") or {})
        self.fusion = _checked_fusion(recipes_fusion.overridden(fusion, dense_weight))
        self._selections: OrderedDict[tuple[str, tuple[Any, ...], str], tuple[int, Selector]] = OrderedDict()
        if encoder is not None:
            check_compatible(store.manifest, encoder)

    @classmethod
    def open(
        cls,
        index_dir: str | os.PathLike,
        encoder: TextEncoder | None = None,
        *,
        dtype: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        runtime: str = "auto",
        dense_weight: float | None = None,
        fusion: str | None = None,
    ) -> "Retriever":
        """Open `index_dir` read-only and load the encoder its manifest names (cached per process).

        Pass an already-loaded `encoder` to reuse it; it must produce the index's vectors
        (`IndexMismatchError` otherwise). `runtime="auto"` loads the encoder's cached ONNX
        Runtime export when there is one (same vectors, no torch: a start in about a second),
        "onnx" exports it first if needed, "torch" always loads the torch model. Hybrid search fuses
        the dense and keyword lists with `fusion` ("rrf": reciprocal ranks, "convex": min-max
        normalised scores), the dense list weighing `dense_weight` where the keyword list weighs 1;
        each defaults to what was chosen for the index's encoder recipe (`recipes.HYBRID_FUSIONS`),
        else RRF with equal weights.
        """
        try:
            store = IndexStore.open(index_dir, read_only=True)
        except IndexerError as exc:
            raise IndexOpenError(str(exc)) from exc
        if encoder is None:
            encoder = encoder_for_manifest(store.manifest, dtype=dtype, device=device, index_dir=index_dir,
                                           runtime=runtime)
        return cls(store, encoder, batch_size=batch_size, dense_weight=dense_weight, fusion=fusion)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Retriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    @property
    def default_task(self) -> str | None:
        """The task the index manifest names for queries, if any."""
        return self.store.manifest.get("default_task")

    def query_instruction(self, task: str | None = None, instruction: str | None = None) -> str | None:
        """The instruction queries get for these arguments (see `instructions.resolve_instruction`)."""
        return resolve_instruction(task, instruction, default_task=self.default_task)

    def encode_queries(
        self, queries: Sequence[str], *, task: str | None = None, instruction: str | None = None
    ) -> np.ndarray:
        """Unit-length query vectors [len(queries), dim], encoded with the resolved instruction."""
        queries = _check_queries(queries)
        if self.encoder is None:
            raise RetrieverError("this retriever has no encoder: search by vector instead")
        prompt = self.query_instruction(task, instruction)
        vectors = self.encoder.encode(queries, prompt, batch_size=self.batch_size, normalize=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        instruction: str | None = None,
        task: str | None = None,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        mmr: bool = False,
        fetch_k: int | None = None,
        lambda_mult: float = 0.5,
        hybrid: bool | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> list[Hit]:
        """The best `k` chunks for `query`, best first (fewer when fewer match).

        `hybrid` (the default, `None`, means hybrid unless `mmr`) fuses the `fetch_k` best dense
        and BM25 keyword hits (`self.fusion`); `hybrid=False` ranks by cosine alone. `filter`
        restricts to documents whose metadata matches (see `indexer.filters`; `k` hits come back
        whenever `k` chunks match, see `planner`); `score_threshold` drops hits whose cosine to the
        query is below it, in either mode; `mmr=True` picks `k` diverse hits from `fetch_k`
        (default `max(4k, 20)`) dense candidates with `lambda_mult` (1 = relevance only).
        `nprobe` (IVF) and `ef_search` (HNSW) trade speed for recall on approximate indexes. A `k`
        larger than the index returns every matching chunk.
        """
        if not isinstance(query, str):
            raise RetrieverError(f"query must be a string, got {type(query).__name__}")
        return self.search_batch(
            [query], k, instruction=instruction, task=task, filter=filter, score_threshold=score_threshold,
            mmr=mmr, fetch_k=fetch_k, lambda_mult=lambda_mult, hybrid=hybrid, nprobe=nprobe, ef_search=ef_search,
        )[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        instruction: str | None = None,
        task: str | None = None,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        mmr: bool = False,
        fetch_k: int | None = None,
        lambda_mult: float = 0.5,
        hybrid: bool | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> list[list[Hit]]:
        """`search` for many queries: encoded in batches of `batch_size`, searched in one FAISS call."""
        queries = _check_queries(queries)
        k = _check_k(k)
        options = SearchOptions.checked(mmr=mmr, hybrid=hybrid, lambda_mult=lambda_mult, fetch_k=fetch_k,
                                        score_threshold=score_threshold, nprobe=nprobe, ef_search=ef_search)
        if not queries:
            return []
        vectors = self.encode_queries(queries, task=task, instruction=instruction)
        return self._search_vectors(vectors, k, queries if options.hybrid else None, filter, options)

    def search_by_vector(
        self,
        vectors: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
        k: int = 10,
        *,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        mmr: bool = False,
        fetch_k: int | None = None,
        lambda_mult: float = 0.5,
        nprobe: int | None = None,
        ef_search: int | None = None,
        unknown_fields: Literal["error", "ignore"] = "error",
    ) -> list[list[Hit]]:
        """Search with query vectors already computed ([dim] or [n, dim]; normalised here).

        `unknown_fields="ignore"` makes a filter on a field this index lacks match nothing instead
        of raising (`ShardedRetriever` uses it: a field may live in some parts only).
        """
        k = _check_k(k)
        options = SearchOptions.checked(mmr=mmr, hybrid=False, lambda_mult=lambda_mult, fetch_k=fetch_k,
                                        score_threshold=score_threshold, nprobe=nprobe, ef_search=ef_search,
                                        unknown_fields=unknown_fields)
        matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if matrix.ndim != 2 or matrix.shape[1] != self.store.dim:
            raise RetrieverError(f"query vectors must have {self.store.dim} dimensions, got shape {matrix.shape}")
        return self._search_vectors(normalize_rows(matrix), k, None, filter, options)

    # ------------------------------------------------------------------ internals
    def allowed_ids(self, filter: Filter | None, *, unknown_fields: str = "error") -> np.ndarray | None:
        """Chunk ids of the documents matching `filter` (None: no filter, every chunk allowed)."""
        selection = self._selection(filter, unknown_fields)
        return None if selection is None else selection.ids

    def _selection(self, filter: Filter | None, unknown_fields: str) -> Selector | None:
        """The allowed chunks of `filter` as a FAISS selector, cached per filter until the next write."""
        if filter is None:
            return None
        compiled = compile_filter(filter)
        if compiled.sql == "1":
            return None
        with self.store.snapshot():
            key = (compiled.sql, compiled.params, unknown_fields)
            cached = self._selections.get(key)
            if cached is not None and cached[0] == self.store.generation:  # checked when it was cached
                self._selections.move_to_end(key)
                return cached[1]
            if unknown_fields == "error":
                check_fields(self.store.db, compiled, strict=False)
            ids = np.asarray(self.store.chunk_ids_where(compiled.sql, list(compiled.params)), dtype=np.int64)
            selection = self.store.vectors.selector(ids)
            self._selections[key] = (self.store.generation, selection)
            while len(self._selections) > SELECTION_CACHE_SIZE:
                self._selections.popitem(last=False)
            return selection

    def _search_vectors(self, vectors: np.ndarray, k: int, queries: list[str] | None, filter: Filter | None,
                        options: "SearchOptions") -> list[list[Hit]]:
        """Every read of one search inside one snapshot: a concurrent writer never shows through."""
        with self.store.snapshot():
            selection = self._selection(filter, options.unknown_fields)
            total = len(self.store)
            available = total if selection is None else selection.size
            if available == 0:
                return [[] for _ in range(len(vectors))]
            k = min(k, available)
            fetch = min(options.fetch_k or candidate_depth(k), available) if (options.mmr or queries) else k
            fetch = max(fetch, k)
            scores, ids = self._dense(vectors, fetch, selection, total, options)
            ranked: list[list[tuple[int, float]]] = []
            for row, (row_scores, row_ids) in enumerate(zip(scores, ids)):
                dense = [(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                if options.score_threshold is not None:
                    dense = [(i, s) for i, s in dense if s >= options.score_threshold]
                if options.mmr:
                    dense = self._mmr(vectors[row], dense, k, options.lambda_mult)
                elif queries is not None:
                    dense = self._fuse(queries[row], vectors[row], dense, fetch, selection, options.score_threshold)
                ranked.append(dense[:k])
            return self._hydrate(ranked)

    def _dense(self, vectors: np.ndarray, k: int, selection: Selector | None, total: int,
               options: "SearchOptions") -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) among the allowed chunks, run as `planner.plan_search` decides."""
        index = self.store.vectors
        plan = plan_search(allowed=None if selection is None else selection.size, total=total,
                           exact_index=index.exact, nprobe=options.nprobe or index.nprobe, nlist=index.nlist,
                           ef_search=options.ef_search or index.ef_search)
        if plan.strategy == "exact":
            return self._exact(vectors, k, selection.ids)
        scores, ids = self.store.search(vectors, k, selector=selection, nprobe=plan.nprobe, ef_search=plan.ef_search)
        if plan.exact_fallback and (ids[:, k - 1] < 0).any():
            scores, ids = self._exact(vectors, k, selection.ids)
        return scores, ids

    def _exact(self, vectors: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among `allowed` chunk ids, from their stored vectors."""
        found, matrix = self.store.stored_vectors(allowed)
        similarities = vectors @ matrix.T
        top = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
        scores, ids = np.take_along_axis(similarities, top, axis=1), found[top]
        if top.shape[1] < k:  # pad like FAISS
            pad = k - top.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return scores, ids

    def _mmr(
        self, query: np.ndarray, dense: list[tuple[int, float]], k: int, lambda_mult: float
    ) -> list[tuple[int, float]]:
        found, candidates = self.store.stored_vectors([i for i, _ in dense])
        present = set(found.tolist())
        dense = [hit for hit in dense if hit[0] in present]
        if not dense:
            return []
        order = maximal_marginal_relevance(query, candidates, k, lambda_mult)
        return [dense[j] for j in order]

    def _fuse(
        self, query: str, vector: np.ndarray, dense: list[tuple[int, float]], fetch: int, selection: Selector | None,
        threshold: float | None,
    ) -> list[tuple[int, float]]:
        """`self.fusion` of the dense hits (chunks) and `fetch` BM25 hits (whole documents, each
        standing for its chunk nearest the query); under a filter, BM25 over-fetches in proportion.
        A keyword hit's cosine (from its stored vectors) holds it to a `threshold` and scores it on
        the dense side of a convex combination."""
        limit = fetch
        if selection is not None:  # FTS5 cannot filter by metadata: fetch enough to keep ~fetch after filtering
            limit = min(KEYWORD_FETCH_MAX, fetch * max(1, round(len(self.store) / max(selection.size, 1))))
        documents = self.store.keyword_search(query, limit)
        chunks_of = self.store.chunk_ids_of([doc_id for doc_id, _ in documents])
        if selection is not None:
            allowed = set(selection.ids.tolist())
            chunks_of = {doc_id: [i for i in ids if i in allowed] for doc_id, ids in chunks_of.items()}
        documents = [(doc_id, score) for doc_id, score in documents if chunks_of.get(doc_id)][:fetch]
        cosines = dict(dense)
        # a document with a chunk among the dense hits has its nearest chunk there (exact search), so
        # only the others' chunk vectors are read
        unseen = [i for doc_id, _ in documents if not any(i in cosines for i in chunks_of[doc_id])
                  for i in chunks_of[doc_id]]
        found, matrix = self.store.stored_vectors(unseen)
        cosines.update(zip(found.tolist(), (matrix @ vector).tolist()))
        keyword = [(max(chunks_of[doc_id], key=lambda i: cosines.get(i, -np.inf)), score) for doc_id, score in documents]
        if threshold is not None:
            keyword = [(chunk_id, score) for chunk_id, score in keyword if cosines.get(chunk_id, -np.inf) >= threshold]
        weights = [self.fusion.dense_weight, 1.0]
        if self.fusion.function == "convex":
            candidates = dict(dense) | {chunk_id: cosines[chunk_id] for chunk_id, _ in keyword if chunk_id in cosines}
            return convex_combination([candidates, dict(keyword)], weights=weights)
        return reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in keyword]], weights=weights)

    def _hydrate(self, ranked: list[list[tuple[int, float]]]) -> list[list[Hit]]:
        wanted = sorted({i for row in ranked for i, _ in row})
        chunks = {c["id"]: c for c in self.store.get_chunks(wanted)} if wanted else {}
        return [[self._hit(chunks[i], score) for i, score in row if i in chunks] for row in ranked]

    @staticmethod
    def _hit(chunk: dict[str, Any], score: float) -> Hit:
        return Hit(doc_id=chunk["doc_id"], text=chunk["text"], score=score, metadata=chunk["metadata"],
                   chunk_id=chunk["id"], position=chunk["position"], start=chunk["start"], end=chunk["end"])


def _checked_fusion(fusion: HybridFusion) -> HybridFusion:
    """`fusion` (the recipe's, with the caller's overrides put in) once its function and weight are checked."""
    function, dense_weight = fusion.function, fusion.dense_weight
    if function not in FUSION_FUNCTIONS:
        raise RetrieverError(f"fusion must be one of {', '.join(FUSION_FUNCTIONS)}, got {function!r}")
    if isinstance(dense_weight, bool) or not isinstance(dense_weight, (int, float)) or not dense_weight >= 0:
        raise RetrieverError(f"dense_weight must be a number >= 0, got {dense_weight!r}")
    return HybridFusion(function, float(dense_weight))


def candidate_depth(k: int) -> int:
    """How many candidates an MMR or hybrid search of depth `k` fetches from each list (unless `fetch_k`)."""
    return max(4 * k, 20)


def is_hybrid(hybrid: bool | None, mmr: bool) -> bool:
    """Whether a text search is hybrid: as asked, else (None, the default) unless `mmr`."""
    return not mmr if hybrid is None else hybrid


@dataclass(frozen=True)
class SearchOptions:
    """The validated options of one search (how candidates are ranked and how hard FAISS looks)."""

    mmr: bool = False
    hybrid: bool = True
    lambda_mult: float = 0.5
    fetch_k: int | None = None
    score_threshold: float | None = None
    nprobe: int | None = None
    ef_search: int | None = None
    unknown_fields: str = "error"

    @classmethod
    def checked(cls, **options: Any) -> "SearchOptions":
        """Validate, and resolve `hybrid=None` (the default) to hybrid unless `mmr`."""
        if options["mmr"] and options["hybrid"]:
            raise RetrieverError("mmr and hybrid search do not combine; choose one (hybrid=False with mmr)")
        options["hybrid"] = is_hybrid(options["hybrid"], options["mmr"])
        if not 0.0 <= options["lambda_mult"] <= 1.0:
            raise RetrieverError(f"lambda_mult must be between 0 and 1, got {options['lambda_mult']}")
        for name in ("fetch_k", "nprobe", "ef_search"):
            if options.get(name) is not None:
                _check_k(options[name], name)
        if options.get("unknown_fields", "error") not in ("error", "ignore"):
            raise RetrieverError(f"unknown_fields must be 'error' or 'ignore', got {options['unknown_fields']!r}")
        return cls(**options)
