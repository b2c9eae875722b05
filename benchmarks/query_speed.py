"""End-to-end query latency of `Retriever.search` (encode + search + hydrate) and batch throughput.

    .venv/bin/python benchmarks/query_speed.py --quick   # 200 SciFact docs, 100k synthetic vectors
    .venv/bin/python benchmarks/query_speed.py           # the whole corpus, 1M synthetic vectors

Indexes (built once under benchmarks/.work/ and reused):
  * scifact: SciFact abstracts encoded by SmolLM2-135M (the default encoder), Flat.
  * synthetic: random unit vectors in the encoder's dimension with short texts, factory "auto"
    (IVF at this size), written through `Indexer.commit`, so hydration reads real SQLite rows.
Queries are SciFact claims with the scifact task instruction, k=10, one at a time: for each, the
bare query encoding (`encoder.encode`), `search_by_vector` with that vector (FAISS + hydration only)
and the whole `search` are timed back to back. Reported: p50/p99 of each, the encoding's share of
the end-to-end time, and queries/s of `search_batch`.
Target: end-to-end p50 <= 2x the bare encoding p50. Results: benchmarks/results/query_speed[_quick].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import Document, EncodedBatch, Indexer, IndexStore, LLM2VecEncoder  # noqa: E402
from indexer.chunking import Chunk  # noqa: E402
from retriever import Retriever  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact"
WORK = ROOT / "benchmarks" / ".work"
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "smollm2-135m"
TASK = "scifact"
K = 10
TARGET_RATIO = 2.0


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def build_scifact(encoder: LLM2VecEncoder, data: Path, n_docs: int | None) -> Path:
    path = WORK / f"scifact-{n_docs or 'all'}"
    docs = [{"id": row["_id"], "text": f"{row.get('title', '')} {row['text']}".strip(),
             "metadata": {"title": row.get("title", "")}}
            for row in read_jsonl(data / "corpus.jsonl", n_docs)]
    started = time.perf_counter()
    with Indexer(path, encoder, default_task=TASK) as indexer:  # resumes: committed documents are skipped
        stats = indexer.add_documents(docs)
    print(f"{path.name}: {stats.added} docs encoded in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def build_synthetic(encoder: LLM2VecEncoder, n_vectors: int, batch: int = 20_000) -> Path:
    path = WORK / f"synthetic-{n_vectors}"
    if (path / "manifest.json").is_file() and len(IndexStore.open(path)) == n_vectors:
        return path
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    with Indexer(path, encoder, factory="auto", expected_size=n_vectors, default_task=TASK) as indexer:
        for start in range(0, n_vectors, batch):
            stop = min(start + batch, n_vectors)
            vectors = rng.standard_normal((stop - start, encoder.dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
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
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="BEIR-layout SciFact directory (corpus.jsonl, queries.jsonl) [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="200 SciFact docs, 100k synthetic vectors, 100 queries")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_docs, n_synthetic, n_queries = (200, 100_000, 100) if args.quick else (None, 1_000_000, 300)
    WORK.mkdir(parents=True, exist_ok=True)

    encoder = LLM2VecEncoder.from_pretrained(MODEL)
    queries = [row["text"] for row in read_jsonl(args.data / "queries.jsonl", n_queries)]
    results: dict[str, Any] = {
        "benchmark": "query_speed",
        "quick": args.quick,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads, "python": platform.python_version(),
                    "torch": torch.__version__},
        "encoder": repr(encoder),
        "task": TASK,
        "target": f"end-to-end p50 <= {TARGET_RATIO}x bare query encoding p50",
        "indexes": {},
    }
    indexes = {"scifact": build_scifact(encoder, args.data, n_docs), "synthetic": build_synthetic(encoder, n_synthetic)}
    for name, path in indexes.items():
        with Retriever.open(path, encoder, batch_size=args.batch_size) as retriever:
            results["indexes"][name] = measure(retriever, queries, args.batch_size)
        print(name, json.dumps(results["indexes"][name]), file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"query_speed{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
