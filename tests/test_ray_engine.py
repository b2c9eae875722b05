"""`--engine ray`: the same index as the local engine, shards committed once, resume, bad input.

Shard format tests run everywhere; the Ray tests need `ray[data]` (`pip install
'llm2vec-retriever[ray]'`) and share one local Ray instance (2 CPUs) per module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from indexer import (Document, Indexer, IndexerError, IndexStore, LLM2VecEncoder, RayOptions, ShardError,
                     build_with_ray)
from indexer.cli import index as index_cli
from indexer.ingest import iter_documents
from indexer.ray_engine import check_reachable, ray_session, require_ray
from indexer.shards import (ShardSettings, commit_shard, encode_shard, indexed_keys, parse_shard, read_shard,
                            shard_bytes, shard_path, write_shard)
from indexer.writer import AddStats
from tiny_models import CORPUS

WORDS = " ".join(CORPUS[:6]).split()
CHUNKING = {"chunk_tokens": 24, "overlap": 6, "batch_size": 8}


def text_of(i: int, n_words: int = 30) -> str:
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(n_words)) + f" doc{i}."


def records(ids: range) -> list[dict]:
    return [{"_id": f"r{i}", "title": f"T{i}", "text": text_of(i), "year": 2000 + i % 3} for i in ids]


def write_jsonl(path: Path, rows: list[dict], extra: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module; workers can import this test module (DyingEncoder)."""
    ray = pytest.importorskip("ray", reason="the Ray engine needs ray[data]: pip install 'llm2vec-retriever[ray]'")
    pytest.importorskip("ray.data", reason="the Ray engine needs ray[data]: pip install 'llm2vec-retriever[ray]'")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM")}
    path = [str(Path(__file__).parent), *filter(None, [saved["PYTHONPATH"]])]
    os.environ.update(PYTHONPATH=os.pathsep.join(path), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def rows_of(path: Path) -> dict[str, list]:
    conn = sqlite3.connect(path / "meta.sqlite")
    try:
        # chunk ids follow commit order, which a local build's read-ahead groups by length
        chunks = conn.execute('SELECT id, doc_id, position, start, "end", text FROM chunks ORDER BY doc_id, position')
        rows = chunks.fetchall()
        return {
            "documents": conn.execute("SELECT id, content_hash, metadata FROM documents ORDER BY id").fetchall(),
            "chunks": [row[1:] for row in rows],
            "chunk_ids": [row[0] for row in rows],
            "shards": conn.execute("SELECT name FROM shards").fetchall(),
        }
    finally:
        conn.close()


def assert_same_index(local: Path, ray_built: Path) -> None:
    """Same documents, same chunks and spans, vectors equal within float tolerance, FAISS = SQLite
    (chunk ids follow commit order, which differs: matched by document and position)."""
    a, b = rows_of(local), rows_of(ray_built)
    assert a["documents"] == b["documents"] and a["chunks"] == b["chunks"] and a["chunks"]
    with IndexStore.open(local) as x, IndexStore.open(ray_built) as y:
        assert np.allclose(x.reconstruct(a["chunk_ids"]), y.reconstruct(b["chunk_ids"]), atol=1e-5)
        assert sorted(y.vectors.ids().tolist()) == sorted(b["chunk_ids"])
    assert not (ray_built / "shards").exists()  # every shard file was committed and removed


def local_index(path: Path, tiny_llama: Path, sources: list[Path]) -> Path:
    with Indexer(path, model=str(tiny_llama), **CHUNKING) as indexer:
        indexer.add_documents(iter_documents(sources), errors="skip")
    return path


# ---------------------------------------------------------------------------- shards (no Ray)
def docs_of(ids: range) -> list[Document]:
    return [Document(f"s{i}", text_of(i), {"n": i}) for i in ids]


def test_shard_roundtrip_truncation_corruption_and_settings(tmp_path, tiny_encoder):
    settings = ShardSettings(tiny_encoder.fingerprint(), 24, 6, None)
    shard = encode_shard(tiny_encoder, docs_of(range(4)), [("x.jsonl:3", "not valid JSON")], settings, batch_size=8)
    assert len(shard.vectors) == sum(map(len, shard.chunks)) > 4
    path = write_shard(tmp_path, shard.name, shard_bytes(shard))
    back = read_shard(path, settings)
    assert (back.name, back.documents, back.chunks, back.skipped) == (shard.name, shard.documents, shard.chunks,
                                                                       shard.skipped)
    assert np.array_equal(back.vectors, shard.vectors)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ShardError, match=f"{path}.*truncated"):
        read_shard(path)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ShardError, match=f"{path} is corrupt"):
        read_shard(path)
    path.write_bytes(data)
    with pytest.raises(ShardError, match="encoded with"):
        read_shard(path, ShardSettings(tiny_encoder.fingerprint(), 32, 6, None))
    with pytest.raises(ShardError, match="not a shard"):
        parse_shard(b"\x00" * 16, "junk.safetensors")


