"""`indexer.Indexer`: adding, upserting, deleting, crash safety, bad input, and `l2v index`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from indexer import (DocumentError, EncodedBatch, EncoderMismatchError, FilterError, Indexer, IndexFormatError,
                     IndexLockedError, IndexStore, LLM2VecEncoder, UnknownFieldError, encode_documents)
from indexer.chunking import Chunk, chunk_text
from indexer.documents import Document, as_document
from indexer.manifest import FORMAT_VERSION
from indexer.cli import index as index_cli
from tiny_models import CORPUS

WORDS = " ".join(CORPUS[:6]).split()


def text_of(i: int, n_words: int = 40) -> str:
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(n_words)) + f" doc{i}."


def make_docs(n: int) -> list[dict]:
    return [{"id": f"d{i}", "text": text_of(i), "metadata": {"year": 2000 + i % 3, "tag": "even" if i % 2 == 0 else "odd"}}
            for i in range(n)]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run ~20x faster on one thread when the machine's cores are busy."""
    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(threads[0])
    faiss.omp_set_num_threads(threads[1])


def open_indexer(path: Path, tiny_encoder: LLM2VecEncoder, **kwargs) -> Indexer:
    return Indexer(path, tiny_encoder, chunk_tokens=kwargs.pop("chunk_tokens", 24), overlap=kwargs.pop("overlap", 6),
                   batch_size=kwargs.pop("batch_size", 64), **kwargs)


def sqlite_ids(path: Path) -> set[int]:
    conn = sqlite3.connect(path / "meta.sqlite")
    try:
        return {row[0] for row in conn.execute("SELECT id FROM chunks")}
    finally:
        conn.close()


def faiss_ids(store: IndexStore) -> set[int]:
    store.refresh()
    ids = store.vectors.ids()
    assert len(ids) == len(set(ids.tolist())), "an id is in FAISS twice"
    return set(ids.tolist())


def assert_consistent(path: Path) -> None:
    """FAISS (after replay) and SQLite agree: every chunk once, nothing else."""
    with IndexStore.open(path) as store:
        assert faiss_ids(store) == sqlite_ids(path)
        assert len(store) == len(sqlite_ids(path))


