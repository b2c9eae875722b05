"""The keyword table (`indexer.keywords`): stemmed BM25 over whole documents, and old indexes re-indexed on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexer import EncodedBatch, Indexer, IndexStore
from indexer.chunking import Chunk
from indexer.documents import Document
from indexer.keywords import CHUNK_TABLE, TABLE, TOKENIZER, match_expression, needs_rebuild
from indexer.manifest import SQLITE_NAME
from indexer.schema import connect
from retriever import Retriever

TEXTS = {
    "proteins": "Binding proteins regulate the receptors of neurons",
    "cafe": "Le café était fermé",
    "runner": "She was running marathons in winter",
    "other": "A plain sentence about weather",
}


def build(path: Path, encoder, texts: dict[str, str]) -> None:
    docs = [Document(doc_id, text, {}) for doc_id, text in texts.items()]
    vectors = np.eye(encoder.dim, dtype=np.float32)[: len(docs)]
    with Indexer(path, encoder) as indexer:
        indexer.commit(EncodedBatch(docs, [[Chunk(0, 0, len(d.text), d.text)] for d in docs], vectors))


def two_chunks(doc_id: str, first: str, second: str) -> tuple[Document, list[Chunk]]:
    """A document of two chunks (no overlap): `first` then `second`."""
    text = f"{first} {second}"
    return Document(doc_id, text, {}), [Chunk(0, 0, len(first) + 1, text[: len(first) + 1]),
                                        Chunk(1, len(first) + 1, len(text), second)]


def doc_ids(store: IndexStore, query: str) -> list[str]:
    return [doc_id for doc_id, _ in store.keyword_search(query, 10)]


def integrity_check(path: Path) -> None:
    """FTS5's own check that the keyword table's index is consistent (raises when corrupt)."""
    conn = sqlite3.connect(path / SQLITE_NAME)
    conn.execute(f"INSERT INTO {TABLE}({TABLE}, rank) VALUES ('integrity-check', 1)")
    conn.close()


def downgrade_to_chunk_keywords(path: Path, tokenizer: str | None) -> None:
    """Rewrite the keyword table as versions before 2026-12-07 made it: FTS5 over chunk text kept by
    triggers (`tokenizer` None: the unicode61 default of versions before the stemmer)."""
    conn = sqlite3.connect(path / SQLITE_NAME, isolation_level=None)
    conn.execute(f"DROP TABLE {TABLE}")
    conn.close()
    db = connect(path / SQLITE_NAME, read_only=False)
    db["chunks"].enable_fts(["text"], fts_version="FTS5", create_triggers=True,
                            **({"tokenize": tokenizer} if tokenizer else {}))
    db.conn.close()


@pytest.fixture()
def index_dir(tmp_path: Path, tiny_encoder) -> Path:
    build(tmp_path / "idx", tiny_encoder, TEXTS)
    return tmp_path / "idx"


@pytest.mark.parametrize("query, expected", [
    ("protein binds receptor", "proteins"),   # plural and verb forms meet their stems
    ("neuronal regulation", "proteins"),      # derived forms too (neuron, regul)
    ("zebra", None),
    ("run marathon", "runner"),
    ("cafe ferme", "cafe"),                   # diacritics removed on both sides
    ("CAFÉ", "cafe"),
])
def test_keyword_search_matches_word_forms(index_dir: Path, query: str, expected: str | None) -> None:
    with IndexStore.open(index_dir) as store:
        found = doc_ids(store, query)
    assert found[:1] == ([expected] if expected else [])


def test_new_index_uses_the_stemming_tokenizer(index_dir: Path) -> None:
    db = connect(index_dir / SQLITE_NAME, read_only=True)
    assert f"tokenize='{TOKENIZER}'" in db[TABLE].schema and not needs_rebuild(db)
    assert not db[CHUNK_TABLE].exists()


def test_a_document_is_scored_whole_not_by_its_best_chunk(tmp_path: Path, tiny_encoder) -> None:
    # "split" has both words, one per chunk; "short" has one word in a far shorter text. Chunk by
    # chunk, BM25 put "short" first (one word each, shorter wins); the whole of "split" has both.
    split, split_chunks = two_chunks("split", "alpha " + "filler " * 12, "omega " + "padding " * 12)
    short = Document("short", "alpha", {})
    with Indexer(tmp_path / "idx", tiny_encoder) as indexer:
        indexer.commit(EncodedBatch([split, short], [split_chunks, [Chunk(0, 0, 5, "alpha")]],
                                    np.eye(tiny_encoder.dim, dtype=np.float32)[:3]))
    build(tmp_path / "idx", tiny_encoder, TEXTS)  # documents without either word, so both have an IDF
    with IndexStore.open(tmp_path / "idx") as store:
        assert doc_ids(store, "alpha omega") == ["split", "short"]
        assert store.chunk_ids_of(["split", "short", "nope"]) == {"split": [0, 1], "short": [2]}


@pytest.mark.parametrize("fusion", ["rrf", "convex"])
def test_a_keyword_hit_is_its_documents_chunk_nearest_the_query(tmp_path: Path, tiny_encoder, fusion: str) -> None:
    build(tmp_path / "idx", tiny_encoder, {"plain": "nothing to see"})
    with Retriever.open(tmp_path / "idx", tiny_encoder) as retriever:
        query = retriever.encode_queries(["zebracorn"])[0]
    doc, chunks = two_chunks("zebra", "zebracorn " + "filler " * 8, "padding " * 8)
    with Indexer(tmp_path / "idx", tiny_encoder) as indexer:  # the second chunk, without the word, is the nearest
        indexer.commit(EncodedBatch([doc], [chunks], np.stack([-query, query])))
    with Retriever.open(tmp_path / "idx", tiny_encoder, fusion=fusion, dense_weight=0.0) as retriever:
        hits = retriever.search("zebracorn", k=3)  # dense weight 0: the keyword list alone ranks
    assert (hits[0].doc_id, hits[0].position) == ("zebra", 1)


def test_replaced_and_deleted_documents_leave_the_keyword_table(index_dir: Path, tiny_encoder) -> None:
    doc, chunks = two_chunks("proteins", "Kinases phosphorylate", "substrates quickly")
    with Indexer(index_dir, tiny_encoder) as indexer:
        indexer.commit(EncodedBatch([doc], [chunks], np.eye(tiny_encoder.dim, dtype=np.float32)[[6, 7]]))
        indexer.delete(["runner"])
    integrity_check(index_dir)
    with IndexStore.open(index_dir) as store:
        assert doc_ids(store, "protein receptor") == []  # the old text is gone
        assert doc_ids(store, "kinase substrate") == ["proteins"]
        assert doc_ids(store, "running") == []
        assert doc_ids(store, "weather") == ["other"]


@pytest.mark.parametrize("tokenizer", [None, TOKENIZER])
def test_old_index_is_reindexed_by_a_reader(index_dir: Path, tokenizer: str | None) -> None:
    downgrade_to_chunk_keywords(index_dir, tokenizer)
    with IndexStore.open(index_dir) as store:  # read-only: upgraded under the write lock
        assert not needs_rebuild(store.db) and not store.db[CHUNK_TABLE].exists()
        assert doc_ids(store, "protein binds receptor") == ["proteins"]
        assert doc_ids(store, "weather") == ["other"]  # every document re-indexed, none lost
    integrity_check(index_dir)


def test_old_index_is_reindexed_by_the_writer_and_writes_keep_it_current(index_dir: Path, tiny_encoder) -> None:
    downgrade_to_chunk_keywords(index_dir, None)
    docs = [Document("new", "Cats were chasing mice", {})]
    with Indexer(index_dir, tiny_encoder) as indexer:
        assert indexer.store.db["chunks"].triggers == []  # the old table's triggers went with it
        indexer.commit(EncodedBatch(docs, [[Chunk(0, 0, len(docs[0].text), docs[0].text)]],
                                    np.eye(tiny_encoder.dim, dtype=np.float32)[[5]]))
        indexer.delete(["other"])
    integrity_check(index_dir)
    with IndexStore.open(index_dir) as store:
        assert doc_ids(store, "cat chase mouse") == ["new"]
        assert doc_ids(store, "weather") == []
        assert doc_ids(store, "running") == ["runner"]


@pytest.mark.parametrize("query, expected", [
    ("alpha beta", '"alpha" OR "beta"'),
    ('say "hi"', '"say" OR """hi"""'),
    ("-- ; *", None),
    ("", None),
])
def test_match_expression_quotes_every_word(query: str, expected: str | None) -> None:
    assert match_expression(query) == expected
