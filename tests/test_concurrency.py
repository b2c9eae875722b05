"""Concurrent writers and readers: nothing lost, nothing doubled, no reader sees a half-applied commit."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from indexer import DocumentError, Indexer, IndexLockedError, IndexStore
from retriever import Retriever
from retriever.langchain import LLM2VecVectorStore

WRITERS, PER_WRITER = 6, 100


def _agree(path: Path) -> dict[str, int]:
    """Counts of an index, after checking FAISS and SQLite hold the same chunk ids."""
    with IndexStore.open(path) as store:
        sql_ids = {row[0] for row in store.db.execute("SELECT id FROM chunks").fetchall()}
        vector_ids = {row[0] for row in store.db.execute("SELECT id FROM vectors").fetchall()}
        assert set(store.vectors.ids().tolist()) == sql_ids == vector_ids
        return store.counts()


async def test_async_writers_and_readers_through_the_vector_store(tmp_path: Path) -> None:
    store = LLM2VecVectorStore(DeterministicFakeEmbedding(size=16), tmp_path / "index")
    store.add_texts(["seed"], ids=["seed"])

    async def write(w: int) -> None:
        await store.aadd_texts([f"writer {w} text {i}" for i in range(PER_WRITER)],
                               metadatas=[{"writer": w, "i": i} for i in range(PER_WRITER)],
                               ids=[f"w{w}-{i}" for i in range(PER_WRITER)])

    async def read() -> None:
        for _ in range(10):
            for doc in await store.asimilarity_search("writer 3 text 7", k=5):
                assert doc.page_content.startswith(("writer", "seed"))
            await asyncio.sleep(0)

    await asyncio.gather(*(write(w) for w in range(WRITERS)), *(read() for _ in range(3)))
    docs = store.get_by_ids([f"w{w}-{i}" for w in range(WRITERS) for i in range(PER_WRITER)])
    assert len(docs) == WRITERS * PER_WRITER
    assert all(d.page_content == f"writer {d.metadata['writer']} text {d.metadata['i']}" for d in docs)
    store.close()
    assert _agree(tmp_path / "index") == {"documents": WRITERS * PER_WRITER + 1, "chunks": WRITERS * PER_WRITER + 1}


def test_indexer_shared_by_threads_with_a_retriever_reading(tmp_path: Path, tiny_encoder) -> None:
    path = tmp_path / "index"
    errors: list[BaseException] = []
    with Indexer(path, tiny_encoder) as indexer:
        indexer.add_documents([{"id": "seed", "text": "the first document", "metadata": {"w": -1}}])

        def write(w: int) -> None:
            try:
                for i in range(5):
                    indexer.add_documents([{"id": f"w{w}-{i}-{j}", "text": f"writer {w} batch {i} doc {j}",
                                            "metadata": {"w": w}} for j in range(4)])
                    indexer.delete(ids=[f"w{w}-{i}-0"])
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        def read(stop: threading.Event) -> None:
            try:
                with Retriever.open(path, tiny_encoder) as retriever:
                    while not stop.is_set():
                        for hit in retriever.search("writer batch doc", k=8, mmr=True):
                            assert hit.text
                        retriever.search("writer doc", k=3, filter={"w": {"$ne": 1}})
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        stop = threading.Event()
        readers = [threading.Thread(target=read, args=(stop,)) for _ in range(2)]
        writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join()
        stop.set()
        for thread in readers:
            thread.join()
    assert not errors, errors[:3]
    assert _agree(path) == {"documents": 1 + 4 * 5 * 3, "chunks": 1 + 4 * 5 * 3}


def test_reader_never_sees_a_vanished_chunk_while_a_writer_deletes(tmp_path: Path) -> None:
    """MMR and filtered searches on the store's own connection while one thread deletes and re-adds."""
    store = LLM2VecVectorStore(DeterministicFakeEmbedding(size=16), tmp_path / "index")
    texts = [f"document number {i}" for i in range(40)]
    store.add_texts(texts, metadatas=[{"n": i, "even": i % 2 == 0} for i in range(40)], ids=[str(i) for i in range(40)])
    stop, errors = threading.Event(), []

    def churn() -> None:
        try:
            for round_ in range(30):
                victims = [str(i) for i in range(round_ % 10, 40, 10)]
                store.delete(victims)
                store.add_texts([texts[int(v)] for v in victims],
                                metadatas=[{"n": int(v), "even": int(v) % 2 == 0} for v in victims], ids=victims)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()

    def search() -> None:
        try:
            while not stop.is_set():
                for doc in store.max_marginal_relevance_search("document number 3", k=4, fetch_k=20):
                    assert doc.page_content == texts[int(doc.id)]
                for doc in store.similarity_search("document number 8", k=5, filter={"even": True}):
                    assert doc.metadata["even"] is True and doc.page_content == texts[int(doc.id)]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=churn), threading.Thread(target=search), threading.Thread(target=search)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert not errors, errors[:3]
    assert _agree(tmp_path / "index")["documents"] == 40


