"""`meta.sqlite`: the tables of an index (created with sqlite-utils) and how to connect to it.

SQLite is the source of truth. Besides the documents and chunks (and the FTS5 keyword table with a
row per document, written with its chunks, see `indexer.keywords`), it holds each chunk's float32 vector, the ids deleted
since the last FAISS snapshot (`tombstones`), two counters in `state`: the commit
`generation` and the `next_chunk_id`, and the names of the embedding shards committed by
distributed builds (`shards`, see `indexer.shards`), and the typed metadata rows filters run on
(`fields`, see `indexer.fields`). Chunk ids are never reused, so "ids above the
snapshot's largest id" are exactly the chunks the snapshot has not seen.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .sqlite_import import sqlite_utils
from .errors import IndexFormatError, IndexLockedError
from .lock import WriteLock
from .manifest import LOCK_NAME, SQLITE_NAME

from .fields import create_fields
from .keywords import TABLE as KEYWORD_TABLE
from .keywords import needs_rebuild, rebuild_keyword_table

TABLES = ("documents", "chunks", "vectors", "tombstones", "state", KEYWORD_TABLE, "fields")


def connect(path: Path, *, read_only: bool) -> sqlite_utils.Database:
    """A connection in WAL mode (readers never block the writer); autocommit, explicit transactions."""
    try:
        if read_only:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise IndexFormatError(f"{path} is not a readable SQLite database ({exc}); the index is damaged") from None
    return sqlite_utils.Database(conn)


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create whatever tables are missing (idempotent: a crash during creation is repaired on reopen)."""
    db["documents"].create({"id": str, "content_hash": str, "metadata": str, "source": str, "added_at": str},
                           pk="id", if_not_exists=True)
    db["chunks"].create({"id": int, "doc_id": str, "position": int, "start": int, "end": int, "text": str},
                        pk="id", foreign_keys=[("doc_id", "documents", "id")], if_not_exists=True)
    db["chunks"].create_index(["doc_id"], if_not_exists=True)
    db["vectors"].create({"id": int, "vector": bytes}, pk="id", if_not_exists=True)
    db["tombstones"].create({"chunk_id": int, "generation": int}, pk="chunk_id", if_not_exists=True)
    db["tombstones"].create_index(["generation"], if_not_exists=True)
    db["state"].create({"key": str, "value": int}, pk="key", if_not_exists=True)
    db["shards"].create({"name": str, "documents": int, "chunks": int, "committed_at": str}, pk="name",
                        if_not_exists=True)
    for key in ("generation", "next_chunk_id", "pruned_through"):
        db.execute("INSERT OR IGNORE INTO state(key, value) VALUES (?, 0)", [key])
    if needs_rebuild(db):
        rebuild_keyword_table(db)
    create_fields(db)


def check_schema(db: sqlite_utils.Database, path: Path) -> None:
    """Raise `IndexFormatError` when a table is missing (a damaged or foreign database)."""
    names = set(db.table_names())
    missing = [t for t in TABLES if t not in names]
    if missing:
        raise IndexFormatError(f"{path} lacks the table(s) {', '.join(missing)}: not an index database, or damaged")


def read_state(db: sqlite_utils.Database) -> dict[str, int]:
    return {key: value for key, value in db.execute("SELECT key, value FROM state").fetchall()}


def needs_upgrade(db: sqlite_utils.Database) -> bool:
    """Whether the database was written before a table this version adds (`fields`) or with the
    keyword table of an older version (`keywords.needs_rebuild`)."""
    return db["documents"].exists() and (not db["fields"].exists() or needs_rebuild(db))


def upgrade_schema(index_dir: Path) -> None:
    """Add the tables a newer version needs, under the write lock (a reader opening an older index)."""
    lock = WriteLock(index_dir / LOCK_NAME)
    try:
        lock.acquire(wait=30)
    except IndexLockedError as exc:
        raise IndexFormatError(f"{index_dir} was written by an older version and must be upgraded by its writer "
                               f"first: {exc}") from None
    try:
        db = connect(index_dir / SQLITE_NAME, read_only=False)
        try:
            ensure_schema(db)
        finally:
            db.conn.close()
    finally:
        lock.release()
