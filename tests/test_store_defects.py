"""Smaller defects of the store (issue 12): each test failed before its fix."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from langchain_core.embeddings import DeterministicFakeEmbedding
from pydantic import SecretStr

from indexer import Indexer, IndexStore
from indexer.ingest import estimate_chunks
from retriever import Retriever
from retriever.cli import main
from retriever.langchain import LLM2VecVectorStore

DOCS = [{"id": f"d{i}", "text": f"document {i} about {'foxes' if i % 2 else 'owls'} and rivers",
         "metadata": {"n": i}} for i in range(40)]


class KeyedEmbeddings(DeterministicFakeEmbedding):
    """Embeddings with a credential and a tunable, as hosted-API embeddings have."""

    model: str = "fake-embed-1"
    api_key: SecretStr = SecretStr("sk-secret-123")
    timeout: float = 10.0


def test_external_embeddings_record_identity_not_secrets(tmp_path: Path) -> None:
    store = LLM2VecVectorStore(KeyedEmbeddings(size=8), tmp_path / "index")
    store.add_texts(["a", "b"])
    store.close()
    manifest = (tmp_path / "index" / "manifest.json").read_text()
    assert "sk-secret" not in manifest and "api_key" not in manifest and "timeout" not in manifest
    assert json.loads(manifest)["encoder"]["params"] == {"model": "fake-embed-1", "size": 8}
    reopened = LLM2VecVectorStore(KeyedEmbeddings(size=8, timeout=60.0, api_key=SecretStr("other")), tmp_path / "index")
    assert len(reopened.similarity_search("a", k=2)) == 2
    reopened.close()


def test_vector_store_reopens_an_hnsw_store(tmp_path: Path) -> None:
    store = LLM2VecVectorStore(DeterministicFakeEmbedding(size=8), tmp_path / "index", factory="HNSW16")
    store.add_texts(["one", "two"], ids=["1", "2"])
    store.close()
    reopened = LLM2VecVectorStore(DeterministicFakeEmbedding(size=8), tmp_path / "index")
    reopened.add_texts(["three"], ids=["3"])
    assert [d.page_content for d in reopened.get_by_ids(["1", "3"])] == ["one", "three"]
    reopened.close()


@pytest.mark.parametrize("fusion", ["rrf", "convex"])
def test_hybrid_threshold_bounds_the_cosine_of_every_hit(tmp_path: Path, tiny_encoder, fusion: str) -> None:
    with Indexer(tmp_path / "index", tiny_encoder) as indexer:
        indexer.add_documents(DOCS)
    with Retriever.open(tmp_path / "index", tiny_encoder, fusion=fusion) as retriever:
        dense = retriever.search("foxes", k=40, hybrid=False)
        threshold = dense[5].score
        query = retriever.encode_queries(["foxes"])[0]
        documents = retriever.store.chunk_ids_of([doc_id for doc_id, _ in retriever.store.keyword_search("foxes", 80)])
        keyword = [chunk_id for chunk_ids in documents.values() for chunk_id in chunk_ids]
        _, keyword_vectors = retriever.store.stored_vectors(keyword)
        assert (keyword_vectors @ query < threshold).any(), "the keyword side must bring hits below the threshold"
        for hybrid in (None, True):
            hits = retriever.search("foxes", k=10, hybrid=hybrid, score_threshold=threshold)
            assert hits, "fused scores are not cosines: the threshold must not apply to them"
            _, vectors = retriever.store.stored_vectors([h.chunk_id for h in hits])
            assert (vectors @ query >= threshold - 1e-6).all()
            assert {h.chunk_id for h in dense[:6]} <= {h.chunk_id for h in hits}


def test_delete_and_stats_never_load_the_model(tmp_path: Path, tiny_llama: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    with Indexer(tmp_path / "index", model=str(model)) as indexer:
        indexer.add_documents(DOCS[:5])
    shutil.rmtree(model)  # loading the encoder now fails
    runner = CliRunner()
    result = runner.invoke(main, ["index", "delete", str(tmp_path / "index"), "--id", "d1", "--filter", "n>=3"])
    assert result.exit_code == 0, result.output
    assert "deleted 3 documents" in result.output
    assert runner.invoke(main, ["index", "stats", str(tmp_path / "index")]).exit_code == 0


def test_a_small_change_does_not_rewrite_the_snapshot(tmp_path: Path, tiny_encoder) -> None:
    path = tmp_path / "index"
    with Indexer(path, tiny_encoder) as indexer:
        indexer.add_documents(DOCS)
    snapshot = (path / "index.faiss").stat()
    with Indexer(path, tiny_encoder) as indexer:
        indexer.add_documents([{"id": "new", "text": "a brand new document about owls"}])
        indexer.delete(ids=["d3"])
    after = (path / "index.faiss").stat()
    assert (after.st_mtime_ns, after.st_ino) == (snapshot.st_mtime_ns, snapshot.st_ino)
    with IndexStore.open(path) as store:  # the change is replayed from SQLite on open
        ids = set(store.vectors.ids().tolist())
        assert ids == {row[0] for row in store.db.execute("SELECT id FROM chunks")}
        assert store.counts()["documents"] == 40


def test_auto_factory_counts_chunks_not_documents(tmp_path: Path) -> None:
    corpus = tmp_path / "one-big-document.jsonl"
    corpus.write_text(json.dumps({"id": "big", "text": "word " * 400_000}) + "\n")
    assert estimate_chunks([corpus], chunk_tokens=256, overlap=32) >= 2_000


def test_auto_factory_estimates_chunks_at_the_length_the_index_gets(tmp_path: Path, tiny_llama: Path, tiny_encoder,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`l2v index build --factory auto` estimated chunks at 400 tokens whatever length the index got
    (the default model's recipe chunks at 128: a third of the chunks counted)."""
    from indexer import writer
    from indexer.llm2vec import recipes

    sizes: list[int] = []
    monkeypatch.setattr(writer, "auto_factory", lambda size, dim: sizes.append(size) or "Flat")
    monkeypatch.setitem(recipes.INDEX_CHUNK_TOKENS, tiny_encoder.spec()["model"], 16)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": "word " * 300}) + "\n" for i in range(4)))
    result = CliRunner().invoke(main, ["index", "build", str(tmp_path / "index"), str(corpus), "--model",
                                       str(tiny_llama), "--factory", "auto"])
    assert result.exit_code == 0, result.output
    assert sizes == [estimate_chunks([corpus], chunk_tokens=16, overlap=4)]


