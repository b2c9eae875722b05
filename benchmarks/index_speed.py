"""Indexer speed: build throughput, write latency, open time and memory, ANN recall/latency.

Side by side with langchain-community's FAISS vectorstore doing the same operations in the
same run. Storage-side sections use synthetic unit vectors (dim 576, SmolLM2-135M's), so they
measure the index, not the encoder; the build section uses the real encoder on SciFact.

    .venv/bin/python benchmarks/index_speed.py --quick     # a few minutes on 2 cores
    .venv/bin/python benchmarks/index_speed.py             # 100k and 1M vectors (long, ~3 GB disk)

Results: benchmarks/results/index_speed[-quick].json
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer import EncodedBatch, Indexer, LLM2VecEncoder  # noqa: E402
from indexer.chunking import Chunk  # noqa: E402
from indexer.documents import Document  # noqa: E402
from indexer.faiss_index import VectorIndex  # noqa: E402

DIM = 576
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
RESULTS = Path(__file__).parent / "results"


def unit(rng: np.random.Generator, n: int, centers: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors; around `centers` (clustered, like real embeddings) when given."""
    if centers is None:
        x = rng.standard_normal((n, DIM), dtype=np.float32)
    else:
        x = centers[rng.integers(0, len(centers), n)] + 0.03 * rng.standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def one_chunk_batch(start: int, vectors: np.ndarray) -> EncodedBatch:
    docs = [Document(f"s{i}", f"synthetic text {i}", {"n": i}) for i in range(start, start + len(vectors))]
    return EncodedBatch(docs, [[Chunk(0, 0, len(d.text), d.text)] for d in docs], vectors)


