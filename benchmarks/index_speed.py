"""Indexer speed: build throughput, write latency, open time and memory, ANN recall/latency.

Side by side with langchain-community's FAISS vectorstore doing the same operations in the
same run. Storage-side sections use synthetic unit vectors (dim 576, SmolLM2-135M's), so they
measure the index, not the encoder; the build section uses the real encoder on SciFact.

    .venv/bin/python benchmarks/index_speed.py --quick     # a few minutes on 2 cores
    .venv/bin/python benchmarks/index_speed.py             # 10k, 100k and 1M vectors (hours, ~9 GB disk)
    .venv/bin/python benchmarks/index_speed.py --smoke     # tiny sizes, no model: checks it runs

    .venv/bin/python benchmarks/index_speed.py --writes-only 100000,1000000   # one-change cost, filters

Sections: build (real encoder on SciFact: storage time against encoding time); storage at each of
`--sizes` vectors (bulk add, add/upsert/delete one, snapshot, open and first search in a fresh
process with its RSS growth, disk), ours and LangChain's FAISS store, giving the scaling curves;
ANN: recall@10 against exact search and ms/query for Flat, HNSW32 and IVF-PQ at their defaults,
plus a sweep of HNSW efSearch and IVF nprobe (the recall/latency curves).
Results: benchmarks/results/index_speed[-quick].json (--smoke: benchmarks/.work/smoke/).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import DEFAULT_DATA, RESULTS, write_result  # noqa: E402

from indexer import EncodedBatch, Indexer, LLM2VecEncoder  # noqa: E402
from indexer.chunking import Chunk  # noqa: E402
from indexer.documents import Document  # noqa: E402
from indexer.faiss_index import VectorIndex  # noqa: E402
from indexer.vectors import normalize_rows  # noqa: E402

DIM = 576
DEFAULT_CORPUS = DEFAULT_DATA / "scifact" / "corpus.jsonl"
SMOKE = RESULTS.parent / ".work" / "smoke"
# (storage sizes, ANN vectors, ANN queries, build docs) per mode; build docs 0 skips the model
SIZES = {"full": ((10_000, 100_000, 1_000_000), 1_000_000, 1000, 200),
         "quick": ((10_000, 100_000), 20_000, 100, 12),
         "smoke": ((2_000,), 2_000, 20, 0)}
# search-time knob swept per index family, and its values (IVF values above nlist are dropped)
SWEEPS = {"HNSW": ("ef_search", (16, 32, 64, 128, 256)), "IVF": ("nprobe", (1, 2, 4, 8, 16, 32, 64, 128))}


def unit(rng: np.random.Generator, n: int, centers: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors; around `centers` (clustered, like real embeddings) when given."""
    if centers is None:
        x = rng.standard_normal((n, DIM), dtype=np.float32)
    else:
        x = centers[rng.integers(0, len(centers), n)] + 0.03 * rng.standard_normal((n, DIM), dtype=np.float32)
    return normalize_rows(x)


def one_chunk_batch(start: int, vectors: np.ndarray) -> EncodedBatch:
    docs = [Document(f"s{i}", f"synthetic text {i}", {"n": i, "g": i % 100, "half": i % 2 == 0})
            for i in range(start, start + len(vectors))]
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


def bench_writes(n: int, work: Path, rng: np.random.Generator, repeat: int = 3) -> dict[str, Any]:
    """Small writes and filtered search at `n` vectors (Flat): what one change costs once the index is large.

    add_one_close_s / delete_one_close_s: one commit (or delete) then `close()`, the index open;
    open_s: opening the writer again (replaying what closing left in SQLite). Filtered search:
    median ms/query under filters allowing 1 % and 50 % of the chunks, against unfiltered search
    in the same run (ratio), the first call per filter (building its selector) reported apart.
    """
    from indexer import IndexStore
    from retriever import Retriever

    path = work / f"writes-{n}"
    vectors = unit(rng, n)
    with Indexer(path, StubEncoder(None)) as indexer:
        for start in range(0, n, 10_000):
            indexer.commit(one_chunk_batch(start, vectors[start : start + 10_000]))
    del vectors
    out: dict[str, Any] = {"vectors": n, "factory": "Flat"}
    extra = unit(rng, repeat)
    adds, deletes, opens = [], [], []
    for i in range(repeat):
        started = time.perf_counter()
        indexer = Indexer(path, StubEncoder(None))
        opens.append(time.perf_counter() - started)
        started = time.perf_counter()
        indexer.commit(one_chunk_batch(n + i, extra[i : i + 1]))
        indexer.close()
        adds.append(time.perf_counter() - started)
        indexer = Indexer(path, StubEncoder(None))
        started = time.perf_counter()
        indexer.delete(ids=[f"s{i}"])
        indexer.close()
        deletes.append(time.perf_counter() - started)
    out.update(add_one_close_s=float(np.median(adds)), delete_one_close_s=float(np.median(deletes)),
               open_s=float(np.median(opens)))
    queries = unit(rng, 21)
    with Retriever(IndexStore.open(path), None) as retriever:
        for name, filter in (("unfiltered", None), ("selective_1pct", {"g": 7}), ("broad_50pct", {"half": True})):
            started = time.perf_counter()
            hits = retriever.search_by_vector(queries[0], 10, filter=filter)[0]
            first = time.perf_counter() - started
            times = []
            for query in queries[1:]:
                started = time.perf_counter()
                retriever.search_by_vector(query, 10, filter=filter)
                times.append(time.perf_counter() - started)
            out[name] = {"first_ms": 1000 * first, "median_ms": 1000 * float(np.median(times)), "hits": len(hits)}
    for name in ("selective_1pct", "broad_50pct"):
        out[name]["ratio_to_unfiltered"] = out[name]["median_ms"] / out["unfiltered"]["median_ms"]
    shutil.rmtree(path)
    return out


