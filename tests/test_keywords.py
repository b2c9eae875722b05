"""The keyword table (`indexer.keywords`): stemmed BM25, and old indexes re-indexed on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexer import EncodedBatch, Indexer, IndexStore
from indexer.chunking import Chunk
from indexer.documents import Document
from indexer.keywords import TABLE, TOKENIZER, match_expression, needs_rebuild
from indexer.manifest import SQLITE_NAME
from indexer.schema import connect

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


def doc_ids(store: IndexStore, query: str) -> list[str]:
    hits = store.keyword_search(query, 10)
    return [chunk["doc_id"] for chunk in store.get_chunks([chunk_id for chunk_id, _ in hits])]


def downgrade_to_unstemmed(path: Path) -> None:
    """Rewrite the keyword table as versions before the stemmer made it (unicode61 only)."""
    conn = sqlite3.connect(path / SQLITE_NAME, isolation_level=None)
    conn.execute(f"DROP TABLE {TABLE}")
    conn.execute(f"CREATE VIRTUAL TABLE {TABLE} USING FTS5 (text, content=chunks)")
    conn.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('rebuild')")
    conn.close()


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


def test_old_index_is_reindexed_by_a_reader(index_dir: Path) -> None:
    downgrade_to_unstemmed(index_dir)
    with IndexStore.open(index_dir) as store:  # read-only: upgraded under the write lock
        assert not needs_rebuild(store.db)
        assert doc_ids(store, "protein binds receptor") == ["proteins"]
        assert doc_ids(store, "weather") == ["other"]  # every chunk re-indexed, none lost


def test_old_index_is_reindexed_by_the_writer_and_triggers_keep_working(index_dir: Path, tiny_encoder) -> None:
    downgrade_to_unstemmed(index_dir)
    docs = [Document("new", "Cats were chasing mice", {})]
    with Indexer(index_dir, tiny_encoder) as indexer:
        indexer.commit(EncodedBatch(docs, [[Chunk(0, 0, len(docs[0].text), docs[0].text)]],
                                    np.eye(tiny_encoder.dim, dtype=np.float32)[[5]]))
        indexer.delete(["other"])
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
