"""How much the dense list should weigh in hybrid search, chosen on a development split.

    python benchmarks/fusion.py --data ../shared/data/scifact --split train [--weights 0.25,0.5,0.75,1]

`Retriever`'s hybrid search fuses its dense hits and its BM25 keyword hits by reciprocal rank
(`retriever.fusion`), each list adding `weight / (60 + rank)`. This script scores weighted
variants on judged queries that no test table uses (SciFact's `qrels/train.tsv`), through the
same index `beir.py` builds (its document vectors come from beir.py's embedding cache) and the
same candidate lists `Retriever._fuse` fuses (`fetch` = 4k dense and keyword chunks, k = 300), so
a choice can be made there and then checked on the test collections.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, write_result  # noqa: E402
from _embedding_cache import DEFAULT_ROOT as CACHE_ROOT  # noqa: E402
from beir import (DEFAULT_TASKS, DEPTH, METRICS, Dataset, Run, best_chunk_run, build_index, evaluate,  # noqa: E402
                  load_dataset, load_llm)


def weighted_runs(dataset: Dataset, encoder, task: str, weights: Sequence[float], *,
                  cache_root: Path | None) -> dict[float, Run]:
    """For each dense weight (the keyword list weighs 1): the run of that weighted RRF."""
    from retriever import Retriever
    from retriever.fusion import reciprocal_rank_fusion

    index_dir = build_index(dataset, encoder, cache_root=cache_root)
    fetch = 4 * DEPTH * 3  # what Retriever fetches from each side for k = 300
    query_ids, texts = list(dataset.queries), list(dataset.queries.values())
    with Retriever.open(index_dir, encoder) as retriever:
        dense = retriever.search_by_vector(retriever.encode_queries(texts, task=task), fetch)
        keyword = [[chunk_id for chunk_id, _ in retriever.store.keyword_search(text, fetch)] for text in texts]
        wanted = sorted({i for row in keyword for i in row} | {h.chunk_id for row in dense for h in row})
        doc_of = {c["id"]: c["doc_id"] for c in retriever.store.get_chunks(wanted)}
    runs = {}
    for weight in weights:
        fused = [reciprocal_rank_fusion([[h.chunk_id for h in d], k], weights=[weight, 1.0])[: DEPTH * 3]
                 for d, k in zip(dense, keyword)]
        runs[weight] = best_chunk_run(query_ids, [[(doc_of[i], s) for i, s in row] for row in fused])
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA / "scifact"), help="BEIR dataset directory")
    parser.add_argument("--split", default="train", help="a split no test table reports [default: %(default)s]")
    parser.add_argument("--weights", default="0,0.25,0.5,0.75,1,1.5,2", help="dense-list weights to score")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="as beir.py's: bf16 on CPUs with native bf16, its own index and cached vectors")
    parser.add_argument("--cache-dir", default=str(CACHE_ROOT), help="beir.py's document embedding cache "
                        "[default: %(default)s]")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.split == "test":
        parser.error("choose the fusion on a development split, not the test split the tables report")
    dataset = load_dataset(args.data, split=args.split)
    task = args.task or DEFAULT_TASKS.get(dataset.name, "generic")
    weights = [float(w) for w in args.weights.split(",")]
    print(f"{dataset.name} ({args.split}): {len(dataset.docs)} docs, {len(dataset.queries)} queries, task {task}")
    runs = weighted_runs(dataset, load_llm(args.model, (), bidirectional=True, precision=args.precision), task, weights,
                         cache_root=Path(args.cache_dir))
    rows = []
    for weight, run in runs.items():
        rows.append({"dense_weight": weight, **evaluate(dataset, run)})
        print(f"  dense weight {weight:<5}" + "  ".join(f"{m} {rows[-1][m]:.4f}" for m in METRICS))
    path = write_result(f"fusion-{dataset.name}-{args.split}",
                        {"dataset": dataset.name, "split": args.split, "data_sha256": dataset.sha256, "task": task,
                         "model": args.model, "precision": args.precision, "protocol": dataset.protocol, "rows": rows}, args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
