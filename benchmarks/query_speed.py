"""End-to-end query latency of `Retriever.search` (encode + search + hydrate) and batch throughput.

    .venv/bin/python benchmarks/query_speed.py --quick   # 200 SciFact docs, 100k synthetic vectors
    .venv/bin/python benchmarks/query_speed.py           # the whole corpus, 1M synthetic vectors
    .venv/bin/python benchmarks/query_speed.py --smoke   # 10 docs, 2k vectors, 5 queries: checks it runs

Indexes (built once under benchmarks/.work/ and reused):
  * scifact: SciFact abstracts encoded by SmolLM2-135M (the default encoder until 2026-12-03), Flat.
  * synthetic: random unit vectors in the encoder's dimension with short texts, factory "auto"
    (IVF at this size), written through `Indexer.commit`, so hydration reads real SQLite rows.
Queries are SciFact claims with the scifact task instruction, k=10, one at a time: for each, the
bare query encoding (`encoder.encode`), `search_by_vector` with that vector (FAISS + hydration only)
and the whole `search` are timed back to back. Reported: p50/p99 of each, the encoding's share of
the end-to-end time, and queries/s of `search_batch`.
Target: end-to-end p50 <= 2x the bare encoding p50. Results: benchmarks/results/query_speed[_quick].json
(--smoke: results and indexes under benchmarks/.work/smoke/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, RESULTS, read_jsonl, write_result  # noqa: E402

from indexer import Document, EncodedBatch, Indexer, IndexStore, LLM2VecEncoder  # noqa: E402
from indexer.chunking import Chunk  # noqa: E402
from indexer.vectors import normalize_rows  # noqa: E402
from retriever import Retriever  # noqa: E402

WORK = RESULTS.parent / ".work"
SMOKE = WORK / "smoke"
# (SciFact docs (None: all), synthetic vectors, queries) per mode
SIZES = {"full": (None, 1_000_000, 300), "quick": (200, 100_000, 100), "smoke": (10, 2_000, 5)}
MODEL = "smollm2-135m"
TASK = "scifact"
K = 10
TARGET_RATIO = 2.0


def build_scifact(encoder: LLM2VecEncoder, data: Path, n_docs: int | None, work: Path) -> Path:
    path = work / f"scifact-{n_docs or 'all'}"
    docs = [{"id": row["_id"], "text": f"{row.get('title', '')} {row['text']}".strip(),
             "metadata": {"title": row.get("title", "")}}
            for row in read_jsonl(data / "corpus.jsonl", n_docs)]
    started = time.perf_counter()
    with Indexer(path, encoder, default_task=TASK) as indexer:  # resumes: committed documents are skipped
        stats = indexer.add_documents(docs)
    print(f"{path.name}: {stats.added} docs encoded in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def build_synthetic(encoder: LLM2VecEncoder, n_vectors: int, work: Path, batch: int = 20_000) -> Path:
    path = work / f"synthetic-{n_vectors}"
    if (path / "manifest.json").is_file() and len(IndexStore.open(path)) == n_vectors:
        return path
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    with Indexer(path, encoder, factory="auto", expected_size=n_vectors, default_task=TASK) as indexer:
        for start in range(0, n_vectors, batch):
            stop = min(start + batch, n_vectors)
            vectors = normalize_rows(rng.standard_normal((stop - start, encoder.dim), dtype=np.float32))
            docs = [Document(f"syn-{i}", f"synthetic passage number {i}", {"shard": i % 100})
                    for i in range(start, stop)]
            chunks = [[Chunk(0, 0, len(d.text), d.text)] for d in docs]
            indexer.commit(EncodedBatch(docs, chunks, vectors))
    print(f"built {path.name} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(array, 50)), 2), "p99_ms": round(float(np.percentile(array, 99)), 2),
            "mean_ms": round(float(array.mean()), 2)}


def measure(retriever: Retriever, queries: list[str], batch_size: int) -> dict[str, Any]:
    encoder = retriever.encoder
    instruction = retriever.query_instruction(TASK)
    for query in queries[:5]:  # warm-up
        retriever.search(query, K, task=TASK)
    encode, search_only, end_to_end = [], [], []
    for query in queries:
        started = time.perf_counter()
        vector = encoder.encode([query], instruction, normalize=True)
        encode.append(time.perf_counter() - started)
        started = time.perf_counter()
        retriever.search_by_vector(vector, K)
        search_only.append(time.perf_counter() - started)
        started = time.perf_counter()
        hits = retriever.search(query, K, task=TASK)
        end_to_end.append(time.perf_counter() - started)
        assert len(hits) == min(K, len(retriever))
    started = time.perf_counter()
    retriever.search_batch(queries, K, task=TASK)
    batch_seconds = time.perf_counter() - started
    enc, e2e = percentiles(encode), percentiles(end_to_end)
    return {
        "vectors": len(retriever),
        "factory": retriever.store.factory,
        "queries": len(queries),
        "k": K,
        "encode": enc,
        "end_to_end": e2e,
        "search_and_hydrate": percentiles(search_only),
        "encode_share_of_end_to_end": round(sum(encode) / sum(end_to_end), 3),
        "p50_ratio_end_to_end_over_encode": round(e2e["p50_ms"] / enc["p50_ms"], 3),
        "target_met": e2e["p50_ms"] <= TARGET_RATIO * enc["p50_ms"],
        "batch": {"batch_size": batch_size, "seconds": round(batch_seconds, 3),
                  "queries_per_second": round(len(queries) / batch_seconds, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "scifact",
                        help="BEIR-layout SciFact directory (corpus.jsonl, queries.jsonl) [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="200 SciFact docs, 100k synthetic vectors, 100 queries")
    parser.add_argument("--smoke", action="store_true", help="10 SciFact docs, 2k synthetic vectors, 5 queries")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/query_speed[_quick].json)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_docs, n_synthetic, n_queries = SIZES["smoke" if args.smoke else "quick" if args.quick else "full"]
    work = SMOKE if args.smoke else WORK
    work.mkdir(parents=True, exist_ok=True)

    encoder = LLM2VecEncoder.from_pretrained(MODEL)
    queries = [row["text"] for row in read_jsonl(args.data / "queries.jsonl", n_queries)]
    results: dict[str, Any] = {
        "quick": args.quick,
        "smoke": args.smoke,
        "encoder": repr(encoder),
        "task": TASK,
        "target": f"end-to-end p50 <= {TARGET_RATIO}x bare query encoding p50",
        "indexes": {},
    }
    indexes = {"scifact": build_scifact(encoder, args.data, n_docs, work),
               "synthetic": build_synthetic(encoder, n_synthetic, work)}
    for name, path in indexes.items():
        with Retriever.open(path, encoder, batch_size=args.batch_size) as retriever:
            results["indexes"][name] = measure(retriever, queries, args.batch_size)
        print(name, json.dumps(results["indexes"][name]), file=sys.stderr)
    default = SMOKE / "query_speed.json" if args.smoke else RESULTS / f"query_speed{'_quick' if args.quick else ''}.json"
    print(f"wrote {write_result('query_speed', results, args.output or default)}")


if __name__ == "__main__":
    main()
