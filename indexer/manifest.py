"""`manifest.json`: what an index is (format, encoder, metric, FAISS factory, chunking, counts).

The manifest is written atomically (temp file, fsync, `os.replace`, fsync of the directory),
so a reader sees either the old or the new one, never a torn file. Its `encoder` entry is
`LLM2VecEncoder.spec()` plus the `fingerprint`; opening an index with an encoder of another
fingerprint is an `EncoderMismatchError`, never silently wrong vectors. A manifest is read with
today's fingerprint of its encoder (`llm2vec.fingerprint.migrate_fingerprint`) and keeps it when
next written.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import EncoderMismatchError, IndexFormatError
from .llm2vec.fingerprint import migrate_fingerprint

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FAISS_NAME = "index.faiss"
SQLITE_NAME = "meta.sqlite"
LOCK_NAME = "write.lock"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(tmp: Path, dest: Path) -> None:
    """fsync `tmp`, rename it over `dest`, fsync the directory: `dest` is old or new after a crash."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def new_manifest(encoder_spec: dict[str, Any], fingerprint: str, *, factory: str, chunk_tokens: int,
                 overlap: int, document_instruction: str | None, default_task: str | None) -> dict[str, Any]:
    """A manifest for a new, empty index."""
    return {
        "format_version": FORMAT_VERSION,
        "encoder": {**encoder_spec, "fingerprint": fingerprint},
        "document_instruction": document_instruction,
        "default_task": default_task,
        "metric": "ip",
        "normalized": True,
        "factory": factory,
        "chunking": {"chunk_tokens": chunk_tokens, "overlap": overlap},
        "counts": {"documents": 0, "chunks": 0},
        "snapshot": {"generation": 0, "vectors": 0},
        "created_at": now_iso(),
        "updated_at": now_iso(),
    }


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the index in `directory`, validated; `IndexFormatError` when unusable."""
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise IndexFormatError(f"{directory} is not an index directory (it does not exist)")
    if not path.is_file():
        raise IndexFormatError(f"{directory} is not an index: {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path} is damaged (not valid JSON: {exc}); restore it from a backup") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format_version"), int):
        raise IndexFormatError(f"{path} has no integer format_version: not an index manifest")
    version = manifest["format_version"]
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{directory} was written by a newer version of the indexer (format {version}; this one reads "
            f"up to {FORMAT_VERSION}): upgrade llm2vec-retriever to open it"
        )
    for key in ("encoder", "factory", "chunking", "metric"):
        if key not in manifest:
            raise IndexFormatError(f"{path} lacks the {key!r} entry: the manifest is damaged")
    if not isinstance(manifest["encoder"].get("dim"), int):
        raise IndexFormatError(f"{path}: encoder.dim is missing or not an integer")
    manifest["encoder"] = migrate_fingerprint(manifest["encoder"])
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest` atomically, stamping `updated_at`."""
    manifest["updated_at"] = now_iso()
    tmp = directory / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    replace_atomically(tmp, directory / MANIFEST_NAME)


def check_encoder(manifest: dict[str, Any], fingerprint: str, directory: Path) -> None:
    """Raise `EncoderMismatchError` unless `fingerprint` is the one the index was built with."""
    expected = manifest["encoder"].get("fingerprint")
    if expected != fingerprint:
        raise EncoderMismatchError(
            f"{directory} was built with encoder {manifest['encoder'].get('model')!r} (fingerprint {expected}); "
            f"the encoder given has fingerprint {fingerprint}: its vectors would not be comparable. "
            "Use the index's own encoder (Indexer.open / omit --model), or build a new index."
        )
