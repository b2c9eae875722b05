"""`IndexStore`: one index directory (manifest.json, index.faiss, meta.sqlite) opened for search.

Crash safety and concurrency, the design in short:

* SQLite is the source of truth. A writer commits each batch (document rows, chunk rows,
  each chunk's float32 vector as a BLOB, tombstones of replaced chunks, the new `generation`)
  in one transaction, so a kill -9 leaves either all of a batch or none of it.
* index.faiss is a derived snapshot, written atomically (temp file, fsync, `os.replace`,
  directory fsync). Chunk ids only grow, so on open the snapshot is brought up to date by
  replaying the vectors whose id is above its largest id and removing the ids in
  `tombstones`; both steps are idempotent. A missing or unreadable index.faiss is therefore
  rebuilt from SQLite (with a warning) rather than lost.
* After a snapshot is in place, the tombstones it covers are pruned and `pruned_through` is
  raised; a reader that loaded an older snapshot while pruning happened notices and reloads.
* Readers use their own WAL connection: they never block the writer and see the last committed
  batch. `search` checks `PRAGMA data_version` (one cheap call) and replays new commits first.
* A search makes several reads (the ids under a filter, FAISS, stored vectors, chunk texts);
  `snapshot()` holds one read transaction around them, so all see one committed state. The
  writer's own store (shared with searches in one process, e.g. a LangChain vector store)
  applies each commit to SQLite and FAISS under the same lock the snapshot takes.
* Snapshots are written when enough changed (`snapshot_due`, `snapshot_due_on_close`), never
  for a small change, so adding or deleting one document in a large index costs O(change).
* Large snapshots open memory-mapped (`IO_FLAG_MMAP | IO_FLAG_READ_ONLY`) when there is
  nothing to replay onto them; otherwise they are loaded into memory.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .sqlite_import import sqlite_utils
from .errors import IndexFormatError
from .faiss_index import Selector, VectorIndex, min_train_size
from .manifest import FAISS_NAME, MANIFEST_NAME, SQLITE_NAME, read_manifest, replace_atomically, write_manifest
from .chunking import stitch
from .keywords import keyword_search
from .schema import check_schema, connect, needs_upgrade, read_state, upgrade_schema

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 64 * 2**20
_BATCH = 4096
_MAX_PARAMS = 900


def in_batches(values: Sequence[Any], size: int = _MAX_PARAMS) -> Iterator[Sequence[Any]]:
    """`values` in slices small enough for one SQL statement's parameters."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def placeholders(n: int) -> str:
    """"?, ?, ..." for `n` bound parameters."""
    return ", ".join("?" * n)


