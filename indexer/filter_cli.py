"""Metadata filters from the shell (`--filter KEY<op>VALUE`, `--filter-json`), shared by
`l2v search` and `l2v index delete`; they compile to the language of `indexer.filters`."""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from typing import Any, Callable, Iterator

import click

_CONDITION = re.compile(r"^\s*([^<>=!]+?)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*$")
_OPERATORS = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def parse_value(text: str) -> Any:
    """A filter value from the shell: a JSON scalar if it parses as one (42, 2.5, true, null, "x"), else the text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if value is None or isinstance(value, (str, int, float, bool)) else text


def parse_filters(conditions: tuple[str, ...], filter_json: str | None) -> dict[str, Any] | None:
    """Combine `--filter key<op>value` conditions and a `--filter-json` object into one filter (AND)."""
    parts: list[dict[str, Any]] = []
    for condition in conditions:
        match = _CONDITION.match(condition)
        if not match or not match.group(1):
            raise click.BadParameter(f"{condition!r} is not KEY=VALUE (or KEY>=VALUE, KEY!=VALUE, ...)",
                                     param_hint="--filter")
        key, op, value = match.groups()
        parts.append({key: {_OPERATORS[op]: parse_value(value)}})
    if filter_json is not None:
        try:
            parsed = json.loads(filter_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint="--filter-json") from None
        parts.append(parsed)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def filter_options(command: Callable) -> Callable:
    """Add `--filter/-f` (repeatable) and `--filter-json` to a click command."""
    command = click.option("--filter-json", metavar="JSON",
                           help='Full filter language, e.g. \'{"$or": [{"lang": "en"}, {"year": {"$gte": 2020}}]}\'.'
                           )(command)
    return click.option("--filter", "-f", "conditions", multiple=True, metavar="KEY=VALUE",
                        help="Metadata condition; also KEY>=V, KEY<V, KEY!=V ... Repeat to AND several.")(command)


@contextlib.contextmanager
def filter_warnings() -> Iterator[None]:
    """Show filter warnings (a field compared with a type it never holds) as one plain stderr line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                if type(warning.message).__name__ == "FilterTypeWarning":
                    click.echo(f"warning: {warning.message}", err=True)
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
