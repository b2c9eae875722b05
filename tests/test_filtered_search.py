"""Filtered search returns k hits whenever k chunks match, on Flat, IVF, HNSW and across shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer import Indexer
from indexer.chunking import Chunk
from indexer.documents import as_document
from indexer.pipeline import EncodedBatch
from retriever import Retriever, ShardedRetriever, UnknownFieldError
from retriever.planner import EXACT_FALLBACK_MAX, EXACT_SEARCH_MAX, plan_search

N, DIM = 3000, 64


class VectorsOnly:
    """Stands in for an encoder when the test commits its own vectors (as the vector store does)."""

    def __init__(self, dim: int) -> None:
        from indexer.llm2vec import LLM2VecConfig

        self.dim, self.config = dim, LLM2VecConfig()

    def spec(self) -> dict:
        return {"embeddings": "test vectors", "dim": self.dim}

    def fingerprint(self) -> str:
        return f"test-vectors-{self.dim}"


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _build(path: Path, factory: str, ids: range, vectors: np.ndarray) -> None:
    with Indexer(path, VectorsOnly(DIM), factory=factory) as indexer:
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            docs = [as_document({"id": f"d{i}", "text": f"document {i}",
                                 "metadata": {"g": i % 100, "half": i % 2 == 0, **({"rare": 1} if i % 100 == 7 else {})}})
                    for i in part]
            chunks = [[Chunk(0, 0, len(d.text), d.text)] for d in docs]
            indexer.commit(EncodedBatch(docs, chunks, vectors[[i - ids[0] for i in part]]))


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return _vectors(N)


@pytest.fixture(scope="module", params=["Flat", "IVF32,Flat", "HNSW16"])
def index(request, tmp_path_factory, vectors) -> Path:
    path = tmp_path_factory.mktemp("filtered") / request.param.replace(",", "_")
    _build(path, request.param, range(N), vectors)
    return path


def _exact(vectors: np.ndarray, query: np.ndarray, allowed: list[int], k: int) -> list[str]:
    scores = vectors[allowed] @ query
    return [f"d{allowed[j]}" for j in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize(("filter", "allowed"), [
    ({"g": 7}, [i for i in range(N) if i % 100 == 7]),                       # 1 %: selective
    ({"g": {"$in": [1, 2, 3]}, "half": False}, [i for i in range(N) if i % 100 in (1, 3)]),
    ({"half": True}, [i for i in range(N) if i % 2 == 0]),                    # 50 %: broad
])
def test_k_hits_whenever_k_match(index: Path, vectors: np.ndarray, filter: dict, allowed: list[int]) -> None:
    query = _vectors(3, seed=1)
    with Retriever(index_store(index), None) as retriever:
        for row in range(3):
            hits = retriever.search_by_vector(query[row], 10, filter=filter)[0]
            assert len(hits) == 10
            assert {int(h.doc_id[1:]) for h in hits} <= set(allowed)
            expected = _exact(vectors, query[row], allowed, 10)
            got = [h.doc_id for h in hits]
            if "Flat" == index.name or len(allowed) <= EXACT_SEARCH_MAX:
                assert got == expected
            else:  # approximate index, broad filter: most of the true top 10
                assert len(set(got) & set(expected)) >= 7


def test_nprobe_and_ef_search_are_search_options(tmp_path: Path, vectors: np.ndarray) -> None:
    query = _vectors(1, seed=2)[0]
    expected = _exact(vectors, query, list(range(N)), 10)
    for factory, option in (("IVF32,Flat", {"nprobe": 32}), ("HNSW16", {"ef_search": 512})):
        path = tmp_path / factory.replace(",", "_")
        _build(path, factory, range(N), vectors)
        with Retriever(index_store(path), None) as retriever:
            assert [h.doc_id for h in retriever.search_by_vector(query, 10, **option)[0]] == expected
            with pytest.raises(Exception, match="positive integer"):
                retriever.search_by_vector(query, 10, nprobe=0)


def test_filters_across_shards_tolerate_fields_some_parts_lack(tmp_path: Path, vectors: np.ndarray) -> None:
    parts = [tmp_path / "a", tmp_path / "b"]
    _build(parts[0], "Flat", range(0, 1500), vectors[:1500])
    with Indexer(parts[1], VectorsOnly(DIM)) as indexer:  # a part whose documents have no "rare" field
        docs = [as_document({"id": f"d{i}", "text": f"document {i}", "metadata": {"g": i % 100}})
                for i in range(1500, N)]
        indexer.commit(EncodedBatch(docs, [[Chunk(0, 0, len(d.text), d.text)] for d in docs], vectors[1500:]))
    query = _vectors(1, seed=3)
    allowed = [i for i in range(1500) if i % 100 == 7]
    with ShardedRetriever([Retriever(index_store(p), None) for p in parts]) as sharded:
        hits = sharded.parts[0].search_by_vector(query, 5, filter={"rare": 1})[0]
        assert [h.doc_id for h in hits] == _exact(vectors, query[0], allowed, 5)
        with pytest.raises(UnknownFieldError):
            sharded.parts[1].search_by_vector(query, 5, filter={"rare": 1})
        assert sharded.parts[1].search_by_vector(query, 5, filter={"rare": 1}, unknown_fields="ignore")[0] == []
        with pytest.raises(UnknownFieldError, match="'nowhere'"):
            sharded._check_filter_fields({"nowhere": 1})
        sharded._check_filter_fields({"rare": 1})


def test_the_plan_follows_selectivity() -> None:
    flat = dict(exact_index=True, nprobe=None, nlist=None, ef_search=None)
    assert plan_search(allowed=None, total=10**6, **flat).strategy == "faiss"
    assert plan_search(allowed=100, total=10**6, **flat).strategy == "exact"
    assert plan_search(allowed=5 * 10**5, total=10**6, **flat).strategy == "faiss"
    ivf = dict(exact_index=False, nprobe=8, nlist=1024, ef_search=None)
    assert plan_search(allowed=EXACT_SEARCH_MAX, total=10**6, **ivf).strategy == "exact"
    selective = plan_search(allowed=10_000, total=10**6, **ivf)
    assert (selective.strategy, selective.nprobe, selective.exact_fallback) == ("faiss", 800, True)
    broad = plan_search(allowed=5 * 10**5, total=10**6, **ivf)
    assert (broad.nprobe, broad.exact_fallback) == (16, EXACT_FALLBACK_MAX >= 5 * 10**5)
    hnsw = plan_search(allowed=10**5, total=10**6, exact_index=False, nprobe=None, nlist=None, ef_search=64)
    assert hnsw.ef_search == 640


def index_store(path: Path):
    from indexer import IndexStore

    return IndexStore.open(path)
