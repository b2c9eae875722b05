"""Metadata filters (a small MongoDB-like language) compiled to parametrised SQLite.

    {"lang": "en"}                                  equality (also matches an element of a list)
    {"year": {"$gte": 2020, "$lt": 2024}}           $eq $ne $gt $gte $lt $lte $in $nin
    {"$or": [{"lang": "en"}, {"tags": {"$in": ["a", "b"]}}]}
    {"author.name": "Ada"}                          dotted names reach into nested objects

Several keys in one object are AND-ed. Values are strings, numbers, booleans or None, and
compare only with metadata values of the same JSON type (2020 never equals "2020"; ordering
operators take a number or a string). `$ne` and `$nin` also match documents that lack the field.
Field names are validated and passed to `json_each` as bound JSON paths, as are all values:
no user string is ever interpolated into SQL. The SQL is a WHERE clause over the `documents`
table aliased `d`, as `IndexStore.chunk_ids_where` expects. The same language picks the documents
`Indexer.delete(where=...)` removes and the hits `Retriever.search(filter=...)` may return.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import FilterError, UnknownFieldError

Scalar = str | int | float | bool | None
COMPARISONS = {"$eq": "=", "$ne": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = (*COMPARISONS, "$in", "$nin")
LOGICAL = ("$and", "$or")
_SEGMENT = re.compile(r"[\w\-: ]+")
# One row per scalar value at the path (or per element when it is a list); object members excluded.
_ANY_VALUE = "EXISTS (SELECT 1 FROM json_each(d.metadata, ?) AS j WHERE typeof(j.key) != 'text' AND {})"


@dataclass(frozen=True)
class CompiledFilter:
    """A filter as a WHERE clause over `documents d`, its bound parameters, and the fields it names."""

    sql: str
    params: tuple[Any, ...]
    fields: tuple[str, ...]


def json_path(field: str) -> str:
    """The SQLite JSON path of a (dotted) metadata field name, after validating it."""
    if not isinstance(field, str) or not field:
        raise FilterError(f"field names must be non-empty strings, got {field!r}")
    segments = field.split(".")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise FilterError(
                f"invalid field name {field!r}: use letters, digits, '_', '-', ':' and spaces, "
                "with '.' between the names of nested fields"
            )
    return "$" + "".join(f'."{segment}"' for segment in segments)


def _check_scalar(field: str, op: str, value: Any) -> None:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise FilterError(
            f"{field}: {op} needs a string, number, boolean or null, got {type(value).__name__}"
            + (" (use $in to match any of several values)" if isinstance(value, (list, tuple, set)) else "")
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{field}: {op} got {value!r}; use a finite number")


def _typed(op_sql: str, value: Scalar) -> tuple[str, list[Any]]:
    """A condition on a json_each row `j` comparing its value with `value`, same JSON type only."""
    if value is None:
        return "j.type = 'null'", []
    if isinstance(value, bool):
        return f"j.type = '{'true' if value else 'false'}'", []
    if isinstance(value, str):
        return f"j.type = 'text' AND j.value {op_sql} ?", [value]
    return f"j.type IN ('integer', 'real') AND j.value {op_sql} ?", [value]


def _any_value(path: str, condition: str, params: list[Any]) -> tuple[str, list[Any]]:
    return _ANY_VALUE.format(condition), [path, *params]


def _field_condition(field: str, spec: Any) -> tuple[str, list[Any]]:
    path = json_path(field)
    if not isinstance(spec, Mapping):
        _check_scalar(field, "equality", spec)
        return _any_value(path, *_typed("=", spec))
    if not spec:
        raise FilterError(f"{field}: empty operator object; give e.g. {{'$eq': value}}")
    parts: list[tuple[str, list[Any]]] = []
    for op, value in spec.items():
        if op not in OPERATORS:
            hint = "" if str(op).startswith("$") else " (nested objects: use a dotted field name)"
            raise FilterError(f"{field}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}{hint}")
        if op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple)):
                raise FilterError(f"{field}: {op} needs a list of values, got {type(value).__name__}")
            for item in value:
                _check_scalar(field, op, item)
            alternatives = [_typed("=", item) for item in value]
            if alternatives:
                condition = " OR ".join(f"({sql})" for sql, _ in alternatives)
                sql, params = _any_value(path, f"({condition})", [p for _, ps in alternatives for p in ps])
            else:
                sql, params = "0", []
            parts.append((f"NOT {sql}" if op == "$nin" else sql, params))
            continue
        _check_scalar(field, op, value)
        if op not in ("$eq", "$ne") and (value is None or isinstance(value, bool)):
            raise FilterError(f"{field}: {op} compares numbers or strings, got {value!r}")
        sql, params = _any_value(path, *_typed(COMPARISONS[op], value))
        parts.append((f"NOT {sql}" if op == "$ne" else sql, params))
    return _join(parts, "AND")


def _join(parts: list[tuple[str, list[Any]]], word: str) -> tuple[str, list[Any]]:
    if len(parts) == 1:
        return parts[0]
    return f" {word} ".join(f"({sql})" for sql, _ in parts), [p for _, ps in parts for p in ps]


def _compile(node: Any, fields: list[str]) -> tuple[str, list[Any]]:
    if not isinstance(node, Mapping):
        raise FilterError(f"a filter is an object like {{'field': value}}, got {type(node).__name__}")
    if not node:
        return "1", []
    parts = []
    for key, value in node.items():
        if key in LOGICAL:
            if not isinstance(value, (list, tuple)) or not value:
                raise FilterError(f"{key} needs a non-empty list of filters, got {value!r}")
            parts.append(_join([_compile(sub, fields) for sub in value], key[1:].upper()))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown operator {key!r} at the top of a filter; use $and or $or there")
        else:
            fields.append(key)
            parts.append(_field_condition(key, value))
    return _join(parts, "AND")


def compile_filter(filter: Mapping[str, Any]) -> CompiledFilter:
    """Compile a filter to a parametrised WHERE clause over `documents d`; `FilterError` if malformed."""
    fields: list[str] = []
    sql, params = _compile(filter, fields)
    return CompiledFilter(sql=sql, params=tuple(params), fields=tuple(dict.fromkeys(fields)))


def check_fields(conn: Any, fields: tuple[str, ...] | list[str]) -> None:
    """Raise `UnknownFieldError` for a field no document has (likely a typo), naming the known ones.

    `conn` is anything with `execute(sql, params)` over the index's SQLite database.
    """
    for field in fields:
        row = conn.execute(
            "SELECT 1 FROM documents d WHERE json_type(d.metadata, ?) IS NOT NULL LIMIT 1", [json_path(field)]
        ).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute(
                "SELECT DISTINCT j.key FROM (SELECT metadata FROM documents LIMIT 1000) AS d, "
                "json_each(d.metadata) AS j ORDER BY j.key LIMIT 30"
            ).fetchall()]
            listed = ", ".join(known) if known else "none (the index has no metadata)"
            raise UnknownFieldError(f"no document has a metadata field {field!r}; fields in this index: {listed}")
