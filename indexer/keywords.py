"""The keyword table: an FTS5 index over chunk text (BM25), its tokenizer, and how it is queried.

`chunks_fts` is an external-content FTS5 table over `chunks.text`, kept current by triggers.
Its tokenizer is `unicode61` (Unicode word boundaries, case folding, diacritics removed, so
"Café" matches "cafe") under FTS5's `porter` stemmer, so "proteins" matches "protein" and
"running" matches "run": the same words a Lucene/Pyserini English BM25 conflates. On the full
CACM, NPL and SciFact collections it scores 0.470 / 0.430 / 0.686 NDCG@10 against 0.403 /
0.358 / 0.657 without stemming (the `keywords` rows of benchmarks/RESULTS.md). The stemmer only
rewrites Latin suffixes; other scripts pass through unchanged.

Indexes written before the stemmer keep working: `needs_rebuild` spots the old tokenizer and
`rebuild_keyword_table` rebuilds the table from `chunks` in one transaction (the writer does it
on open, a reader under the write lock, as for every schema upgrade).
"""

from __future__ import annotations

import logging
from typing import Any

TABLE = "chunks_fts"
TOKENIZER = "porter unicode61 remove_diacritics 2"
"""The FTS5 `tokenize` option of every keyword table this version writes."""

log = logging.getLogger(__name__)


def create_keyword_table(db: Any) -> None:
    """Create `chunks_fts` with `TOKENIZER` and its triggers, filled from `chunks` (sqlite-utils)."""
    db["chunks"].enable_fts(["text"], fts_version="FTS5", create_triggers=True, tokenize=TOKENIZER)


def needs_rebuild(db: Any) -> bool:
    """Whether `chunks_fts` exists with a tokenizer other than `TOKENIZER` (an older index)."""
    table = db[TABLE]
    return table.exists() and f"tokenize={db.quote(TOKENIZER)}" not in table.schema


def rebuild_keyword_table(db: Any) -> None:
    """Recreate `chunks_fts` with `TOKENIZER` and re-index every chunk, in one transaction.

    The triggers on `chunks` name the table, not its tokenizer, so they carry over; a crash leaves
    the old table whole. Costs one pass over the chunk text (about a second per 10,000 chunks).
    """
    count = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    log.info("re-indexing the keyword table of %d chunks with the stemming tokenizer (once per index)", count)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"DROP TABLE {TABLE}")
        conn.execute(f"CREATE VIRTUAL TABLE {TABLE} USING FTS5 (text, tokenize={db.quote(TOKENIZER)}, content=chunks)")
        conn.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('rebuild')")
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
    """BM25 over chunk text: [(chunk id, score)], best first; higher scores are better."""
    match = match_expression(query)
    if match is None or k < 1:
        return []
    rows = db.execute(
        f"SELECT rowid, bm25({TABLE}) AS rank FROM {TABLE} WHERE {TABLE} MATCH ? ORDER BY rank LIMIT ?",
        [match, int(k)],
    ).fetchall()
    return [(int(rowid), -float(rank)) for rowid, rank in rows]
