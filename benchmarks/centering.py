"""Whether removing the vectors' common direction helps dense search, and which estimate of it does.

    python benchmarks/centering.py --data ../shared/data/scifact --split train [--precision bf16]

LLM2Vec vectors are anisotropic: with the default adapters two random chunks of a collection have a
mean cosine of about 0.8, and the mean vector has a norm of about 0.9. The usual fix is to subtract
a mean vector before the cosine (BERT-whitening, Su et al. 2021; "all-but-the-top", Mu and
Viswanath 2018). Queries carry an instruction and documents do not, so each side gets its own mean.
This script scores dense search (NDCG@10 etc., a document as its best chunk, exact cosine over the
index `beir.py` builds, whose chunk vectors come from its embedding cache) with the vectors as they
are and centred by means from four sources:

- `oracle`: the corpus's chunk mean for documents and the mean of the very queries being scored for
  queries. A search engine never has the second, so this is an upper bound, not a candidate.
- `training-text`: documents' mean from `--paragraphs` (wiki_text, encoded as documents), queries'
  mean from `--pairs` queries (qa_pairs, encoded with the task's instruction): a constant that could
  ship with an adapter.
- `corpus-sample`: documents' mean from the corpus; queries' mean from `--sample` of its chunks,
  cut to 40 words and encoded as queries with the task's instruction: what an index could estimate.
- `projection`: the corpus mean's direction projected out of both sides (no query mean needed).

A variant could become the default only if it wins on a development split (SciFact's train queries)
and then on the test collections; the rows on test splits are for diagnosis.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, read_jsonl, write_result  # noqa: E402
from _embedding_cache import DEFAULT_ROOT as CACHE_ROOT  # noqa: E402
from beir import (DEFAULT_TASKS, DEPTH, METRICS, Dataset, Run, best_chunk_run, build_index, evaluate,  # noqa: E402
                  load_dataset, load_llm)
from indexer.llm2vec.sources import DEFAULT_MODEL  # noqa: E402
from indexer.vectors import normalize_rows  # noqa: E402

QUERY_WORDS = 40
"""A corpus chunk encoded as a query keeps its first this many words (queries are short)."""


def exact_run(query_ids: Sequence[str], queries: np.ndarray, chunks: np.ndarray, chunk_docs: Sequence[str]) -> Run:
    """Cosine of every query with every chunk; a document scores as its best chunk (as `beir.py` scores)."""
    scores = normalize_rows(queries) @ normalize_rows(chunks).T
    depth = min(3 * DEPTH, scores.shape[1])
    top = np.argsort(-scores, axis=1)[:, :depth]
    return best_chunk_run(query_ids, [[(chunk_docs[j], float(scores[i, j])) for j in row] for i, row in enumerate(top)])


def project_out(rows: np.ndarray, direction: np.ndarray) -> np.ndarray:
    direction = normalize_rows(direction)
    return rows - np.outer(rows @ direction, direction)


def centred_runs(dataset: Dataset, encoder, task: str, *, paragraphs: Sequence[str], pair_queries: Sequence[str],
                 sample: int, cache_root: Path | None, chunk_tokens: int | None = None) -> dict[str, Run]:
    """The run of each variant (module docstring), the queries and chunks encoded once."""
    from indexer.store import IndexStore
    from retriever import Retriever

    index_dir = build_index(dataset, encoder, cache_root=cache_root, chunk_tokens=chunk_tokens)
    query_ids, texts = list(dataset.queries), list(dataset.queries.values())
    with IndexStore.open(index_dir) as store:
        ids = store.chunk_ids_where("1 = 1")
        chunks = store.get_chunks(ids)
        vectors = normalize_rows(store.reconstruct([c["id"] for c in chunks]))
    chunk_docs = [c["doc_id"] for c in chunks]
    sampled = random.Random(0).sample([c["text"] for c in chunks], min(sample, len(chunks)))
    with Retriever.open(index_dir, encoder) as retriever:
        queries = retriever.encode_queries(texts, task=task)
        sample_queries = retriever.encode_queries([" ".join(t.split()[:QUERY_WORDS]) for t in sampled], task=task)
        text_queries = retriever.encode_queries(list(pair_queries), task=task)
    text_docs = encoder.encode(list(paragraphs), instruction=None, normalize=True)
    corpus_mean = vectors.mean(axis=0)
    means = {"oracle": (queries.mean(axis=0), corpus_mean),
             "training-text": (text_queries.mean(axis=0), text_docs.mean(axis=0)),
             "corpus-sample": (sample_queries.mean(axis=0), corpus_mean)}
    runs = {"as-is": exact_run(query_ids, queries, vectors, chunk_docs)}
    for name, (query_mean, doc_mean) in means.items():
        runs[name] = exact_run(query_ids, queries - query_mean, vectors - doc_mean, chunk_docs)
    runs["projection"] = exact_run(query_ids, project_out(queries, corpus_mean), project_out(vectors, corpus_mean),
                                   chunk_docs)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA / "scifact"), help="BEIR dataset directory")
    parser.add_argument("--split", default="train", help="[default: %(default)s, a split no test table reports]")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="[default: %(default)s]")
    parser.add_argument("--task", default=None, help="query task [default: per dataset, else generic]")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="as beir.py's")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="as beir.py's [default: the recipe's]")
    parser.add_argument("--paragraphs", default=str(DEFAULT_DATA / "wiki_text" / "paragraphs.txt"),
                        help="documents for the training-text mean, one per line (the last --count are used)")
    parser.add_argument("--pairs", default=str(DEFAULT_DATA / "qa_pairs" / "pairs.jsonl"),
                        help="JSONL with a `query` field for the training-text query mean (a seeded --count)")
    parser.add_argument("--count", type=int, default=1000, help="texts per training-text mean [default: %(default)s]")
    parser.add_argument("--sample", type=int, default=256, help="corpus chunks encoded as queries [default: %(default)s]")
    parser.add_argument("--cache-dir", default=str(CACHE_ROOT), help="beir.py's embedding cache [default: %(default)s]")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data, split=args.split)
    task = args.task or DEFAULT_TASKS.get(dataset.name, "generic")
    paragraphs = Path(args.paragraphs).read_text(encoding="utf-8").splitlines()[-args.count:]
    rows = read_jsonl(args.pairs)
    pair_queries = [row["query"] for row in random.Random(0).sample(rows, min(args.count, len(rows)))]
    print(f"{dataset.name} ({args.split}): {len(dataset.docs)} docs, {len(dataset.queries)} queries, task {task}")
    runs = centred_runs(dataset, load_llm(args.model, (), bidirectional=True, precision=args.precision), task,
                        paragraphs=paragraphs, pair_queries=pair_queries, sample=args.sample,
                        cache_root=Path(args.cache_dir), chunk_tokens=args.chunk_tokens)
    results = []
    for variant, run in runs.items():
        results.append({"variant": variant, **evaluate(dataset, run)})
        print(f"  {variant:<14}" + "  ".join(f"{m} {results[-1][m]:.4f}" for m in METRICS))
    path = write_result(f"centering-{dataset.name}-{args.split}",
                        {"dataset": dataset.name, "split": args.split, "data_sha256": dataset.sha256,
                         "task": task, "model": args.model, "precision": args.precision,
                         "chunk_tokens": args.chunk_tokens, "protocol": dataset.protocol, "rows": results},
                        args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
