"""The keyword table: an FTS5 index over whole documents (BM25), its tokenizer, and how it is queried.

`documents_fts` holds one row per document: its text, stitched from its chunks, under the id of
its first chunk (chunk ids are integers and never reused, document ids are strings). The dense
side scores chunks, which work best short for a small encoder; BM25 scores whole documents, as
Lucene/Pyserini do: over 128-token chunks of SciFact it fell from 0.692 to 0.664 NDCG@10 (train
queries, k = 300). The table is contentless (`content=''`: the text lives once, in `chunks`), so
a row is deleted with the text it was added with (`unindex_documents`), rebuilt the same way.

Its tokenizer is `unicode61` (Unicode word boundaries, case folding, diacritics removed, so
"Café" matches "cafe") under FTS5's `porter` stemmer, so "proteins" matches "protein" and
"running" matches "run": the same words a Lucene/Pyserini English BM25 conflates. On the full
CACM, NPL and SciFact collections it scores 0.470 / 0.430 / 0.686 NDCG@10 against 0.403 /
0.358 / 0.657 without stemming (the `keywords` rows of benchmarks/RESULTS.md). The stemmer only
rewrites Latin suffixes; other scripts pass through unchanged.

Indexes written before keep working: `needs_rebuild` spots a keyword table over chunks
(`chunks_fts`, with or without the stemmer) and `rebuild_keyword_table` replaces it from `chunks`
in one transaction (the writer does it on open, a reader under the write lock, as for every
schema upgrade).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Iterable, Iterator

from .chunking import stitch
from .sqlite_import import sqlite_utils

TABLE = "documents_fts"
CHUNK_TABLE = "chunks_fts"
"""The keyword table over chunk text (kept current by triggers on `chunks`) of earlier versions."""
TOKENIZER = "porter unicode61 remove_diacritics 2"
"""The FTS5 `tokenize` option of every keyword table this version writes."""

ChunkRow = tuple[str, int, int, int, str]
"""(document id, chunk id, start, end, text): a chunk as the keyword table reads it."""
CHUNK_COLUMNS = 'doc_id, id, start, "end", text'
"""The `chunks` columns of a `ChunkRow`, for SELECTs ordered by doc_id, position."""

log = logging.getLogger(__name__)


def create_keyword_table(db: Any, tokenizer: str = TOKENIZER) -> None:
    """Create an empty `documents_fts` tokenizing with `tokenizer`."""
    db.execute(f"CREATE VIRTUAL TABLE {TABLE} USING FTS5 (text, tokenize={db.quote(tokenizer)}, content='')")


def keyed_texts(chunks: Iterable[ChunkRow]) -> Iterator[tuple[int, str]]:
    """(key, text) of each document in `chunks` (grouped by document, in position order): the id of
    its first chunk, and its text stitched from its chunks."""
    for _, rows in itertools.groupby(chunks, key=lambda row: row[0]):
        rows = list(rows)
        yield rows[0][1], stitch(row[2:] for row in rows)


def index_documents(db: Any, chunks: Iterable[ChunkRow]) -> None:
    """Inside the caller's transaction: add the documents whose chunks these are."""
    db.conn.executemany(f"INSERT INTO {TABLE}(rowid, text) VALUES (?, ?)", keyed_texts(chunks))


def unindex_documents(db: Any, chunks: Iterable[ChunkRow]) -> None:
    """Inside the caller's transaction: remove the documents whose chunks (as indexed) these are."""
    db.conn.executemany(f"INSERT INTO {TABLE}({TABLE}, rowid, text) VALUES ('delete', ?, ?)", keyed_texts(chunks))


def needs_rebuild(db: Any) -> bool:
    """Whether the index lacks `documents_fts` with `TOKENIZER`, or still has `chunks_fts` (older indexes)."""
    table = db[TABLE]
    return (not table.exists() or f"tokenize={db.quote(TOKENIZER)}" not in table.schema
            or db[CHUNK_TABLE].exists())


def rebuild_keyword_table(db: Any) -> None:
    """(Re)create `documents_fts` from `chunks` and drop `chunks_fts` with its triggers, in one
    transaction (a crash leaves the old tables whole). One pass over the chunk text (about a second
    per 10,000 chunks)."""
    count = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    if count:
        log.info("re-indexing the keywords of %d chunks, a row per document (once per index)", count)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        triggers = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'chunks' AND sql LIKE ?",
            [f"%{CHUNK_TABLE}%"])]
        for name in triggers:
            conn.execute(f"DROP TRIGGER {sqlite_utils.db.quote_identifier(name)}")
        conn.execute(f"DROP TABLE IF EXISTS {CHUNK_TABLE}")
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        create_keyword_table(db)
        index_documents(db, conn.execute(f"SELECT {CHUNK_COLUMNS} FROM chunks ORDER BY doc_id, position"))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def match_expression(query: str) -> str | None:
    """The FTS5 MATCH expression of a free-text query: each word quoted (so no user text can break
    the FTS5 syntax), OR-ed; None when the query has no word to match."""
    terms = [term.replace('"', '""') for term in query.split()]
    terms = [term for term in terms if any(ch.isalnum() for ch in term)]
    return " OR ".join(f'"{term}"' for term in terms) if terms else None


def keyword_search(db: Any, query: str, k: int) -> list[tuple[int, float]]:
    """BM25 over `documents_fts`: [(key, score)], best first; higher scores are better."""
    match = match_expression(query)
    if match is None or k < 1:
        return []
    rows = db.execute(
        f"SELECT rowid, bm25({TABLE}) AS rank FROM {TABLE} WHERE {TABLE} MATCH ? ORDER BY rank LIMIT ?",
        [match, int(k)],
    ).fetchall()
    return [(int(rowid), -float(rank)) for rowid, rank in rows]