def timed(fn: Callable[[], Any], repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


class StubEncoder:
    """Enough of an encoder for `Indexer` on synthetic data (fingerprinted like a real one)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.dim = DIM
        self.config = type("C", (), {"doc_max_length": 400})()

    def spec(self) -> dict[str, Any]:
        return {"model": "synthetic", "dim": DIM, "pooling_mode": "mean", "max_length": 512, "doc_max_length": 400}

    def fingerprint(self) -> str:
        return "synthetic"


def bench_build(encoder: LLM2VecEncoder, corpus: Path, n_docs: int, work: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in itertools.islice(corpus.open(), n_docs)]
    docs = [{"id": r["_id"], "text": f"{r['title']}\n\n{r['text']}"} for r in rows]
    started = time.perf_counter()
    with Indexer(work / "build", encoder) as indexer:
        stats = indexer.add_documents(docs)
    seconds = time.perf_counter() - started
    work_seconds = stats.encode_seconds + stats.store_seconds
    return {"docs": n_docs, "chunks": stats.chunks, "seconds": seconds, "docs_per_s": n_docs / seconds,
            "encode_share": stats.encode_seconds / work_seconds,
            "storage_overhead_vs_encoding": stats.store_seconds / stats.encode_seconds}


def open_in_subprocess(open_code: str, search_code: str, setup: str = "pass") -> dict[str, float]:
    """Time an open, then a first search, in a fresh process (imports done first); RSS growth via psutil."""
    script = ("import time, json, psutil, sys; sys.path.insert(0, %r); p = psutil.Process(); "
              "import faiss, numpy; from indexer import IndexStore; %s; before = p.memory_info().rss; "
              "t = time.perf_counter(); %s; o = time.perf_counter() - t; rss = p.memory_info().rss - before; "
              "t = time.perf_counter(); %s; q = time.perf_counter() - t; "
              "print(json.dumps({'open_s': o, 'rss_mb_after_open': rss / 2**20, 'first_search_s': q, "
              "'rss_mb_after_search': (p.memory_info().rss - before) / 2**20}))"
              % (str(Path(__file__).resolve().parents[1]), setup, open_code, search_code))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_storage(n: int, work: Path, tokenizer: Any, rng: np.random.Generator) -> dict[str, Any]:
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import Embeddings

    class Fixed(Embeddings):
        def embed_documents(self, texts):  # pragma: no cover - vectors are passed in directly
            raise NotImplementedError

        def embed_query(self, text):  # pragma: no cover
            raise NotImplementedError

    path = work / f"store-{n}"
    vectors = unit(rng, n)
    ours: dict[str, Any] = {}
    started = time.perf_counter()
    with Indexer(path, StubEncoder(tokenizer)) as indexer:
        for start in range(0, n, 10_000):
            indexer.commit(one_chunk_batch(start, vectors[start : start + 10_000]))
        ours["bulk_add_per_doc_ms"] = 1000 * (time.perf_counter() - started) / n
        extra = unit(rng, 60)
        ours["add_one_ms"] = 1000 * np.mean([timed(lambda i=i: indexer.commit(one_chunk_batch(n + i, extra[i:i + 1])))
                                             for i in range(20)])
        ours["upsert_one_ms"] = 1000 * np.mean([timed(lambda i=i: indexer.commit(one_chunk_batch(n + i, extra[20 + i:21 + i])))
                                                for i in range(20)])
        ours["delete_one_ms"] = 1000 * np.mean([timed(lambda i=i: indexer.delete(ids=[f"s{i}"])) for i in range(20)])
        ours["snapshot_s"] = timed(indexer.store.save_snapshot)
    ours.update(open_in_subprocess(f"s = IndexStore.open({str(path)!r})", f"s.search(numpy.ones((1, {DIM}), 'float32'), 10)"))
    ours["disk_mb"] = sum(p.stat().st_size for p in path.iterdir()) / 2**20

    lc: dict[str, Any] = {}
    index = faiss.IndexFlatIP(DIM)
    store = FAISS(Fixed(), index, InMemoryDocstore(), {}, normalize_L2=False)
    started = time.perf_counter()
    for start in range(0, n, 10_000):  # numpy rows, not lists: 1M x 576 Python floats would need ~14 GB
        rows = range(start, min(n, start + 10_000))
        store.add_embeddings([(f"synthetic text {i}", vectors[i]) for i in rows], ids=[f"s{i}" for i in rows])
    lc["bulk_add_per_doc_ms"] = 1000 * (time.perf_counter() - started) / n
    lc["add_one_ms"] = 1000 * np.mean([timed(lambda i=i: store.add_embeddings([(f"x{i}", extra[i])], ids=[f"x{i}"]))
                                       for i in range(20)])
    lc["delete_one_ms"] = 1000 * np.mean([timed(lambda i=i: store.delete([f"s{i}"])) for i in range(20)])
    lc_path = work / f"lc-{n}"
    lc["save_s"] = timed(lambda: store.save_local(str(lc_path)))
    lc.update(open_in_subprocess(
        f"s = FAISS.load_local({str(lc_path)!r}, FakeEmbeddings(size={DIM}), allow_dangerous_deserialization=True)",
        f"s.similarity_search_by_vector([1.0] * {DIM}, 10)",
        setup="from langchain_community.vectorstores import FAISS; from langchain_core.embeddings import FakeEmbeddings"))
    lc["disk_mb"] = sum(p.stat().st_size for p in lc_path.iterdir()) / 2**20
    lc["note"] = "no upsert (delete + add); whole index rewritten on save; docstore pickled (not crash-safe)"
    shutil.rmtree(path)
    shutil.rmtree(lc_path)
    return {"vectors": n, "ours": ours, "langchain_faiss": lc}


def bench_ann(n: int, n_queries: int, rng: np.random.Generator) -> dict[str, Any]:
    centers = unit(rng, 256)
    data, queries = unit(rng, n, centers), unit(rng, n_queries, centers)
    ids = np.arange(n, dtype=np.int64)
    nlist = 2 ** round(np.log2(4 * np.sqrt(n)))
    truth = None
    out = {}
    for factory in ("Flat", "HNSW32", f"IVF{nlist},PQ64x4fs"):  # 4-bit fast-scan PQ: 32 bytes per vector
        index = VectorIndex.create(factory, DIM)
        started = time.perf_counter()
        if index.needs_training():
            index.train(data[rng.choice(n, min(n, 40 * nlist), replace=False)], lambda: iter([(ids, data)]))
        else:
            index.add(ids, data)
        build = time.perf_counter() - started
        started = time.perf_counter()
        _, found = index.search(queries, 10)
        latency = (time.perf_counter() - started) / n_queries
        if truth is None:
            truth = found
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
        out[factory] = {"recall_at_10": float(recall), "ms_per_query": 1000 * latency, "build_s": build}
    from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import FakeEmbeddings

    store = FAISS.from_embeddings([(str(i), v.tolist()) for i, v in enumerate(data)], FakeEmbeddings(size=DIM),
                                  distance_strategy="MAX_INNER_PRODUCT")
    started = time.perf_counter()
    for q in queries:
        store.similarity_search_with_score_by_vector(q.tolist(), 10)
    out["langchain_faiss_flat"] = {"ms_per_query": 1000 * (time.perf_counter() - started) / n_queries,
                                   "note": "one query per call (its API); exact"}
    return {"vectors": n, "queries": n_queries, "by_factory": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="BEIR corpus.jsonl with real passages [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"quick": args.quick, "dim": DIM}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        encoder = LLM2VecEncoder.from_pretrained(args.model)
        results["build"] = bench_build(encoder, args.corpus, 12 if args.quick else 200, work)
        print(json.dumps(results["build"]), flush=True)
        results["storage"] = [bench_storage(n, work, encoder.tokenizer, rng)
                              for n in ((100_000,) if args.quick else (100_000, 1_000_000))]
        print(json.dumps(results["storage"]), flush=True)
        results["ann"] = bench_ann(20_000 if args.quick else 1_000_000, 100 if args.quick else 1000, rng)
        print(json.dumps(results["ann"]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"index_speed{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
