"""`indexer.IndexStore`: the read API the retriever and the LangChain VectorStore share."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import EncodedBatch, Indexer, IndexStore
from indexer.chunking import Chunk
from indexer.documents import Document

DIM = 32
TEXTS = ["alpha beta gamma", "beta delta", "gamma epsilon zeta", 'quote " and (paren) AND OR NOT * ^ -', "omega"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, tiny_model_factory):
    """Five one-chunk documents with known vectors (unit basis vectors), committed directly."""
    from indexer import LLM2VecEncoder

    encoder = LLM2VecEncoder.from_pretrained(tiny_model_factory("llama"))
    assert encoder.dim == DIM
    path = tmp_path_factory.mktemp("store") / "idx"
    docs = [Document(f"doc{i}", text, {"year": 2018 + i, "kind": "even" if i % 2 == 0 else "odd"})
            for i, text in enumerate(TEXTS)]
    vectors = np.eye(DIM, dtype=np.float32)[: len(docs)]
    with Indexer(path, encoder) as indexer:
        indexer.commit(EncodedBatch(docs, [[Chunk(0, 0, len(d.text), d.text)] for d in docs], vectors))
    return path


@pytest.fixture()
def store(store_path):
    with IndexStore.open(store_path) as opened:
        yield opened


def test_open_attributes(store, store_path):
    assert store.path == store_path and store.dim == DIM and len(store) == 5
    assert store.manifest["metric"] == "ip" and store.db["documents"].count == 5


def test_search_pads_with_minus_one_and_minus_inf(store):
    scores, ids = store.search(np.eye(DIM, dtype=np.float32)[[1, 3]], 7)
    assert scores.shape == ids.shape == (2, 7)
    assert ids[0, 0] == 1 and ids[1, 0] == 3 and scores[0, 0] == pytest.approx(1.0)
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()


def test_search_restricted_inside_faiss(store):
    allowed = store.chunk_ids_where("json_extract(d.metadata, '$.kind') = ?", ["odd"])
    assert sorted(allowed.tolist()) == [1, 3] and allowed.dtype == np.int64
    scores, ids = store.search(np.eye(DIM, dtype=np.float32)[[0]], 3, allowed_ids=allowed)
    assert sorted(ids[0, :2].tolist()) == [1, 3] and ids[0, 2] == -1
    _, ids = store.search(np.eye(DIM, dtype=np.float32)[[0]], 2, allowed_ids=np.empty(0, dtype=np.int64))
    assert (ids == -1).all()


def test_get_chunks_keeps_order_and_skips_missing(store):
    chunks = store.get_chunks([3, 99, -1, 0])
    assert [c["id"] for c in chunks] == [3, 0]
    assert chunks[1] == {"id": 0, "doc_id": "doc0", "position": 0, "start": 0, "end": len(TEXTS[0]),
                         "text": TEXTS[0], "metadata": {"year": 2018, "kind": "even"}}


def test_documents_and_vectors(store):
    docs = store.get_documents(["doc2", "nope"])
    assert len(docs) == 1 and docs[0]["text"] == TEXTS[2] and docs[0]["chunk_ids"] == [2]
    assert np.array_equal(store.reconstruct([4, 0]), np.eye(DIM, dtype=np.float32)[[4, 0]])
    with pytest.raises(KeyError):
        store.reconstruct([42])


@pytest.mark.parametrize("query", ['"', "AND OR NOT", "(", "zeta*", "col:umn", "' OR 1=1 --", "NEAR(a b)", "", "   "])
def test_keyword_search_never_breaks_on_user_text(store, query):
    assert isinstance(store.keyword_search(query, 3), list)


def test_keyword_search_ranks_by_bm25(store):
    hits = store.keyword_search("beta gamma", 5)
    assert {doc_id for doc_id, _ in hits} == {"doc0", "doc1", "doc2"}
    assert hits[0][0] == "doc0" and hits[0][1] > hits[-1][1]  # doc0 has both words
    assert [doc_id for doc_id, _ in store.keyword_search('paren) "and', 5)] == ["doc3"]
