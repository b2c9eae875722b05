"""Record readers: JSON Lines and CSV, one document per record.

By default the id is the first of `_id` / `id` present, the text is `title` and `text` joined by
a blank line (so a BEIR corpus.jsonl works as is), and the metadata is every other field, with
a nested `metadata` object merged in. Bad records are skipped through the `skip` callback.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import SourceError
from .files import decode

Skip = Callable[[str, str], None]


@dataclass(frozen=True)
class RecordFields:
    """Which fields of a record hold the id, the text (joined in order) and the metadata (None: all others)."""

    id_fields: tuple[str, ...] = ("_id", "id")
    text_fields: tuple[str, ...] = ("title", "text")
    metadata_fields: tuple[str, ...] | None = None

    def to_document(self, record: dict[str, Any], where: str) -> dict[str, Any]:
        parts = [record[f] for f in self.text_fields if record.get(f) not in (None, "")]
        if not parts:
            raise SourceError(f"no text: none of the fields {', '.join(self.text_fields)} is set "
                              "(choose them with --text-field)")
        if not all(isinstance(p, str) for p in parts):
            raise SourceError(f"text fields {', '.join(self.text_fields)} must be strings")
        doc_id = next((record[f] for f in self.id_fields if record.get(f) not in (None, "")), None)
        id_names = set(self.id_fields)
        if self.metadata_fields is None:
            metadata = {k: v for k, v in record.items() if k not in id_names and k != "text" and k != "metadata"}
            if isinstance(record.get("metadata"), dict):
                metadata.update(record["metadata"])
        else:
            metadata = {k: record[k] for k in self.metadata_fields if k in record}
        return {"id": None if doc_id is None else str(doc_id), "text": "\n\n".join(parts), "metadata": metadata,
                "source": where}


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
    text = decode(path.read_bytes(), "the file")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise SourceError("no header row")
    for number, record in enumerate(reader, 2):
        where = f"{path}:{number}"
        try:
            yield fields.to_document({k: v for k, v in record.items() if k is not None}, where)
        except SourceError as exc:
            skip(where, str(exc))
