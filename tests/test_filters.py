"""Metadata filters compile to parametrised SQL with the documented semantics."""

from __future__ import annotations

import json
import sqlite3

import pytest

from retriever.errors import FilterError, UnknownFieldError
from indexer.filters import check_fields, compile_filter, json_path

DOCS = {
    "a": {"lang": "en", "year": 2020, "tags": ["x", "y"], "ok": True, "author": {"name": "Ada"}},
    "b": {"lang": "fr", "year": "2021", "tags": "x", "ok": False, "n": None},
    "c": {"lang": "en", "year": 2023.5, "author": {"name": "Bob"}},
    "d": {},
}


@pytest.fixture(scope="module")
def conn() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE documents (id TEXT PRIMARY KEY, metadata TEXT)")
    db.executemany("INSERT INTO documents VALUES (?, ?)", [(k, json.dumps(v)) for k, v in DOCS.items()])
    return db


def matching(conn: sqlite3.Connection, filter: dict) -> list[str]:
    compiled = compile_filter(filter)
    return [r[0] for r in conn.execute(f"SELECT id FROM documents d WHERE {compiled.sql} ORDER BY id", compiled.params)]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({}, ["a", "b", "c", "d"]),
        ({"lang": "en"}, ["a", "c"]),
        ({"lang": {"$eq": "fr"}}, ["b"]),
        ({"lang": {"$ne": "en"}}, ["b", "d"]),  # $ne includes documents without the field
        ({"year": {"$gte": 2020}}, ["a", "c"]),  # the string "2021" is not a number
        ({"year": {"$gt": 2020, "$lt": 2024}}, ["c"]),
        ({"year": {"$lte": 2020}}, ["a"]),
        ({"year": "2021"}, ["b"]),
        ({"year": {"$in": [2020, "2021"]}}, ["a", "b"]),
        ({"lang": {"$in": []}}, []),
        ({"lang": {"$nin": ["en"]}}, ["b", "d"]),
        ({"tags": "x"}, ["a", "b"]),  # a list matches when any element does
        ({"tags": {"$in": ["y", "z"]}}, ["a"]),
        ({"tags": {"$nin": ["y"]}}, ["b", "c", "d"]),
        ({"ok": True}, ["a"]),
        ({"ok": False}, ["b"]),
        ({"n": None}, ["b"]),
        ({"author.name": "Ada"}, ["a"]),
        ({"author": "Ada"}, []),  # object members are not values of the object
        ({"lang": "en", "year": {"$lt": 2021}}, ["a"]),
        ({"$or": [{"lang": "fr"}, {"year": {"$gt": 2021}}]}, ["b", "c"]),
        ({"$and": [{"lang": "en"}, {"$or": [{"ok": True}, {"author.name": "Bob"}]}]}, ["a", "c"]),
    ],
)
def test_semantics(conn: sqlite3.Connection, filter: dict, expected: list[str]) -> None:
    assert matching(conn, filter) == expected


def test_user_strings_are_bound_never_interpolated(conn: sqlite3.Connection) -> None:
    evil = "x'; DROP TABLE documents; --"
    compiled = compile_filter({"lang": evil, "author.name": {"$in": [evil, 'a"b']}})
    assert evil not in compiled.sql and 'a"b' not in compiled.sql
    assert evil in compiled.params
    assert matching(conn, {"lang": evil}) == []
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 4


def test_fields_are_reported() -> None:
    compiled = compile_filter({"$or": [{"a": 1}, {"b.c": 2}], "a": {"$ne": 3}})
    assert compiled.fields == ("a", "b.c")


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"year": {"$regex": "20.*"}}, "unknown operator '$regex'"),
        ({"$not": {"a": 1}}, "unknown operator '$not'"),
        ({"year": {"$gt": True}}, "compares numbers or strings"),
        ({"year": {"$gt": None}}, "compares numbers or strings"),
        ({"year": [2020, 2021]}, "use $in"),
        ({"year": {"$in": 2020}}, "needs a list"),
        ({"year": {"$in": [[1]]}}, "$in needs a string, number"),
        ({"year": {"$eq": float("nan")}}, "finite"),
        ({"year": {}}, "empty operator object"),
        ({"author": {"name": "Ada"}}, "dotted field name"),
        ({"$or": []}, "non-empty list"),
        ({"$and": {"a": 1}}, "non-empty list"),
        ({"$or": ["a"]}, "a filter is an object"),
        ({'a"]': 1}, "invalid field name"),
        ({"a..b": 1}, "invalid field name"),
        ({"": 1}, "non-empty strings"),
    ],
)
def test_malformed_filters(filter: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("$", r"\$").replace("(", r"\(")):
        compile_filter(filter)


def test_filter_must_be_a_mapping() -> None:
    with pytest.raises(FilterError, match="a filter is an object"):
        compile_filter(["lang", "en"])  # type: ignore[arg-type]


def test_json_path_quotes_segments() -> None:
    assert json_path("author.first name") == '$."author"."first name"'


def test_check_fields(conn: sqlite3.Connection) -> None:
    check_fields(conn, ["lang", "author.name", "n"])  # n exists with a null value
    with pytest.raises(UnknownFieldError, match=r"'lnag'; fields in this index: author, lang, n, ok, tags, year"):
        check_fields(conn, ["lnag"])