def timed_search(index: VectorIndex, queries: np.ndarray, truth: np.ndarray | None) -> tuple[dict[str, float], np.ndarray]:
    """ms/query of one batched top-10 search (after a one-query warm-up), and recall@10 against `truth`."""
    index.search(queries[:1], 10)
    started = time.perf_counter()
    _, found = index.search(queries, 10)
    latency = (time.perf_counter() - started) / len(queries)
    reference = found if truth is None else truth
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference)])
    return {"recall_at_10": float(recall), "ms_per_query": 1000 * latency}, found


def sweep(index: VectorIndex, factory: str, queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """Recall/latency at each value of the family's search knob; the index keeps its default after."""
    family = next((f for f in SWEEPS if factory.startswith(f)), None)
    if family is None:
        return []
    knob, values = SWEEPS[family]
    if knob == "nprobe":
        values = tuple(v for v in values if v <= faiss.extract_index_ivf(index.index).nlist)
    default = getattr(index, knob)
    points = []
    for value in values:
        setattr(index, knob, value)
        points.append({"param": knob, "value": value, **timed_search(index, queries, truth)[0]})
    setattr(index, knob, default)
    return points


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
        point, found = timed_search(index, queries, truth)
        truth = found if truth is None else truth
        out[factory] = {**point, "build_s": build, "default": {"nprobe": index.nprobe, "ef_search": index.ef_search},
                        "sweep": sweep(index, factory, queries, truth)}
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


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="BEIR corpus.jsonl with real passages [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and no build section (no model load)")
    parser.add_argument("--sizes", type=parse_sizes,
                        help="comma-separated vector counts for the storage scaling curve "
                             "(default 10000,100000 quick / 10000,100000,1000000)")
    parser.add_argument("--ann-vectors", type=int, help="vectors in the ANN section (default 20000 quick / 1000000)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/index_speed[-quick].json)")
    parser.add_argument("--writes-only", type=parse_sizes, metavar="SIZES",
                        help="only the small-write and filtered-search section at these vector counts, e.g. "
                             "100000,1000000 (results: index_speed-writes.json)")
    args = parser.parse_args()
    if args.writes_only:
        with tempfile.TemporaryDirectory() as tmp:
            writes = [bench_writes(n, Path(tmp), np.random.default_rng(0)) for n in args.writes_only]
        print(json.dumps(writes, indent=1))
        print(f"wrote {write_result('index_speed-writes', {'writes': writes}, args.output)}")
        return
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes, ann_vectors, ann_queries, build_docs = SIZES[mode]
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"quick": args.quick, "smoke": args.smoke, "dim": DIM}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer = None  # synthetic documents are committed as single chunks: nothing to tokenize
        if build_docs:
            encoder = LLM2VecEncoder.from_pretrained(args.model)
            tokenizer = encoder.tokenizer
            results["build"] = bench_build(encoder, args.corpus, build_docs, work)
            print(json.dumps(results["build"]), flush=True)
        results["storage"] = [bench_storage(n, work, tokenizer, rng) for n in args.sizes or sizes]
        print(json.dumps(results["storage"]), flush=True)
        results["ann"] = bench_ann(args.ann_vectors or ann_vectors, ann_queries, rng)
        print(json.dumps(results["ann"]), flush=True)
    default = SMOKE / "index_speed.json" if args.smoke else RESULTS / f"index_speed{'-quick' if args.quick else ''}.json"
    print(f"wrote {write_result('index_speed', results, args.output or default)}")


if __name__ == "__main__":
    main()