# ---------------------------------------------------------------------------- chunking
def test_chunks_are_token_windows_with_overlap_and_exact_spans(tiny_encoder):
    text = text_of(1, 200)
    chunks = chunk_text(text, tiny_encoder.tokenizer, 20, 5)
    offsets = tiny_encoder.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(chunks) == 1 + -(-(len(offsets) - 20) // 15)
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
    # neighbours share exactly `overlap` tokens: the next chunk starts 15 tokens after this one
    starts = [offsets[15 * i][0] for i in range(1, len(chunks))]
    assert [c.start for c in chunks[1:]] == starts
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


# ---------------------------------------------------------------------------- writing
def test_add_search_and_documents_roundtrip(tmp_path, tiny_encoder):
    docs = make_docs(12)
    with open_indexer(tmp_path / "idx", tiny_encoder) as indexer:
        stats = indexer.add_documents(docs)
        assert (stats.added, stats.replaced, stats.unchanged) == (12, 0, 0)
        assert stats.chunks == indexer.store.counts()["chunks"] > 12
    with IndexStore.open(tmp_path / "idx") as store:
        manifest = store.manifest
        assert manifest["format_version"] == FORMAT_VERSION
        assert manifest["encoder"]["fingerprint"] == tiny_encoder.fingerprint()
        assert (manifest["metric"], manifest["normalized"], manifest["factory"]) == ("ip", True, "Flat")
        assert manifest["counts"] == {"documents": 12, "chunks": stats.chunks}
        assert manifest["document_instruction"] is None
        # a chunk's own vector finds it first, with cosine 1
        chunk = store.get_chunks([5])[0]
        query = tiny_encoder.encode([chunk["text"]], normalize=True)
        scores, ids = store.search(query, 3)
        assert ids[0, 0] == 5 and scores[0, 0] == pytest.approx(1.0, abs=1e-4)
        assert np.allclose(store.reconstruct([5])[0], query[0], atol=1e-5)
        # documents come back whole, rebuilt from their overlapping chunks
        back = store.get_documents(["d3", "nope", "d0"])
        assert [d["id"] for d in back] == ["d3", "d0"]
        assert back[0]["text"] == docs[3]["text"] and back[0]["metadata"] == docs[3]["metadata"]


def test_readding_skips_unchanged_replaces_changed_updates_metadata(tmp_path, tiny_encoder):
    docs = make_docs(6)
    with open_indexer(tmp_path / "idx", tiny_encoder) as indexer:
        indexer.add_documents(docs)
        old_chunks = {c["id"] for c in indexer.store.get_chunks(range(1000)) if c["doc_id"] == "d1"}
        docs[1] = {**docs[1], "text": "completely new text about a lazy dog"}
        docs[2] = {**docs[2], "metadata": {"year": 1999}}
        stats = indexer.upsert(docs)
        assert (stats.added, stats.replaced, stats.metadata_updated, stats.unchanged) == (0, 1, 1, 4)
        assert stats.chunks == 1
        new = indexer.store.get_documents(["d1", "d2"])
        assert new[0]["text"] == "completely new text about a lazy dog"
        assert new[1]["metadata"] == {"year": 1999}
        assert not old_chunks & {c["id"] for c in indexer.store.get_chunks(range(1000))}
        with pytest.raises(DocumentError, match="already indexed"):
            indexer.add_documents([{**docs[1], "text": "other"}], on_existing="error")
        assert indexer.add_documents([{**docs[1], "text": "other"}], on_existing="skip").unchanged == 1
    assert_consistent(tmp_path / "idx")


def test_delete_by_id_and_by_metadata(tmp_path, tiny_encoder):
    with open_indexer(tmp_path / "idx", tiny_encoder) as indexer:
        indexer.add_documents(make_docs(9))
        assert indexer.delete(ids=["d0", "missing"]) == 1
        assert indexer.delete(where={"year": 2001, "tag": "odd"}) == 2  # d1, d7
        assert indexer.delete(where={"year": {"$in": [2002, 1990]}}) == 3  # d2, d5, d8
        remaining = {d["id"] for d in indexer.store.get_documents([f"d{i}" for i in range(9)])}
        assert remaining == {"d3", "d4", "d6"}
        with pytest.raises(FilterError, match="unknown operator"):
            indexer.delete(where={"year": {"$like": 1}})
        with pytest.raises(UnknownFieldError, match="'yaer'"):
            indexer.delete(where={"yaer": 2003})
    assert_consistent(tmp_path / "idx")


def test_bad_documents_are_clear_errors_and_nothing_is_lost(tmp_path, tiny_encoder):
    with open_indexer(tmp_path / "idx", tiny_encoder) as indexer:
        indexer.add_documents(make_docs(3))
        before = indexer.store.counts()
        cases = [
            ([{"id": "x", "text": "a"}, {"id": "x", "text": "b"}], "appears twice"),
            ([{"id": "y", "text": "fine"}, {"id": "z", "text": "ok", "metadata": {"when": object()}}], "JSON-serialisable"),
            ([{"id": "e", "text": "   "}], "empty"),
            ([{"id": "big", "text": "word " * 2_100_000}], "over the limit"),
            ([{"id": "n", "text": 3}], "must be a string"),
            ([{"id": "m", "text": "x", "metadata": ["not", "a", "dict"]}], "metadata must be a dict"),
        ]
        for docs, message in cases:
            with pytest.raises(DocumentError, match=message):
                indexer.add_documents(docs)
            assert indexer.store.counts() == before  # a list is validated whole before writing
        stats = indexer.add_documents([{"id": "ok", "text": "fine"}, {"id": "e", "text": ""}], errors="skip")
        assert stats.added == 1 and len(stats.skipped) == 1 and "empty" in stats.skipped[0][1]
    assert_consistent(tmp_path / "idx")


def test_documents_without_id_get_a_content_hash_id(tmp_path, tiny_encoder):
    with open_indexer(tmp_path / "idx", tiny_encoder) as indexer:
        indexer.add_documents([{"text": "same words"}, Document("given", "other words")])
        assert indexer.add_documents([{"text": "same words"}]).unchanged == 1
        assert indexer.store.counts()["documents"] == 2


def test_a_build_encodes_documents_of_similar_length_together(tmp_path, tiny_encoder, monkeypatch):
    """Issue 16: a commit group in input order padded short texts to the longest in it (10-15 % of the
    encoder's time on SciFact); documents read ahead are grouped by length, each group committed whole."""
    lengths = [4, 60] * 8  # alternating short and long documents, one chunk each
    docs = [{"id": f"d{i}", "text": text_of(i, n)} for i, n in enumerate(lengths)]
    calls: list[list[str]] = []
    encode = tiny_encoder.encode
    monkeypatch.setattr(tiny_encoder, "encode", lambda texts, **kw: calls.append(list(texts)) or encode(texts, **kw))
    done: list[int] = []
    with open_indexer(tmp_path / "idx", tiny_encoder, chunk_tokens=400, batch_size=2) as indexer:
        stats = indexer.add_documents(docs, progress=done.append)
        assert stats.added == len(docs) and indexer.store.counts()["chunks"] == len(docs)
    assert len(calls) == len(docs) // 2 and all(len(call) == 2 for call in calls)
    for call in calls:  # never a short text beside a long one
        assert max(len(t) for t in call) < 2 * min(len(t) for t in call), call
    assert done == [2] * (len(docs) // 2)  # progress moves as each group is committed
    assert_consistent(tmp_path / "idx")


def test_batches_encoded_elsewhere_commit_to_the_same_index(tmp_path, tiny_encoder):
    """The fan-out path: `encode_documents` anywhere (pure), `Indexer.commit` in the one writer."""
    docs = make_docs(4)
    with open_indexer(tmp_path / "a", tiny_encoder) as direct:
        direct.add_documents(docs)
    batch = encode_documents(tiny_encoder, [as_document(d) for d in docs], chunk_tokens=24, overlap=6)
    with open_indexer(tmp_path / "b", tiny_encoder) as writer:
        writer.commit(batch)
    with IndexStore.open(tmp_path / "a") as a, IndexStore.open(tmp_path / "b") as b:
        # the same chunks and vectors; chunk ids follow commit order, which read-ahead may change
        stored = []
        for store, path in ((a, tmp_path / "a"), (b, tmp_path / "b")):
            ids = sorted(sqlite_ids(path))
            by_place = {(c["doc_id"], c["position"]): (c, v) for c, v in zip(store.get_chunks(ids), store.reconstruct(ids))}
            stored.append(dict(sorted(by_place.items())))
        assert stored[0].keys() == stored[1].keys() and len(stored[0]) > len(docs)
        for (chunk_a, vector_a), (chunk_b, vector_b) in zip(stored[0].values(), stored[1].values()):
            assert {k: v for k, v in chunk_a.items() if k != "id"} == {k: v for k, v in chunk_b.items() if k != "id"}
            assert np.allclose(vector_a, vector_b, atol=1e-5)


# ---------------------------------------------------------------------------- opening
def test_other_encoder_settings_and_second_writer_are_refused(tmp_path, tiny_encoder, tiny_model_factory):
    with open_indexer(tmp_path / "idx", tiny_encoder) as indexer:
        indexer.add_documents(make_docs(2))
        with pytest.raises(IndexLockedError, match="another process"):
            Indexer(tmp_path / "idx", tiny_encoder)
    other = LLM2VecEncoder.from_pretrained(tiny_model_factory("mistral"))
    with pytest.raises(EncoderMismatchError, match="fingerprint"):
        Indexer(tmp_path / "idx", other)
    with pytest.raises(Exception, match="chunk_tokens=24"):
        Indexer(tmp_path / "idx", tiny_encoder, chunk_tokens=30)
    with Indexer.open(tmp_path / "idx") as reopened:  # the manifest's own tiny_encoder
        assert reopened.encoder.fingerprint() == tiny_encoder.fingerprint()
        assert reopened.stats()["documents"] == 2


def test_damaged_or_foreign_index_directories(tmp_path, tiny_encoder):
    path = tmp_path / "idx"
    with open_indexer(path, tiny_encoder) as indexer:
        indexer.add_documents(make_docs(4))
    n_chunks = len(sqlite_ids(path))

    with pytest.raises(IndexFormatError, match="does not exist"):
        IndexStore.open(tmp_path / "nowhere")
    manifest = json.loads((path / "manifest.json").read_text())

    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(IndexFormatError, match="newer version"):
        IndexStore.open(path)
    (path / "manifest.json").write_text(json.dumps(manifest)[:50])
    with pytest.raises(IndexFormatError, match="damaged"):
        IndexStore.open(path)
    (path / "manifest.json").write_text(json.dumps(manifest))

    # the FAISS file is derived: truncated or missing, it is rebuilt from SQLite
    data = (path / "index.faiss").read_bytes()
    (path / "index.faiss").write_bytes(data[: len(data) // 2])
    with IndexStore.open(path) as store:
        assert len(store) == n_chunks
    (path / "index.faiss").unlink()
    with open_indexer(path, tiny_encoder) as indexer:
        assert indexer.store.vectors.ntotal == n_chunks
    assert (path / "index.faiss").is_file()

    assert not (path / "meta.sqlite-wal").exists()  # every connection was closed
    sqlite_bytes = (path / "meta.sqlite").read_bytes()
    (path / "meta.sqlite").write_bytes(sqlite_bytes[:100])
    with pytest.raises(IndexFormatError, match="meta.sqlite"):
        IndexStore.open(path)
    (path / "meta.sqlite").unlink()
    with pytest.raises(IndexFormatError, match="meta.sqlite is missing"):
        Indexer(path, tiny_encoder)
    (path / "meta.sqlite").write_bytes(sqlite_bytes)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("not an index")
    with pytest.raises(IndexFormatError, match="not empty"):
        Indexer(tmp_path / "notes", tiny_encoder)


def abandon(indexer: Indexer) -> None:
    """Stop like a kill -9 would: no snapshot, no cleanup (the OS drops the lock)."""
    indexer.store.close()
    indexer._lock.release()


def test_stale_snapshot_is_replayed_from_sqlite(tmp_path, tiny_encoder):
    """Killed between commits and the next snapshot, index.faiss lags SQLite: opening catches up."""
    path = tmp_path / "idx"
    with open_indexer(path, tiny_encoder) as indexer:
        indexer.add_documents(make_docs(4))
    snapshot = (path / "index.faiss").read_bytes()
    indexer = open_indexer(path, tiny_encoder)
    indexer.add_documents(make_docs(8)[4:])
    indexer.delete(ids=["d0"])
    indexer.upsert([{"id": "d1", "text": "replaced text"}])
    abandon(indexer)
    assert (path / "index.faiss").read_bytes() == snapshot
    assert_consistent(path)
    with IndexStore.open(path) as store:
        assert {c["doc_id"] for c in store.get_chunks(sorted(faiss_ids(store)))} == {f"d{i}" for i in range(1, 8)}
    with open_indexer(path, tiny_encoder) as indexer:  # a writer replays too, and then snapshots
        assert indexer.store.snapshot_stale
    assert (path / "index.faiss").read_bytes() != snapshot
    assert_consistent(path)


def test_reader_sees_commits_while_writer_writes(tmp_path, tiny_encoder):
    path = tmp_path / "idx"
    with open_indexer(path, tiny_encoder) as indexer:
        indexer.add_documents(make_docs(2))
        indexer.store.save_snapshot()
        reader, mapped = IndexStore.open(path), IndexStore.open(path, mmap=True)
        assert mapped.vectors.mmapped and not reader.vectors.mmapped
        before = len(reader)
        indexer.add_documents(make_docs(5)[2:])
        assert len(reader) == len(mapped) == indexer.store.vectors.ntotal > before
        indexer.delete(ids=["d0"])
        indexer.store.save_snapshot()  # prunes tombstones: the reader must reload, not miss the delete
        indexer.delete(ids=["d1"])
        assert faiss_ids(reader) == faiss_ids(mapped) == sqlite_ids(path)
        reader.close()
        mapped.close()


@pytest.mark.parametrize("factory", ["HNSW32", "IVF4,Flat", "IVF4,PQ4x4"])
def test_other_factories_add_delete_and_search(tmp_path, tiny_encoder, factory):
    """Synthetic vectors through `commit` (the fan-out entry point): training, removal, snapshots."""
    rng = np.random.default_rng(0)
    path = tmp_path / "idx"

    def batch(start: int, n: int) -> EncodedBatch:
        vectors = rng.standard_normal((n, tiny_encoder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        docs = [Document(f"s{i}", f"text {i}") for i in range(start, start + n)]
        return EncodedBatch(docs, [[Chunk(0, 0, len(d.text), d.text)] for d in docs], vectors)

    with Indexer(path, tiny_encoder, factory=factory) as indexer:
        first = batch(0, 100)
        indexer.commit(first)
        assert indexer.store.vectors.needs_training() == (factory != "HNSW32")  # too few to train: exact for now
        indexer.commit(batch(100, 600))
        assert not indexer.store.vectors.needs_training()
        indexer.delete(ids=["s0", "s1"])
        _, ids = indexer.store.search(first.vectors[:1], 5)
        assert 0 not in ids  # removed, or hidden where the index cannot remove (HNSW)
        scores, ids = indexer.store.search(first.vectors[2:3], 1)
        assert ids[0, 0] == 2 or factory == "IVF4,PQ4x4"  # PQ: approximate scores
    with IndexStore.open(path) as store:
        assert len(store) == 698 and store.manifest["snapshot"]["trained"]
        assert faiss_ids(store) == sqlite_ids(path)
        _, ids = store.search(first.vectors[:1], 5)
        assert 0 not in ids and 1 not in ids
        allowed = store.chunk_ids_where("d.id IN (?, ?)", ["s5", "s6"])
        _, ids = store.search(first.vectors[5:6], 3, allowed_ids=allowed)
        assert set(ids[0][ids[0] >= 0]) <= {5, 6} and ids[0, 2] == -1


# ---------------------------------------------------------------------------- CLI
def run_cli(*args: str) -> object:
    """`l2v index ...` (the `index` group, which `l2v` mounts)."""
    assert args[0] == "index"
    return CliRunner().invoke(index_cli, [str(a) for a in args[1:]], catch_exceptions=False, prog_name="l2v index")


def test_cli_build_stats_delete_and_bad_input(tmp_path, tiny_llama):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": f"c{i}", "title": f"T{i}", "text": text_of(i),
                                            "metadata": {"year": 2000 + i % 2}}) for i in range(6)) + "\n{bad\n")
    index = tmp_path / "idx"
    result = run_cli("index", "build", index, corpus, "--model", tiny_llama, "--chunk-tokens", 24, "--overlap", 4)
    assert result.exit_code == 0, result.output
    assert "6 documents indexed" in result.output and "skipped 1" in result.output and "not valid JSON" in result.output
    result = run_cli("index", "stats", index, "--json")
    stats = json.loads(result.output)
    assert stats["documents"] == 6 and stats["vectors"] == stats["chunks"] and stats["factory"] == "Flat"
    assert "T3\n\n" in IndexStore.open(index).get_documents(["c3"])[0]["text"]  # BEIR: title + text
    result = run_cli("index", "delete", index, "--filter", "year=2001")
    assert result.exit_code == 0 and "deleted 3 documents" in result.output
    # rebuilding the same sources brings the deleted ones back and skips the rest
    result = run_cli("index", "build", index, corpus)
    assert "3 new" in result.output and "3 unchanged" in result.output
    for args, message in [
        (("index", "build", index, corpus, "--factory", "HNSW32"), "cannot change it"),
        (("index", "build", tmp_path / "new", corpus, "--model", tiny_llama, "--factory", "Bogus"), "cannot build factory"),
        (("index", "stats", tmp_path), "manifest.json is missing"),
        (("index", "delete", index), "give --id and/or --filter/--filter-json"),
    ]:
        result = CliRunner().invoke(index_cli, [str(a) for a in args[1:]])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = CliRunner().invoke(index_cli, ["add", str(index), str(empty)])
    assert result.exit_code == 1 and "empty file" in result.output and "nothing could be read" in result.output


def test_cli_help_teaches_with_examples():
    for command in ("build", "add", "delete", "stats"):
        result = run_cli("index", command, "--help")
        assert result.exit_code == 0 and "Example" in result.output and f"l2v index {command}" in result.output


def test_kill_9_mid_build_then_rerun_gives_exactly_the_right_index(tmp_path, tiny_llama, tiny_encoder):
    corpus = tmp_path / "corpus.jsonl"
    n = 60
    corpus.write_text("".join(json.dumps({"_id": f"k{i}", "text": text_of(i, 30)}) + "\n" for i in range(n)))
    index = tmp_path / "idx"
    command = [sys.executable, "-m", "indexer.cli", "build", str(index), str(corpus), "--model",
               str(tiny_llama), "--chunk-tokens", "16", "--overlap", "4", "--batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    for kill_at in (3, 25):  # kill twice: mid first build, then mid the resumed one
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 90
        committed = 0
        while time.time() < deadline and process.poll() is None:
            if (index / "meta.sqlite").exists():
                try:
                    conn = sqlite3.connect(f"file:{index / 'meta.sqlite'}?mode=ro", uri=True)
                    committed = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
                    conn.close()
                except sqlite3.OperationalError:
                    pass
            if committed >= kill_at:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the build finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert committed < n
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "unchanged" in finished.stderr
    conn = sqlite3.connect(index / "meta.sqlite")
    docs = [row[0] for row in conn.execute("SELECT id FROM documents")]
    per_doc = dict(conn.execute("SELECT doc_id, count(*) FROM chunks GROUP BY doc_id").fetchall())
    conn.close()
    assert sorted(docs) == sorted(f"k{i}" for i in range(n))
    assert per_doc == {f"k{i}": len(chunk_text(text_of(i, 30), tiny_encoder.tokenizer, 16, 4)) for i in range(n)}
    assert_consistent(index)
