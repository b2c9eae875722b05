"""Metadata filters (a small MongoDB-like language) compiled to parametrised SQLite.

    {"lang": "en"}                                  equality (also matches an element of a list)
    {"year": {"$gte": 2020, "$lt": 2024}}           $eq $ne $gt $gte $lt $lte $in $nin
    {"$or": [{"lang": "en"}, {"tags": {"$in": ["a", "b"]}}]}
    {"author.name": "Ada"}                          dotted names reach into nested objects

Several keys in one object are AND-ed. Values are strings, numbers, booleans or None, and
compare only with metadata values of the same JSON type (2020 never equals "2020"; 2020 equals
2020.0; ordering operators take a number or a string). `$ne` and `$nin` also match documents
that lack the field. Conditions run on the typed `fields` table (see `indexer.fields`) through
its (key, value) B-tree indexes, never by parsing JSON per document; field names and values are
bound parameters: no user string is ever interpolated into SQL. The SQL is a WHERE clause over
the `documents` table aliased `d`, as `IndexStore.chunk_ids_where` expects. The same language
picks the documents `Indexer.delete(where=...)` removes and the hits `Retriever.search(filter=...)`
may return.

A field no document has is an error for delete and, in search, when every match must have it
(outside `$or`); a field that exists but never holds the compared value's type (`year` stored as
"2019" and compared with 2019) warns with `FilterTypeWarning` instead of matching nothing silently.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import FilterError, UnknownFieldError
from .fields import value_type

Scalar = str | int | float | bool | None
COMPARISONS = {"$eq": "=", "$ne": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = (*COMPARISONS, "$in", "$nin")
LOGICAL = ("$and", "$or")
_SEGMENT = re.compile(r"[\w\-: ]+")
_MATCHING = "d.id IN (SELECT f.doc_id FROM fields f WHERE f.key = ? AND ({}))"


class FilterTypeWarning(UserWarning):
    """A filter compares a field with a value of a type the field never holds: it matches nothing."""


@dataclass(frozen=True)
class CompiledFilter:
    """A filter as a WHERE clause over `documents d` and its bound parameters, with the fields it
    names (`fields`), those every match must have (`required`: not under `$or`), and the value
    types each field is compared with (`types`: (field, type) pairs)."""

    sql: str
    params: tuple[Any, ...]
    fields: tuple[str, ...]
    required: tuple[str, ...] = ()
    types: tuple[tuple[str, str], ...] = ()


def check_field_name(field: str) -> None:
    """`FilterError` unless `field` is a valid (dotted) metadata field name."""
    if not isinstance(field, str) or not field:
        raise FilterError(f"field names must be non-empty strings, got {field!r}")
    segments = field.split(".")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise FilterError(
                f"invalid field name {field!r}: use letters, digits, '_', '-', ':' and spaces, "
                "with '.' between the names of nested fields"
            )


def _check_scalar(field: str, op: str, value: Any) -> None:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise FilterError(
            f"{field}: {op} needs a string, number, boolean or null, got {type(value).__name__}"
            + (" (use $in to match any of several values)" if isinstance(value, (list, tuple, set)) else "")
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{field}: {op} got {value!r}; use a finite number")


def _typed(op_sql: str, value: Scalar) -> tuple[str, list[Any]]:
    """A condition on a `fields f` row comparing its value with `value`, same type only."""
    kind = value_type(value)
    if kind == "null":
        return "f.type = 'null'", []
    if kind == "bool":
        return "f.type = 'bool' AND f.num = ?", [int(value)]
    if kind == "text":
        return f"f.type = 'text' AND f.txt {op_sql} ?", [value]
    return f"f.type = 'number' AND f.num {op_sql} ?", [value]


class _Compiler:
    """Walks a filter once, collecting SQL, parameters, field names and compared types."""

    def __init__(self) -> None:
        self.fields: list[str] = []
        self.required: list[str] = []
        self.types: list[tuple[str, str]] = []

    def node(self, node: Any, required: bool) -> tuple[str, list[Any]]:
        if not isinstance(node, Mapping):
            raise FilterError(f"a filter is an object like {{'field': value}}, got {type(node).__name__}")
        if not node:
            return "1", []
        parts = []
        for key, value in node.items():
            if key in LOGICAL:
                if not isinstance(value, (list, tuple)) or not value:
                    raise FilterError(f"{key} needs a non-empty list of filters, got {value!r}")
                branch_required = required and (key == "$and" or len(value) == 1)
                parts.append(_join([self.node(sub, branch_required) for sub in value], key[1:].upper()))
            elif isinstance(key, str) and key.startswith("$"):
                raise FilterError(f"unknown operator {key!r} at the top of a filter; use $and or $or there")
            else:
                check_field_name(key)
                self.fields.append(key)
                if required:
                    self.required.append(key)
                parts.append(self.field(key, value))
        return _join(parts, "AND")

    def _matching(self, field: str, values: list[Scalar], op_sql: str = "=") -> tuple[str, list[Any]]:
        self.types += [(field, value_type(v)) for v in values]
        alternatives = [_typed(op_sql, v) for v in values]
        condition = " OR ".join(f"({sql})" for sql, _ in alternatives)
        return _MATCHING.format(condition), [field, *(p for _, ps in alternatives for p in ps)]

    def field(self, field: str, spec: Any) -> tuple[str, list[Any]]:
        if not isinstance(spec, Mapping):
            _check_scalar(field, "equality", spec)
            return self._matching(field, [spec])
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
                sql, params = self._matching(field, list(value)) if value else ("0", [])
                parts.append((f"NOT ({sql})" if op == "$nin" else sql, params))
                continue
            _check_scalar(field, op, value)
            if op not in ("$eq", "$ne") and (value is None or isinstance(value, bool)):
                raise FilterError(f"{field}: {op} compares numbers or strings, got {value!r}")
            sql, params = self._matching(field, [value], COMPARISONS[op])
            parts.append((f"NOT ({sql})" if op == "$ne" else sql, params))
        return _join(parts, "AND")


def _join(parts: list[tuple[str, list[Any]]], word: str) -> tuple[str, list[Any]]:
    if len(parts) == 1:
        return parts[0]
    return f" {word} ".join(f"({sql})" for sql, _ in parts), [p for _, ps in parts for p in ps]


def compile_filter(filter: Mapping[str, Any]) -> CompiledFilter:
    """Compile a filter to a parametrised WHERE clause over `documents d`; `FilterError` if malformed."""
    compiler = _Compiler()
    sql, params = compiler.node(filter, required=True)
    return CompiledFilter(sql=sql, params=tuple(params), fields=tuple(dict.fromkeys(compiler.fields)),
                          required=tuple(dict.fromkeys(compiler.required)),
                          types=tuple(dict.fromkeys(compiler.types)))


def known_fields(conn: Any, limit: int = 30) -> list[str]:
    """Up to `limit` metadata field names of the index, sorted."""
    return [row[0] for row in conn.execute("SELECT DISTINCT key FROM fields ORDER BY key LIMIT ?", [limit])]


def missing_fields(conn: Any, fields: tuple[str, ...] | list[str]) -> list[str]:
    """The `fields` no document of the index has."""
    return [field for field in fields
            if conn.execute("SELECT 1 FROM fields WHERE key = ? LIMIT 1", [field]).fetchone() is None]


def unknown_field_error(field: str, known: list[str]) -> UnknownFieldError:
    listed = ", ".join(known) if known else "none (the index has no metadata)"
    return UnknownFieldError(f"no document has a metadata field {field!r}; fields in this index: {listed}")


def check_fields(conn: Any, compiled: CompiledFilter, *, strict: bool) -> None:
    """Check a compiled filter's fields against the index behind `conn` (anything with `execute`).

    `UnknownFieldError` for a field no document has (likely a typo): any field when `strict`
    (delete), only `required` ones otherwise (search: a `$or` branch on a missing field just
    matches nothing). `FilterTypeWarning` for a field compared with a type it never holds.
    """
    missing = missing_fields(conn, compiled.fields if strict else compiled.required)
    if missing:
        raise unknown_field_error(missing[0], known_fields(conn))
    warn_types(conn, compiled)


def warn_types(conn: Any, compiled: CompiledFilter) -> None:
    """Warn (`FilterTypeWarning`) about each field compared with a value type it never holds."""
    for field, kind in compiled.types:
        held = [row[0] for row in conn.execute("SELECT DISTINCT type FROM fields WHERE key = ?", [field])]
        if held and kind not in held and kind != "null":
            warnings.warn(FilterTypeWarning(
                f"metadata field {field!r} holds {' and '.join(sorted(held))} values, never {kind}: a condition "
                f"comparing it with a {kind} matches nothing (write the value as a {held[0]}"
                + (", e.g. year=2019 rather than year=\"2019\")" if held[0] == "number" else ")")), stacklevel=3)