def test_a_read_only_reader_sees_one_committed_state(tmp_path: Path, tiny_encoder) -> None:
    """A separate read-only store (another process's view) while the writer deletes and re-adds."""
    path = tmp_path / "index"
    texts = {f"d{i}": f"text of document {i} about topic {i % 3}" for i in range(30)}
    with Indexer(path, tiny_encoder) as indexer:
        indexer.add_documents([{"id": k, "text": v, "metadata": {"topic": int(k[1:]) % 3}} for k, v in texts.items()])
        stop, errors = threading.Event(), []

        def search() -> None:
            try:
                with Retriever.open(path, tiny_encoder) as retriever:
                    query = retriever.encode_queries(["document about topic"])
                    while not stop.is_set():
                        for hits in (retriever.search_by_vector(query, 10, mmr=True, fetch_k=30)[0],
                                     retriever.search_by_vector(query, 5, filter={"topic": 1})[0],
                                     retriever.search("topic", 5, hybrid=True)):
                            for hit in hits:
                                assert hit.text == texts[hit.doc_id]
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        reader = threading.Thread(target=search)
        reader.start()
        for round_ in range(15):
            victims = [f"d{i}" for i in range(round_ % 5, 30, 5)]
            indexer.delete(ids=victims)
            indexer.add_documents([{"id": v, "text": texts[v], "metadata": {"topic": int(v[1:]) % 3}}
                                   for v in victims])
        stop.set()
        reader.join()
    assert not errors, errors[:3]


def test_duplicate_ids_in_one_call_are_refused(tmp_path: Path) -> None:
    store = LLM2VecVectorStore(DeterministicFakeEmbedding(size=8), tmp_path / "index")
    with pytest.raises(ValueError, match="'a' appears 2 times"):
        store.add_texts(["first text", "second text"], ids=["a", "a"])
    assert store.get_by_ids(["a"]) == []
    store.add_texts(["first text"], ids=["a"])
    assert [d.page_content for d in store.get_by_ids(["a"])] == ["first text"]
    store.close()


def test_commit_refuses_a_batch_with_one_id_twice(tmp_path: Path, tiny_encoder) -> None:
    from indexer.chunking import Chunk
    from indexer.documents import as_document
    from indexer.pipeline import EncodedBatch

    with Indexer(tmp_path / "index", tiny_encoder) as indexer:
        docs = [as_document({"id": "a", "text": t}) for t in ("one", "two")]
        chunks = [[Chunk(0, 0, len(d.text), d.text)] for d in docs]
        with pytest.raises(DocumentError, match="'a'"):
            indexer.commit(EncodedBatch(docs, chunks, np.eye(2, tiny_encoder.dim, dtype=np.float32)))
        assert indexer.store.counts() == {"documents": 0, "chunks": 0}


def _hold_lock(path: str, ready, release) -> None:
    from indexer.lock import WriteLock

    lock = WriteLock(Path(path) / "write.lock")
    lock.acquire()
    ready.set()
    release.wait(30)
    lock.release()


def test_a_second_process_gets_a_clear_error_or_waits(tmp_path: Path, tiny_encoder) -> None:
    path = tmp_path / "index"
    with Indexer(path, tiny_encoder):
        pass
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(IndexLockedError, match=r"--wait"):
            Indexer(path, tiny_encoder)
        started = time.monotonic()
        with pytest.raises(IndexLockedError, match="still"):
            Indexer(path, tiny_encoder, wait=0.5)
        assert time.monotonic() - started >= 0.5
        threading.Timer(0.3, release.set).start()
        with Indexer(path, tiny_encoder, wait=20) as indexer:
            assert indexer.store.counts()["documents"] == 0
    finally:
        release.set()
        holder.join(30)
