"""`Indexer`: the single writer of an index — add, upsert and delete documents, crash-safely.

Each batch of documents is chunked and encoded (`pipeline`, pure), then committed in one
SQLite transaction with its vectors (`commit`), then mirrored into the in-memory FAISS
index; index.faiss is re-snapshotted now and then and on `close()`. See `store` for why a
kill -9 at any point loses nothing: rerunning the same build skips the documents already
committed (same id, same text and metadata) and encodes the rest.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, TypeVar

import numpy as np

from .chunking import Chunk, check_chunking, chunk_text, default_chunk_tokens
from .documents import DEFAULT_MAX_CHARS, Document, as_document
from .errors import DocumentError, IndexerError, IndexFormatError
from .faiss_index import AUTO, auto_factory, validate_factory
from .fields import delete_fields, write_fields
from .filters import check_fields, compile_filter
from .keywords import CHUNK_COLUMNS, index_documents, unindex_documents
from .llm2vec.errors import LLM2VecError
from .llm2vec.sources import DEFAULT_MODEL
from .loading import encoder_from_manifest
from .lock import WriteLock
from .manifest import (LOCK_NAME, MANIFEST_NAME, SQLITE_NAME, check_encoder, new_manifest, now_iso, read_manifest,
                       write_manifest)
from .pipeline import EncodedBatch, encode_chunks
from .schema import connect, ensure_schema, read_state
from .store import IndexStore, in_batches, placeholders

if TYPE_CHECKING:  # the model libraries load only when a write needs the encoder
    from .llm2vec.text_encoder import TextEncoder

log = logging.getLogger(__name__)

DEFAULT_OVERLAP = 32
READ_AHEAD_BATCHES = 16
"""Documents are read ahead by this many `batch_size`s of chunks and committed in groups of similar
length (`Indexer._commit_window`): a group of documents in input order pads its texts to its longest,
which cost 10-15 % of the encoder's throughput on SciFact abstracts (benchmarks/build_speed.py)."""
OnExisting = Literal["replace", "skip", "error"]
Errors = Literal["raise", "skip"]
IndexedState = Literal["new", "unchanged", "metadata", "changed"]


