"""Which fusion hybrid search uses, and how much the dense list weighs in it, chosen on a development split.

    python benchmarks/fusion.py --data ../shared/data/scifact --split train [--weights 0.25,0.5,1]
                                [--fusions rrf,convex] [--depths 10,300]

`Retriever`'s hybrid search fuses its dense hits and its BM25 keyword hits (`retriever.fusion`),
by reciprocal rank (`rrf`, each list adding `weight / (60 + rank)`) or by a convex combination of
min-max normalised scores (`convex`). This script scores both functions at several dense weights
on judged queries that no test table uses (SciFact's `qrels/train.tsv`), through the same index
`beir.py` builds (its document vectors come from beir.py's embedding cache) and `Retriever`'s own
hybrid search, at each search depth k of `--depths` (a user's k = 10, the tables'
k = 300; each fuses 4k dense and 4k keyword candidates), so a choice can be made there and then
checked on the test collections.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, write_result  # noqa: E402
from _embedding_cache import DEFAULT_ROOT as CACHE_ROOT  # noqa: E402
from beir import (DEFAULT_TASKS, METRICS, Dataset, Run, best_chunk_run, build_index, evaluate,  # noqa: E402
                  load_dataset, load_llm)
from indexer.llm2vec.sources import DEFAULT_MODEL  # noqa: E402


def weighted_runs(dataset: Dataset, encoder, task: str, weights: Sequence[float], fusions: Sequence[str],
                  depths: Sequence[int], *, cache_root: Path | None,
                  chunk_tokens: int | None = None) -> Iterator[tuple[tuple[str, float, int], Run]]:
    """For each fusion function, dense weight (the keyword list weighs 1) and search depth k: the run
    of `Retriever`'s hybrid search so configured (the queries encoded once), as it is scored."""
    from retriever import Retriever
    from retriever.retriever import SearchOptions

    index_dir = build_index(dataset, encoder, cache_root=cache_root, chunk_tokens=chunk_tokens)
    query_ids, texts = list(dataset.queries), list(dataset.queries.values())
    options = SearchOptions.checked(mmr=False, hybrid=True, lambda_mult=0.5)
    with Retriever.open(index_dir, encoder) as retriever:
        vectors = retriever.encode_queries(texts, task=task)
        for fusion, weight, k in itertools.product(fusions, weights, depths):
            configured = Retriever(retriever.store, encoder, fusion=fusion, dense_weight=weight)
            hits = configured._search_vectors(vectors, k, texts, None, options)  # the search after encoding
            yield (fusion, weight, k), best_chunk_run(query_ids, [[(h.doc_id, h.score) for h in row] for row in hits])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA / "scifact"), help="BEIR dataset directory")
    parser.add_argument("--split", default="train", help="a split no test table reports [default: %(default)s]")
    parser.add_argument("--weights", default="0,0.25,0.5,0.75,1,1.5,2", help="dense-list weights to score")
    parser.add_argument("--fusions", default="rrf,convex", help="fusion functions to score: rrf (ranks), "
                        "convex (min-max normalised scores) [default: %(default)s]")
    parser.add_argument("--depths", default="10,300", help="search depths k (hits per query) to score "
                        "[default: %(default)s]")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="[default: %(default)s]")
    parser.add_argument("--task", default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="as beir.py's: bf16 on CPUs with native bf16, its own index and cached vectors")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="as beir.py's: tokens per chunk of the index "
                        "[default: the recipe's, else the encoder's doc_max_length]")
    parser.add_argument("--cache-dir", default=str(CACHE_ROOT), help="beir.py's document embedding cache "
                        "[default: %(default)s]")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.split == "test":
        parser.error("choose the fusion on a development split, not the test split the tables report")
    dataset = load_dataset(args.data, split=args.split)
    task = args.task or DEFAULT_TASKS.get(dataset.name, "generic")
    weights = [float(w) for w in args.weights.split(",")]
    fusions = args.fusions.split(",")
    if not set(fusions) <= {"rrf", "convex"}:
        parser.error(f"--fusions takes rrf and/or convex, got {args.fusions!r}")
    depths = [int(k) for k in args.depths.split(",")]
    print(f"{dataset.name} ({args.split}): {len(dataset.docs)} docs, {len(dataset.queries)} queries, task {task}")
    runs = weighted_runs(dataset, load_llm(args.model, (), bidirectional=True, precision=args.precision), task, weights,
                         fusions, depths, cache_root=Path(args.cache_dir), chunk_tokens=args.chunk_tokens)
    rows = []
    for (fusion, weight, k), run in runs:
        rows.append({"fusion": fusion, "dense_weight": weight, "k": k, **evaluate(dataset, run)})
        print(f"  k {k:<4} {fusion:<7} dense weight {weight:<5}" + "  ".join(f"{m} {rows[-1][m]:.4f}" for m in METRICS))
    path = write_result(f"fusion-{dataset.name}-{args.split}",
                        {"dataset": dataset.name, "split": args.split, "data_sha256": dataset.sha256, "task": task,
                         "model": args.model, "precision": args.precision,
                         "chunk_tokens": args.chunk_tokens, "protocol": dataset.protocol, "rows": rows}, args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
