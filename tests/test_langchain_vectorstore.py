"""`LLM2VecVectorStore` and `LLM2VecRetriever` pass langchain-tests' standard suites, plus our own checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Generator

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from indexer import Indexer, LLM2VecEncoder
from retriever import IndexMismatchError, Retriever, RetrieverError
from retriever.langchain import LLM2VecEmbeddings, LLM2VecRetriever, LLM2VecVectorStore

TEXTS = ["foxes hunt at night", "encoders map text to vectors", "claims need evidence",
         "questions want answers", "unicode is everywhere"]


class TestLLM2VecVectorStoreStandard(VectorStoreIntegrationTests):
    """The suite's own fake embeddings: the store holds the vectors it is given."""

    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Generator[VectorStore, None, None]:
        store = LLM2VecVectorStore(self.get_embeddings(), tmp_path / "index")
        try:
            yield store
        finally:
            store.close()


class TestLLM2VecVectorStoreWithLLM2Vec(VectorStoreIntegrationTests):
    """The same suite with our real embeddings over a tiny model."""

    @pytest.fixture
    def vectorstore(self, tmp_path: Path, tiny_encoder: LLM2VecEncoder) -> Generator[VectorStore, None, None]:
        store = LLM2VecVectorStore(LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction=""),
                                   tmp_path / "index")
        try:
            yield store
        finally:
            store.close()


@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> str:
    """An index as `l2v index build` makes it (the manifest names the tiny model)."""
    path = tmp_path_factory.mktemp("lc") / "index"
    with Indexer(path, model=str(tiny_llama)) as indexer:
        indexer.add_documents([{"id": f"t{i}", "text": t, "metadata": {"n": i}} for i, t in enumerate(TEXTS)])
    return str(path)


class TestLLM2VecRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _index(self, built_index: str) -> None:
        type(self).index_dir = built_index

    @property
    def retriever_constructor(self) -> type[LLM2VecRetriever]:
        return LLM2VecRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index_dir": self.index_dir, "task": "qa"}

    @property
    def retriever_query_example(self) -> str:
        return "what do encoders do?"


def test_retriever_documents_and_options(built_index: str) -> None:
    retriever = LLM2VecRetriever(index_dir=built_index, k=2)
    docs = retriever.invoke("night animals")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    assert docs[0].page_content in TEXTS and docs[0].id == f"t{TEXTS.index(docs[0].page_content)}"
    assert set(docs[0].metadata) == {"n", "retrieval"} and docs[0].metadata["retrieval"]["score"] <= 1.0
    only = retriever.invoke("night animals", k=5, filter={"n": {"$gte": 3}})
    assert sorted(d.metadata["n"] for d in only) == [3, 4]
    assert len(retriever.invoke("animals", search_type="mmr", k=3)) == 3
    assert retriever.invoke("foxes", search_type="hybrid", k=1)[0].id == "t0"
    scores = lambda docs: [(d.id, d.metadata["retrieval"]["score"]) for d in docs]  # noqa: E731
    assert scores(retriever.invoke("foxes at night", k=3)) == \
        scores(retriever.invoke("foxes at night", k=3, search_type="hybrid"))  # the Retriever's default
    assert scores(retriever.invoke("foxes at night", k=3, search_type="similarity")) == \
        [(h.doc_id, h.score) for h in retriever.retriever.search("foxes at night", k=3, hybrid=False)]
    with pytest.raises(RetrieverError, match="search_type"):
        retriever.invoke("foxes", search_type="nearest")


def test_retriever_closes_its_index(built_index: str) -> None:
    import sqlite3

    with LLM2VecRetriever(index_dir=built_index, k=1) as retriever:
        assert len(retriever.invoke("foxes")) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        retriever.invoke("foxes")


def test_store_over_an_index_built_by_the_indexer(built_index: str, tmp_path: Path) -> None:
    embeddings = LLM2VecEmbeddings(encoder=Retriever.open(built_index).encoder, task="qa")
    store = LLM2VecVectorStore(embeddings, built_index)
    try:
        assert store.similarity_search("vectors", k=5, filter={"n": 1})[0].id == "t1"
        assert [d.id for d in store.get_by_ids(["t2", "gone", "t0"])] == ["t2", "t0"]
    finally:
        store.close()


def test_persistence_and_relevance(tmp_path: Path, tiny_encoder: LLM2VecEncoder) -> None:
    embeddings = LLM2VecEmbeddings(encoder=tiny_encoder)
    store = LLM2VecVectorStore.from_texts(TEXTS, embeddings, [{"n": i} for i in range(5)],
                                          ids=[f"t{i}" for i in range(5)], index_dir=tmp_path / "lc")
    scored = store.similarity_search_with_relevance_scores("what are encoders", k=5)
    assert all(0.0 <= score <= 1.0 for _, score in scored)
    threshold = scored[1][1]
    kept = store.as_retriever(search_type="similarity_score_threshold",
                              search_kwargs={"score_threshold": threshold, "k": 5}).invoke("what are encoders")
    assert [d.id for d in kept] == [d.id for d, s in scored if s >= threshold]
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 5}).invoke("what are encoders")
    assert len({d.id for d in mmr}) == 3
    store.delete(["t4"])
    assert store.get_by_ids(["t4"]) == []  # a deleted id is simply absent
    before = store.similarity_search_with_score("what are encoders", k=3)
    store.close()

    assert not list((tmp_path / "lc").glob("*.pkl"))
    manifest = json.loads((tmp_path / "lc" / "manifest.json").read_text())
    assert manifest["encoder"]["fingerprint"] == tiny_encoder.fingerprint()
    reopened = LLM2VecVectorStore(embeddings, tmp_path / "lc")
    after = reopened.similarity_search_with_score("what are encoders", k=3)
    assert [(d.id, round(s, 5)) for d, s in after] == [(d.id, round(s, 5)) for d, s in before]
    assert reopened.get_by_ids(["t4"]) == []
    reopened.close()
    with Retriever.open(tmp_path / "lc") as retriever:  # the l2v format: the plain Retriever reads it
        assert {h.doc_id for h in retriever.search("encoders", k=10)} == {"t0", "t1", "t2", "t3"}


def test_external_embeddings_are_recorded_and_checked(tmp_path: Path) -> None:
    store = LLM2VecVectorStore.from_texts(["a b", "c d"], DeterministicFakeEmbedding(size=8), index_dir=tmp_path / "x")
    store.close()
    encoder = json.loads((tmp_path / "x" / "manifest.json").read_text())["encoder"]
    assert encoder["embeddings"].endswith("DeterministicFakeEmbedding") and encoder["params"] == {"size": 8}
    assert "model" not in encoder and encoder["dim"] == 8
    with pytest.raises(IndexMismatchError, match="cannot read this vector store"):
        LLM2VecVectorStore(DeterministicFakeEmbedding(size=9), tmp_path / "x").add_texts(["e"])
    with pytest.raises(RetrieverError, match="names no LLM2Vec model"):
        Retriever.open(tmp_path / "x")


def test_temporary_store_and_empty_input() -> None:
    store = LLM2VecVectorStore(DeterministicFakeEmbedding(size=4))
    directory = store.index_dir
    assert store.add_texts([]) == [] and store.similarity_search("x") == []
    assert store.delete() is True
    store.add_texts(["hello"])
    assert directory.is_dir()
    store.close()
    assert not directory.exists()
