"""The typed metadata table: one row per (document, field, scalar value), kept with its document.

`documents.metadata` holds each document's metadata as JSON (what a search returns); `fields`
holds the same values flattened for filtering, in B-tree indexes:

    fields(doc_id, key, type, num, txt)      type: 'text' | 'number' | 'bool' | 'null'

Nested objects become dotted keys (`{"author": {"name": "Ada"}}` -> `author.name`) and each
element of a list is a row of its own (so `{"tags": ["a", "b"]}` matches `tags = "a"`). Numbers
and booleans (0/1) sit in `num` (NUMERIC: integers stay exact), strings in `txt`. The writer fills
the rows in the same transaction as the document, so they are never out of step with it.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Sequence

SCHEMA = """
CREATE TABLE IF NOT EXISTS fields (doc_id TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL,
                                   num NUMERIC, txt TEXT);
CREATE INDEX IF NOT EXISTS fields_key_num ON fields (key, num);
CREATE INDEX IF NOT EXISTS fields_key_txt ON fields (key, txt);
CREATE INDEX IF NOT EXISTS fields_key_type ON fields (key, type);
CREATE INDEX IF NOT EXISTS fields_doc ON fields (doc_id);
"""
Row = tuple[str, str, str, Any, Any]


def value_type(value: Any) -> str:
    """The `fields.type` of a scalar value: text, number, bool or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "text"


def _scalars(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _scalars(f"{key}.{name}", item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _scalars(key, item)
    else:
        yield key, value


def field_rows(doc_id: str, metadata: dict[str, Any]) -> list[Row]:
    """The `fields` rows of one document's metadata."""
    rows = []
    for name, value in metadata.items():
        for key, scalar in _scalars(name, value):
            kind = value_type(scalar)
            num = int(scalar) if kind == "bool" else scalar if kind == "number" else None
            rows.append((doc_id, key, kind, num, scalar if kind == "text" else None))
    return rows


def delete_fields(db: Any, doc_ids: Sequence[str]) -> None:
    """Inside a transaction: remove the rows of `doc_ids`."""
    db.conn.executemany("DELETE FROM fields WHERE doc_id = ?", [(d,) for d in doc_ids])


def write_fields(db: Any, documents: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Inside a transaction: replace the rows of each (doc_id, metadata)."""
    documents = list(documents)
    delete_fields(db, [doc_id for doc_id, _ in documents])
    db.conn.executemany("INSERT INTO fields (doc_id, key, type, num, txt) VALUES (?, ?, ?, ?, ?)",
                        [row for doc_id, metadata in documents for row in field_rows(doc_id, metadata)])


def create_fields(db: Any) -> None:
    """Create the table and, for an index written before it existed, fill it from `documents`
    (one transaction: a crash leaves either no table or a complete one)."""
    if db["fields"].exists():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            db.execute(statement)
        rows = db.execute("SELECT id, metadata FROM documents").fetchall()
        write_fields(db, [(doc_id, json.loads(metadata)) for doc_id, metadata in rows])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
