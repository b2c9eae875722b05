"""Metadata filters compile to parametrised SQL with the documented semantics."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlite_utils

from indexer.fields import SCHEMA, write_fields
from indexer.filters import FilterTypeWarning, check_fields, compile_filter
from retriever.errors import FilterError, UnknownFieldError

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
    db.executescript(SCHEMA)
    write_fields(sqlite_utils.Database(db), DOCS.items())
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


def test_integers_compare_exactly_and_with_floats() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE documents (id TEXT PRIMARY KEY, metadata TEXT)")
    db.executemany("INSERT INTO documents VALUES (?, '{}')", [("big",), ("next",), ("two",)])
    db.executescript(SCHEMA)
    write_fields(sqlite_utils.Database(db), [("big", {"n": 2**60}), ("next", {"n": 2**60 + 1}), ("two", {"n": 2})])
    assert matching(db, {"n": 2**60 + 1}) == ["next"]
    assert matching(db, {"n": 2.0}) == ["two"]


def test_check_fields(conn: sqlite3.Connection) -> None:
    check_fields(conn, compile_filter({"lang": "en", "author.name": "Ada", "n": None}), strict=True)
    message = r"'lnag'; fields in this index: author.name, lang, n, ok, tags, year"
    with pytest.raises(UnknownFieldError, match=message):
        check_fields(conn, compile_filter({"lnag": "en"}), strict=False)
    with pytest.raises(UnknownFieldError, match=message):
        check_fields(conn, compile_filter({"$or": [{"lnag": "en"}, {"lang": "fr"}]}), strict=True)


def test_search_tolerates_a_missing_field_in_an_or_branch(conn: sqlite3.Connection) -> None:
    compiled = compile_filter({"$or": [{"lnag": "en"}, {"lang": "fr"}]})
    check_fields(conn, compiled, strict=False)
    assert compiled.required == ()
    assert matching(conn, {"$or": [{"lnag": "en"}, {"lang": "fr"}]}) == ["b"]


def test_a_type_the_field_never_holds_warns(conn: sqlite3.Connection) -> None:
    with pytest.warns(FilterTypeWarning, match=r"'ok' holds bool values, never number"):
        check_fields(conn, compile_filter({"ok": {"$gte": 1}}), strict=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_fields(conn, compile_filter({"year": {"$gte": 2020}}), strict=False)  # holds numbers and text