@dataclass
class AddStats:
    """What one `add_documents` call did; `skipped` holds (document, reason) pairs."""

    added: int = 0
    replaced: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    encode_seconds: float = 0.0
    store_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _serialised(method: _Method) -> _Method:
    """Run `method` under the indexer's re-entrant thread lock (one write or read of the writer at a time)."""

    @functools.wraps(method)
    def locked(self: "Indexer", *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def check_unique_ids(ids: Iterable[str]) -> None:
    """`DocumentError` naming the first id that occurs more than once (ids must be unique per call)."""
    repeated = [(doc_id, n) for doc_id, n in Counter(ids).items() if n > 1]
    if repeated:
        doc_id, n = repeated[0]
        more = f" (and {len(repeated) - 1} more repeated ids)" if len(repeated) > 1 else ""
        raise DocumentError(f"document id {doc_id!r} appears {n} times in one call{more}: ids must be unique, "
                            "give each document its own id")


def _created_files_only(path: Path) -> bool:
    return all(p.name in (LOCK_NAME, SQLITE_NAME, f"{SQLITE_NAME}-wal", f"{SQLITE_NAME}-shm") for p in path.iterdir())


class Indexer:
    """Create or open the index in `index_dir` and write to it (one writer at a time).

    For a new index: `model`/`adapters` (or a loaded `encoder`) name the encoder, `precision` its
    precision ("fp32", "int8" or "auto", recorded in the manifest: see `llm2vec.precision`), `factory` the
    FAISS index (Flat by default; "auto" picks by `expected_size` chunks, or by what `expected_size(chunk_tokens,
    overlap)` estimates once the chunk length is known), `chunk_tokens` defaults to
    the length the shipped recipe names (`recipes.INDEX_CHUNK_TOKENS`: 128 for the default model),
    else the encoder's doc_max_length, and `overlap` to 32. For an existing index, arguments left as None
    come from its manifest, and ones that contradict it are an error; its encoder is loaded on the
    first write that needs it, so deleting and inspecting never load the LLM.

    Threading model: every method runs under one re-entrant lock, so an `Indexer` may be shared by
    threads (and by LangChain's async methods, which run in executor threads); writes are applied one
    after the other, each committed whole. Another process writing the same directory makes the
    constructor fail with `IndexLockedError`, or wait up to `wait` seconds for it.
    """

    def __init__(
        self,
        index_dir: str | Path,
        encoder: TextEncoder | None = None,
        *,
        model: str | None = None,
        adapters: Sequence[str] = (),
        factory: str | None = None,
        chunk_tokens: int | None = None,
        overlap: int | None = None,
        batch_size: int = 32,
        document_instruction: str | None = None,
        default_task: str | None = None,
        expected_size: int | Callable[[int, int], int] | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        wait: float = 0.0,
        precision: str = "fp32",
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.path = Path(index_dir)
        self.batch_size = batch_size
        self.max_chars = max_chars
        self._mutex = threading.RLock()
        self._encoder: TextEncoder | None = None
        self._encoder_source = (model, tuple(adapters))
        if self.path.exists() and not self.path.is_dir():
            raise IndexFormatError(f"{self.path} exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock: WriteLock | None = WriteLock(self.path / LOCK_NAME)
        self._lock.acquire(wait)
        try:
            if (self.path / MANIFEST_NAME).exists():
                self._open_existing(encoder, model, factory, chunk_tokens, overlap, document_instruction)
            else:
                self._encoder = self._create(encoder, model, adapters, factory, chunk_tokens, overlap,
                                             document_instruction, default_task, expected_size, precision)
            schema_db = connect(self.path / SQLITE_NAME, read_only=False)
            try:
                ensure_schema(schema_db)
            finally:
                schema_db.conn.close()
            self.store = IndexStore.open(self.path, read_only=False)
            self.store.train_if_ready()
            state = read_state(self.store.db)
            self._generation = state["generation"]
            self._next_id = max(state["next_chunk_id"], self.store.vectors.max_id + 1)
        except BaseException:
            self._lock.release()
            raise
        chunking = self.manifest["chunking"]
        self.chunk_tokens, self.overlap = int(chunking["chunk_tokens"]), int(chunking["overlap"])
        self.document_instruction = self.manifest.get("document_instruction")

    @classmethod
    def open(cls, index_dir: str | Path, **kwargs: Any) -> "Indexer":
        """Open an existing index with the encoder its manifest names."""
        read_manifest(Path(index_dir))
        return cls(index_dir, **kwargs)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.store.manifest

    @property
    def loaded_encoder(self) -> TextEncoder | None:
        """The encoder if a write (or the constructor) has loaded it, else None (never loads it)."""
        return self._encoder

    @property
    def encoder(self) -> TextEncoder:
        """The index's encoder, loaded from the manifest on first use (and checked against it)."""
        with self._mutex:
            if self._encoder is None:
                model, adapters = self._encoder_source
                encoder = encoder_from_manifest(self.manifest, model=model, adapters=adapters, index_dir=self.path)
                check_encoder(self.manifest, encoder.fingerprint(), self.path)
                self._encoder = encoder
            return self._encoder

    def _open_existing(self, encoder, model, factory, chunk_tokens, overlap, instruction) -> None:
        manifest = read_manifest(self.path)
        if not (self.path / SQLITE_NAME).is_file() and (manifest.get("counts", {}).get("documents")
                                                        or manifest.get("snapshot", {}).get("vectors")):
            raise IndexFormatError(f"{self.path} is damaged: {SQLITE_NAME} is missing but the manifest counts "
                                   f"{manifest['counts']['documents']} documents")
        if encoder is not None:
            check_encoder(manifest, encoder.fingerprint(), self.path)
            self._encoder = encoder
        given = {"factory": (factory, manifest["factory"]),
                 "chunk_tokens": (chunk_tokens, manifest["chunking"]["chunk_tokens"]),
                 "overlap": (overlap, manifest["chunking"]["overlap"]),
                 "document_instruction": (instruction, manifest.get("document_instruction"))}
        for name, (value, recorded) in given.items():
            if value is not None and value != recorded and not (name == "factory" and value == AUTO):
                raise IndexerError(f"{self.path} was built with {name}={recorded!r}; cannot change it to {value!r} "
                                   "(build a new index for that)")

    def _create(self, encoder, model, adapters, factory, chunk_tokens, overlap, instruction, default_task,
                expected_size, precision) -> TextEncoder:
        if not _created_files_only(self.path):
            raise IndexFormatError(f"{self.path} is not empty and is not an index ({MANIFEST_NAME} is missing); "
                                   "choose an empty or new directory")
        if encoder is None:
            from .llm2vec import LLM2VecEncoder

            encoder = LLM2VecEncoder.from_pretrained(model or DEFAULT_MODEL, adapters, precision=precision)
        chunk_tokens = chunk_tokens or default_chunk_tokens(encoder)
        overlap = min(DEFAULT_OVERLAP, chunk_tokens // 4) if overlap is None else overlap
        check_chunking(chunk_tokens, overlap, encoder.config.doc_max_length)
        factory = factory or "Flat"
        if factory == AUTO:
            size = expected_size(chunk_tokens, overlap) if callable(expected_size) else expected_size
            factory = auto_factory(size or 0, encoder.dim)
        validate_factory(factory, encoder.dim)
        manifest = new_manifest(encoder.spec(), encoder.fingerprint(), factory=factory, chunk_tokens=chunk_tokens,
                                overlap=overlap, document_instruction=instruction, default_task=default_task)
        write_manifest(self.path, manifest)
        return encoder

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "Indexer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_serialised
    def close(self) -> None:
        """Write the FAISS snapshot if enough changed since the last one, then release the write lock.

        A snapshot rewrites the whole index.faiss, so closing after a small change does not: the
        next open replays the change from SQLite instead (see `IndexStore.snapshot_due_on_close`).
        """
        if self._lock is None:
            return
        try:
            if self.store.snapshot_due_on_close():
                self.store.save_snapshot()
            self.store.close()
        finally:
            self._lock.release()
            self._lock = None

    # ------------------------------------------------------------------ writing
    def _validated(self, docs: Iterable[Any], stats: AddStats, errors: Errors) -> Iterator[Document]:
        seen: set[str] = set()
        for number, obj in enumerate(docs):
            try:
                doc = as_document(obj, max_chars=self.max_chars)
                if doc.id in seen:
                    raise DocumentError(f"document {doc.id!r} appears twice in one call (item {number}): "
                                        "ids must be unique")
            except DocumentError as exc:
                if errors == "raise":
                    raise
                stats.skipped.append((str(_label(obj, number)), str(exc)))
                log.warning("skipped: %s", exc)
                continue
            seen.add(doc.id)
            yield doc

    @_serialised
    def add_documents(self, docs: Iterable[Any], *, on_existing: OnExisting = "replace",
                      errors: Errors = "raise", progress: Callable[[int], None] | None = None) -> AddStats:
        """Chunk, encode and commit `docs` (dicts with text/id/metadata, Documents, LangChain Documents).

        A document whose id is already indexed is skipped when its text and metadata are unchanged,
        gets only its metadata updated when only that changed, and otherwise is handled per
        `on_existing`: "replace" (upsert), "skip" or "error". With errors="skip" bad documents are
        logged and listed in `AddStats.skipped` instead of raising, and a batch the encoder rejects
        is retried one document at a time, so one bad document never ends a build. A list is
        validated whole before anything is written. `progress(n)` is told as documents are done
        with: n more of them committed (encoded and written), found unchanged, or skipped.
        """
        if on_existing not in ("replace", "skip", "error"):
            raise ValueError(f"on_existing must be 'replace', 'skip' or 'error', got {on_existing!r}")
        stats = AddStats()
        validated = self._validated(docs, stats, errors)
        if isinstance(docs, Sequence):
            validated = iter(list(validated))
        pending: list[tuple[Document, list[Chunk]]] = []
        relabel: list[Document] = []
        n_chunks = reported = 0

        def report_progress() -> None:
            nonlocal reported
            done = (stats.added + stats.replaced + stats.unchanged + stats.metadata_updated + len(stats.skipped)
                    - len(pending))  # queued documents count as added/replaced already
            if progress is not None and done > reported:
                progress(done - reported)
                reported = done

        for doc in validated:
            report_progress()
            state = self.indexed_state(doc)
            if state == "unchanged":
                stats.unchanged += 1
                continue
            if state == "metadata":
                relabel.append(doc)
                continue
            if state == "changed":
                if on_existing == "skip":
                    stats.unchanged += 1
                    continue
                if on_existing == "error":
                    raise DocumentError(f"document {doc.id!r} is already indexed with other text "
                                        "(use upsert / on_existing='replace')")
            started = time.perf_counter()
            chunks = chunk_text(doc.text, self.encoder.tokenizer, self.chunk_tokens, self.overlap)
            stats.encode_seconds += time.perf_counter() - started
            pending.append((doc, chunks))
            stats.replaced += state == "changed"
            stats.added += state == "new"
            n_chunks += len(chunks)
            if n_chunks >= self.batch_size * READ_AHEAD_BATCHES:
                self._commit_window(pending, relabel, stats, errors, report_progress)
                relabel, n_chunks = [], 0
        if pending or relabel:
            self._commit_window(pending, relabel, stats, errors, report_progress)
        report_progress()
        return stats

    @_serialised
    def indexed_state(self, doc: Document) -> IndexedState:
        """How `doc` compares with the indexed document of its id: new, unchanged, metadata (only) or changed."""
        row = self.store.db.execute("SELECT content_hash, metadata FROM documents WHERE id = ?", [doc.id]).fetchone()
        if row is None:
            return "new"
        if row[0] != doc.content_hash:
            return "changed"
        return "unchanged" if row[1] == doc.metadata_json else "metadata"

    @_serialised
    def committed_shards(self) -> set[str]:
        """Names of the embedding shards committed so far (see `commit(shard=...)`)."""
        return {row[0] for row in self.store.db.execute("SELECT name FROM shards").fetchall()}

    def upsert(self, docs: Iterable[Any], *, errors: Errors = "raise") -> AddStats:
        """Add `docs`, replacing the chunks of documents whose text changed."""
        return self.add_documents(docs, on_existing="replace", errors=errors)

    def _commit_window(self, pending: list[tuple[Document, list[Chunk]]], relabel: list[Document],
                       stats: AddStats, errors: Errors, committed: Callable[[], None]) -> None:
        """Encode and commit the documents read ahead (emptying `pending`), shortest longest-chunk
        first, each group of about `batch_size` chunks in its own transaction; `committed()` after
        each. Documents keep their chunks together; their ids are unique within a call, so the order
        they commit in does not change what the index holds."""
        pending.sort(key=lambda item: max((len(chunk.text) for chunk in item[1]), default=0))
        while True:
            count = size = 0
            while count < len(pending) and (count == 0 or size < self.batch_size):
                size += len(pending[count][1])
                count += 1
            self._flush(pending[:count], relabel, stats, errors)
            del pending[:count]
            relabel = []
            committed()
            if not pending:
                return

    def _flush(self, pending: list[tuple[Document, list[Chunk]]], relabel: list[Document], stats: AddStats,
               errors: Errors) -> None:
        started = time.perf_counter()
        try:
            vectors = self._encode([c for _, c in pending])
        except LLM2VecError:
            if errors == "raise":
                raise
            pending, vectors = self._encode_each(pending, stats)
        encoded = time.perf_counter()
        self.commit(EncodedBatch([d for d, _ in pending], [c for _, c in pending], vectors), relabel=relabel)
        stats.encode_seconds += encoded - started
        stats.store_seconds += time.perf_counter() - encoded
        stats.chunks += len(vectors)
        stats.metadata_updated += len(relabel)

    def _encode(self, chunks: list[list[Chunk]]) -> np.ndarray:
        return encode_chunks(self.encoder, chunks, instruction=self.document_instruction, batch_size=self.batch_size)

    def _encode_each(self, pending: list[tuple[Document, list[Chunk]]],
                     stats: AddStats) -> tuple[list[tuple[Document, list[Chunk]]], np.ndarray]:
        """Encode documents one at a time, skipping (and naming) those the encoder rejects."""
        kept, vectors = [], []
        for doc, chunks in pending:
            try:
                vectors.append(self._encode([chunks]))
            except LLM2VecError as exc:
                stats.skipped.append((doc.id, f"cannot be encoded: {exc}"))
                if self.indexed_state(doc) == "new":
                    stats.added -= 1
                else:
                    stats.replaced -= 1
                log.warning("skipped %s: cannot be encoded: %s", doc.id, exc)
                continue
            kept.append((doc, chunks))
        matrix = np.concatenate(vectors) if vectors else np.empty((0, self.store.dim), dtype=np.float32)
        return kept, matrix

    @_serialised
    def commit(self, batch: EncodedBatch, *, relabel: Sequence[Document] = (), shard: str | None = None) -> None:
        """Write an encoded batch (and metadata-only updates) in one transaction, then mirror it in FAISS.

        Documents in `batch` replace any indexed document with the same id. Batches may come from
        `pipeline.encode_documents` run elsewhere, as long as the encoder has this index's fingerprint.
        `shard` names the embedding shard the batch comes from: it is recorded in the same
        transaction, and committing a name twice is an `IndexerError` (nothing is written).
        """
        if batch.vectors.shape != (batch.n_chunks, self.store.dim):
            raise ValueError(f"batch has {batch.vectors.shape} vectors for {batch.n_chunks} chunks of dim {self.store.dim}")
        check_unique_ids(d.id for d in batch.documents)
        ids = np.arange(self._next_id, self._next_id + batch.n_chunks, dtype=np.int64)
        added_at = now_iso()
        with self._transaction(ids, batch.vectors, next_id=self._next_id + batch.n_chunks) as generation:
            db = self.store.db
            if shard is not None and db.execute("SELECT 1 FROM shards WHERE name = ?", [shard]).fetchone():
                raise IndexerError(f"shard {shard} is already committed to {self.path}")
            self._drop_chunks([doc.id for doc in batch.documents], generation)
            db.conn.executemany(
                "INSERT OR REPLACE INTO documents (id, content_hash, metadata, source, added_at) VALUES (?, ?, ?, ?, ?)",
                [(d.id, d.content_hash, d.metadata_json, d.source, added_at) for d in batch.documents])
            chunks = [(doc.id, c) for doc, doc_chunks in zip(batch.documents, batch.chunks) for c in doc_chunks]
            rows = [(doc_id, int(i), c.start, c.end, c.text, c.position) for i, (doc_id, c) in zip(ids, chunks)]
            db.conn.executemany('INSERT INTO chunks (doc_id, id, start, "end", text, position) VALUES (?, ?, ?, ?, ?, ?)',
                                rows)
            index_documents(db, (row[:5] for row in rows))  # ChunkRow: all but the position
            db.conn.executemany("INSERT INTO vectors (id, vector) VALUES (?, ?)",
                                [(int(i), v.tobytes()) for i, v in zip(ids, batch.vectors)])
            db.conn.executemany("UPDATE documents SET metadata = ? WHERE id = ?",
                                [(d.metadata_json, d.id) for d in relabel])
            write_fields(db, [(d.id, d.metadata) for d in [*batch.documents, *relabel]])
            if shard is not None:
                db.execute("INSERT INTO shards (name, documents, chunks, committed_at) VALUES (?, ?, ?, ?)",
                           [shard, len(batch.documents) + len(relabel), batch.n_chunks, added_at])

    @contextmanager
    def _transaction(self, added_ids: np.ndarray, vectors: np.ndarray, *, next_id: int) -> Iterator[int]:
        """One write: BEGIN IMMEDIATE, the caller's statements (given the new generation), the counters,
        COMMIT, then the same change mirrored in FAISS, all under the store's lock, so a search
        sharing this store sees the state before or after the write, never a mix. The chunk ids the
        statements tombstone are collected from the `tombstones` rows of the new generation."""
        db = self.store.db
        generation = self._generation + 1
        with self.store.lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield generation
                removed = np.array([row[0] for row in db.execute(
                    "SELECT chunk_id FROM tombstones WHERE generation = ?", [generation]).fetchall()], dtype=np.int64)
                self._bump(generation, next_id)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._generation, self._next_id = generation, next_id
            self.store.apply(added_ids, vectors, removed, generation)
        if self.store.snapshot_due():
            self.store.save_snapshot()

    def _drop_chunks(self, doc_ids: Sequence[str], generation: int) -> None:
        """Inside a transaction: delete the chunks (and vectors) of `doc_ids`, tombstoning their ids,
        and their rows of the keyword table."""
        db = self.store.db
        removed: list[int] = []
        for part in in_batches(list(doc_ids)):
            chunks = db.execute(f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE doc_id IN ({placeholders(len(part))}) "
                                "ORDER BY doc_id, position", list(part)).fetchall()
            unindex_documents(db, chunks)
            removed += [row[1] for row in chunks]
        db.conn.executemany("INSERT OR REPLACE INTO tombstones (chunk_id, generation) VALUES (?, ?)",
                            [(i, generation) for i in removed])
        db.conn.executemany("DELETE FROM vectors WHERE id = ?", [(i,) for i in removed])
        db.conn.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in removed])

    def _bump(self, generation: int, next_id: int) -> None:
        self.store.db.conn.executemany("UPDATE state SET value = ? WHERE key = ?",
                                       [(generation, "generation"), (next_id, "next_chunk_id")])

    @_serialised
    def delete(self, ids: Sequence[str] | None = None, where: Mapping[str, Any] | None = None) -> int:
        """Delete documents by id and/or by a metadata filter (the language of `indexer.filters`, as
        in search: `where={"year": {"$lt": 2020}}`); returns how many. A filter naming a field no
        document has raises `UnknownFieldError` rather than deleting nothing. Needs no encoder."""
        if ids is None and where is None:
            raise ValueError("give ids, where, or both")
        if isinstance(ids, str):
            ids = [ids]
        compiled = compile_filter(where) if where is not None else None
        empty = np.empty((0, self.store.dim), dtype=np.float32)
        with self._transaction(np.empty(0, dtype=np.int64), empty, next_id=self._next_id) as generation:
            db = self.store.db
            doc_ids = set(ids or [])
            if compiled is not None:
                check_fields(db, compiled, strict=True)
                doc_ids |= {row[0] for row in db.execute(f"SELECT d.id FROM documents d WHERE {compiled.sql}",
                                                         list(compiled.params))}
            doc_ids = sorted(d for d in doc_ids
                             if db.execute("SELECT 1 FROM documents WHERE id = ?", [d]).fetchone() is not None)
            self._drop_chunks(doc_ids, generation)
            delete_fields(db, doc_ids)
            db.conn.executemany("DELETE FROM documents WHERE id = ?", [(d,) for d in doc_ids])
        return len(doc_ids)

    @_serialised
    def stats(self) -> dict[str, Any]:
        """Counts, settings and sizes on disk of the index (see `IndexStore.stats`)."""
        return self.store.stats()


def _label(obj: Any, number: int) -> str:
    doc_id = obj.get("id") if isinstance(obj, dict) else getattr(obj, "id", None)
    return str(doc_id) if doc_id is not None else f"item {number}"
