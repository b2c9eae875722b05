"""Embedding shards: documents with their chunks and vectors, encoded anywhere, committed once.

A shard is one `.safetensors` file (no pickle): the tensor `vectors` [chunks, dim] float32,
the tensor `documents` holding UTF-8 JSON (documents, chunk spans, skipped inputs), and in the
header its name, the settings it was encoded with and a SHA-256 of both tensors. Its name is a
hash of its documents and of those settings, so the same input always makes the same shard.

`commit_shard` writes a shard through `Indexer.commit(shard=name)`: rows, vectors and the name
in one SQLite transaction, so a shard is committed whole or not at all, and never twice.
Documents the index already holds unchanged are skipped, metadata-only changes are applied,
and a document id seen earlier in the same build is skipped as a duplicate, as the local
engine does. A truncated or corrupt file is a `ShardError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from .chunking import Chunk
from .documents import Document
from .errors import IndexerError
from .manifest import replace_atomically
from .pipeline import EncodedBatch, encode_documents
from .writer import AddStats, Indexer

log = logging.getLogger(__name__)

FORMAT = "l2v-shard"
VERSION = "1"
SUFFIX = ".safetensors"


class ShardError(IndexerError):
    """A shard file is truncated, corrupt, or was encoded for other index settings."""


@dataclass(frozen=True)
class ShardSettings:
    """What a shard's vectors depend on besides its documents; they must match the index's."""

    fingerprint: str
    chunk_tokens: int
    overlap: int
    instruction: str | None

    @classmethod
    def of(cls, indexer: Indexer) -> "ShardSettings":
        return cls(indexer.manifest["encoder"]["fingerprint"], indexer.chunk_tokens, indexer.overlap,
                   indexer.document_instruction)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Shard:
    """Documents in corpus order; `encoded[i]` says whether document i has chunks and vectors here
    (False: its text was already indexed when the shard was encoded). `skipped` lists inputs that
    could not become documents, as (what, why)."""

    name: str
    settings: ShardSettings
    documents: list[Document]
    encoded: list[bool]
    chunks: list[list[Chunk]]
    vectors: np.ndarray
    skipped: list[tuple[str, str]]


def shard_name(documents: Sequence[Document], skipped: Sequence[tuple[str, str]], settings: ShardSettings) -> str:
    """A stable name: a hash of the settings, the documents (id, text, metadata, source) and the skips."""
    digest = hashlib.sha256(settings.key().encode())
    for doc in documents:
        digest.update(json.dumps([doc.id, doc.content_hash, doc.metadata_json, doc.source]).encode())
    digest.update(json.dumps([list(s) for s in skipped]).encode())
    return digest.hexdigest()[:32]


def doc_keys(ids: Sequence[str], content_hashes: Sequence[str]) -> np.ndarray:
    """64-bit keys of (id, text hash) pairs: which documents' text an index already holds."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{i}\0{h}".encode(), digest_size=8).digest(), "little",
                                    signed=True) for i, h in zip(ids, content_hashes)], dtype=np.int64)


def indexed_keys(indexer: Indexer) -> np.ndarray:
    """Sorted `doc_keys` of every document in the index."""
    rows = indexer.store.db.execute("SELECT id, content_hash FROM documents").fetchall()
    return np.unique(doc_keys([r[0] for r in rows], [r[1] for r in rows]))


def encode_shard(encoder: Any, documents: Sequence[Document], skipped: Sequence[tuple[str, str]],
                 settings: ShardSettings, *, known: np.ndarray | None = None, batch_size: int = 32) -> Shard:
    """Chunk and encode `documents` (`pipeline.encode_documents`), except those whose key is in `known`."""
    documents = list(documents)
    encoded = [True] * len(documents)
    if known is not None and len(known) and documents:
        keys = doc_keys([d.id for d in documents], [d.content_hash for d in documents])
        encoded = (~np.isin(keys, known)).tolist()
    todo = [doc for doc, flag in zip(documents, encoded) if flag]
    batch = encode_documents(encoder, todo, chunk_tokens=settings.chunk_tokens, overlap=settings.overlap,
                             instruction=settings.instruction, batch_size=batch_size)
    per_doc = iter(batch.chunks)
    chunks = [next(per_doc) if flag else [] for flag in encoded]
    return Shard(shard_name(documents, skipped, settings), settings, documents, encoded, chunks, batch.vectors,
                 [tuple(s) for s in skipped])


# ---------------------------------------------------------------------------- bytes and files
def _checksum(vectors: bytes, documents: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(vectors).digest() + hashlib.sha256(documents).digest()).hexdigest()


def shard_bytes(shard: Shard) -> bytes:
    """The shard as a .safetensors file."""
    body = json.dumps({
        "documents": [{"id": d.id, "text": d.text, "metadata": d.metadata, "source": d.source, "encoded": flag,
                       "chunks": [[c.start, c.end] for c in chunks]}
                      for d, flag, chunks in zip(shard.documents, shard.encoded, shard.chunks)],
        "skipped": [list(s) for s in shard.skipped],
    }, ensure_ascii=False).encode("utf-8")
    vectors = np.ascontiguousarray(shard.vectors, dtype=np.float32)
    metadata = {"format": FORMAT, "version": VERSION, "name": shard.name, "settings": shard.settings.key(),
                "sha256": _checksum(vectors.tobytes(), body)}
    return safetensors.numpy.save({"vectors": vectors, "documents": np.frombuffer(body, dtype=np.uint8)},
                                  metadata=metadata)