def test_a_shard_commits_once_whole_and_like_the_local_engine(tmp_path, tiny_encoder):
    docs = docs_of(range(6))
    with Indexer(tmp_path / "local", tiny_encoder, **CHUNKING) as indexer:
        indexer.add_documents(docs)
    with Indexer(tmp_path / "idx", tiny_encoder, **CHUNKING) as indexer:
        settings = ShardSettings.of(indexer)
        first = encode_shard(tiny_encoder, docs[:3], [], settings, batch_size=8)
        second = encode_shard(tiny_encoder, [*docs[3:], docs[0]], [], settings, batch_size=8)  # s0 again: a duplicate
        stats, seen = AddStats(), set()
        commit_shard(indexer, first, seen, stats)
        commit_shard(indexer, second, seen, stats)
        assert (stats.added, stats.chunks) == (6, indexer.store.counts()["chunks"])
        assert stats.skipped == [("s0", "document 's0' appears twice in the sources: the first copy is kept")]
        assert rows_of(tmp_path / "local")["chunks"] == rows_of(tmp_path / "idx")["chunks"]
        before = indexer.store.counts()
        with pytest.raises(IndexerError, match="already committed"):
            commit_shard(indexer, first, set(), AddStats())
        assert indexer.store.counts() == before and indexer.committed_shards() == {first.name, second.name}

        # encoded against the index, a shard skips the text it already holds; metadata changes still apply
        relabelled = [Document("s1", docs[1].text, {"n": 99}), docs[2]]
        third = encode_shard(tiny_encoder, relabelled, [], settings, known=indexed_keys(indexer), batch_size=8)
        assert third.encoded == [False, False] and len(third.vectors) == 0
        stats = AddStats()
        commit_shard(indexer, third, set(), stats)
        assert (stats.metadata_updated, stats.unchanged, stats.chunks) == (1, 1, 0)
        # ... but if the index lost that text since, the shard is refused whole
        indexer.delete(ids=["s1"])
        before = indexer.store.counts()
        with pytest.raises(ShardError, match="index has changed since"):
            commit_shard(indexer, dataclasses.replace(third, name="again"), set(), AddStats())
        assert indexer.store.counts() == before and "again" not in indexer.committed_shards()
        assert indexer.store.get_documents(["s2"])[0]["metadata"] == {"n": 2}


# ---------------------------------------------------------------------------- bad input (no cluster)
def test_missing_ray_is_a_clear_error(tmp_path, monkeypatch, tiny_llama):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(IndexerError, match=r"pip install 'llm2vec-retriever\[ray\]'"):
        require_ray()
    corpus = write_jsonl(tmp_path / "c.jsonl", records(range(2)))
    result = CliRunner().invoke(index_cli, ["build", str(tmp_path / "idx"), str(corpus), "--engine", "ray",
                                            "--model", str(tiny_llama)])
    assert result.exit_code == 1 and "llm2vec-retriever[ray]" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "idx").exists()  # failed before loading the model or creating the index