def test_an_index_from_before_the_fields_table_is_upgraded_on_open(tmp_path: Path, tiny_encoder) -> None:
    path = tmp_path / "index"
    with Indexer(path, tiny_encoder) as indexer:
        indexer.add_documents(DOCS[:10])
    with sqlite3.connect(path / "meta.sqlite") as conn:
        conn.execute("DROP TABLE fields")
    with Retriever.open(path, tiny_encoder) as retriever:
        hits = retriever.search("owls", k=10, filter={"n": {"$lt": 4}})
        assert sorted(h.doc_id for h in hits) == ["d0", "d1", "d2", "d3"]


def test_a_filter_comparing_the_wrong_type_warns_in_the_cli(tmp_path: Path, tiny_llama: Path) -> None:
    csv_file = tmp_path / "papers.csv"
    csv_file.write_text("id,text,year\np1,retrieval with llms,2019\np2,dense retrieval,2021\n")
    runner = CliRunner()
    built = runner.invoke(main, ["index", "build", str(tmp_path / "idx"), str(csv_file), "--csv-strings",
                                 "--model", str(tiny_llama)])
    assert built.exit_code == 0, built.output
    result = runner.invoke(main, ["search", str(tmp_path / "idx"), "retrieval", "--filter", "year>=2021"])
    assert result.exit_code == 0
    assert "warning: metadata field 'year' holds text values, never number" in result.output
    np.testing.assert_equal("no hits" in result.output, True)


def test_a_loaded_flat_index_takes_new_vectors_without_regrowing(tmp_path: Path) -> None:
    """Adding to a loaded Flat array copied all of it (2.4 s at 1M); new vectors go to a side index."""
    from indexer.faiss_index import VectorIndex

    rows = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = VectorIndex.create("Flat", 8)
    index.add(np.arange(40), rows[:40])
    index.save(tmp_path / "a.faiss")
    loaded = VectorIndex.load(tmp_path / "a.faiss", "Flat")
    loaded.add(np.arange(40, 50), rows[40:])
    loaded.remove(np.array([3, 45]))
    assert loaded.index.ntotal == 39 and loaded.ntotal == 48
    assert sorted(loaded.ids().tolist()) == [i for i in range(50) if i not in (3, 45)]
    scores, ids = loaded.search(rows[[44, 7]], 3)
    assert ids[:, 0].tolist() == [44, 7] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert 45 not in ids
    _, ids = loaded.search(rows[[44]], 2, allowed_ids=np.array([44, 46]))
    assert sorted(ids[0].tolist()) == [44, 46]
    loaded.save(tmp_path / "b.faiss")
    again = VectorIndex.load(tmp_path / "b.faiss", "Flat")
    assert again.index.ntotal == 48 and sorted(again.ids().tolist()) == sorted(loaded.ids().tolist())