def parse_shard(data: bytes, where: str | Path) -> Shard:
    """A shard from .safetensors bytes; `ShardError` naming `where` when they are not a whole shard."""
    try:
        tensors = safetensors.numpy.load(data)
        header_size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise ShardError(f"{where} is truncated or not a shard file ({exc})") from None
    if metadata.get("format") != FORMAT or set(tensors) != {"vectors", "documents"}:
        raise ShardError(f"{where} is not an embedding shard (format {metadata.get('format')!r})")
    if metadata.get("version") != VERSION:
        raise ShardError(f"{where} has shard format version {metadata.get('version')!r}; this indexer reads {VERSION}")
    vectors, body = tensors["vectors"], tensors["documents"].tobytes()
    if metadata.get("sha256") != _checksum(vectors.tobytes(), body):
        raise ShardError(f"{where} is corrupt: its content does not match its checksum")
    content = json.loads(body.decode("utf-8"))
    documents, encoded, chunks = [], [], []
    for row in content["documents"]:
        doc = Document(row["id"], row["text"], row["metadata"], row["source"])
        documents.append(doc)
        encoded.append(bool(row["encoded"]))
        chunks.append([Chunk(i, start, end, doc.text[start:end]) for i, (start, end) in enumerate(row["chunks"])])
    if vectors.ndim != 2 or sum(map(len, chunks)) != len(vectors):
        raise ShardError(f"{where} is corrupt: {sum(map(len, chunks))} chunks but vectors of shape {vectors.shape}")
    settings = ShardSettings(**json.loads(metadata["settings"]))
    return Shard(metadata["name"], settings, documents, encoded, chunks, vectors,
                 [tuple(s) for s in content["skipped"]])


def shard_path(directory: Path, name: str) -> Path:
    return directory / f"{name}{SUFFIX}"


def write_shard(directory: Path, name: str, data: bytes) -> Path:
    """Write shard bytes atomically (temp file, fsync, rename): the file is whole or absent."""
    directory.mkdir(parents=True, exist_ok=True)
    path = shard_path(directory, name)
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(data)
    replace_atomically(tmp, path)
    return path


def read_shard(path: Path, settings: ShardSettings | None = None) -> Shard:
    """Read and verify a shard file; with `settings`, refuse one encoded for other index settings."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ShardError(f"{path} cannot be read ({exc})") from None
    shard = parse_shard(data, path)
    if shard.name != path.name.removesuffix(SUFFIX):
        raise ShardError(f"{path} holds shard {shard.name}: the file was renamed")
    if settings is not None and shard.settings != settings:
        raise ShardError(f"{path} was encoded with {shard.settings}, but the index uses {settings}")
    return shard


# ---------------------------------------------------------------------------- committing
def commit_shard(indexer: Indexer, shard: Shard, seen: set[str], stats: AddStats) -> None:
    """Commit `shard` once, in one transaction (see the module doc); `seen` holds this build's ids so far."""
    settings = ShardSettings.of(indexer)
    if shard.settings != settings:
        raise ShardError(f"shard {shard.name} was encoded with {shard.settings}, but the index uses {settings}")
    keep: list[int] = []
    rows: list[np.ndarray] = []
    relabel: list[Document] = []
    added = replaced = unchanged = 0
    skipped = list(shard.skipped)
    ids_here: set[str] = set()
    offset = 0
    for i, (doc, encoded, chunks) in enumerate(zip(shard.documents, shard.encoded, shard.chunks)):
        span = np.arange(offset, offset + len(chunks))
        offset += len(chunks)
        if doc.id in seen or doc.id in ids_here:
            skipped.append((doc.id, f"document {doc.id!r} appears twice in the sources: the first copy is kept"))
            continue
        ids_here.add(doc.id)
        state = indexer.indexed_state(doc)
        if state == "unchanged":
            unchanged += 1
        elif state == "metadata":
            relabel.append(doc)
        elif not encoded:
            raise ShardError(f"shard {shard.name} was encoded when document {doc.id!r} was indexed with the same "
                             "text, and the index has changed since: delete the shard file and rerun")
        else:
            keep.append(i)
            rows.append(span)
            added += state == "new"
            replaced += state == "changed"
    vectors = shard.vectors[np.concatenate(rows)] if rows else np.empty((0, shard.vectors.shape[1]), np.float32)
    batch = EncodedBatch([shard.documents[i] for i in keep], [shard.chunks[i] for i in keep], vectors)
    indexer.commit(batch, relabel=relabel, shard=shard.name)
    seen |= ids_here
    stats.added += added
    stats.replaced += replaced
    stats.unchanged += unchanged
    stats.metadata_updated += len(relabel)
    stats.chunks += batch.n_chunks
    stats.skipped += skipped
    for what, why in skipped:
        log.warning("skipped %s: %s", what, why)