def test_ray_options_need_the_ray_engine(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", records(range(2)))
    result = CliRunner().invoke(index_cli, ["build", str(tmp_path / "idx"), str(corpus), "--concurrency", "4"])
    assert result.exit_code == 2 and "--concurrency only apply with --engine ray" in result.output
    with pytest.raises(ValueError, match="concurrency"):
        RayOptions(concurrency=0)


def test_unreachable_cluster_fails_fast_and_clearly(tmp_path, monkeypatch, tiny_llama):
    ray = pytest.importorskip("ray", reason="the Ray engine needs ray[data]: pip install 'llm2vec-retriever[ray]'")
    started = time.perf_counter()
    with pytest.raises(IndexerError, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:9'.*ray start --head"):
        check_reachable("127.0.0.1:9", timeout=2)  # nothing listens: refused at once
    if not ray.is_initialized():  # unroutable: a TCP timeout, or (behind a proxy that answers) Ray's bounded retries
        with pytest.raises(IndexerError, match="cannot (reach|connect to) (the )?Ray"):
            with ray_session(RayOptions(address="10.255.255.1:6379", connect_timeout=2)):
                pass
    assert time.perf_counter() - started < 15
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    corpus = write_jsonl(tmp_path / "c.jsonl", records(range(2)))
    result = CliRunner().invoke(index_cli, ["build", str(tmp_path / "idx"), str(corpus), "--engine", "ray",
                                            "--ray-address", "127.0.0.1:9", "--model", str(tiny_llama)])
    assert result.exit_code == 1 and "cannot reach the Ray cluster" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "idx").exists()


# ---------------------------------------------------------------------------- on a local Ray instance
def test_ray_engine_builds_the_same_index_as_the_local_engine(tmp_path, ray_local, tiny_llama):
    """JSONL (a bad line, an empty text), text files and Parquet; a duplicate id across files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = write_jsonl(tmp_path / "a.jsonl", [*records(range(7)), {"_id": "empty", "text": "  "}], "{bad\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "one.md").write_text("# One\n\n" + text_of(40, 60))
    (notes / "two.txt").write_text(text_of(41, 12))
    second = records(range(7, 12)) + [{"_id": "r3", "title": "dup", "text": "a second r3"}]
    local = local_index(tmp_path / "local", tiny_llama, [first, notes, write_jsonl(tmp_path / "b.jsonl", second)])
    parquet = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist(second), parquet, row_group_size=2)

    args = ["build", str(tmp_path / "ray"), str(first), str(notes), str(parquet), "--engine", "ray", "--model",
            str(tiny_llama), "--chunk-tokens", "24", "--overlap", "6", "--batch-size", "8", "--shard-docs", "3",
            "--concurrency", "1"]
    result = CliRunner().invoke(index_cli, args)
    assert result.exit_code == 0, result.output
    assert "14 documents indexed (14 new" in result.output and "7 encoded, 0 reused" in result.output
    assert "not valid JSON" in result.output and "appears twice" in result.output and "empty" in result.output
    assert_same_index(local, tmp_path / "ray")
    assert len(rows_of(tmp_path / "ray")["shards"]) >= 5


class DyingEncoder:
    """Loads the tiny model whose worker process dies when asked to encode a text containing POISON."""

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir

    def __call__(self) -> LLM2VecEncoder:
        encoder = LLM2VecEncoder.from_pretrained(self.model_dir)
        encode = encoder.encode

        def dying_encode(texts, **kwargs):
            if any("POISON" in text for text in texts):
                os._exit(1)
            return encode(texts, **kwargs)

        encoder.encode = dying_encode
        return encoder


def test_a_dying_worker_fails_the_build_clearly_and_nothing_is_half_committed(tmp_path, ray_local, tiny_llama):
    rows = records(range(6))
    rows[4]["text"] += " POISON"
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    with Indexer(tmp_path / "ray", model=str(tiny_llama), **CHUNKING) as indexer:
        with pytest.raises(ShardError, match=r"shard \w+ \(documents 'r3' \.\. 'r5'\): its worker died 1 time\(s\) "
                                             r"while encoding it.*rerun the same command to resume"):
            build_with_ray(indexer, [corpus], options=RayOptions(shard_docs=3, max_attempts=1),
                           load_encoder=DyingEncoder(str(tiny_llama)))
        committed = indexer.committed_shards()
        counts = rows_of(indexer.path)
        assert len(committed) <= 1 and len(counts["documents"]) == 3 * len(committed)
        assert set(counts["chunk_ids"]) == set(indexer.store.vectors.ids().tolist())


def test_an_interrupted_build_resumes_skipping_committed_and_reusing_stored_shards(tmp_path, ray_local, tiny_llama,
                                                                                   tiny_encoder):
    corpus = write_jsonl(tmp_path / "c.jsonl", records(range(12)))
    local = local_index(tmp_path / "local", tiny_llama, [corpus])
    options = RayOptions(shard_docs=3)  # shards: r0-2, r3-5, r6-8, r9-11

    committed: list[int] = []

    def interrupt_after_two_shards(n: int) -> None:  # as a Ctrl-C or a crash of this process would
        committed.append(n)
        if len(committed) == 2:
            raise KeyboardInterrupt

    with Indexer(tmp_path / "ray", model=str(tiny_llama), **CHUNKING) as indexer:
        with pytest.raises(KeyboardInterrupt):
            build_with_ray(indexer, [corpus], options=options, progress=interrupt_after_two_shards)
        assert len(indexer.committed_shards()) == 2 and indexer.store.counts()["documents"] == 6
        # what a crash between encoding and committing leaves: a whole shard file, and a truncated one
        settings = ShardSettings.of(indexer)
        docs = list(iter_documents([corpus]))
        docs = [Document(d["id"], d["text"], d["metadata"], d["source"]) for d in docs]
        whole = encode_shard(tiny_encoder, docs[9:], [], settings, batch_size=8)
        write_shard(indexer.path / "shards", whole.name, shard_bytes(whole))
        cut = encode_shard(tiny_encoder, docs[6:9], [], settings, batch_size=8)
        data = shard_bytes(cut)
        shard_path(indexer.path / "shards", cut.name).write_bytes(data[: len(data) // 2])

        stats = build_with_ray(indexer, [corpus], options=options)
        assert (stats.shards_skipped, stats.shards_reused, stats.shards_encoded) == (2, 1, 1)
        assert (stats.added, stats.unchanged, stats.documents) == (6, 6, 12)
    assert_same_index(local, tmp_path / "ray")


def test_asking_for_gpus_the_cluster_lacks_fails_fast(tmp_path, ray_local, tiny_encoder):
    corpus = write_jsonl(tmp_path / "c.jsonl", records(range(2)))
    with Indexer(tmp_path / "idx", tiny_encoder, **CHUNKING) as indexer:
        with pytest.raises(IndexerError, match=r"asks for 1 GPU\(s\) but the Ray cluster has 0"):
            build_with_ray(indexer, [corpus], options=RayOptions(num_gpus_per_worker=1))
        assert indexer.store.counts()["documents"] == 0
