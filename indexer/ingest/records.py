"""Record readers: JSON Lines and CSV, one document per record.

By default the id is the first of `_id` / `id` present, the text is `title` and `text` joined by
a blank line (so a BEIR corpus.jsonl works as is), and the metadata is every other field, with
a nested `metadata` object merged in. Text fields are not copied into the metadata, except `title`
(kept, as the file readers keep a document's title). Bad records are skipped through the `skip`
callback.

JSON values keep their JSON types. CSV cells are typed (`RecordFields.csv_types`, on by default;
`l2v index build --csv-strings` turns it off) so numeric filters such as `year>=2021` match; id and
text columns always stay strings. A whole cell, with no surrounding space, becomes:

- an int when it is `0` or `-?[1-9][0-9]*` and fits in 64 bits (`007`, `-0`, `+5` stay strings),
- a float when it is a decimal with a point, `-?(0|[1-9][0-9]*).[0-9]+`, optionally with an
  exponent, and is finite (`1.5e3` is 1500.0; `1e5`, `.5`, `1.`, `nan`, `inf` stay strings),
- a bool when it is `true` or `false` in any case,
- null (None) when it is empty,
- otherwise the string itself.

The csv module's 128 KiB field limit is raised (process-wide) to `CSV_FIELD_LIMIT`; a CSV the csv
module still cannot parse keeps the rows read before the bad line and names that line, and one
with a NUL byte (binary, or UTF-16 without a BOM) is skipped whole.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import SourceError
from .files import decode

Skip = Callable[[str, str], None]

CSV_FIELD_LIMIT = 2**31 - 1  # the largest a C long holds on every platform (csv.field_size_limit takes one)

_INT = re.compile(r"-?[1-9][0-9]*|0")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_BOOLS = {"true": True, "false": False}


def type_cell(cell: str | None) -> Any:
    """A CSV cell as int, float, bool or None when the whole cell is one (the rule in the module docstring)."""
    if cell is None or cell == "":
        return None
    if _INT.fullmatch(cell):
        number = int(cell)
        return number if -2**63 <= number < 2**63 else cell
    if _FLOAT.fullmatch(cell):
        value = float(cell)
        return value if math.isfinite(value) else cell
    return _BOOLS.get(cell.lower(), cell)


@dataclass(frozen=True)
class RecordFields:
    """Which fields of a record hold the id, the text (joined in order) and the metadata (None: all others);
    `csv_types` types CSV cells (False: keep every cell a string)."""

    id_fields: tuple[str, ...] = ("_id", "id")
    text_fields: tuple[str, ...] = ("title", "text")
    metadata_fields: tuple[str, ...] | None = None
    csv_types: bool = True

    def to_document(self, record: dict[str, Any], where: str) -> dict[str, Any]:
        parts = [record[f] for f in self.text_fields if record.get(f) not in (None, "")]
        if not parts:
            raise SourceError(f"no text: none of the fields {', '.join(self.text_fields)} is set "
                              "(choose them with --text-field)")
        if not all(isinstance(p, str) for p in parts):
            raise SourceError(f"text fields {', '.join(self.text_fields)} must be strings")
        doc_id = next((record[f] for f in self.id_fields if record.get(f) not in (None, "")), None)
        if self.metadata_fields is None:
            left_out = {*self.id_fields, *({*self.text_fields, "text"} - {"title"}), "metadata"}
            metadata = {k: v for k, v in record.items() if k not in left_out}
            if isinstance(record.get("metadata"), dict):
                metadata.update(record["metadata"])
        else:
            metadata = {k: record[k] for k in self.metadata_fields if k in record}
        return {"id": None if doc_id is None else str(doc_id), "text": "\n\n".join(parts), "metadata": metadata,
                "source": where}

    def type_csv_row(self, row: dict[str, str | None]) -> dict[str, Any]:
        """`row` with its metadata cells typed (id and text cells stay strings), or as is without `csv_types`."""
        if not self.csv_types:
            return row
        kept = {*self.id_fields, *self.text_fields}
        return {k: v if k in kept else type_cell(v) for k, v in row.items()}


def iter_jsonl(path: Path, fields: RecordFields, skip: Skip) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                record = json.loads(decode(raw, "the line"))
                if not isinstance(record, dict):
                    raise SourceError(f"expected a JSON object, got {type(record).__name__}")
                yield fields.to_document(record, where)
            except json.JSONDecodeError as exc:
                skip(where, f"not valid JSON ({exc.msg})")
            except SourceError as exc:
                skip(where, str(exc))


def iter_csv(path: Path, fields: RecordFields, skip: Skip) -> Iterator[dict[str, Any]]:
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SourceError(f"a NUL byte at offset {nul} (line {line}): a binary file, or UTF-16 text? "
                          "save it as UTF-8 CSV")
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(io.StringIO(decode(data, "the file"), newline=""))
    try:
        if not reader.fieldnames:
            raise SourceError("no header row")
        for number, record in enumerate(reader, 2):
            where = f"{path}:{number}"
            try:
                row = fields.type_csv_row({k: v for k, v in record.items() if k is not None})
                yield fields.to_document(row, where)
            except SourceError as exc:
                skip(where, str(exc))
    except csv.Error as exc:
        skip(f"{path}:{reader.reader.line_num}", f"not readable as CSV ({exc}); the rest of the file was skipped")
