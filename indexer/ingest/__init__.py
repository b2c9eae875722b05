"""Read documents from files and directories: .txt, .md, .html/.htm, .pdf (one document per file),
.jsonl and .csv (one document per record).

A directory is walked recursively (hidden files and unknown extensions are ignored). A file
that cannot be read (undecodable, corrupt, empty) or a bad record is skipped, logged and listed
in `IngestReport.skipped`, so one bad file among many never stops a build. File documents get
their path relative to the directory given (or their name) as id; records use `id_field`.
CSV cells become ints, floats, bools or null where the whole cell is one (`records.type_cell`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import SourceError
from .files import read_html, read_pdf, read_text
from .records import RecordFields, iter_csv, iter_jsonl, type_cell

log = logging.getLogger(__name__)

FILE_READERS = {".txt": read_text, ".md": read_text, ".markdown": read_text, ".html": read_html,
                ".htm": read_html, ".pdf": read_pdf}
RECORD_READERS = {".jsonl": iter_jsonl, ".csv": iter_csv}
SUPPORTED = tuple(sorted({*FILE_READERS, *RECORD_READERS}))


@dataclass
class IngestReport:
    """Files read, documents yielded, and (what, why) for everything skipped."""

    files: int = 0
    documents: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        log.warning("skipped %s: %s", what, why)
        self.skipped.append((what, why))


def expand_sources(sources: Sequence[str | Path], suffixes: Sequence[str] = SUPPORTED) -> list[tuple[Path, str]]:
    """(file, document id for single-document files) for every file under `sources` ending in `suffixes`."""
    files: list[tuple[Path, str]] = []
    for source in map(Path, sources):
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                relative = path.relative_to(source)
                if path.is_file() and path.suffix.lower() in suffixes and not any(
                        part.startswith(".") for part in relative.parts):
                    files.append((path, relative.as_posix()))
        elif source.is_file():
            files.append((source, source.name))
        else:
            raise SourceError(f"{source} does not exist")
    return files


def iter_documents(sources: Sequence[str | Path], fields: RecordFields | None = None,
                   report: IngestReport | None = None) -> Iterator[dict]:
    """Documents (dicts with id, text, metadata, source) from `sources`, skipping what cannot be read."""
    fields = fields or RecordFields()
    report = report if report is not None else IngestReport()
    for path, doc_id in expand_sources(sources):
        yield from read_file(path, doc_id, fields, report)


def read_file(path: Path, doc_id: str, fields: RecordFields, report: IngestReport) -> Iterator[dict]:
    """Documents of one file (`doc_id` names a single-document file); what cannot be read goes to `report`."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        report.skip(str(path), f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED)}")
        return
    try:
        if path.stat().st_size == 0:
            raise SourceError("empty file")
        if suffix in FILE_READERS:
            text, metadata = FILE_READERS[suffix](path)
            if not text.strip():
                raise SourceError("no text in it")
            report.files += 1
            report.documents += 1
            yield {"id": doc_id, "text": text, "metadata": {**metadata, "path": str(path)}, "source": str(path)}
        else:
            report.files += 1
            for record in RECORD_READERS[suffix](path, fields, report.skip):
                report.documents += 1
                yield record
    except SourceError as exc:
        report.skip(str(path), str(exc))


def count_documents(sources: Sequence[str | Path], fields: RecordFields | None = None) -> int:
    """A cheap upper bound of the documents in `sources` (records are counted as lines/rows)."""
    total = 0
    for path, _ in expand_sources(sources):
        suffix = path.suffix.lower()
        if suffix in RECORD_READERS:
            with path.open("rb") as handle:
                total += sum(1 for line in handle if line.strip()) - (suffix == ".csv")
        elif suffix in FILE_READERS:
            total += 1
    return max(total, 0)


BYTES_PER_TOKEN = 4
"""About how many bytes of text one token covers in English (fewer in other scripts: an overestimate
of the tokens there, which errs towards the larger index)."""


def estimate_chunks(sources: Sequence[str | Path], chunk_tokens: int, overlap: int) -> int:
    """A rough count of the chunks `sources` make in `chunk_tokens`-token chunks (for `--factory
    auto`): their bytes over the new bytes each chunk adds, and at least one per document."""
    stride = max(1, chunk_tokens - overlap) * BYTES_PER_TOKEN
    total_bytes = sum(path.stat().st_size for path, _ in expand_sources(sources))
    return max(count_documents(sources), total_bytes // stride)


__all__ = ["IngestReport", "RecordFields", "SUPPORTED", "count_documents", "estimate_chunks", "expand_sources", "iter_documents", "read_file",
           "type_cell"]