class IndexStore:
    """Search and read an index; the `Indexer` writes through one opened with `read_only=False`."""

    def __init__(self, path: Path, manifest: dict[str, Any], db: sqlite_utils.Database, *, read_only: bool,
                 mmap: bool | None) -> None:
        self.path = path
        self.manifest = manifest
        self.db = db
        self.read_only = read_only
        self._mmap = mmap
        self._lock = threading.RLock()
        self._generation = -1
        self._data_version = -1
        self._backlog = 0
        self.vectors: VectorIndex = self._load_vectors()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = True, mmap: bool | None = None) -> "IndexStore":
        """Open the index in `path`. `mmap=None` maps snapshots over 64 MiB when opened read-only."""
        path = Path(path)
        manifest = read_manifest(path)
        sqlite_path = path / SQLITE_NAME
        if not sqlite_path.is_file():
            raise IndexFormatError(f"{path} is damaged: {SQLITE_NAME} is missing (it holds the documents and vectors)")
        db = connect(sqlite_path, read_only=read_only)
        if read_only and needs_upgrade(db):
            db.conn.close()
            upgrade_schema(path)
            db = connect(sqlite_path, read_only=read_only)
        check_schema(db, sqlite_path)
        return cls(path, manifest, db, read_only=read_only, mmap=mmap)

    @property
    def dim(self) -> int:
        return int(self.manifest["encoder"]["dim"])

    @property
    def factory(self) -> str:
        return str(self.manifest["factory"])

    def __len__(self) -> int:
        with self._lock:
            self.refresh()
            return self.vectors.ntotal

    def __enter__(self) -> "IndexStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.conn.close()

    def __repr__(self) -> str:
        return f"IndexStore({str(self.path)!r}, factory={self.factory!r}, dim={self.dim})"

    @property
    def lock(self) -> threading.RLock:
        """The lock around every read and every applied write of this store."""
        return self._lock

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Hold one committed state for the reads inside the block (re-entrant).

        FAISS is first brought up to the newest commit, then a read transaction pins that state
        (replaying a commit that landed in between), so ids, vectors and texts read inside agree.
        """
        with self._lock:
            if self.db.conn.in_transaction:
                yield
                return
            self.refresh()
            self.db.execute("BEGIN")
            try:
                self.refresh()
                yield
            finally:
                self.db.execute("COMMIT")

    def _load_vectors(self) -> VectorIndex:
        snapshot = self.path / FAISS_NAME
        for _ in range(5):
            pruned = read_state(self.db).get("pruned_through", 0)
            vectors = self._read_snapshot(snapshot)
            self.db.execute("BEGIN")
            try:
                state = read_state(self.db)
                if state.get("pruned_through", 0) != pruned:
                    continue  # tombstones were pruned while we read the file: read the newer one
                if vectors.mmapped and self._has_backlog(vectors):
                    vectors = VectorIndex.load(snapshot, self.factory, mmap=False)
                self._backlog = self._replay(vectors, since_generation=None)
                self._generation = state["generation"]
                self._data_version = self._current_data_version()
                return vectors
            finally:
                self.db.execute("COMMIT")
        raise IndexFormatError(f"{self.path}: could not get a consistent snapshot (a writer kept pruning)")

    def _read_snapshot(self, snapshot: Path) -> VectorIndex:
        if snapshot.is_file():
            mmap = self._mmap
            if mmap is None:
                mmap = self.read_only and snapshot.stat().st_size >= MMAP_THRESHOLD_BYTES
            try:
                vectors = VectorIndex.load(snapshot, self.factory, mmap=mmap)
            except RuntimeError as exc:
                log.warning("%s is unreadable (%s); rebuilding it from %s", snapshot, str(exc).strip()[-200:],
                            SQLITE_NAME)
            else:
                if vectors.dim != self.dim:
                    raise IndexFormatError(f"{snapshot} holds {vectors.dim}-d vectors, the manifest says {self.dim}")
                return vectors
        elif self.manifest.get("snapshot", {}).get("vectors"):
            log.warning("%s is missing; rebuilding it from %s", snapshot, SQLITE_NAME)
        return VectorIndex.create(self.factory, self.dim)

    def _has_backlog(self, vectors: VectorIndex) -> bool:
        newer = self.db.execute("SELECT EXISTS(SELECT 1 FROM vectors WHERE id > ?)", [vectors.max_id]).fetchone()[0]
        dead = self.db.execute("SELECT EXISTS(SELECT 1 FROM tombstones)").fetchone()[0]
        return bool(newer or dead)

    def _current_data_version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def _replay(self, vectors: VectorIndex, since_generation: int | None) -> int:
        """Bring `vectors` up to the committed state: remove tombstoned ids, add newer vectors; returns the work done."""
        if since_generation is None:
            dead = self.db.execute("SELECT chunk_id FROM tombstones").fetchall()
        else:
            dead = self.db.execute("SELECT chunk_id FROM tombstones WHERE generation > ?", [since_generation]).fetchall()
        vectors.remove(np.array([row[0] for row in dead], dtype=np.int64))
        done = len(dead)
        for ids, matrix in self._vector_batches(after=vectors.max_id):
            vectors.add(ids, matrix)
            done += len(ids)
        return done

    def _vector_batches(self, after: int = -1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = after
        while True:
            rows = self.db.execute("SELECT id, vector FROM vectors WHERE id > ? ORDER BY id LIMIT ?",
                                   [last, _BATCH]).fetchall()
            if not rows:
                return
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), self.dim)
            yield ids, matrix
            last = int(ids[-1])

    # ------------------------------------------------------------------ reading
    def refresh(self) -> bool:
        """Catch up with commits made by a writer since the last call; True when anything changed."""
        if not self.read_only:
            return False
        with self._lock:
            version = self._current_data_version()
            if version == self._data_version:
                return False
            self._data_version = version
            own = not self.db.conn.in_transaction
            if own:
                self.db.execute("BEGIN")
            try:
                state = read_state(self.db)
                if state["generation"] == self._generation:
                    return False
                reload = state.get("pruned_through", 0) > self._generation or self.vectors.mmapped
                if reload and not own:  # reloading reads index.faiss: not inside a pinned snapshot
                    self._data_version = -1
                    return False
                if not reload:
                    self._replay(self.vectors, since_generation=self._generation)
                    self._generation = state["generation"]
            finally:
                if own:
                    self.db.execute("COMMIT")
            if reload:
                self.vectors = self._load_vectors()
            return True

    def search(self, vectors: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None,
               selector: Selector | None = None, nprobe: int | None = None,
               ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner-product search of normalised query `vectors` [q, dim] -> (scores, ids), each [q, k].

        Rows with fewer than k hits are padded with id -1 and score -inf. `allowed_ids` (or a
        `selector` made by `self.vectors.selector`) restricts the search to those chunk ids inside
        FAISS, not by filtering afterwards; `nprobe` / `ef_search` override the IVF / HNSW defaults.
        """
        with self._lock:
            self.refresh()
            return self.vectors.search(np.atleast_2d(vectors), int(k), allowed_ids, selector=selector,
                                       nprobe=nprobe, ef_search=ef_search)

    @property
    def generation(self) -> int:
        """The commit generation FAISS reflects (changes with every write)."""
        return self._generation

    def get_chunks(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Chunks by id, in the order given; unknown ids (and -1 padding) are skipped."""
        wanted = [int(i) for i in ids if int(i) >= 0]
        found: dict[int, dict[str, Any]] = {}
        with self._lock:
            for part in in_batches(wanted):
                rows = self.db.execute(
                    'SELECT c.id, c.doc_id, c.position, c.start, c."end", c.text, d.metadata FROM chunks c '
                    f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({placeholders(len(part))})", list(part)
                ).fetchall()
                for cid, doc_id, position, start, end, text, metadata in rows:
                    found[cid] = {"id": cid, "doc_id": doc_id, "position": position, "start": start, "end": end,
                                  "text": text, "metadata": json.loads(metadata)}
        return [found[i] for i in wanted if i in found]

    def get_documents(self, doc_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Documents by id, in the order given (unknown ids skipped).

        Keys: id, metadata, source, added_at, text (rebuilt from the chunks), chunk_ids.
        """
        out = []
        with self._lock:
            for doc_id in doc_ids:
                row = self.db.execute("SELECT metadata, source, added_at FROM documents WHERE id = ?",
                                      [doc_id]).fetchone()
                if row is None:
                    continue
                chunks = self.db.execute(
                    'SELECT id, start, "end", text FROM chunks WHERE doc_id = ? ORDER BY position', [doc_id]
                ).fetchall()
                out.append({"id": doc_id, "metadata": json.loads(row[0]), "source": row[1], "added_at": row[2],
                            "text": stitch(span for _, *span in chunks), "chunk_ids": [c[0] for c in chunks]})
        return out

    def reconstruct(self, ids: Sequence[int]) -> np.ndarray:
        """The stored (exact, normalised) vectors of chunk `ids` as [n, dim]; KeyError for unknown ids
        (read them inside `snapshot()` when the ids came from an earlier read)."""
        found, matrix = self.stored_vectors(ids)
        if len(found) != len(ids):
            missing = sorted(set(int(i) for i in ids) - set(found.tolist()))
            raise KeyError(f"no vector for chunk id(s) {missing[:10]}")
        return matrix

    def stored_vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(the ids of `ids` that have a stored vector, in the order given; their vectors [n, dim])."""
        wanted = [int(i) for i in ids]
        found: dict[int, bytes] = {}
        with self._lock:
            for part in in_batches(wanted):
                found.update(self.db.execute(f"SELECT id, vector FROM vectors WHERE id IN ({placeholders(len(part))})",
                                             list(part)).fetchall())
        present = [i for i in wanted if i in found]
        if not present:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        matrix = np.frombuffer(b"".join(found[i] for i in present), dtype=np.float32).reshape(len(present), self.dim)
        return np.asarray(present, dtype=np.int64), matrix

    def keyword_search(self, query: str, k: int) -> list[tuple[str, float]]:
        """BM25 (FTS5, stemmed: `indexer.keywords`) over whole documents: [(doc id, score)], best first."""
        with self._lock:
            hits = keyword_search(self.db, query, k)
            doc_of: dict[int, str] = {}
            for part in in_batches([key for key, _ in hits]):
                doc_of.update(self.db.execute(f"SELECT id, doc_id FROM chunks WHERE id IN ({placeholders(len(part))})",
                                              list(part)).fetchall())
        return [(doc_of[key], score) for key, score in hits if key in doc_of]

    def chunk_ids_of(self, doc_ids: Sequence[str]) -> dict[str, list[int]]:
        """The chunk ids of each of `doc_ids` that has chunks, in position order."""
        found: dict[str, list[int]] = {}
        with self._lock:
            for part in in_batches(list(doc_ids)):
                for doc_id, chunk_id in self.db.execute(
                        f"SELECT doc_id, id FROM chunks WHERE doc_id IN ({placeholders(len(part))}) ORDER BY position",
                        list(part)).fetchall():
                    found.setdefault(doc_id, []).append(chunk_id)
        return found

    def chunk_ids_where(self, where_sql: str, params: Sequence[Any] = ()) -> np.ndarray:
        """Ids of the chunks whose document matches `where_sql`, a parametrised clause over `documents d`.

        Example: `store.chunk_ids_where("d.source = ?", ["notes.md"])`; metadata filters compile to
        such clauses (`indexer.filters.compile_filter`).
        """
        with self._lock:
            rows = self.db.execute(
                f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {where_sql}", list(params)
            ).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def counts(self) -> dict[str, int]:
        """Committed documents and chunks, read from SQLite."""
        with self._lock:
            documents = self.db.execute("SELECT count(*) FROM documents").fetchone()[0]
            chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return {"documents": documents, "chunks": chunks}

    def stats(self) -> dict[str, Any]:
        """Counts, settings and sizes on disk of the index."""
        with self._lock:
            self.refresh()
            files = {p.name: p.stat().st_size for p in sorted(self.path.iterdir())
                     if p.name in (MANIFEST_NAME, FAISS_NAME, SQLITE_NAME, f"{SQLITE_NAME}-wal")}
            manifest = self.manifest
            return {
                "path": str(self.path),
                **self.counts(),
                "vectors": self.vectors.ntotal,
                "dim": self.dim,
                "factory": self.factory,
                "trained": not self.vectors.needs_training(),
                "model": manifest["encoder"].get("model"),
                "fingerprint": manifest["encoder"].get("fingerprint"),
                "chunking": manifest["chunking"],
                "document_instruction": manifest.get("document_instruction"),
                "format_version": manifest["format_version"],
                "generation": self._generation,
                "bytes": files,
            }

    # ------------------------------------------------------------------ writer side
    def apply(self, added_ids: np.ndarray, vectors: np.ndarray, removed_ids: np.ndarray, generation: int) -> None:
        """Mirror a batch the writer has just committed to SQLite into the in-memory FAISS index."""
        with self._lock:
            self.vectors.remove(removed_ids)
            self.vectors.add(added_ids, vectors)
            self._generation = generation
            self._backlog += len(added_ids) + len(removed_ids)
        self.train_if_ready()

    def _train(self) -> None:
        need = min_train_size(self.factory)
        size = min(self.vectors.ntotal, max(2 * need, 65_536))
        blobs = self.db.execute("SELECT vector FROM vectors ORDER BY random() LIMIT ?", [size]).fetchall()
        sample = np.frombuffer(b"".join(row[0] for row in blobs), dtype=np.float32).reshape(len(blobs), self.dim)
        log.info("training %s on %d vectors", self.factory, len(sample))
        self.vectors.train(sample, self._vector_batches)
        self._backlog = self.vectors.ntotal

    @property
    def snapshot_stale(self) -> bool:
        """Whether index.faiss lags the committed state (or is missing)."""
        return self._backlog > 0 or not (self.path / FAISS_NAME).is_file()

    def train_if_ready(self) -> None:
        """Train an untrained IVF/PQ index once enough vectors are committed."""
        with self._lock:
            if self.vectors.needs_training() and self.vectors.ntotal >= min_train_size(self.factory):
                self._train()

    def snapshot_due_on_close(self) -> bool:
        """Whether closing should write index.faiss: it is missing, or replaying what changed since the
        last snapshot would cost the next open more than a tenth of the index."""
        return not (self.path / FAISS_NAME).is_file() or 10 * self._backlog >= max(self.vectors.ntotal, 1)

    def snapshot_due(self) -> bool:
        """Whether enough changed since the last snapshot to write one.

        The threshold grows with the index, so snapshots during a bulk build cost about twice the
        final file size in writes, while replay on open stays under half of the vectors.
        """
        return self._backlog >= max(50_000, self.vectors.ntotal // 2)

    def save_snapshot(self) -> None:
        """Write index.faiss atomically, update the manifest's counts, prune the tombstones it covers."""
        with self._lock:
            if len(self.vectors.hidden):  # deleted ids this index type cannot remove: rebuild it
                self.vectors = VectorIndex.create(self.factory, self.dim)
                self._replay(self.vectors, since_generation=None)
                self.train_if_ready()
            tmp = self.path / f".{FAISS_NAME}.tmp"
            self.vectors.save(tmp)
            replace_atomically(tmp, self.path / FAISS_NAME)
            generation = self._generation
            self.manifest["counts"] = self.counts()
            self.manifest["snapshot"] = {"generation": generation, "vectors": self.vectors.ntotal,
                                         "trained": not self.vectors.needs_training()}
            write_manifest(self.path, self.manifest)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("DELETE FROM tombstones WHERE generation <= ?", [generation])
                self.db.execute("UPDATE state SET value = ? WHERE key = 'pruned_through'", [generation])
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self._backlog = 0
